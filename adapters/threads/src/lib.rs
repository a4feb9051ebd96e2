//! Native-threads executor adapter for [kasync](https://docs.rs/kasync).
//!
//! Each kasync worker is a dedicated OS thread, named and sized as the
//! runtime asks. Async calls are polled to completion on the worker that
//! claimed them, so this adapter needs no event loop; kasync counts a worker
//! parked in a pending poll as blocked and replaces it.

use std::io;

pub use kasync_executor::{Executor, ExecutorFuture, WorkerSpec};

/// Native threads: each worker is an OS thread; async calls are polled on
/// the worker that claimed them (the `threads` feature, the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct Threads;

impl Executor for Threads {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        kasync_executor::spawn_thread(spec, body)
    }

    /// Polls `future` to completion on the calling thread, parking it while
    /// the future is pending. Calls may nest: a thread already inside a
    /// `block_on` (this one, or `futures::executor::block_on`) may run
    /// another future here, which `futures::executor::block_on` refuses.
    fn spawn_future(&self, future: ExecutorFuture) {
        futures_lite::future::block_on(future)
    }

    fn polls_futures_on_caller(&self) -> bool {
        true
    }
}
