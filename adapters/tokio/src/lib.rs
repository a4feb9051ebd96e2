//! tokio executor adapter for [kasync](https://docs.rs/kasync).
//!
//! Workers are threads of the tokio runtime's blocking pool, async calls are
//! tokio tasks, and a blocking wait on a multi-thread runtime's worker thread
//! goes through [`tokio::task::block_in_place`] so the runtime keeps going.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use tokio::runtime::Handle;
use tokio::runtime::RuntimeFlavor;

/// A tokio runtime kasync runs on.
#[derive(Clone, Debug)]
pub struct TokioPool {
    handle: Handle,
}

/// Returned when there is no tokio runtime to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoRuntime;

impl fmt::Display for NoRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the tokio adapter needs a tokio runtime: build the kasync runtime inside one \
             (e.g. under #[tokio::main]) or pass a tokio::runtime::Handle",
        )
    }
}

impl std::error::Error for NoRuntime {}

impl TokioPool {
    /// Attaches to the runtime the calling thread is in.
    pub fn current() -> Result<TokioPool, NoRuntime> {
        Handle::try_current().map(TokioPool::with_handle).map_err(|_| NoRuntime)
    }

    /// Attaches to the runtime behind `handle`.
    pub fn with_handle(handle: Handle) -> TokioPool {
        TokioPool { handle }
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `body` on the runtime's blocking pool. If the runtime is shutting
    /// down, tokio drops `body` without calling it.
    pub fn spawn_blocking(&self, body: Box<dyn FnOnce() + Send + 'static>) {
        drop(self.handle.spawn_blocking(body));
    }

    /// Runs `future` as a detached tokio task.
    pub fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        drop(self.handle.spawn(future));
    }
}

/// Whether the calling thread may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockingMode {
    /// Not inside a tokio runtime: block freely.
    Free,
    /// Inside a multi-thread runtime: block through [`block_in_place`].
    InPlace,
    /// Inside a runtime where blocking would stall it.
    Forbidden(&'static str),
}

/// How the calling thread may block.
pub fn blocking_mode() -> BlockingMode {
    match Handle::try_current() {
        Err(_) => BlockingMode::Free,
        Ok(handle) => match handle.runtime_flavor() {
            RuntimeFlavor::MultiThread => BlockingMode::InPlace,
            RuntimeFlavor::CurrentThread => {
                BlockingMode::Forbidden("the thread belongs to a tokio current-thread runtime")
            }
            _ => BlockingMode::Forbidden("the thread belongs to a tokio runtime that cannot block in place"),
        },
    }
}

/// Runs `f`, which blocks, without stalling a multi-thread runtime's worker.
pub fn block_in_place(f: &mut dyn FnMut()) {
    tokio::task::block_in_place(f)
}
