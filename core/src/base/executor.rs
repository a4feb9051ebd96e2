//! The adapter seam: the only things kasync asks of an executor.
//!
//! An executor starts workers that may block, runs futures, and says whether
//! (and how) the calling thread may block. Everything else — cookies, domains,
//! barriers and the growth rule — lives in the core and behaves the same on
//! every adapter.

use std::future::Future;
use std::io;
use std::pin::Pin;

use crate::base::error::BuildError;

/// What a worker thread should look like, where the adapter starts threads.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerSpec {
    /// Thread name (`kasync-worker-N` by default).
    pub name: String,
    /// Stack size in bytes, if configured.
    pub stack_size: Option<usize>,
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
    /// worker; an adapter without an event loop may simply block on it there.
    fn spawn_future(&self, future: ExecutorFuture);

    /// Whether the calling thread may block. `in_async_call` is true while
    /// a kasync async call is being polled on this thread.
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
    /// poll as blocked, and replaces it (rule 3), as for a blocking wait:
    /// `.await` inside an async call never holds the pool's last thread.
    fn polls_futures_on_caller(&self) -> bool {
        false
    }
}

/// Native threads: each worker is an OS thread; async calls are polled on
/// the worker that claimed them (the `threads` feature, the default).
#[cfg(feature = "threads")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Threads;

#[cfg(feature = "threads")]
impl Executor for Threads {
    fn name(&self) -> &'static str {
        "threads"
    }

    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        kasync_threads::spawn_thread(spec.name, spec.stack_size, body)
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        kasync_threads::run_future(future)
    }

    fn polls_futures_on_caller(&self) -> bool {
        true
    }
}

/// tokio: workers are threads of the tokio runtime's blocking pool, async
/// calls are tokio tasks, and blocking waits on a multi-thread runtime's
/// workers go through `block_in_place` (the `tokio` feature).
#[cfg(feature = "tokio")]
#[derive(Clone, Debug)]
pub struct Tokio(kasync_tokio::TokioPool);

#[cfg(feature = "tokio")]
impl Tokio {
    /// Attaches to the tokio runtime the calling thread is in.
    pub fn current() -> Result<Tokio, BuildError> {
        kasync_tokio::TokioPool::current()
            .map(Tokio)
            .map_err(|e| BuildError::Executor(e.to_string()))
    }

    /// Attaches to the tokio runtime behind `handle`.
    pub fn with_handle(handle: kasync_tokio::Handle) -> Tokio {
        Tokio(kasync_tokio::TokioPool::with_handle(handle))
    }

    /// Runs on a multi-thread tokio runtime of kasync's own, built on first
    /// use and kept for the rest of the process, so the kasync runtime
    /// never outlives the tokio runtime it runs on (the facade's global
    /// runtime uses it).
    pub fn dedicated() -> Result<Tokio, BuildError> {
        kasync_tokio::TokioPool::dedicated()
            .map(Tokio)
            .map_err(|e| BuildError::Executor(format!("cannot build kasync's own tokio runtime: {e}")))
    }
}

#[cfg(feature = "tokio")]
impl Executor for Tokio {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn spawn_worker(&self, _spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        self.0.spawn_blocking(body);
        Ok(())
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        self.0.spawn(future);
    }

    fn blocking(&self, _in_async_call: bool) -> Blocking {
        match kasync_tokio::blocking_mode() {
            kasync_tokio::BlockingMode::Free => Blocking::Allowed,
            kasync_tokio::BlockingMode::InPlace => Blocking::InPlace,
            kasync_tokio::BlockingMode::Forbidden(why) => Blocking::Forbidden(why),
        }
    }

    fn block_in_place(&self, f: &mut dyn FnMut()) {
        kasync_tokio::block_in_place(f)
    }
}

/// async-std: workers are threads of async-std's blocking pool and async
/// calls are async-std tasks (the `async-std` feature). async-std is
/// deprecated upstream in favour of smol; this adapter is kept for its users.
#[cfg(feature = "async-std")]
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncStd;

#[cfg(feature = "async-std")]
impl Executor for AsyncStd {
    fn name(&self) -> &'static str {
        "async-std"
    }

    fn spawn_worker(&self, _spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        kasync_async_std::spawn_blocking(body);
        Ok(())
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        kasync_async_std::spawn(future);
    }

    fn blocking(&self, in_async_call: bool) -> Blocking {
        if in_async_call || kasync_async_std::in_task() {
            Blocking::Forbidden("the thread is running an async-std task")
        } else {
            Blocking::Allowed
        }
    }
}

/// smol: async calls are tasks on smol's global executor; workers are
/// dedicated native threads (not the `blocking` crate's pool, whose threads
/// are meant for short jobs and which the application's own `unblock` calls
/// share) (the `smol` feature).
#[cfg(feature = "smol")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

#[cfg(feature = "smol")]
impl Executor for Smol {
    fn name(&self) -> &'static str {
        "smol"
    }

    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        kasync_smol::spawn_thread(spec.name, spec.stack_size, body)
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        kasync_smol::spawn(future);
    }

    fn blocking(&self, in_async_call: bool) -> Blocking {
        if in_async_call {
            Blocking::Forbidden("the thread is polling a task on smol's executor")
        } else {
            Blocking::Allowed
        }
    }
}

/// The executor picked from the enabled features; see
/// [`Builder::build`](crate::Builder::build).
pub(crate) fn from_features() -> Result<std::sync::Arc<dyn Executor>, BuildError> {
    #[cfg(feature = "tokio")]
    {
        if let Ok(tokio) = Tokio::current() {
            return Ok(std::sync::Arc::new(tokio));
        }
    }
    #[cfg(feature = "threads")]
    {
        return Ok(std::sync::Arc::new(Threads));
    }
    #[allow(unreachable_code)]
    {
        #[cfg(feature = "smol")]
        {
            return Ok(std::sync::Arc::new(Smol));
        }
        #[cfg(feature = "async-std")]
        {
            return Ok(std::sync::Arc::new(AsyncStd));
        }
        #[cfg(feature = "tokio")]
        {
            return Tokio::current().map(|t| std::sync::Arc::new(t) as std::sync::Arc<dyn Executor>);
        }
        Err(BuildError::NoExecutor)
    }
}
