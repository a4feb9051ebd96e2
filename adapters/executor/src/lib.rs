//! The seam between [kasync](https://docs.rs/kasync) and an executor: the
//! only things kasync asks of one.
//!
//! An executor starts workers that may block, runs futures, and says whether
//! (and how) the calling thread may block. Everything else (cookies, domains,
//! barriers and the growth rule) lives in `kasync-core` and behaves the same
//! on every adapter. Each adapter crate (`kasync-threads`, `kasync-tokio`,
//! `kasync-async-std`, `kasync-smol`) implements [`Executor`] with all of
//! its runtime's behaviour; implement it yourself to run kasync on an
//! executor it has no adapter for.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::thread;

/// What a worker thread should look like, where the adapter starts threads.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerSpec {
    /// Thread name (`kasync-worker-N` by default).
    pub name: String,
    /// Stack size in bytes, if configured.
    pub stack_size: Option<usize>,
}

impl WorkerSpec {
    /// A worker named `name`, with `stack_size` bytes of stack if given.
    pub fn new(name: String, stack_size: Option<usize>) -> WorkerSpec {
        WorkerSpec { name, stack_size }
    }
}

/// Whether the calling thread may block on a barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blocking {
    /// Blocking is fine here.
    Allowed,
    /// Blocking is fine inside [`Executor::block_in_place`] (tokio's
    /// multi-thread runtime).
    InPlace,
    /// Blocking would stall the executor; the string says why.
    Forbidden(&'static str),
}

/// A boxed future an executor runs to completion.
pub type ExecutorFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The seam between kasync and an executor. Implement it to run kasync on an
/// executor it has no adapter for; the growth rule applies unchanged.
pub trait Executor: Send + Sync + 'static {
    /// A short name for messages and stats (`"threads"`, `"tokio"`, ...).
    fn name(&self) -> &'static str;

    /// Starts `body` on a thread that may block for a long time. `body`
    /// returns when the worker retires. If the executor cannot start it, it
    /// returns an error or drops `body` uncalled; kasync notices either way
    /// and carries on with the workers it has.
    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()>;

    /// Runs an async call's future to completion. It is called on a kasync
    /// worker; an adapter without an event loop may simply block on it there
    /// (and then says so with [`Executor::polls_futures_on_caller`]).
    fn spawn_future(&self, future: ExecutorFuture);

    /// Whether the calling thread may block. `in_async_call` is true while
    /// a kasync async call is being polled on this thread. kasync's own
    /// workers may always block; it asks only elsewhere.
    fn blocking(&self, in_async_call: bool) -> Blocking {
        let _ = in_async_call;
        Blocking::Allowed
    }

    /// Runs `f`, which blocks, in a way that does not stall the executor.
    /// Only called when [`Executor::blocking`] returned [`Blocking::InPlace`].
    fn block_in_place(&self, f: &mut dyn FnMut()) {
        f()
    }

    /// Whether [`Executor::spawn_future`] polls the future to completion on
    /// the calling thread, blocking it while the future is pending (default
    /// `false`). kasync then counts one of its workers parked in a pending
    /// poll as blocked, and replaces it, as for a blocking wait: `.await`
    /// inside an async call never holds the pool's last thread.
    fn polls_futures_on_caller(&self) -> bool {
        false
    }
}

/// Starts `body` on a new, detached OS thread named and sized as `spec`
/// says: for adapters whose workers are dedicated threads.
pub fn spawn_thread(spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
    let mut builder = thread::Builder::new().name(spec.name);
    if let Some(bytes) = spec.stack_size {
        builder = builder.stack_size(bytes);
    }
    builder.spawn(body).map(drop)
}
