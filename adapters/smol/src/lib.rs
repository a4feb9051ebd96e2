//! smol executor adapter for [kasync](https://docs.rs/kasync).
//!
//! Async calls become tasks on smol's global executor. Workers that run
//! blocking calls are dedicated OS threads rather than threads of the
//! `blocking` crate's pool: kasync workers live long and block for long,
//! while that pool is sized for short jobs and shared with the
//! application's own `smol::unblock` calls.

use std::io;

pub use kasync_executor::{Blocking, Executor, ExecutorFuture, WorkerSpec};

/// smol: async calls are tasks on smol's global executor; workers are
/// dedicated native threads (the `smol` feature).
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

impl Executor for Smol {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        kasync_executor::spawn_thread(spec, body)
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        smol::spawn(future).detach();
    }

    /// A thread polling a task on smol's executor must not block; smol
    /// cannot say whether a thread runs its executor otherwise, so kasync
    /// asks only about its own async calls.
    fn blocking(&self, in_async_call: bool) -> Blocking {
        if in_async_call {
            Blocking::Forbidden("the thread is polling a task on smol's executor")
        } else {
            Blocking::Allowed
        }
    }
}
