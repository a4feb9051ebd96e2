//! The growth rule's decisions: pure functions of the pool's state and an
//! event. They change [`PoolState`] and say what to do ([`Actions`]); they
//! never notify, spawn or look at the clock themselves, so the tables at
//! the bottom of this file drive them without threads. `act.rs` carries the
//! actions out. The rule itself is described once, in
//! `engine/pool/README.md`.

use std::time::Duration;

use slab::Slab;

use crate::base::os_thread::OsThread;

/// The settings the decisions read, fixed when the runtime is built.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// Never more workers than this (at least 1).
    pub(crate) max_workers: usize,
    /// Idle workers above this many leave after `keep_alive`.
    pub(crate) min_workers: usize,
    /// Workers started at once for queued calls, before the watchdog; after
    /// short calls, also how many are kept awake.
    pub(crate) eager_workers: usize,
    /// Threads that may spin at once (idle workers and waiters together).
    pub(crate) spinners: usize,
    /// The watchdog's tick (`stall_timeout`); `None`: no watchdog.
    pub(crate) tick: Option<Duration>,
}

/// What one worker is doing. Every worker is in exactly one phase, and the
/// pool counts each phase exactly ([`PoolState::count`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Reserved: its thread has not run yet (an executor may hold a start
    /// back, or drop it).
    Starting,
    /// Running a call. Each entry into this phase counts (`Slot::runs`), so
    /// the watchdog can tell a worker that has been in one call since its
    /// last tick without reading the clock per call.
    Running,
    /// Blocked in a kasync wait it cannot help with, or in an async call
    /// polled on it that is pending: *compensate at once* replaced it.
    Blocked,
    /// Idle, spinning for a moment before it parks: it takes a call queued
    /// meanwhile without being woken.
    Spinning,
    /// Idle, parked on its condition variable.
    Parked,
    /// Woken for a queued call, on its way.
    Notified,
}

const PHASES: usize = 6;

impl Phase {
    fn index(self) -> usize {
        match self {
            Phase::Starting => 0,
            Phase::Running => 1,
            Phase::Blocked => 2,
            Phase::Spinning => 3,
            Phase::Parked => 4,
            Phase::Notified => 5,
        }
    }
}

/// The watchdog thread's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watchdog {
    /// No watchdog thread exists and none was asked for.
    Off,
    /// A thread was asked of the executor and has not entered its loop: it
    /// may be held back, so nothing may rely on it yet.
    Requested,
    /// The thread runs its loop: it will look at the pool every tick until
    /// nothing is queued.
    Running,
}

/// One worker's record.
pub(crate) struct Slot<P> {
    pub(crate) phase: Phase,
    /// Times it entered [`Phase::Running`].
    runs: u64,
    /// `runs` as the watchdog's last tick saw it: unchanged and still
    /// running means it has been in one call for at least a tick.
    runs_at_tick: u64,
    /// `runs` when the watchdog last found it off a CPU: a block it knows.
    off_cpu_at: Option<u64>,
    /// How to wake it when it parks (its thread's condition variable); set
    /// when its thread starts.
    pub(crate) parker: Option<P>,
    /// Its thread, for the watchdog to look at; set when it starts, where
    /// the platform allows.
    thread: Option<OsThread>,
}

/// What the watchdog saw of a worker that sat in one call since its last
/// tick, over the time it looked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// On a CPU, or runnable (preempted by other work), for most of it:
    /// it makes progress, and another thread would only compete with it.
    OnCpu,
    /// Off the CPUs for most of it: sleeping, in I/O, on a foreign lock or
    /// a channel. It is blocked, and counts against no CPU.
    OffCpu,
}

/// [`Progress`] of worker `slot` in the call it had entered `runs` times
/// when it was looked at: a fact for [`PoolState::on_tick`], which drops it
/// if the worker has since moved on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fact {
    pub(crate) slot: usize,
    pub(crate) runs: u64,
    pub(crate) progress: Progress,
}

/// A worker running a call, for the watchdog to look at: see
/// [`PoolState::running_workers`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Stuck {
    pub(crate) slot: usize,
    pub(crate) runs: u64,
    /// In this one call since the last tick.
    pub(crate) stuck: bool,
    pub(crate) thread: Option<OsThread>,
}

/// The pool's state, kept under the runtime's lock. `P` is how a parked
/// worker is woken (a condition variable; anything in the unit tests).
pub(crate) struct PoolState<P> {
    slots: Slab<Slot<P>>,
    /// Workers per phase, by [`Phase::index`].
    counts: [usize; PHASES],
    /// Parked workers, the most recently parked last (woken first: its
    /// stack is warm, and the others may time out and leave).
    parked: Vec<usize>,
    /// Reserved workers nobody has asked the executor for yet. Every thread
    /// that starts workers, and every new worker before its first call,
    /// takes from it, so a large growth step is spawned by a doubling set
    /// of threads instead of one thread spawning them all in a row.
    unstarted: Vec<usize>,
    /// Workers woken by the last decision, for `act.rs` to notify.
    woken: Vec<usize>,
    pub(crate) watchdog: Watchdog,
    /// Ticks between the watchdog's looks, 1 to [`MAX_PACE`]: it doubles
    /// while every worker looked at is on a CPU and nothing is short, and
    /// is 1 again as soon as one is not.
    pace: u32,
    /// Spare runnable workers kept while calls block (see `spare`), and
    /// ticks since that number was last reached.
    spare: usize,
    spare_age: u32,
    /// Whether the last call a worker finished took less than
    /// [`SHORT_CALL`].
    pub(crate) calls_are_short: bool,
    /// Blocking waiters spinning on their domain before they park.
    pub(crate) waiters_spinning: usize,
    /// The most workers alive at once.
    pub(crate) peak_workers: usize,
}

/// A call shorter than this is *short*: after a run of short calls, idle
/// workers are not woken past `eager_workers` and an idle worker spins
/// before it parks. See README.md for the measurement behind the value.
pub(crate) const SHORT_CALL: Duration = Duration::from_micros(50);

/// How long an idle worker, or a blocking wait for the one call at its
/// domain's front, spins before it parks: a stream of short calls then
/// keeps the workers busy without a wake-up system call per call.
pub(crate) const SPIN_FOR: Duration = SHORT_CALL;

/// How many idle workers one thread wakes for newly queued calls; each
/// woken worker wakes as many more (see [`PoolState::dispatch`]).
pub(crate) const FAN_OUT: usize = 2;

/// The most ticks the watchdog waits between looks while every worker it
/// looks at computes (Go's `sysmon` backs off the same way, 20 µs up to 10
/// ms): a call that blocks after a stretch of computing is found within
/// this many ticks, not one. See README.md for the measurement.
pub(crate) const MAX_PACE: u32 = 8;

/// Ticks without a worker found blocked before one spare runnable worker
/// is dropped (see `PoolState::spare`).
pub(crate) const SPARE_FOR: u32 = 8;

/// What a decision asks for, carried out by `act.rs` after it.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) struct Actions {
    /// Parked workers woken (listed in the pool for `act.rs` to notify).
    pub(crate) woken: usize,
    /// Workers reserved, to be started once the lock is released.
    pub(crate) start_workers: usize,
    /// Start the watchdog thread.
    pub(crate) start_watchdog: bool,
}

impl Actions {
    pub(crate) fn threads_to_start(&self) -> bool {
        self.start_workers > 0 || self.start_watchdog
    }
}

/// What a watchdog tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Nothing is queued: the watchdog thread leaves (now [`Watchdog::Off`]).
    Leave,
    /// The pool is not stalled, or it was and this grows it.
    Stay { actions: Actions, stalled: bool },
}

impl<P> Default for PoolState<P> {
    fn default() -> Self {
        PoolState {
            slots: Slab::new(),
            counts: [0; PHASES],
            parked: Vec::new(),
            unstarted: Vec::new(),
            woken: Vec::new(),
            watchdog: Watchdog::Off,
            pace: 1,
            spare: 0,
            spare_age: 0,
            calls_are_short: false,
            waiters_spinning: 0,
            peak_workers: 0,
        }
    }
}

impl<P> PoolState<P> {
    // ---- quantities: one definition each ------------------------------------

    /// Workers alive or starting.
    pub(crate) fn workers(&self) -> usize {
        self.slots.len()
    }

    /// Workers in `phase`.
    pub(crate) fn count(&self, phase: Phase) -> usize {
        self.counts[phase.index()]
    }

    /// Idle workers: parked, or woken and not yet running.
    pub(crate) fn idle(&self) -> usize {
        self.count(Phase::Parked) + self.count(Phase::Notified)
    }

    /// Workers neither parked nor blocked: running, spinning, notified or
    /// starting.
    pub(crate) fn awake(&self) -> usize {
        self.workers() - self.count(Phase::Parked) - self.count(Phase::Blocked)
    }

    /// [`PoolState::awake`] without the workers still starting: an executor
    /// may hold a start back, so the wake limit does not count them.
    fn awake_started(&self) -> usize {
        self.awake() - self.count(Phase::Starting)
    }

    /// Queued calls no worker is on its way to take: `queued` less the
    /// notified, starting and spinning workers (each will take one).
    /// Saturating on purpose: a helper may have taken a call a worker was
    /// woken for, so more workers may be coming than calls are queued.
    pub(crate) fn waiting_for_thread(&self, queued: usize) -> usize {
        let coming = self.count(Phase::Notified) + self.count(Phase::Starting) + self.count(Phase::Spinning);
        queued.saturating_sub(coming)
    }

    /// Threads spinning now, idle workers and waiters together.
    pub(crate) fn spinning_threads(&self) -> usize {
        self.count(Phase::Spinning) + self.waiters_spinning
    }

    /// Whether one more thread may spin (at most `spinners`, one per CPU):
    /// after short calls, where what it waits for comes within a spin;
    /// otherwise only while spinners and workers running calls leave a CPU
    /// free, since a spin beside workers that compute takes a CPU from them.
    pub(crate) fn may_spin(&self, s: &Settings) -> bool {
        let spinning = self.spinning_threads();
        spinning < s.spinners && (self.calls_are_short || spinning + self.count(Phase::Running) < s.spinners)
    }

    /// Whether the watchdog loop runs: only then may idle workers stay
    /// parked past the wake limit (it is what wakes them).
    fn watchdog_runs(&self) -> bool {
        self.watchdog == Watchdog::Running
    }

    /// Whether, with `awake` workers awake, one more may be woken: always,
    /// except after short calls while the watchdog runs, where no more than
    /// `eager_workers` are kept awake (more would only fight over the lock
    /// and the CPUs; one of them blocking invisibly is the watchdog's to
    /// find).
    fn below_wake_limit(&self, s: &Settings, awake: usize) -> bool {
        !self.calls_are_short || !self.watchdog_runs() || awake < s.eager_workers.max(1)
    }

    /// Whether a parked worker may be woken now.
    fn may_wake_parked(&self, s: &Settings) -> bool {
        !self.parked.is_empty() && self.below_wake_limit(s, self.awake_started())
    }

    // ---- phases ---------------------------------------------------------------

    /// Worker `slot`'s phase.
    pub(crate) fn phase(&self, slot: usize) -> Phase {
        self.slots[slot].phase
    }

    /// Moves worker `slot` to `phase`, keeping the counts and the parked
    /// list exact.
    pub(crate) fn set_phase(&mut self, slot: usize, phase: Phase) {
        let worker = &mut self.slots[slot];
        let old = std::mem::replace(&mut worker.phase, phase);
        if phase == Phase::Running {
            worker.runs += 1;
        }
        self.counts[old.index()] -= 1;
        self.counts[phase.index()] += 1;
        if old == Phase::Parked {
            if let Some(at) = self.parked.iter().rposition(|&p| p == slot) {
                self.parked.remove(at);
            }
        }
        if phase == Phase::Parked {
            self.parked.push(slot);
        }
    }

    /// A reserved worker's thread runs: it learns how to wake it, and how
    /// to look at its thread.
    pub(crate) fn started(&mut self, slot: usize, parker: P, thread: Option<OsThread>) {
        debug_assert_eq!(self.phase(slot), Phase::Starting);
        let worker = &mut self.slots[slot];
        worker.parker = Some(parker);
        worker.thread = thread;
    }

    /// A worker leaves (or its start was refused): forget it.
    pub(crate) fn remove(&mut self, slot: usize) {
        debug_assert_ne!(self.phase(slot), Phase::Blocked, "a blocked worker cannot leave");
        self.set_phase(slot, Phase::Starting);
        self.counts[Phase::Starting.index()] -= 1;
        self.slots.remove(slot);
        self.unstarted.retain(|&s| s != slot);
    }

    /// The workers running a call, for the watchdog to look at before it
    /// ticks: whether each has been in that one call since the last tick
    /// is in [`Stuck::stuck`].
    pub(crate) fn running_workers(&self) -> Vec<Stuck> {
        self.slots
            .iter()
            .filter(|(_, w)| w.phase == Phase::Running)
            .map(|(slot, w)| Stuck {
                slot,
                runs: w.runs,
                stuck: w.runs == w.runs_at_tick,
                thread: w.thread.clone(),
            })
            .collect()
    }

    /// The workers running a call (see [`PoolState::running_workers`]), and
    /// remembers, for the next tick, where each worker is.
    fn take_running(&mut self) -> Vec<(usize, u64, bool)> {
        let mut running = Vec::new();
        for (slot, w) in self.slots.iter_mut() {
            if w.phase == Phase::Running {
                running.push((slot, w.runs, w.runs == w.runs_at_tick));
            }
            w.runs_at_tick = w.runs;
        }
        running
    }

    /// The next reserved worker to hand to the executor.
    pub(crate) fn take_unstarted(&mut self) -> Option<usize> {
        self.unstarted.pop()
    }

    /// The workers the last decisions woke, for `act.rs` to notify.
    pub(crate) fn drain_woken(&mut self) -> impl Iterator<Item = &P> + '_ {
        let slots = &self.slots;
        self.woken
            .drain(..)
            .filter_map(move |slot| slots.get(slot).and_then(|w| w.parker.as_ref()))
    }

    // ---- decisions --------------------------------------------------------------

    /// Wakes up to `n` parked workers, most recently parked first.
    fn wake_parked(&mut self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n {
            let Some(&slot) = self.parked.last() else { break };
            self.set_phase(slot, Phase::Notified);
            self.woken.push(slot);
            woken += 1;
        }
        woken
    }

    /// Reserves up to `n` more workers, never past `max_workers`.
    pub(crate) fn reserve(&mut self, s: &Settings, n: usize) -> usize {
        let n = n.min(s.max_workers.saturating_sub(self.workers()));
        for _ in 0..n {
            let slot = self.slots.insert(Slot {
                phase: Phase::Starting,
                parker: None,
                thread: None,
                runs: 0,
                runs_at_tick: 0,
                off_cpu_at: None,
            });
            self.counts[Phase::Starting.index()] += 1;
            self.unstarted.push(slot);
        }
        self.peak_workers = self.peak_workers.max(self.workers());
        n
    }

    /// Asks for the watchdog if there is one and it is off.
    fn request_watchdog(&mut self, s: &Settings) -> bool {
        let start = s.tick.is_some() && self.watchdog == Watchdog::Off;
        if start {
            self.watchdog = Watchdog::Requested;
        }
        start
    }

    /// Finds threads for the `queued` calls nobody is coming for. Wakes up
    /// to `max_wake` parked workers as the wake limit allows; every woken
    /// worker calls this again after claiming its call, so wake-ups fan out
    /// across cores. Without parked workers: starts eager workers, up to
    /// `eager_workers` awake. Past either limit the watchdog judges.
    pub(crate) fn dispatch(&mut self, s: &Settings, queued: usize, max_wake: usize) -> Actions {
        let mut actions = Actions::default();
        while actions.woken < max_wake && self.waiting_for_thread(queued) > 0 && self.may_wake_parked(s) {
            actions.woken += self.wake_parked(1);
        }
        let needed = self.waiting_for_thread(queued);
        if needed == 0 {
            return actions;
        }
        if self.may_wake_parked(s) {
            // The woken workers wake the rest. After short calls the
            // watchdog is asked for, so that once it runs the wake limit
            // holds (it wakes parked workers if one of the awake blocks).
            let limit_would_hold = self.calls_are_short && !self.below_wake_limit_ignoring_watchdog(s);
            actions.start_watchdog = limit_would_hold && self.request_watchdog(s);
            return actions;
        }
        if self.parked.is_empty() {
            let eager = s.eager_workers.saturating_sub(self.awake()).min(needed);
            actions.start_workers = self.reserve(s, eager);
        }
        if actions.start_workers < needed {
            // The pool is busy: the watchdog judges whether it is stalled.
            actions.start_watchdog = self.request_watchdog(s);
        }
        actions
    }

    /// Whether enough workers are awake for short calls, whatever the
    /// watchdog does.
    fn below_wake_limit_ignoring_watchdog(&self, s: &Settings) -> bool {
        self.awake_started() < s.eager_workers.max(1)
    }

    /// A call was queued and no parked worker may be woken for it (the
    /// engine then tries a helping waiter first): `dispatch` without waking.
    pub(crate) fn on_enqueue(&mut self, s: &Settings, queued: usize) -> Actions {
        let max_wake = usize::from(self.count(Phase::Notified) < FAN_OUT);
        self.dispatch(s, queued, max_wake)
    }

    /// Whether a queued call would wake a parked worker (else a helping
    /// waiter is asked first).
    pub(crate) fn would_wake_for_call(&self, s: &Settings) -> bool {
        self.may_wake_parked(s)
    }

    /// *Compensate at once*: worker `slot` is about to block in a kasync wait (or in a
    /// pending async call). A parked worker takes its place if there is one;
    /// otherwise a new one starts. Returns the phase to restore afterwards.
    pub(crate) fn on_block(&mut self, s: &Settings, slot: usize, queued: usize) -> (Phase, Actions) {
        let before = self.phase(slot);
        self.set_phase(slot, Phase::Blocked);
        if self.waiting_for_thread(queued) == 0 {
            return (before, Actions::default());
        }
        if !self.parked.is_empty() {
            // One fewer awake worker: room to wake a parked one.
            return (before, self.dispatch(s, queued, 1));
        }
        let start_workers = self.reserve(s, 1);
        (
            before,
            Actions {
                start_workers,
                ..Actions::default()
            },
        )
    }

    /// Whether an idle worker (woken or timed out) should leave: only on
    /// time-out, above `min_workers`, and unless it is needed: calls are
    /// queued and the wake limit would wake it. Without that last check,
    /// parked workers past the limit would take a call every `keep_alive`
    /// under a steady stream and never leave.
    pub(crate) fn should_retire(&self, s: &Settings, slot: usize, timed_out: bool, queued: usize) -> bool {
        debug_assert!(matches!(self.phase(slot), Phase::Parked | Phase::Notified));
        if !timed_out || self.phase(slot) != Phase::Parked || self.workers() <= s.min_workers {
            return false;
        }
        let others_awake = self.awake_started();
        !(queued > 0 && self.below_wake_limit(s, others_awake))
    }

    /// Spare runnable workers while calls block: a worker found blocked
    /// this tick left its CPU idle since it blocked; as many awake spares
    /// as the most found blocked in one tick lately take such a CPU at
    /// once instead. One fewer after [`SPARE_FOR`] ticks without a block.
    fn spare(&mut self, newly_off: usize) -> usize {
        if newly_off >= self.spare {
            self.spare = newly_off;
            self.spare_age = 0;
        } else {
            self.spare_age += 1;
            if self.spare_age >= SPARE_FOR {
                self.spare -= 1;
                self.spare_age = 0;
            }
        }
        self.spare
    }

    /// How many ticks the watchdog waits before its next look.
    pub(crate) fn pace(&self) -> u32 {
        self.pace
    }

    /// The watchdog thread entered its loop.
    pub(crate) fn watchdog_started(&mut self) {
        debug_assert_eq!(self.watchdog, Watchdog::Requested);
        self.watchdog = Watchdog::Running;
    }

    /// The executor refused the watchdog's thread or dropped it unstarted.
    pub(crate) fn watchdog_refused(&mut self) {
        debug_assert_eq!(self.watchdog, Watchdog::Requested);
        // No parked worker was held back for it: the wake limit holds only
        // while it runs.
        self.watchdog = Watchdog::Off;
    }

    /// The executor refused worker `slot`'s thread or dropped it unstarted.
    /// Returns whether to ask for the watchdog, which retries every tick
    /// (the call it was for still needs a thread).
    pub(crate) fn start_refused(&mut self, s: &Settings, slot: usize, queued: usize) -> bool {
        self.remove(slot);
        self.waiting_for_thread(queued) > 0 && self.request_watchdog(s)
    }

    /// *Grow by progress*, once per tick (at least `stall_timeout` after the last one):
    /// keep `eager_workers` workers runnable while calls wait for a thread.
    ///
    /// `facts` say which workers running calls were on a CPU and which were
    /// off (see [`Progress`]); one the watchdog did not look at this tick
    /// counts as on a CPU. `None`: the watchdog cannot look at threads (the
    /// platform, or [`ProgressSignal::Time`](crate::ProgressSignal::Time)),
    /// so workers are judged by time: one that sat in one call since the
    /// last tick counts as blocked unless a call per awake worker started
    /// lowest-first this tick (`started`).
    pub(crate) fn on_tick(&mut self, s: &Settings, queued: usize, started: u64, facts: Option<&[Fact]>) -> Tick {
        debug_assert_eq!(self.watchdog, Watchdog::Running);
        // Looked at every tick, so "since the last tick" means one tick.
        let running = self.take_running();
        if s.tick.is_none() || queued == 0 {
            // Nothing waits: no parked worker is held back.
            self.watchdog = Watchdog::Off;
            self.pace = 1;
            return Tick::Leave;
        }
        let calm = Tick::Stay {
            actions: Actions::default(),
            stalled: false,
        };
        let waiting = self.waiting_for_thread(queued);
        if waiting == 0 || self.count(Phase::Notified) > 0 {
            // Covered, or woken workers are on their way: not a stall, even
            // if the CPUs are too busy to run them yet.
            self.pace = 1;
            return calm;
        }
        let awake = self.awake();
        if self.may_wake_parked(s) {
            // Parked workers the wake limit allows again: double the awake
            // ones, never more than the calls waiting.
            let woken = self.wake_parked(waiting.min(awake.max(1)));
            self.pace = 1;
            return Tick::Stay {
                actions: Actions {
                    woken,
                    ..Actions::default()
                },
                stalled: false,
            };
        }
        let (mut off_cpu, mut on_cpu, mut unknown, mut newly_off) = (0, 0, 0, 0);
        for &(slot, runs, stuck) in &running {
            let Some(facts) = facts else {
                unknown += usize::from(stuck);
                continue;
            };
            match facts.iter().find(|f| f.slot == slot && f.runs == runs) {
                Some(f) if f.progress == Progress::OffCpu => {
                    off_cpu += 1;
                    let seen = self.slots[slot].off_cpu_at.replace(runs);
                    newly_off += usize::from(seen != Some(runs));
                }
                Some(_) => on_cpu += 1,
                None => {}
            }
        }
        if started < awake.max(1) as u64 {
            // By time: fewer calls started than workers are awake, so the
            // ones that sat in a call all tick may be blocked.
            off_cpu += unknown;
        }
        // Workers that make progress: awake and not off a CPU.
        let runnable = awake - off_cpu;
        let target = s.eager_workers.max(1) + self.spare(newly_off);
        // Not one worker seen on a CPU, some blocked: a burst of sleeping
        // calls (a boot), or, by time, a stall.
        let none_computes = on_cpu == 0 && off_cpu > 0;
        if runnable >= target && !none_computes {
            // Enough workers run (or are preempted by other work, or are on
            // their way): more threads would only compete for the CPUs.
            // Look less often while none is blocked, or while more run
            // than needed (one that blocks leaves no CPU idle).
            let slack = runnable > target || (off_cpu == 0 && unknown == 0);
            self.pace = if slack { (self.pace * 2).min(MAX_PACE) } else { 1 };
            return calm;
        }
        self.pace = 1;
        let mut want = target.saturating_sub(runnable);
        if none_computes {
            // The awake ones double, those still starting or in a new call
            // included: they are likely to block too.
            want = want.max(awake);
        }
        let want = want.min(waiting);
        // Parked workers first (past the wake limit: the awake ones are
        // blocked); new ones only once those asked for before have started
        // (an executor may hold starts back).
        let woken = self.wake_parked(want);
        let start_workers = if self.count(Phase::Starting) > 0 {
            0
        } else {
            self.reserve(s, want - woken)
        };
        let actions = Actions {
            woken,
            start_workers,
            start_watchdog: false,
        };
        Tick::Stay {
            stalled: actions.woken + actions.start_workers > 0,
            actions,
        }
    }

    /// Shutdown: every parked worker is woken (it leaves once nothing is
    /// queued).
    pub(crate) fn on_shutdown(&mut self) -> Actions {
        let woken = self.wake_parked(usize::MAX);
        Actions {
            woken,
            ..Actions::default()
        }
    }

    /// Debug check of the counts against the slots.
    #[cfg(test)]
    fn assert_consistent(&self) {
        let mut counts = [0; PHASES];
        for (_, w) in &self.slots {
            counts[w.phase.index()] += 1;
        }
        assert_eq!(counts, self.counts);
        assert_eq!(self.parked.len(), self.count(Phase::Parked));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Event sequences, in tables, for every hang fixed so far (CHANGELOG,
    //! "Fixed") and for each rule. A worker's parker is `()` here.

    use super::*;

    fn settings(max: usize, eager: usize, tick: bool) -> Settings {
        Settings {
            max_workers: max,
            min_workers: 0,
            eager_workers: eager,
            spinners: 1,
            tick: tick.then_some(Duration::from_millis(1)),
        }
    }

    /// A pool with `n` workers started and parked.
    fn parked_pool(s: &Settings, n: usize) -> PoolState<()> {
        let mut p = PoolState::default();
        assert_eq!(p.reserve(s, n), n);
        while let Some(slot) = p.take_unstarted() {
            p.started(slot, (), None);
            p.set_phase(slot, Phase::Parked);
        }
        p.assert_consistent();
        p
    }

    fn run(p: &mut PoolState<()>, slot: usize) {
        p.set_phase(slot, Phase::Running);
    }

    #[test]
    fn a_call_on_an_empty_pool_starts_an_eager_worker_and_the_watchdog() {
        let s = settings(8, 2, true);
        let mut p = PoolState::<()>::default();
        let a = p.dispatch(&s, 1, FAN_OUT);
        assert_eq!((a.woken, a.start_workers, a.start_watchdog), (0, 1, false));
        // A second call: another eager worker. A third: the eager limit is
        // reached, so the watchdog judges.
        assert_eq!(p.dispatch(&s, 2, FAN_OUT).start_workers, 1);
        let a = p.dispatch(&s, 3, FAN_OUT);
        assert_eq!((a.start_workers, a.start_watchdog), (0, true));
        assert_eq!(p.watchdog, Watchdog::Requested);
        p.assert_consistent();
    }

    #[test]
    fn eager_zero_with_a_watchdog_still_asks_for_the_watchdog() {
        let s = settings(8, 0, true);
        let mut p = PoolState::<()>::default();
        let a = p.dispatch(&s, 1, FAN_OUT);
        assert_eq!((a.start_workers, a.start_watchdog), (0, true));
        p.watchdog_started();
        // The first tick finds no worker running a call: a stall.
        let Tick::Stay { actions, stalled } = p.on_tick(&s, 1, 0, None) else {
            panic!("left with a call queued");
        };
        assert!(stalled);
        assert_eq!(actions.start_workers, 1);
    }

    #[test]
    fn wake_ups_fan_out_and_never_exceed_the_calls() {
        let s = settings(8, 8, true);
        let mut p = parked_pool(&s, 6);
        // One call: one worker woken, however many may be.
        assert_eq!(p.dispatch(&s, 1, FAN_OUT).woken, 1);
        // Five more calls queued (six in all): the scheduling thread wakes
        // FAN_OUT, each woken worker wakes FAN_OUT more.
        assert_eq!(p.dispatch(&s, 6, FAN_OUT).woken, 2);
        assert_eq!(p.count(Phase::Notified), 3);
        assert_eq!(p.dispatch(&s, 6, FAN_OUT).woken, 2);
        assert_eq!(p.dispatch(&s, 6, FAN_OUT).woken, 1);
        assert_eq!(p.count(Phase::Parked), 0);
        assert_eq!(p.drain_woken().count(), 6);
        p.assert_consistent();
    }

    #[test]
    fn parked_workers_past_the_wake_limit_stay_parked_after_short_calls() {
        // Hang fixed before: parked workers past the limit with no running
        // watchdog to wake them. The limit holds only while it runs.
        let s = settings(8, 1, true);
        let mut p = parked_pool(&s, 4);
        p.calls_are_short = true;
        // Requested is not enough: every queued call wakes a worker.
        p.watchdog = Watchdog::Requested;
        assert_eq!(p.dispatch(&s, 2, FAN_OUT).woken, 2);
        // Running: one awake worker is enough after short calls.
        let mut p = parked_pool(&s, 4);
        p.calls_are_short = true;
        p.watchdog = Watchdog::Running;
        run(&mut p, 0);
        assert_eq!(p.dispatch(&s, 3, FAN_OUT).woken, 0);
        // The first tick sees the worker start its call: not stuck.
        assert_eq!(
            p.on_tick(&s, 3, 0, None),
            Tick::Stay {
                actions: Actions::default(),
                stalled: false
            }
        );
        // One tick later it is still in that call: the watchdog wakes
        // parked workers (doubling the awake ones).
        let Tick::Stay { actions, stalled } = p.on_tick(&s, 3, 0, None) else {
            panic!()
        };
        assert!(stalled);
        assert_eq!((actions.woken, actions.start_workers), (1, 0));
        p.assert_consistent();
    }

    #[test]
    fn a_refused_watchdog_holds_no_parked_worker_back() {
        // Hang fixed before: a refused watchdog left calls to parked
        // workers nobody would wake.
        let s = settings(8, 1, true);
        let mut p = parked_pool(&s, 3);
        p.calls_are_short = true;
        run(&mut p, 0);
        let a = p.dispatch(&s, 1, 0);
        assert!(a.start_watchdog || p.watchdog == Watchdog::Requested);
        p.watchdog_refused();
        assert_eq!(p.watchdog, Watchdog::Off);
        // With no watchdog running the limit is lifted.
        assert_eq!(p.dispatch(&s, 2, FAN_OUT).woken, 2);
    }

    #[test]
    fn a_held_back_start_does_not_count_as_awake() {
        // Hang fixed before: workers still starting counted against the
        // wake limit, and parked workers waited for a start the executor
        // held back.
        let s = settings(8, 1, true);
        let mut p = parked_pool(&s, 2);
        p.calls_are_short = true;
        p.watchdog = Watchdog::Running;
        assert_eq!(p.reserve(&s, 1), 1); // held back by the executor
        assert_eq!(p.waiting_for_thread(2), 1);
        assert_eq!(p.dispatch(&s, 2, FAN_OUT).woken, 1);
        // A tick does not start more while a start is pending, but wakes.
        let Tick::Stay { actions, .. } = p.on_tick(&s, 3, 0, None) else {
            panic!()
        };
        assert_eq!(actions.start_workers, 0);
    }

    #[test]
    fn a_refused_worker_start_asks_the_watchdog_to_retry() {
        let s = settings(8, 1, true);
        let mut p = PoolState::<()>::default();
        assert_eq!(p.dispatch(&s, 1, FAN_OUT).start_workers, 1);
        let slot = p.take_unstarted().unwrap();
        assert!(p.start_refused(&s, slot, 1));
        assert_eq!((p.workers(), p.watchdog), (0, Watchdog::Requested));
        p.watchdog_started();
        let Tick::Stay { actions, stalled } = p.on_tick(&s, 1, 0, None) else {
            panic!()
        };
        assert!(stalled);
        assert_eq!(actions.start_workers, 1);
        p.assert_consistent();
    }

    #[test]
    fn a_refused_worker_start_without_a_watchdog_gives_up_quietly() {
        let s = settings(8, 1, false);
        let mut p = PoolState::<()>::default();
        assert_eq!(p.dispatch(&s, 1, FAN_OUT).start_workers, 1);
        let slot = p.take_unstarted().unwrap();
        assert!(!p.start_refused(&s, slot, 1));
        assert_eq!(p.workers(), 0);
    }

    #[test]
    fn a_blocked_worker_is_replaced_by_a_parked_one_first() {
        let s = settings(8, 1, true);
        let mut p = parked_pool(&s, 2);
        run(&mut p, 0);
        let (before, a) = p.on_block(&s, 0, 1);
        assert_eq!(before, Phase::Running);
        assert_eq!((a.woken, a.start_workers), (1, 0));
        assert_eq!(p.count(Phase::Blocked), 1);
        // Nothing queued: no replacement.
        let (_, a) = p.on_block(&s, 1, 0);
        assert_eq!(a, Actions::default());
        p.set_phase(0, before);
        p.assert_consistent();
    }

    #[test]
    fn a_blocked_worker_without_parked_ones_starts_one_up_to_the_cap() {
        let s = settings(2, 1, true);
        let mut p = PoolState::<()>::default();
        assert_eq!(p.reserve(&s, 2), 2);
        while let Some(slot) = p.take_unstarted() {
            p.started(slot, (), None);
            run(&mut p, slot);
        }
        let (_, a) = p.on_block(&s, 0, 1);
        assert_eq!(a.start_workers, 0, "at the cap nothing starts");
        assert_eq!(p.workers(), 2);
    }

    #[test]
    fn a_stranded_invisible_block_is_found_by_the_watchdog() {
        // A call blocked invisibly (sleep, channel) while calls are queued:
        // after a tick without progress the watchdog adds a worker.
        let s = settings(8, 1, true);
        let mut p = PoolState::<()>::default();
        let _ = p.dispatch(&s, 1, FAN_OUT);
        let slot = p.take_unstarted().unwrap();
        p.started(slot, (), None);
        run(&mut p, slot);
        let a = p.dispatch(&s, 1, FAN_OUT);
        assert!(a.start_watchdog);
        p.watchdog_started();
        // Progress this tick: calm.
        assert_eq!(
            p.on_tick(&s, 1, 1, None),
            Tick::Stay {
                actions: Actions::default(),
                stalled: false
            }
        );
        // No progress, the call still running a tick later: stalled.
        let Tick::Stay { actions, stalled } = p.on_tick(&s, 1, 0, None) else {
            panic!()
        };
        assert!(stalled);
        assert_eq!(actions.start_workers, 1);
        // Nothing queued: the watchdog leaves.
        assert_eq!(p.on_tick(&s, 0, 0, None), Tick::Leave);
        assert_eq!(p.watchdog, Watchdog::Off);
    }

    /// A pool of `n` workers started and each running a call (entered
    /// once), with the watchdog running and a first tick behind it, so each
    /// is stuck at the next tick.
    fn busy_pool(s: &Settings, n: usize) -> PoolState<()> {
        let mut p = PoolState::<()>::default();
        assert_eq!(p.reserve(s, n), n);
        while let Some(slot) = p.take_unstarted() {
            p.started(slot, (), None);
            run(&mut p, slot);
        }
        p.watchdog = Watchdog::Running;
        assert!(matches!(p.on_tick(s, 0, 0, None), Tick::Leave));
        p.watchdog = Watchdog::Running;
        p
    }

    fn facts(progress: &[(usize, Progress)]) -> Vec<Fact> {
        progress
            .iter()
            .map(|&(slot, progress)| Fact {
                slot,
                runs: 1,
                progress,
            })
            .collect()
    }

    fn grows(tick: Tick) -> usize {
        match tick {
            Tick::Stay { actions, .. } => actions.woken + actions.start_workers,
            Tick::Leave => panic!("left with calls queued"),
        }
    }

    #[test]
    fn workers_that_compute_get_no_company() {
        // Two CPUs' worth of workers, each in one long call that computes,
        // many calls queued, none started this tick: no growth, however
        // long they compute (the time rule would add workers every tick).
        let s = settings(64, 2, true);
        let mut p = busy_pool(&s, 2);
        for _ in 0..10 {
            let on = facts(&[(0, Progress::OnCpu), (1, Progress::OnCpu)]);
            assert_eq!(grows(p.on_tick(&s, 50, 0, Some(&on))), 0);
        }
        assert_eq!(p.workers(), 2);
        // Looking less often, up to MAX_PACE ticks apart.
        assert_eq!(p.pace(), MAX_PACE);
    }

    #[test]
    fn a_worker_off_the_cpus_gets_one_in_its_place_at_once() {
        let s = settings(64, 2, true);
        let mut p = busy_pool(&s, 2);
        let seen = facts(&[(0, Progress::OnCpu), (1, Progress::OffCpu)]);
        // One blocked: one more, plus one spare since calls block.
        assert_eq!(grows(p.on_tick(&s, 50, 0, Some(&seen))), 2);
        assert_eq!(p.pace(), 1);
        // The same block seen again is no new block: no more growth while
        // the ones started are on their way.
        assert_eq!(grows(p.on_tick(&s, 50, 0, Some(&seen))), 0);
    }

    #[test]
    fn a_burst_of_blocking_calls_grows_faster_than_the_cpus() {
        // A burst of sleeping calls (a boot): four workers newly blocked, so
        // the CPUs' worth of runnable workers plus a spare for each of them
        // (the next ones are likely to block too), at least doubling the
        // pool per tick instead of growing by the CPUs.
        let s = settings(64, 2, true);
        let mut p = busy_pool(&s, 4);
        let off = facts(&[
            (0, Progress::OffCpu),
            (1, Progress::OffCpu),
            (2, Progress::OffCpu),
            (3, Progress::OffCpu),
        ]);
        assert_eq!(grows(p.on_tick(&s, 50, 0, Some(&off))), 6);
        // Never more than the calls waiting.
        let mut p = busy_pool(&s, 4);
        assert_eq!(grows(p.on_tick(&s, 3, 0, Some(&off))), 3);
        // Nor past the cap.
        let s = settings(5, 2, true);
        let mut p = busy_pool(&s, 4);
        assert_eq!(grows(p.on_tick(&s, 50, 0, Some(&off))), 1);
    }

    #[test]
    fn a_mix_keeps_the_cpus_busy_and_covers_the_blocked() {
        // Four workers: two compute, two sleep. Two CPUs are busy: nothing
        // but the spare for calls that block.
        let s = settings(64, 2, true);
        let mut p = busy_pool(&s, 4);
        let seen = facts(&[
            (0, Progress::OnCpu),
            (1, Progress::OffCpu),
            (2, Progress::OnCpu),
            (3, Progress::OffCpu),
        ]);
        assert_eq!(
            grows(p.on_tick(&s, 50, 0, Some(&seen))),
            2,
            "spares for the two new blocks"
        );
        // Spares age out after SPARE_FOR ticks without a new block.
        for _ in 0..SPARE_FOR * 2 {
            let _ = p.on_tick(&s, 50, 0, Some(&seen));
        }
        assert_eq!(p.spare, 0);
    }

    #[test]
    fn a_preempted_worker_is_no_blocked_one() {
        // A worker preempted by other processes is runnable: the watchdog
        // reports it on a CPU (base::os_thread), and nothing is added.
        let s = settings(64, 1, true);
        let mut p = busy_pool(&s, 1);
        for _ in 0..5 {
            assert_eq!(grows(p.on_tick(&s, 9, 0, Some(&facts(&[(0, Progress::OnCpu)])))), 0);
        }
    }

    #[test]
    fn without_facts_workers_are_judged_by_time() {
        // The fallback (no way to look at threads, or ProgressSignal::Time):
        // a worker in one call for a tick in which fewer calls started than
        // workers are awake counts as blocked.
        let s = settings(64, 2, true);
        let mut p = busy_pool(&s, 2);
        assert_eq!(grows(p.on_tick(&s, 50, 0, None)), 2);
        // Calls started: busy, not stuck.
        let mut p = busy_pool(&s, 2);
        assert_eq!(grows(p.on_tick(&s, 50, 2, None)), 0);
    }

    #[test]
    fn a_fact_about_a_call_the_worker_has_left_is_dropped() {
        // The watchdog looked at worker 0 in its first call; it entered a
        // second before the tick: the fact no longer applies, and by time
        // the worker, not stuck, is running.
        let s = settings(64, 1, true);
        let mut p = busy_pool(&s, 1);
        p.set_phase(0, Phase::Spinning);
        run(&mut p, 0);
        assert_eq!(grows(p.on_tick(&s, 5, 0, Some(&facts(&[(0, Progress::OffCpu)])))), 0);
    }

    #[test]
    fn shutdown_with_a_long_tick_wakes_every_parked_worker() {
        // Hang fixed before: a long tick held the drain up. The engine wakes
        // the watchdog once nothing is queued; every parked worker is woken.
        let s = settings(8, 1, true);
        let mut p = parked_pool(&s, 3);
        assert_eq!(p.on_shutdown().woken, 3);
        assert_eq!(p.count(Phase::Notified), 3);
        for slot in 0..3 {
            assert!(!p.should_retire(&s, slot, false, 0));
            p.remove(slot);
        }
        assert_eq!(p.workers(), 0);
        p.assert_consistent();
    }

    #[test]
    fn idle_workers_retire_on_time_out_unless_needed() {
        let s = settings(8, 1, true);
        let mut p = parked_pool(&s, 2);
        assert!(p.should_retire(&s, 0, true, 0));
        assert!(!p.should_retire(&s, 0, false, 0), "woken, not timed out");
        assert!(!p.should_retire(&s, 0, true, 1), "a call waits for it");
        // Past the wake limit it leaves even with calls queued.
        p.calls_are_short = true;
        p.watchdog = Watchdog::Running;
        run(&mut p, 1);
        assert!(p.should_retire(&s, 0, true, 1));
        // Never below min_workers.
        let s = Settings { min_workers: 2, ..s };
        assert!(!p.should_retire(&s, 0, true, 0));
    }

    #[test]
    fn settings_at_their_edges() {
        // max_workers 1: one worker, however much is queued.
        let s = settings(1, usize::MAX, true);
        let mut p = PoolState::<()>::default();
        assert_eq!(p.dispatch(&s, usize::MAX, FAN_OUT).start_workers, 1);
        assert_eq!(p.dispatch(&s, usize::MAX, FAN_OUT).start_workers, 0);
        assert_eq!(p.reserve(&s, usize::MAX), 0);
        // No watchdog and no eager workers: nothing starts (which is why
        // `Builder::build` refuses that combination).
        let s = settings(usize::MAX, 0, false);
        let mut p = PoolState::<()>::default();
        assert_eq!(p.dispatch(&s, 1, FAN_OUT), Actions::default());
    }
}
