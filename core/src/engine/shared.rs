//! What runtime handles share with workers, domains and barriers: the
//! state lock, the settings, the executor and the condition variables.

use crate::base::executor::Executor;
use crate::base::sync::{AtomicU64, Condvar, Mutex, MutexGuard};
use crate::engine::context::{Frame, FrameGuard};
use crate::model::growth::{self};
use crate::model::ids::DomainId;
use crate::model::state::{State, Wakeups};
use crate::model::timeline::Recorder;
use crate::Cookie;
use std::sync::Arc;
use std::time::Duration;

/// What `schedule` does when the runtime already has `max_pending`
/// unfinished calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// The caller waits until there is room, running queued calls itself
    /// meanwhile (the default).
    #[default]
    Block,
    /// The call runs at once on the caller's thread, after the domain's
    /// earlier queued calls, still as a call with its own cookie (the kernel's
    /// behaviour, opt-in here because it surprises callers).
    RunInline,
    /// `schedule` panics with a clear message; use `try_schedule` to get the
    /// function back instead.
    Reject,
}

/// How the watchdog tells a worker that blocks from one that computes
/// ([`Builder::progress_signal`](crate::Builder::progress_signal)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressSignal {
    /// The best the platform offers (the default). On Linux the watchdog
    /// looks at each stuck worker's thread in `/proc/self/task`: one that
    /// is on a CPU or runnable makes progress and gets no extra thread; one
    /// that stays off the CPUs is blocked and gets one. Elsewhere, as
    /// [`ProgressSignal::Time`].
    #[default]
    Auto,
    /// Time alone: a worker that sat in one call for a whole tick, in a
    /// tick where fewer calls started than workers are awake, counts as
    /// blocked, whether it computes or sleeps. CPU-bound calls longer than
    /// a tick then grow the pool past the CPUs.
    Time,
}

/// The runtime's settings, fixed at build time.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// What the growth rule reads.
    pub(crate) pool: growth::Settings,
    pub(crate) keep_alive: Duration,
    pub(crate) help: bool,
    pub(crate) help_depth: usize,
    pub(crate) max_pending: usize,
    pub(crate) overflow: Overflow,
    pub(crate) thread_name: String,
    pub(crate) stack_size: Option<usize>,
    pub(crate) record_timeline: bool,
    /// How the watchdog tells blocked workers from computing ones.
    pub(crate) progress: ProgressSignal,
}

/// How `schedule` treats a full runtime.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Apply the runtime's [`Overflow`] policy.
    Policy,
    /// Refuse without running anything (`try_schedule`).
    Try,
}

/// What runtime handles share with workers, domains and barriers.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) config: Config,
    pub(crate) executor: Arc<dyn Executor>,
    /// The stall watchdog sleeps here between ticks.
    pub(crate) watchdog_cv: Condvar,
    /// `schedule` callers wait here for room under `Overflow::Block`.
    pub(crate) space_cv: Condvar,
    /// A shutting-down runtime's owner waits here for the last call and the
    /// last worker.
    pub(crate) drain_cv: Condvar,
    /// Numbers worker thread names.
    pub(crate) worker_names: AtomicU64,
    /// Counts calls queued while an idle worker spins: it watches this
    /// instead of parking, so a stream of short calls costs no wake-up per
    /// call. Not bumped while nobody spins (a contended cache line less for
    /// the scheduling thread).
    pub(crate) enqueued: AtomicU64,
    /// Records the timeline, if asked to at build time.
    pub(crate) recorder: Option<Recorder>,
    /// How long a thread spins for the state lock: [`LOCK_SPIN`], or zero
    /// on one CPU, where the holder cannot run while we spin.
    pub(crate) lock_spin: Duration,
}

/// See [`Shared::lock`].
pub(crate) const LOCK_SPIN: Duration = Duration::from_micros(4);

/// The CPUs this process may use (1 when unknown).
pub(crate) fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Shared {
    /// An identity for the thread-local context: the address of this value,
    /// unique while any handle, worker or call of the runtime exists.
    pub(crate) fn id(&self) -> usize {
        self as *const Shared as usize
    }

    /// Pushes a frame for call `cookie` of `domain` on this thread for as
    /// long as the guard lives: code running for the call (its body, the
    /// drops of what it held) sees itself inside it.
    pub(crate) fn call_frame(&self, domain: DomainId, cookie: Cookie) -> FrameGuard {
        FrameGuard::enter(Frame {
            runtime: self.id(),
            domain,
            cookie,
        })
    }

    /// Takes the state lock. It is held for well under a microsecond per
    /// call: a thread that finds it taken spins for [`LOCK_SPIN`] before it
    /// yields or parks, since parking_lot alone starts yielding after a few
    /// hundred nanoseconds (the measurement is in CHANGELOG.md).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock_spinning(self.lock_spin)
    }

    /// Runs `wakeups` with the state lock released, then takes it again.
    pub(crate) fn wake_unlocked<'a>(&'a self, st: MutexGuard<'a, State>, wakeups: Wakeups) -> MutexGuard<'a, State> {
        if wakeups.is_empty() {
            return st;
        }
        drop(st);
        wakeups.wake_all();
        self.lock()
    }

    /// Wakes a thread waiting for the runtime to drain when it has something
    /// to do: the last call or the last worker is gone, or a call is queued
    /// that it may run.
    pub(crate) fn notify_drain(&self, st: &State) {
        let work_for_runners = st.queued > 0 && st.drain_runners > 0;
        if st.drain_waiters > 0 && (st.pending == 0 || st.pool.workers() == 0 || work_for_runners) {
            self.drain_cv.notify_all();
        }
        if st.shutdown && st.pool.watchdog == growth::Watchdog::Running && st.queued == 0 {
            // The watchdog leaves once nothing is queued, but looks only
            // every tick: a long tick would hold the drain up.
            self.watchdog_cv.notify_all();
        }
    }
}
