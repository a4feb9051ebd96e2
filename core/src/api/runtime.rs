//! The runtime: cookie counter, domains, worker pool and executor adapter.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::api::barrier::Barrier;
use crate::api::domain::Domain;
use crate::base::error::{BuildError, Full, SyncError};
use crate::base::executor::{self, Executor};
use crate::base::sync::{now, AtomicU64, Condvar, Mutex};
use crate::engine::pool::{self};
use crate::engine::shared::{parallelism, Config, Overflow, ProgressSignal, Shared, LOCK_SPIN};
use crate::model::ids::Scope;
use crate::model::state::State;
use crate::model::timeline::{Recorder, Timeline};
use crate::Cookie;

/// A snapshot of a runtime's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Worker threads alive now.
    pub workers: usize,
    /// Workers waiting for calls.
    pub idle: usize,
    /// Workers blocked in a kasync wait they could not help with.
    pub blocked: usize,
    /// Calls scheduled but not yet started.
    pub queued: usize,
    /// Calls scheduled and not yet finished (queued or running).
    pub pending: usize,
    /// Worker threads started since the runtime was built.
    pub spawned: u64,
    /// Times the executor refused to start a worker (the runtime kept going
    /// with the workers it had).
    pub spawn_failures: u64,
    /// Calls run by a waiting thread instead of a worker (*borrow the waiter's thread*).
    pub helped: u64,
    /// Replacement workers started because a worker blocked in a kasync wait
    /// (*compensate at once*).
    pub compensations: u64,
    /// Watchdog ticks that found the pool stalled and added workers, or woke
    /// parked ones (*grow by progress*).
    pub stalls: u64,
    /// The most workers alive at once.
    pub peak_workers: usize,
    /// Calls finished, including those that panicked.
    pub completed: u64,
    /// Calls that panicked: in their run, or while what a cancelled call
    /// held was dropped.
    pub panicked: u64,
    /// Queued calls cancelled before they started ([`Task::cancel`](crate::Task::cancel),
    /// [`Domain::cancel`]).
    pub cancelled: u64,
}

/// A kasync runtime: a cookie counter, a registered default domain, any other
/// domains you make, and a worker pool that grows by the deadlock-free rule
/// on top of an executor adapter.
///
/// Most applications use the global runtime through the facade's free
/// functions; build your own for isolation (tests, libraries) or settings.
///
/// ```
/// # use kasync_core as kasync;
/// use kasync::{Overflow, Runtime};
/// let rt = Runtime::builder()
///     .max_workers(8)
///     .overflow(Overflow::Block)
///     .build()
///     .unwrap();
/// let cookie = rt.schedule(|cookie| println!("call {cookie} runs on a worker"));
/// rt.synchronize_full().wait().unwrap();
/// assert!(rt.stats().completed >= 1);
/// # let _ = cookie;
/// ```
///
/// # Shutdown
///
/// Dropping a `Runtime` (or [`Runtime::shutdown`]) loses no call: it runs or
/// waits for every unfinished call in every domain, registered or not,
/// running queued ones on the dropping thread meanwhile; then its workers
/// leave and the drop returns once they have. [`Runtime::shutdown_timeout`]
/// bounds that wait and runs no call itself. Where waiting is impossible —
/// the drop happens inside one of the runtime's own calls (or while a
/// detached item it ran is freed), on one of its own worker threads, or on a
/// thread where blocking would stall an async runtime — the drop returns at
/// once, and the calls still run on workers that leave when the queue is
/// empty.
///
/// Domain handles, barriers and items keep what they need alive, so they
/// work after the `Runtime` is gone: a call scheduled through a leftover
/// `Domain` still runs.
pub struct Runtime {
    shared: Arc<Shared>,
    default_domain: Domain,
    /// Set once `shutdown` or `shutdown_timeout` did the drop's work.
    shut_down: bool,
}

impl Runtime {
    /// Builds a runtime with default settings on the adapter picked from the
    /// enabled cargo features (see [`Builder::build`]).
    pub fn new() -> Result<Runtime, BuildError> {
        Builder::new().build()
    }

    /// A builder for a runtime with custom settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// The registered default domain, used by [`Runtime::schedule`].
    pub fn default_domain(&self) -> &Domain {
        &self.default_domain
    }

    /// Makes a new *registered* domain: [`Runtime::synchronize_full`] covers
    /// it. Every call makes a distinct domain; clone the handle to share it.
    pub fn domain(&self, name: &str) -> Domain {
        Domain::create(&self.shared, name, true)
    }

    /// Makes a new *exclusive* domain (the kernel's `ASYNC_DOMAIN_EXCLUSIVE`):
    /// only its own barriers wait for its calls.
    pub fn exclusive_domain(&self, name: &str) -> Domain {
        Domain::create(&self.shared, name, false)
    }

    /// Schedules `f` in the default domain; see [`Domain::schedule`].
    pub fn schedule<F>(&self, f: F) -> Cookie
    where
        F: FnOnce(Cookie) + Send + 'static,
    {
        self.default_domain.schedule(f)
    }

    /// Schedules `f` in the default domain unless the runtime is full; see
    /// [`Domain::try_schedule`].
    pub fn try_schedule<F>(&self, f: F) -> Result<Cookie, Full<F>>
    where
        F: FnOnce(Cookie) + Send + 'static,
    {
        self.default_domain.try_schedule(f)
    }

    /// Schedules an async call in the default domain; see
    /// [`Domain::schedule_async`].
    pub fn schedule_async<F, Fut>(&self, f: F) -> Cookie
    where
        F: FnOnce(Cookie) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.default_domain.schedule_async(f)
    }

    /// Spawns `f` in the default domain; see [`Domain::spawn`].
    pub fn spawn<F, T>(&self, f: F) -> crate::Task<T>
    where
        F: FnOnce(Cookie) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.default_domain.spawn(f)
    }

    /// Spawns an async call in the default domain; see
    /// [`Domain::spawn_async`].
    pub fn spawn_async<F, Fut, T>(&self, f: F) -> crate::Task<T>
    where
        F: FnOnce(Cookie) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.default_domain.spawn_async(f)
    }

    /// A barrier for every call in every registered domain, including calls
    /// scheduled while waiting: it completes once they have all been empty at
    /// the same instant (the kernel's `async_synchronize_full`).
    pub fn synchronize_full(&self) -> Barrier {
        Barrier::new(self.shared.clone(), Scope::Full, u64::MAX, None)
    }

    /// A barrier for the default domain's calls with a cookie lower than
    /// `cookie` (the kernel's `async_synchronize_cookie`, which also looks at
    /// the default domain only).
    pub fn synchronize_cookie(&self, cookie: Cookie) -> Barrier {
        self.default_domain.synchronize_cookie(cookie)
    }

    /// The name of the executor adapter this runtime runs on.
    pub fn executor_name(&self) -> &'static str {
        self.shared.executor.name()
    }

    /// What ran where and when, if the runtime was built with
    /// [`Builder::record_timeline`]; `None` otherwise. A snapshot: calls
    /// still running are not in it yet.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::builder().record_timeline(true).build().unwrap();
    /// rt.schedule(|_| {});
    /// rt.synchronize_full().wait().unwrap();
    /// let timeline = rt.timeline().unwrap();
    /// println!("{timeline}"); // a table; or .to_svg(), .to_chrome_trace()
    /// assert_eq!(timeline.calls().len(), 1);
    /// ```
    pub fn timeline(&self) -> Option<Timeline> {
        self.shared.recorder.as_ref().map(Recorder::snapshot)
    }

    /// Shuts the runtime down, as dropping it does, and says how it went:
    /// every unfinished call in every domain has finished and every worker
    /// has left when it returns `Ok`. Queued calls run on this thread while
    /// it waits (unless [`Builder::help`] is off).
    ///
    /// Returns [`SyncError::WouldDeadlock`] when called inside one of the
    /// runtime's own calls, and [`SyncError::BlockingNotAllowed`] where
    /// blocking would stall an async runtime or on one of the runtime's own
    /// worker threads (the last handle was dropped by state a worker
    /// dropped); then it does not wait, and the calls still run on workers
    /// that leave when the queue is empty. Dropping the last handle in those
    /// places behaves the same way: it never hangs.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    /// for _ in 0..100 {
    ///     let counter = counter.clone();
    ///     rt.schedule(move |_| {
    ///         counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ///     });
    /// }
    /// rt.shutdown().unwrap();
    /// assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 100);
    /// ```
    pub fn shutdown(mut self) -> Result<(), SyncError> {
        self.shut_down = true;
        self.shared.shut_down(None)
    }

    /// Like [`Runtime::shutdown`], giving up after `timeout` with
    /// [`SyncError::TimedOut`]. Nothing is cancelled by a timeout: the calls
    /// left keep running, and the workers leave once the queue is empty.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Result<(), SyncError> {
        self.shut_down = true;
        self.shared.shut_down(now().checked_add(timeout))
    }

    /// A snapshot of the runtime's counters.
    pub fn stats(&self) -> Stats {
        let st = self.shared.lock();
        let c = st.counters;
        Stats {
            workers: st.pool.workers(),
            idle: st.pool.idle(),
            blocked: st.pool.count(pool::Phase::Blocked),
            queued: st.queued,
            pending: st.pending,
            spawned: c.spawned,
            spawn_failures: c.spawn_failures,
            helped: c.helped,
            compensations: c.compensations,
            stalls: c.stalls,
            peak_workers: st.pool.peak_workers,
            completed: c.completed,
            panicked: c.panicked,
            cancelled: c.cancelled,
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.shut_down {
            // Errors mean "could not wait here"; the calls still run.
            let _ = self.shared.shut_down(None);
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("executor", &self.executor_name())
            .field("stats", &self.stats())
            .finish()
    }
}

/// Settings for a [`Runtime`]. Every setting has a sensible default.
///
/// ```
/// # use kasync_core as kasync;
/// use std::time::Duration;
/// let rt = kasync::Runtime::builder()
///     .max_workers(64)
///     .min_workers(2)
///     .keep_alive(Duration::from_secs(5))
///     .stall_timeout(Duration::from_micros(500))
///     .thread_name("probe")
///     .build()
///     .unwrap();
/// # drop(rt);
/// ```
#[must_use]
pub struct Builder {
    config: Config,
    executor: Option<Arc<dyn Executor>>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Default settings.
    pub fn new() -> Builder {
        let parallelism = parallelism();
        Builder {
            config: Config {
                pool: pool::Settings {
                    max_workers: 512,
                    min_workers: 0,
                    eager_workers: parallelism,
                    spinners: parallelism,
                    tick: Some(Duration::from_micros(200)),
                },
                keep_alive: Duration::from_secs(1),
                help: true,
                help_depth: 16,
                max_pending: 32768,
                overflow: Overflow::Block,
                thread_name: String::from("kasync-worker"),
                stack_size: None,
                record_timeline: false,
                progress: ProgressSignal::Auto,
            },
            executor: None,
        }
    }

    /// The most worker threads alive at once (default 512). At the cap
    /// nothing fails: waiting threads still run the calls they wait for.
    pub fn max_workers(mut self, n: usize) -> Builder {
        self.config.pool.max_workers = n;
        self
    }

    /// Workers kept alive even when idle (default 0); started at build time.
    pub fn min_workers(mut self, n: usize) -> Builder {
        self.config.pool.min_workers = n;
        self
    }

    /// How long a worker above `min_workers` stays idle before it exits
    /// (default 1 s).
    pub fn keep_alive(mut self, d: Duration) -> Builder {
        self.config.keep_alive = d;
        self
    }

    /// How often the watchdog looks at the workers while calls are queued
    /// and none is idle (default 200 µs): a worker found blocked in
    /// something kasync cannot see (a sleep, I/O, a foreign lock) gets a
    /// thread in its place, one that computes gets none (see
    /// [`ProgressSignal`]). Shorter finds blocked workers sooner, at a few
    /// microseconds per look; while every worker computes, the watchdog
    /// looks up to 8 times less often. A duration too long to express as a
    /// deadline means no watchdog, as [`Builder::no_stall_watchdog`].
    pub fn stall_timeout(mut self, d: Duration) -> Builder {
        self.config.pool.tick = Some(d);
        self
    }

    /// How the watchdog tells a worker blocked in something kasync cannot
    /// see from one that computes (default [`ProgressSignal::Auto`]: on
    /// Linux, by looking at the worker's thread; elsewhere by time).
    /// [`ProgressSignal::Time`] judges by time everywhere, as kasync did
    /// before it could look.
    pub fn progress_signal(mut self, signal: ProgressSignal) -> Builder {
        self.config.progress = signal;
        self
    }

    /// Turns the stall watchdog off: only compensation for kasync waits
    /// (*compensate at once*) and helping (*borrow the waiter's thread*) add workers beyond the eager ones.
    pub fn no_stall_watchdog(mut self) -> Builder {
        self.config.pool.tick = None;
        self
    }

    /// Whether waiting threads run the queued calls they wait for
    /// (default `true`). Turn it off if calls may need locks your waiting
    /// threads hold; [`Barrier::wait_no_help`] does the same for one wait.
    pub fn help(mut self, help: bool) -> Builder {
        self.config.help = help;
        self
    }

    /// How many calls deep a waiting thread may nest while helping
    /// (default 16). Past it the thread blocks and compensation applies.
    pub fn help_depth(mut self, depth: usize) -> Builder {
        self.config.help_depth = depth;
        self
    }

    /// Most unfinished calls before the [`Overflow`] policy applies
    /// (default 32768, the kernel's `MAX_WORK`).
    pub fn max_pending(mut self, n: usize) -> Builder {
        self.config.max_pending = n;
        self
    }

    /// What `schedule` does at `max_pending` (default [`Overflow::Block`]).
    pub fn overflow(mut self, policy: Overflow) -> Builder {
        self.config.overflow = policy;
        self
    }

    /// Prefix of worker thread names; workers are named `<prefix>-N`
    /// (default `kasync-worker`). Adapters that borrow their runtime's
    /// blocking pool (tokio, async-std) keep that pool's names.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Builder {
        self.config.thread_name = prefix.into();
        self
    }

    /// Stack size of worker threads, where the adapter starts its own threads.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.config.stack_size = Some(bytes);
        self
    }

    /// The pool's concurrency: workers started as soon as calls are queued,
    /// before the watchdog is needed, and the runnable workers the
    /// watchdog keeps while calls wait (default: the number of CPUs); a
    /// worker blocked in something kasync cannot see does not count. After
    /// short calls it is also how many workers are kept awake: idle workers
    /// past that stay parked (they would only compete for the CPUs) until
    /// the watchdog finds a call blocked and wakes them. Without the
    /// watchdog every idle worker is woken as calls come.
    ///
    /// `0` means workers start only when the watchdog finds calls waiting
    /// (or as [`Builder::min_workers`]); [`Builder::build`] refuses it
    /// together with [`Builder::no_stall_watchdog`] and `min_workers(0)`,
    /// since then no worker would ever start.
    pub fn eager_workers(mut self, n: usize) -> Builder {
        self.config.pool.eager_workers = n;
        self.config.pool.spinners = n.clamp(1, parallelism());
        self
    }

    /// Records every call (cookie, domain, thread, queued/start/end
    /// instants) and every wait, for [`Runtime::timeline`] (default off).
    /// It costs a lock and some memory per call and grows for the runtime's
    /// whole life: meant for start-up work and debugging, not for a service
    /// that runs forever. Off, it costs nothing.
    pub fn record_timeline(mut self, record: bool) -> Builder {
        self.config.record_timeline = record;
        self
    }

    /// The executor adapter to run on, instead of the one picked from the
    /// enabled features.
    pub fn executor(mut self, executor: impl Executor) -> Builder {
        self.executor = Some(Arc::new(executor));
        self
    }

    /// Builds the runtime.
    ///
    /// Without [`Builder::executor`], enabling an adapter's cargo feature
    /// selects it: `tokio` when the calling thread is inside a tokio
    /// runtime; otherwise `smol`, then `async-std`, then `threads` (the
    /// default feature, so the fallback); `tokio` alone outside a tokio
    /// runtime fails (no tokio runtime to attach to).
    pub fn build(self) -> Result<Runtime, BuildError> {
        let mut config = self.config;
        if config.pool.max_workers == 0 {
            return Err(BuildError::InvalidConfig("max_workers must be at least 1"));
        }
        if config.pool.min_workers > config.pool.max_workers {
            return Err(BuildError::InvalidConfig("min_workers must not exceed max_workers"));
        }
        if config.max_pending == 0 {
            return Err(BuildError::InvalidConfig("max_pending must be at least 1"));
        }
        if config.pool.tick == Some(Duration::ZERO) {
            return Err(BuildError::InvalidConfig("stall_timeout must be longer than zero"));
        }
        if config.pool.tick.is_some_and(|tick| now().checked_add(tick).is_none()) {
            // A tick too long to express is a watchdog that never fires: no
            // watchdog at all (the pool then keeps no idle worker parked for
            // one).
            config.pool.tick = None;
        }
        if config.pool.eager_workers == 0 && config.pool.min_workers == 0 && config.pool.tick.is_none() {
            // Nothing would ever start a worker: only eager starts, the
            // watchdog and `min_workers` do (compensation needs a worker to
            // begin with).
            return Err(BuildError::InvalidConfig(
                "eager_workers(0) with min_workers(0) needs the stall watchdog (a stall_timeout too long \
                 to express counts as none): without it no worker would ever start",
            ));
        }
        let executor = match self.executor {
            Some(e) => e,
            None => executor::from_features()?,
        };
        let recorder = config.record_timeline.then(|| Recorder::new(now()));
        let shared = Arc::new(Shared {
            recorder,
            state: Mutex::new(State::new()),
            config,
            executor,
            watchdog_cv: Condvar::new(),
            space_cv: Condvar::new(),
            drain_cv: Condvar::new(),
            worker_names: AtomicU64::new(0),
            enqueued: AtomicU64::new(0),
            lock_spin: if parallelism() > 1 { LOCK_SPIN } else { Duration::ZERO },
        });
        let default_domain = Domain::create(&shared, "default", true);
        pool::start_min_workers(&shared);
        Ok(Runtime {
            shared,
            default_domain,
            shut_down: false,
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder").field("config", &self.config).finish()
    }
}
