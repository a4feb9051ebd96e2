//! async-std executor adapter for [kasync](https://docs.rs/kasync).
//!
//! async-std is deprecated upstream in favour of smol; this adapter is kept
//! working for applications that still run on it. Workers are threads of
//! async-std's blocking pool; async calls are async-std tasks.

use std::future::Future;
use std::pin::Pin;

/// Runs `body` on async-std's blocking thread pool.
pub fn spawn_blocking(body: Box<dyn FnOnce() + Send + 'static>) {
    drop(async_std::task::spawn_blocking(body));
}

/// Runs `future` as a detached async-std task.
pub fn spawn(future: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
    drop(async_std::task::spawn(future));
}

/// Whether the calling thread is running an async-std task (including
/// `async_std::task::block_on`), where blocking would stall the executor.
pub fn in_task() -> bool {
    async_std::task::try_current().is_some()
}
