//! **kasync** brings the Linux kernel's asynchronous function calls
//! (`kernel/async.c`) to Rust applications: schedule slow, blocking calls and
//! get back ordered *cookies*; run many in parallel; wait on *domain
//! barriers* ("everything in this domain", "everything before this cookie")
//! from blocking code or with `.await`; and never deadlock when calls wait on
//! each other, because the worker pool follows one deadlock-free growth rule
//! on every executor.
//!
//! # Probe in parallel, register in order
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! let registered = Arc::new(Mutex::new(Vec::new()));
//! for disk in ["sda", "sdb", "sdc", "sdd"] {
//!     let registered = registered.clone();
//!     kasync::schedule(move |cookie| {
//!         // The slow part runs in parallel with the other probes ...
//!         std::thread::sleep(std::time::Duration::from_millis(5));
//!         // ... then each waits for the probes scheduled before it,
//!         kasync::synchronize_cookie(cookie).wait().unwrap();
//!         // so registration happens in cookie order.
//!         registered.lock().unwrap().push(disk);
//!     });
//! }
//! kasync::synchronize_full().wait().unwrap();
//! assert_eq!(*registered.lock().unwrap(), ["sda", "sdb", "sdc", "sdd"]);
//! ```
//!
//! # The model
//!
//! * [`Runtime`] owns a cookie counter, domains, the worker pool and the
//!   executor adapter. The free functions of this crate use a global one,
//!   built on first use.
//! * [`Cookie`]: every call's ticket, increasing across all domains.
//! * [`Domain`]: a named set of calls with its own barrier; *registered*
//!   domains are covered by [`synchronize_full`], *exclusive* ones are not.
//! * [`Barrier`]: `.await` it (holds no thread) or `.wait()` on it (runs the
//!   calls it waits for while it waits).
//!
//! # Values and order
//!
//! The kernel's calls speak in side effects. Three things its API lacks
//! come on top, as ordinary calls of a domain (each takes a cookie and
//! counts for barriers):
//!
//! * **Values:** [`spawn`] / [`Domain::spawn`] return a [`Task`] for the
//!   call's value: `.wait()` it (helps, like a barrier), `.await` it (holds
//!   no thread), or drop it to detach.
//!
//! ```
//! let mut task = kasync::spawn(|_| "probe result".len());
//! assert_eq!(task.wait().unwrap(), 12);
//! ```
//!
//! * **Cancellation:** [`Task::cancel`] withdraws a call that has not
//!   started; [`Domain::cancel`] withdraws every queued call of a domain. A
//!   cancelled call never runs and counts as finished for every barrier.
//!
//! ```
//! let rt = kasync::Runtime::builder().max_workers(1).build().unwrap();
//! let (release, held) = std::sync::mpsc::channel::<()>();
//! rt.schedule(move |_| held.recv().unwrap()); // keeps the only worker busy
//! let mut task = rt.spawn(|_| unreachable!("cancelled before it ran"));
//! assert!(task.cancel());
//! assert_eq!(task.wait(), Err(kasync::TaskError::Cancelled));
//! release.send(()).unwrap();
//! ```
//!
//! * **Order:** [`Domain::map_ordered`] runs a function over inputs, up to
//!   `window` at once, and yields the results in input order with memory
//!   bounded by the window, as an `Iterator` or (via
//!   [`OrderedMap::into_stream`]) a `Stream`.
//!
//! ```
//! let rt = kasync::Runtime::new().unwrap();
//! let sizes: Vec<usize> = rt
//!     .domain("files")
//!     .map_ordered(["Cargo.toml", "README.md"], 8, |name: &str| name.len())
//!     .map(Result::unwrap)
//!     .collect();
//! assert_eq!(sizes, [10, 9]);
//! ```
//!
//! * **Borrowing:** inside [`Domain::scope`], [`Scope::spawn`] runs calls
//!   that borrow from the caller's stack, as `std::thread::scope` does;
//!   `scope` returns once every one of them ended.
//!
//! ```
//! let rt = kasync::Runtime::new().unwrap();
//! let text = String::from("alpha beta gamma");
//! let mut lengths = vec![0; 3];
//! rt.domain("words").scope(|s| {
//!     for (slot, word) in lengths.iter_mut().zip(text.split(' ')) {
//!         s.spawn(move |_| *slot = word.len()); // borrows `text` and `lengths`
//!     }
//! });
//! assert_eq!(lengths, [5, 4, 5]);
//! ```
//!
//! * **Completion order:** a [`TaskSet`] joins its calls as they end
//!   ([`TaskSet::join_next`]); [`Domain::map_unordered`] is `map_ordered`
//!   in completion order.
//!
//! ```
//! let rt = kasync::Runtime::new().unwrap();
//! let mut set = rt.domain("set").task_set();
//! for n in 1..=3u64 {
//!     set.spawn(move |_| n * n);
//! }
//! let mut sum = 0;
//! while let Some(square) = set.join_next().wait() {
//!     sum += square?; // a TaskError goes through `?`
//! }
//! assert_eq!(sum, 14);
//! # Ok::<(), kasync::TaskError>(())
//! ```
//!
//! Which API for which job, and what you may know it as elsewhere:
//!
//! | job | API | elsewhere | threads held while waiting | allocations per call |
//! | --- | --- | --- | --- | --- |
//! | fire-and-forget slow calls, kernel style | [`schedule`], [`Domain::schedule`] | tokio `spawn_blocking` without the handle (no order) | none (barriers help) | 0 up to 32 bytes of captures, else 1 |
//! | publish in cookie order from inside the calls | `schedule` + [`Domain::synchronize_cookie`] | nothing built in: channels by hand | one per waiting call | as above |
//! | a value back from one call | [`spawn`], [`Domain::spawn`] | tokio `spawn_blocking`'s `JoinHandle`; `rayon::spawn` + a channel | none | 1 |
//! | caller-owned memory, no allocation | [`Domain::submit`] / [`Item`] | nothing built in | none | 0 |
//! | calls that borrow from the stack, all ended on return | [`Domain::scope`] + [`Scope::spawn`] | `std::thread::scope`, `rayon::scope` | none (the scope helps) | 2 |
//! | a batch of borrowed items, all waited for | [`Domain::scope`] + [`Scope::submit`] | nothing built in | none | 0 |
//! | calls joined one by one as they end | [`Domain::task_set`] + [`TaskSet::join_next`] | tokio `JoinSet::join_next`; futures `FuturesUnordered` | none | 1 |
//! | many inputs, results in input order, bounded memory | [`Domain::map_ordered`] | futures `buffered`; rayon `par_iter().map().collect()` (all inputs at once) | none | 1 |
//! | many inputs, results as they end, bounded memory | [`Domain::map_unordered`] | futures `buffer_unordered` | none | 1 |
//!
//! # Which waits are guaranteed to finish
//!
//! See the [`kasync_core`] crate documentation, section *Guarantees*.
//!
//! # Seeing what ran where
//!
//! Build a runtime with [`Builder::record_timeline`] and [`Runtime::timeline`]
//! tells, per call, its cookie, domain, thread and when it was queued,
//! started and finished, plus every wait. Export it as a boot chart
//! ([`Timeline::to_svg`]) or as Chrome Trace Event JSON for Perfetto
//! ([`Timeline::to_chrome_trace`]). The `tracing` feature emits a span per
//! call and events for waits, worker starts, panics and stalls (target
//! `kasync`).
//!
//! ```
//! let rt = kasync::Runtime::builder().record_timeline(true).build().unwrap();
//! let probes = rt.domain("probes");
//! for _ in 0..8 {
//!     let in_order = probes.clone();
//!     probes.schedule(move |cookie| in_order.synchronize_cookie(cookie).wait().unwrap());
//! }
//! rt.synchronize_full().wait().unwrap();
//! let timeline = rt.timeline().unwrap();
//! assert_eq!(timeline.calls().len(), 8);
//! let chart = timeline.to_svg(); // or timeline.write_svg("boot.svg")
//! # assert!(chart.contains("probes"));
//! ```
//!
//! # Choosing an executor
//!
//! Cargo features pick the adapter: `threads` (default, native threads),
//! `tokio`, `async-std` (deprecated upstream; kept for its users) and `smol`.
//! Enabling an adapter selects it: with several enabled, [`Runtime::new`]
//! picks tokio when called inside a tokio runtime, else smol, then
//! async-std, then threads (and [`runtime`], the global one, the same but
//! never the caller's tokio runtime); [`Builder::executor`] chooses
//! explicitly.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Every Rust block of the README compiles and runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

use std::future::Future;
use std::sync::OnceLock;

pub use kasync_core::executor;
#[allow(deprecated)]
pub use kasync_core::ItemScope;
pub use kasync_core::{
    current_cookie, current_is_async, Barrier, BuildError, Builder, CallRecord, Cookie, Domain, Executor, Full, Item,
    JoinNext, OrderedMap, Overflow, PanicReport, ProgressSignal, Runtime, Scope, ScopedTask, Stats, Submitted,
    SyncError, Task, TaskError, TaskSet, ThreadRecord, Timeline, UnorderedMap, WaitError, WaitRecord, Work,
};

static GLOBAL: OnceLock<Runtime> = OnceLock::new();

/// The global runtime, built with default settings on first use.
///
/// Its adapter comes from the enabled features alone, as for
/// [`Runtime::new`] (enabling an adapter selects it): `smol`, else
/// `async-std`, else `threads`, else `tokio`, on a tokio runtime of
/// kasync's own ([`executor::Tokio::dedicated`]), never the calling
/// thread's, since the global runtime lives as long as the process. It never binds to a tokio runtime
/// that happens to be current when it is first used, which may end first
/// (a `#[tokio::test]`'s does). Build your own [`Runtime`] to run on your
/// tokio runtime.
///
/// # Panics
///
/// If the adapter cannot be built (no feature enabled, or the tokio runtime
/// could not start). Build your own [`Runtime`] to handle that as an error.
pub fn runtime() -> &'static Runtime {
    GLOBAL.get_or_init(|| match build_global() {
        Ok(rt) => rt,
        Err(e) => panic!("kasync: cannot build the global runtime: {e}"),
    })
}

/// The global runtime's adapter, by feature (see [`runtime`]).
#[allow(unreachable_code)]
fn build_global() -> Result<Runtime, BuildError> {
    #[cfg(feature = "smol")]
    return Runtime::builder().executor(executor::Smol).build();
    #[cfg(feature = "async-std")]
    return Runtime::builder().executor(executor::AsyncStd).build();
    #[cfg(feature = "threads")]
    return Runtime::builder().executor(executor::Threads).build();
    #[cfg(feature = "tokio")]
    return match executor::Tokio::dedicated() {
        Ok(tokio) => Runtime::builder().executor(tokio).build(),
        Err(e) => Err(BuildError::Executor(format!(
            "cannot start kasync's own tokio runtime: {e}"
        ))),
    };
    Err(BuildError::NoExecutor)
}

/// Schedules `f` in the global runtime's default domain (the kernel's
/// `async_schedule`) and returns its cookie; `f` receives the same cookie.
pub fn schedule<F>(f: F) -> Cookie
where
    F: FnOnce(Cookie) + Send + 'static,
{
    runtime().schedule(f)
}

/// Schedules an async call in the global runtime's default domain; see
/// [`Domain::schedule_async`].
pub fn schedule_async<F, Fut>(f: F) -> Cookie
where
    F: FnOnce(Cookie) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    runtime().schedule_async(f)
}

/// Spawns `f` in the global runtime's default domain and returns a [`Task`]
/// for its value; see [`Domain::spawn`].
///
/// ```
/// let mut task = kasync::spawn(|_| 6 * 7);
/// assert_eq!(task.wait().unwrap(), 42);
/// ```
pub fn spawn<F, T>(f: F) -> Task<T>
where
    F: FnOnce(Cookie) -> T + Send + 'static,
    T: Send + 'static,
{
    runtime().spawn(f)
}

/// Spawns an async call in the global runtime's default domain and returns a
/// [`Task`] for its future's value; see [`Domain::spawn_async`].
pub fn spawn_async<F, Fut, T>(f: F) -> Task<T>
where
    F: FnOnce(Cookie) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    runtime().spawn_async(f)
}

/// A barrier for every call in every registered domain of the global runtime
/// (the kernel's `async_synchronize_full`).
pub fn synchronize_full() -> Barrier {
    runtime().synchronize_full()
}

/// A barrier for the global default domain's calls scheduled before
/// `cookie` (the kernel's `async_synchronize_cookie`).
pub fn synchronize_cookie(cookie: Cookie) -> Barrier {
    runtime().synchronize_cookie(cookie)
}
