//! tokio executor adapter for [kasync](https://docs.rs/kasync).
//!
//! Workers are threads of the tokio runtime's blocking pool, async calls are
//! tokio tasks, and a blocking wait on a multi-thread runtime's worker thread
//! goes through [`tokio::task::block_in_place`] so the runtime keeps going.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Wake, Waker};

pub use kasync_executor::{Blocking, Executor, ExecutorFuture, WorkerSpec};
pub use tokio::runtime::Handle;
use tokio::runtime::RuntimeFlavor;

/// tokio: workers are threads of the tokio runtime's blocking pool, async
/// calls are tokio tasks, and blocking waits on a multi-thread runtime's
/// workers go through `block_in_place` (the `tokio` feature).
#[derive(Clone, Debug)]
pub struct Tokio {
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

impl Tokio {
    /// Attaches to the tokio runtime the calling thread is in.
    pub fn current() -> Result<Tokio, NoRuntime> {
        Handle::try_current().map(Tokio::with_handle).map_err(|_| NoRuntime)
    }

    /// Attaches to the tokio runtime behind `handle`.
    pub fn with_handle(handle: Handle) -> Tokio {
        Tokio { handle }
    }

    /// A multi-thread tokio runtime of kasync's own, built on first use and
    /// kept for the rest of the process: for a kasync runtime that must
    /// outlive whichever tokio runtime happens to be current (the facade's
    /// global runtime; a `#[tokio::test]`'s runtime ends with its test).
    pub fn dedicated() -> io::Result<Tokio> {
        static OWN: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
        if let Some(rt) = OWN.get() {
            return Ok(Tokio::with_handle(rt.handle().clone()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .thread_name("kasync-tokio")
            .enable_all()
            .build()?;
        // Another thread may have built one meanwhile: the first one stays.
        let rt = OWN.get_or_init(|| rt);
        Ok(Tokio::with_handle(rt.handle().clone()))
    }

    /// The runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Executor for Tokio {
    fn name(&self) -> &'static str {
        "tokio"
    }

    /// On the runtime's blocking pool, which names its own threads (`spec`
    /// is not used). A runtime that is shutting down drops `body` uncalled,
    /// which kasync notices.
    fn spawn_worker(&self, _spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        drop(self.handle.spawn_blocking(body));
        Ok(())
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        drop(self.handle.spawn(future));
    }

    /// Judged by the calling thread's runtime, whichever it is: outside any,
    /// block freely; on a multi-thread runtime, through `block_in_place`; a
    /// current-thread runtime stalls only when the thread running its
    /// scheduler blocks, so its `spawn_blocking` threads (and threads that
    /// merely entered it) block freely.
    fn blocking(&self, _in_async_call: bool) -> Blocking {
        match Handle::try_current() {
            Err(_) => Blocking::Allowed,
            Ok(handle) => match handle.runtime_flavor() {
                RuntimeFlavor::MultiThread => Blocking::InPlace,
                RuntimeFlavor::CurrentThread if !runs_a_scheduler() => Blocking::Allowed,
                RuntimeFlavor::CurrentThread => {
                    Blocking::Forbidden("the thread runs a tokio current-thread runtime's scheduler")
                }
                _ => Blocking::Forbidden("the thread belongs to a tokio runtime that cannot block in place"),
            },
        }
    }

    fn block_in_place(&self, f: &mut dyn FnMut()) {
        tokio::task::block_in_place(f)
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
