//! tokio executor adapter for [kasync](https://docs.rs/kasync).
//!
//! Workers are threads of the tokio runtime's blocking pool, async calls are
//! tokio tasks, and a blocking wait on a multi-thread runtime's worker thread
//! goes through [`tokio::task::block_in_place`] so the runtime keeps going.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Wake, Waker};

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

    /// A multi-thread tokio runtime of kasync's own, built on first use and
    /// kept for the rest of the process: for a runtime that must outlive
    /// whichever tokio runtime happens to be current (the facade's global
    /// runtime; a `#[tokio::test]`'s runtime ends with its test).
    pub fn dedicated() -> io::Result<TokioPool> {
        static OWN: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        if let Some(rt) = OWN.get() {
            return Ok(TokioPool::with_handle(rt.handle().clone()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("kasync-tokio")
            .enable_all()
            .build()?;
        // Another thread may have built one meanwhile: the first one stays.
        let rt = OWN.get_or_init(|| rt);
        Ok(TokioPool::with_handle(rt.handle().clone()))
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
            // A current-thread runtime stalls only when the thread running
            // its scheduler blocks; its `spawn_blocking` threads, and threads
            // that merely entered it, may block freely.
            RuntimeFlavor::CurrentThread if !runs_a_scheduler() => BlockingMode::Free,
            RuntimeFlavor::CurrentThread => {
                BlockingMode::Forbidden("the thread runs a tokio current-thread runtime's scheduler")
            }
            _ => BlockingMode::Forbidden("the thread belongs to a tokio runtime that cannot block in place"),
        },
    }
}

/// Whether the calling thread runs a tokio scheduler. tokio says so only
/// through `yield_now`: polled on a thread that runs a scheduler, it hands
/// its waker to the scheduler for later; anywhere else it wakes at once
/// (tokio documents both). A waker handed over is woken by the scheduler's
/// next turn, which only sets a flag nobody reads any more.
fn runs_a_scheduler() -> bool {
    struct Woken(AtomicBool);
    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let woken = Arc::new(Woken(AtomicBool::new(false)));
    let waker = Waker::from(woken.clone());
    let mut yielding = pin!(tokio::task::yield_now());
    let _ = yielding.as_mut().poll(&mut Context::from_waker(&waker));
    !woken.0.load(Ordering::Relaxed)
}

/// Runs `f`, which blocks, without stalling a multi-thread runtime's worker.
pub fn block_in_place(f: &mut dyn FnMut()) {
    tokio::task::block_in_place(f)
}
