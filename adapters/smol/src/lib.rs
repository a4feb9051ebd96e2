//! smol executor adapter for [kasync](https://docs.rs/kasync).
//!
//! Async calls become tasks on smol's global executor. Workers that run
//! blocking calls are dedicated OS threads rather than threads of the
//! `blocking` crate's pool: kasync workers live long and block for long,
//! while that pool is sized for short jobs and shared with the
//! application's own `smol::unblock` calls.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::thread;

/// Starts `body` on a new OS thread named `name`, with `stack_size` bytes of
/// stack if given. The thread is detached.
pub fn spawn_thread(
    name: String,
    stack_size: Option<usize>,
    body: Box<dyn FnOnce() + Send + 'static>,
) -> io::Result<()> {
    let mut builder = thread::Builder::new().name(name);
    if let Some(bytes) = stack_size {
        builder = builder.stack_size(bytes);
    }
    builder.spawn(body).map(drop)
}

/// Runs `future` as a detached task on smol's global executor.
pub fn spawn(future: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
    smol::spawn(future).detach();
}
