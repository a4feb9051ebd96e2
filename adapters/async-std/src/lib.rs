//! async-std executor adapter for [kasync](https://docs.rs/kasync).
//!
//! async-std is deprecated upstream in favour of smol; this adapter is kept
//! working for applications that still run on it. Workers are threads of
//! async-std's blocking pool; async calls are async-std tasks.

use std::io;

pub use kasync_executor::{Blocking, Executor, ExecutorFuture, WorkerSpec};

/// async-std: workers are threads of async-std's blocking pool and async
/// calls are async-std tasks (the `async-std` feature).
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

impl Executor for AsyncStd {
    fn name(&self) -> &'static str {
        "async-std"
    }

    /// async-std's blocking pool names its own threads; `spec` is not used.
    fn spawn_worker(&self, _spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        drop(async_std::task::spawn_blocking(body));
        Ok(())
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        drop(async_std::task::spawn(future));
    }

    /// Blocking would stall a thread running an async-std task (including
    /// `async_std::task::block_on`).
    fn blocking(&self, in_async_call: bool) -> Blocking {
        if in_async_call || async_std::task::try_current().is_some() {
            Blocking::Forbidden("the thread is running an async-std task")
        } else {
            Blocking::Allowed
        }
    }
}
