//! The deadlock-free growth rule, applied the same way on every executor.
//!
//! 1. Lowest cookie first: workers claim the runtime's lowest queued cookie
//!    ([`State::claim_lowest`]).
//! 2. Borrow the waiter's thread: a blocking barrier wait runs the queued calls
//!    it covers (in `barrier.rs`, through [`block_until`]); a call queued while a
//!    helping waiter is blocked wakes it ([`on_enqueue`]).
//! 3. Compensate at once: a worker about to block in a kasync wait, while
//!    calls are queued and no worker is idle, starts a replacement
//!    ([`compensate`]).
//! 4. Watchdog: while calls are queued, no worker is on its way, fewer
//!    calls started in the last tick than workers run, and some worker has
//!    been inside one call for `stall_timeout`, the running workers double,
//!    parked idle workers first ([`watchdog_main`]). The watchdog thread
//!    exists only while calls are queued behind a busy pool.
//! 5. Cap and shrink: never more than `max_workers`; idle workers above
//!    `min_workers` exit after `keep_alive` ([`worker_main`]). An idle
//!    worker first spins for a few tens of microseconds (at most one per
//!    CPU at a time): a stream of short calls then needs no wake-up system
//!    call per call.
//!
//! Idle workers are woken for queued calls at once, except after short
//! calls while the watchdog runs: then no more than `eager_workers` are
//! awake ([`may_wake_idle`]), so a pool that a boot grew to hundreds of
//! workers runs a stream of short calls as fast as a small one, and the
//! watchdog wakes more if one blocks.
//!
//! Decisions are made under the state lock and return a [`Growth`]; threads
//! are started by [`grow`] after the lock is released.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use crate::batch::{self, Batch, Want, FLUSH_AFTER};
use crate::call::{self, Claimed};
use crate::context;
use crate::domain::DomainHint;
use crate::domain::DomainId;
use crate::executor::WorkerSpec;
use crate::observe;
use crate::runtime::Shared;
use crate::state::{Scope, State, Wake, Wakeups};
use crate::sync::{now, passed, spin_until, spin_until_changed, MutexGuard};
use crate::Cookie;

/// The pool's part of the runtime state.
#[derive(Default)]
pub(crate) struct PoolState {
    /// Workers alive or starting.
    pub(crate) workers: usize,
    /// Workers reserved whose thread has not started yet.
    pub(crate) starting: usize,
    /// Workers waiting for calls.
    pub(crate) idle: usize,
    /// Idle workers already notified of a new call.
    pub(crate) notified: usize,
    /// Workers blocked in a kasync wait.
    pub(crate) blocked: usize,
    /// Idle workers spinning for a moment before they park; each will take
    /// a call queued meanwhile without being woken.
    pub(crate) spinning: usize,
    /// Blocking waiters spinning for a moment on their domain's lowest
    /// unfinished cookie before they park.
    pub(crate) waiters_spinning: usize,
    /// Per worker, keyed by the slot it got when it started.
    pub(crate) slots: Slab<WorkerSlot>,
    /// Whether the watchdog thread was asked for and has not left.
    pub(crate) watchdog: bool,
    /// Whether the watchdog thread is running its loop: asked for is not
    /// enough (an executor may hold a thread's start back, or drop it).
    /// Only while it runs are idle workers left parked past
    /// `eager_workers`: it is what wakes them.
    pub(crate) watchdog_running: bool,
    /// Whether the executor refused the last watchdog thread asked for.
    /// Until one runs, nobody claims ahead and every batch counts as
    /// stranded: nobody else would free a batch whose worker is stuck.
    pub(crate) watchdog_refused: bool,
    /// Reserved workers nobody has started yet. Every thread that starts
    /// workers — and every new worker, before its first call — takes from it,
    /// so a large growth step is spawned by a doubling set of threads instead
    /// of one thread spawning them all in a row.
    pub(crate) spawn_debt: usize,
    /// Calls in batches, or run from them and not yet recorded: counted as
    /// queued by rules 3 and 4 (see `batch.rs`).
    pub(crate) claimed_ahead: usize,
    /// Whether the last run of calls a worker finished took less than
    /// `SPIN_FOR` per call: then no more than `eager_workers` workers are
    /// woken at once (see [`may_wake_idle`]).
    pub(crate) calls_are_short: bool,
    /// The slots whose batch may hold calls, each listed once: taking from
    /// batches looks at these, not at every worker (after a burst of slow
    /// calls, hundreds of idle workers have empty batches).
    pub(crate) batched: Vec<usize>,
}

/// What the pool keeps per worker.
pub(crate) struct WorkerSlot {
    /// When its current run of calls started; `None` while it is idle or
    /// blocked in a kasync wait (those are not stalls: rule 3 covers them).
    pub(crate) busy_since: Option<Instant>,
    /// The calls it claimed ahead.
    pub(crate) batch: Arc<Batch>,
    /// Whether the slot is in [`PoolState::batched`].
    pub(crate) listed: bool,
}

impl PoolState {
    fn idle_available(&self) -> bool {
        self.idle > self.notified
    }

    /// Workers neither parked nor blocked in a kasync wait: running calls,
    /// spinning, starting, or notified and on their way.
    pub(crate) fn awake(&self) -> usize {
        self.workers
            .saturating_sub(self.idle - self.notified)
            .saturating_sub(self.blocked)
    }

    /// [`PoolState::awake`] without the workers still starting: what the
    /// limit on waking idle workers counts (see [`may_wake_idle`]).
    fn awake_started(&self) -> usize {
        self.awake().saturating_sub(self.starting)
    }
}

/// Whether to wake an idle worker for a queued call now. Only while fewer
/// than `eager_workers` workers are awake, if the last calls were short and
/// the watchdog runs: more workers would only fight over the lock and the
/// CPUs, and a call among them that blocks invisibly is the watchdog's to
/// find (it wakes idle workers before it starts new ones). After long calls
/// (which probably block) every queued call gets an idle worker at once, so
/// a warm pool runs a boot's probes in parallel without waiting for a tick.
///
/// A worker still starting does not count: the executor may hold its start
/// back (a saturated blocking pool) or drop it, and parked workers must not
/// wait for that. Nor does a watchdog asked for but not yet running.
fn may_wake_idle(shared: &Shared, st: &State) -> bool {
    st.pool.idle_available() && below_wake_limit(shared, st, st.pool.awake_started())
}

/// Whether, with `awake` workers awake, one more may be woken.
fn below_wake_limit(shared: &Shared, st: &State, awake: usize) -> bool {
    !st.pool.calls_are_short || !st.pool.watchdog_running || !enough_awake(shared, awake)
}

/// Whether `awake` workers are as many as short calls need.
fn enough_awake(shared: &Shared, awake: usize) -> bool {
    awake >= shared.config.eager_workers.max(1)
}

/// Whether the limit of [`below_wake_limit`] would hold idle workers back
/// once the watchdog runs: then it is asked for, so that the limit holds.
fn wants_watchdog_for_limit(shared: &Shared, st: &State) -> bool {
    st.pool.calls_are_short && st.pool.idle_available() && enough_awake(shared, st.pool.awake_started())
}

/// Claims the watchdog's start if it has one and it is not running.
fn start_watchdog(shared: &Shared, st: &mut State) -> bool {
    let start = shared.config.stall_timeout.is_some() && !st.pool.watchdog;
    st.pool.watchdog |= start;
    start
}

/// Wakes up to `n` idle workers; returns how many it woke.
fn wake_idle(shared: &Shared, st: &mut State, n: usize) -> usize {
    let mut woken = 0;
    while woken < n && st.pool.idle_available() {
        if !shared.worker_cv.notify_one() {
            // The idle worker is timing out right now; it checks the queue
            // before it leaves.
            break;
        }
        st.pool.notified += 1;
        woken += 1;
    }
    woken
}

/// Threads to start once the lock is released.
#[derive(Default, Debug, Clone, Copy)]
#[must_use]
pub(crate) struct Growth {
    workers: usize,
    watchdog: bool,
}

/// How many idle workers one thread wakes for newly queued calls.
const FAN_OUT: usize = 2;

/// Calls waiting for a thread that no notified, starting or spinning worker
/// is on its way to take. Batched calls always count: only their own worker
/// (or, once stranded, an idle one the watchdog wakes) takes them.
fn uncovered(st: &State) -> usize {
    queued_uncovered(st) + st.pool.claimed_ahead
}

/// [`uncovered`] without the batched calls.
fn queued_uncovered(st: &State) -> usize {
    st.queued
        .saturating_sub(st.pool.notified + st.pool.starting + st.pool.spinning)
}

/// How long an idle worker spins, watching for new calls, before it parks.
/// A stream of short calls then keeps the workers busy without a wake-up
/// system call per call; slow calls never get here (their workers are busy).
const SPIN_FOR: std::time::Duration = std::time::Duration::from_micros(50);

/// Finds threads for queued calls nobody is coming for. Wakes up to
/// `max_wake` idle workers (as [`may_wake_idle`] allows); every woken worker
/// calls this again after claiming its call, so wake-ups fan out across
/// cores while the scheduling thread stays fast. Without idle workers: start
/// eager workers up to `eager_workers` running ones. Past either limit the
/// watchdog judges.
fn dispatch(shared: &Shared, st: &mut State, max_wake: usize) -> Growth {
    let mut woken = 0;
    while woken < max_wake && uncovered(st) > 0 && may_wake_idle(shared, st) {
        if wake_idle(shared, st, 1) == 0 {
            break;
        }
        woken += 1;
    }
    let needed = uncovered(st);
    if needed == 0 {
        return Growth::default();
    }
    if may_wake_idle(shared, st) {
        // The woken workers will wake the remaining idle ones. After short
        // calls, the watchdog is asked for, so that once it runs no more
        // than `eager_workers` are kept awake.
        return Growth {
            workers: 0,
            watchdog: wants_watchdog_for_limit(shared, st) && start_watchdog(shared, st),
        };
    }
    let mut growth = Growth::default();
    if !st.pool.idle_available() {
        let active = st.pool.workers - st.pool.blocked;
        let eager = shared.config.eager_workers.saturating_sub(active).min(needed);
        growth = reserve_workers(shared, st, eager);
    }
    if growth.workers < needed {
        // The pool is busy: the watchdog judges whether it is stalled.
        growth.watchdog = start_watchdog(shared, st);
    }
    growth
}

impl Growth {
    pub(crate) fn is_empty(&self) -> bool {
        self.workers == 0 && !self.watchdog
    }
}

/// Reserves up to `n` more workers, never past `max_workers`.
pub(crate) fn reserve_workers(shared: &Shared, st: &mut State, n: usize) -> Growth {
    let room = shared.config.max_workers.saturating_sub(st.pool.workers);
    let n = n.min(room);
    st.pool.workers += n;
    st.pool.starting += n;
    st.counters.peak_workers = st.counters.peak_workers.max(st.pool.workers);
    Growth {
        workers: n,
        watchdog: false,
    }
}

/// Decides who runs a call that was just queued.
pub(crate) fn on_enqueue(shared: &Shared, st: &mut State, domain: DomainId, cookie: Cookie) -> Growth {
    if may_wake_idle(shared, st) {
        // Wake at most FAN_OUT workers from the scheduling thread; they wake
        // the rest.
        let max_wake = usize::from(st.pool.notified < FAN_OUT);
        return dispatch(shared, st, max_wake);
    }
    if st.wake_helper_for(domain, cookie) {
        return Growth::default();
    }
    dispatch(shared, st, 0)
}

/// Rule 3: called when a worker is about to block in a kasync wait (and
/// already counted as blocked). An idle worker takes its place if there is
/// one; otherwise a new one starts.
pub(crate) fn compensate(shared: &Shared, st: &mut State) -> Growth {
    if uncovered(st) == 0 {
        return Growth::default();
    }
    if st.pool.idle_available() {
        // One fewer awake worker: room to wake an idle one.
        return dispatch(shared, st, 1);
    }
    let growth = reserve_workers(shared, st, 1);
    if growth.workers > 0 {
        st.counters.compensations += 1;
    }
    growth
}

/// Undoes a thread's reservation if the executor drops its body uncalled
/// (or refuses to start it), so the pool's counts stay true.
struct Reservation {
    shared: Option<Arc<Shared>>,
    watchdog: bool,
}

impl Reservation {
    fn start(mut self) -> Arc<Shared> {
        match self.shared.take() {
            Some(shared) => shared,
            None => unreachable!("a reservation starts once"),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            observe::spawn_refused(&shared);
            let mut st = shared.lock();
            st.counters.spawn_failures += 1;
            if self.watchdog {
                st.pool.watchdog = false;
                st.pool.watchdog_refused = true;
                // No idle worker was held back (no watchdog ran; see
                // `may_wake_idle`), but batches may have been claimed while
                // it was asked for: wake idle workers to take them.
                let batched = st.pool.claimed_ahead;
                wake_idle(&shared, &mut st, batched);
                shared.notify_drain(&st);
                return;
            }
            st.pool.workers -= 1;
            st.pool.starting -= 1;
            shared.notify_drain(&st);
            // The call this worker was for still needs a thread: the watchdog
            // retries every tick instead of waiting for another schedule.
            if uncovered(&st) > 0 && start_watchdog(&shared, &mut st) {
                drop(st);
                grow(
                    &shared,
                    Growth {
                        workers: 0,
                        watchdog: true,
                    },
                );
            }
        }
    }
}

/// Starts the threads a decision asked for.
pub(crate) fn grow(shared: &Arc<Shared>, growth: Growth) {
    if growth.workers > 0 {
        shared.lock().pool.spawn_debt += growth.workers;
        pay_spawn_debt(shared);
    }
    if growth.watchdog {
        let spec = WorkerSpec {
            name: format!("{}-watchdog", shared.config.thread_name),
            stack_size: None,
        };
        let reservation = Reservation {
            shared: Some(shared.clone()),
            watchdog: true,
        };
        let _ = shared
            .executor
            .spawn_worker(spec, Box::new(move || watchdog_main(reservation.start())));
    }
}

/// Starts reserved workers until none are left to start.
fn pay_spawn_debt(shared: &Arc<Shared>) {
    loop {
        {
            let mut st = shared.lock();
            if st.pool.spawn_debt == 0 {
                return;
            }
            st.pool.spawn_debt -= 1;
        }
        let n = shared.worker_names.fetch_add(1, Ordering::Relaxed);
        let spec = WorkerSpec {
            name: format!("{}-{}", shared.config.thread_name, n),
            stack_size: shared.config.stack_size,
        };
        let reservation = Reservation {
            shared: Some(shared.clone()),
            watchdog: false,
        };
        // On refusal the body is dropped and the reservation undoes itself:
        // the runtime keeps going with the workers it has.
        let _ = shared
            .executor
            .spawn_worker(spec, Box::new(move || worker_main(reservation.start())));
    }
}

/// What a blocking wait waits for and how.
pub(crate) struct Wait<'a> {
    /// The calls it may help with: `scope`, cookies below `below`.
    pub(crate) scope: Scope,
    pub(crate) below: u64,
    /// The domain's name, for waits whose handle does not keep the domain
    /// alive (its slot may be gone, or reused, once the wait is done).
    pub(crate) domain_name: Option<&'a str>,
    /// Whether the caller allows helping at all.
    pub(crate) help: bool,
    pub(crate) deadline: Option<Instant>,
}

/// Blocks the calling thread until `is_done`, applying rules 2 and 3: it runs
/// queued calls the wait covers (up to `help_depth` deep), and a worker about
/// to block starts a replacement when calls are queued and no worker is idle.
/// `arm` registers how to wake this thread (and whether it helps) with the
/// thing waited for. Returns the guard and `false` if the deadline passed.
pub(crate) fn block_until<'a>(
    shared: &'a Arc<Shared>,
    mut st: MutexGuard<'a, State>,
    wait: Wait<'_>,
    is_done: &mut dyn FnMut(&mut State) -> bool,
    arm: &mut dyn FnMut(&mut State, Wake, bool) -> Wake,
) -> (MutexGuard<'a, State>, bool) {
    let may_help = wait.help && shared.config.help && context::depth() < shared.config.help_depth;
    let observed_since = observe::wait_started(shared);
    let mut helped = 0;
    let worker_slot = context::worker_slot(shared.id());
    // Set while this worker counts as blocked: its call's start time.
    let mut blocked: Option<Option<Instant>> = None;
    let cv = context::thread_condvar();
    // Whether this thread spun since it last parked: it spins at most once
    // per wake-up, then parks.
    let mut spun = false;
    let done = loop {
        if is_done(&mut st) {
            break true;
        }
        if may_help {
            let claimed = batch::steal(&mut st, Want::Covered(wait.scope, wait.below))
                .or_else(|| st.claim_for(wait.scope, wait.below));
            if let Some(claimed) = claimed {
                st.counters.helped += 1;
                helped += 1;
                if let (Some(slot), Some(saved)) = (worker_slot, blocked.take()) {
                    st.pool.blocked -= 1;
                    st.pool.slots[slot].busy_since = saved;
                }
                // On a worker, the helped call counts as its current call
                // for the watchdog.
                let outer = worker_slot.and_then(|slot| st.pool.slots[slot].busy_since.replace(now()));
                drop(st);
                let (domain, cookie) = (claimed.domain, claimed.cookie);
                let finished = call::execute(shared, claimed);
                // Its end is recorded in the critical section this loop
                // takes anyway: one lock per helped call, not two.
                st = shared.lock();
                if let Some(slot) = worker_slot {
                    st.pool.slots[slot].busy_since = outer;
                }
                if let Some(finished) = finished {
                    let mut wakeups = Wakeups::default();
                    shared.finish_locked(&mut st, domain, cookie, finished, &mut wakeups);
                    st = shared.wake_unlocked(st, wakeups);
                }
                continue;
            }
        }
        if wait.deadline.is_some_and(|d| now() >= d) {
            break false;
        }
        if let (Some(slot), None) = (worker_slot, &blocked) {
            // Rule 3: this worker is about to block in a kasync wait.
            st.pool.blocked += 1;
            blocked = Some(st.pool.slots[slot].busy_since.take());
            let growth = compensate(shared, &mut st);
            if !growth.is_empty() {
                drop(st);
                if growth.workers > 0 {
                    observe::compensated();
                }
                grow(shared, growth);
                st = shared.lock();
                continue;
            }
        }
        if !spun {
            spun = true;
            if let Some(hint) = spin_hint(shared, &mut st, &wait) {
                drop(st);
                let budget = wait
                    .deadline
                    .map_or(SPIN_FOR, |d| d.saturating_duration_since(now()).min(SPIN_FOR));
                spin_until(|| hint.lowest.load(Ordering::Acquire) >= wait.below, budget);
                st = shared.lock();
                st.pool.waiters_spinning -= 1;
                continue;
            }
        }
        let replaced = arm(&mut st, Wake::Thread(cv.clone()), may_help);
        if let Wake::Task(_) = replaced {
            // The handle was polled as a future before: its waker is foreign
            // code, dropped only with the lock released. Look again after.
            drop(st);
            drop(replaced);
            st = shared.lock();
            continue;
        }
        st = match wait.deadline {
            Some(d) => cv.wait_until(st, d).0,
            None => cv.wait(st),
        };
        spun = false;
    };
    if let (Some(slot), Some(saved)) = (worker_slot, blocked) {
        st.pool.blocked -= 1;
        st.pool.slots[slot].busy_since = saved;
    }
    if let Some(finished) = observe::wait_finished(&st, wait.scope, wait.below, wait.domain_name, observed_since) {
        drop(st);
        finished.report(shared, helped, true);
        st = shared.lock();
    }
    (st, done)
}

/// A blocking domain wait spins before parking (and is woken early) when it
/// waits for at most this many unfinished calls.
pub(crate) const NEAR_CALLS: usize = 1;

/// Whether a blocking wait should spin before it parks, and on what: only
/// a domain wait for the one call at its domain's front (usually about to
/// end: "register in cookie order"), and only while fewer threads than
/// `spinners` (one per CPU) spin, idle workers and waiters together. Takes
/// a spinner's place.
fn spin_hint(shared: &Shared, st: &mut State, wait: &Wait) -> Option<Arc<DomainHint>> {
    let Scope::Domain(id) = wait.scope else {
        return None;
    };
    if st.pool.spinning + st.pool.waiters_spinning >= shared.config.spinners {
        return None;
    }
    let domain = st.domain(id);
    if !domain.waits_for_few(wait.below, NEAR_CALLS) {
        return None;
    }
    let hint = domain.hint.clone();
    st.pool.waiters_spinning += 1;
    Some(hint)
}

/// A worker thread: claims the lowest queued cookie until idle for too long.
/// After short calls it claims ahead (see `batch.rs`).
pub(crate) fn worker_main(shared: Arc<Shared>) {
    let own = Arc::new(Batch::new());
    let slot = {
        let mut st = shared.lock();
        st.pool.starting -= 1;
        st.counters.spawned += 1;
        st.pool.slots.insert(WorkerSlot {
            busy_since: None,
            batch: own.clone(),
            listed: false,
        })
    };
    context::set_worker(shared.id(), slot);
    observe::worker_started(&shared);
    pay_spawn_debt(&shared);
    // Claiming ahead relies on the watchdog to free a stranded batch.
    let may_claim_ahead = shared.config.stall_timeout.is_some() || shared.config.claim_ahead_unwatched;
    // Whether the last run of calls ended within FLUSH_AFTER: short calls.
    let mut short_calls = false;
    // Whether this worker's last calls took less than SPIN_FOR each: only
    // then is a new call likely to come while it spins when idle.
    let mut spin_when_idle = true;
    let mut st = shared.lock();
    loop {
        if context::has_unrecorded() {
            let mut wakeups = Wakeups::default();
            st.pool.slots[slot].busy_since = None;
            shared.record_unrecorded(&mut st, &mut wakeups);
            st = shared.wake_unlocked(st, wakeups);
        }
        if let Some(first) = next_call(&shared, &mut st, slot, &own, short_calls && may_claim_ahead) {
            let started = now();
            st.pool.slots[slot].busy_since = Some(started);
            let growth = dispatch(&shared, &mut st, FAN_OUT);
            drop(st);
            grow(&shared, growth);
            let flush_at = started + FLUSH_AFTER;
            let (mut claimed, mut from_batch) = (first, false);
            let mut ran: u32 = 0;
            short_calls = loop {
                let (domain, cookie) = (claimed.domain, claimed.cookie);
                let finished = call::execute(&shared, claimed);
                context::push_unrecorded(domain, cookie, finished, from_batch);
                ran += 1;
                if passed(flush_at) {
                    break false;
                }
                match own.pop() {
                    Some(next) => (claimed, from_batch) = (next, true),
                    None => break true,
                }
            };
            spin_when_idle = !passed(started + SPIN_FOR.saturating_mul(ran));
            st = shared.lock();
            st.pool.calls_are_short = spin_when_idle;
            continue;
        }
        if st.shutdown {
            break;
        }
        // Spin first, unless enough threads (idle workers and waiters) do,
        // or the last calls were long. After a long call (a probe that slept
        // 20 ms) a spin rarely finds a new call, and it would take a CPU and
        // a spinner's place from a waiter about to be satisfied: boot's
        // registration chain waits spin in a link instead of parking.
        if spin_when_idle && st.pool.spinning + st.pool.waiters_spinning < shared.config.spinners {
            st.pool.spinning += 1;
            let seen = shared.enqueued.load(Ordering::Relaxed);
            drop(st);
            spin_until_changed(&shared.enqueued, seen, SPIN_FOR);
            st = shared.lock();
            st.pool.spinning -= 1;
            if st.queued > 0 || st.shutdown || has_stranded_calls(&st) {
                // Take the call, or leave: a shutdown's wake-up may have
                // come while this worker was spinning, not waiting.
                continue;
            }
        }
        st.pool.idle += 1;
        // A keep-alive too long to express as a deadline means "forever".
        let (guard, timed_out) = match now().checked_add(shared.config.keep_alive) {
            Some(deadline) => shared.worker_cv.wait_until(st, deadline),
            None => (shared.worker_cv.wait(st), false),
        };
        st = guard;
        st.pool.idle -= 1;
        if !timed_out {
            st.pool.notified = st.pool.notified.saturating_sub(1);
        }
        st.pool.notified = st.pool.notified.min(st.pool.idle);
        // On time-out it leaves unless it is needed: calls are queued and
        // the limit on awake workers (see `may_wake_idle`) would wake it.
        // Without that limit, parked workers past it would take a call
        // every `keep_alive` under a steady stream and never leave.
        let others_awake = st.pool.awake_started().saturating_sub(1);
        let needed = (st.queued > 0 && below_wake_limit(&shared, &st, others_awake)) || has_stranded_calls(&st);
        if timed_out && !needed && st.pool.workers > shared.config.min_workers {
            break;
        }
    }
    st.pool.workers -= 1;
    if st.pool.slots.remove(slot).listed {
        st.pool.batched.retain(|&listed| listed != slot);
    }
    shared.notify_drain(&st);
    drop(st);
    context::clear_worker();
}

/// A worker's next call: its own batch first (left after a record), then
/// the lowest queued call (claiming ahead after short calls, when no idle
/// worker would be woken for work), then a call from a stranded batch.
fn next_call(shared: &Shared, st: &mut State, slot: usize, own: &Batch, claim_ahead: bool) -> Option<Claimed> {
    if let Some(claimed) = own.pop() {
        st.pool.claimed_ahead -= 1;
        return Some(claimed);
    }
    if let Some(claimed) = st.claim_lowest() {
        // Only with a watchdog asked for: it stays until no batch is left,
        // and frees a batch whose worker is stuck.
        let watched = (st.pool.watchdog && !st.pool.watchdog_refused) || shared.config.claim_ahead_unwatched;
        if claim_ahead && watched && !may_wake_idle(shared, st) {
            batch::claim_ahead(st, slot, own);
        }
        return Some(claimed);
    }
    batch::steal(
        st,
        Want::Stranded {
            stranded_before: stranded_before(st)?,
        },
    )
}

/// Batches whose worker started its current run before this are stranded:
/// `FLUSH_AFTER` ago, or now if no watchdog will come to free them.
fn stranded_before(st: &State) -> Option<Instant> {
    if st.pool.watchdog_refused {
        Some(now())
    } else {
        now().checked_sub(FLUSH_AFTER)
    }
}

/// Whether an idle worker would find a call in a stranded batch: it looks
/// before it parks or leaves, as it looks at the queue (after a refused
/// watchdog nothing else would wake it for one).
fn has_stranded_calls(st: &State) -> bool {
    stranded_calls_now(st) > 0
}

/// How many calls sit in batches stranded as of now.
fn stranded_calls_now(st: &State) -> usize {
    stranded_before(st).map_or(0, |before| batch::stranded_calls(st, before))
}

/// Rule 4: the stall watchdog. Runs only while calls are queued.
pub(crate) fn watchdog_main(shared: Arc<Shared>) {
    let mut st = shared.lock();
    let Some(tick) = shared.config.stall_timeout else {
        st.pool.watchdog = false;
        shared.notify_drain(&st);
        return;
    };
    st.pool.watchdog_running = true;
    st.pool.watchdog_refused = false;
    let mut started_before = st.counters.started;
    loop {
        if st.queued == 0 && st.pool.claimed_ahead == 0 {
            // Nothing waits: no idle worker is held back, no batch is left.
            st.pool.watchdog_running = false;
            st.pool.watchdog = false;
            shared.notify_drain(&st);
            return;
        }
        st = match now().checked_add(tick) {
            Some(deadline) => shared.watchdog_cv.wait_until(st, deadline).0,
            // A tick too long to express is a watchdog that never fires.
            None => shared.watchdog_cv.wait(st),
        };
        let started = st.counters.started - started_before;
        started_before = st.counters.started;
        // What waits for a thread: queued calls nobody is on the way for,
        // and calls in batches whose worker has sat in one call for
        // FLUSH_AFTER. (Calls a worker ran from its batch but has not
        // recorded yet count as claimed ahead, not here.)
        let stranded = stranded_calls_now(&st);
        let waiting = queued_uncovered(&st) + stranded;
        if waiting == 0 || st.pool.notified > 0 {
            // Covered, or woken workers are on their way: not a stall, even
            // if the CPUs are too busy to run them yet.
            continue;
        }
        let running = st.pool.awake();
        if st.pool.idle_available() && (stranded > 0 || may_wake_idle(&shared, &st)) {
            // Parked workers take stranded calls (the queue may be empty, so
            // nobody else wakes them; a batch may hold probes claimed after
            // short calls, each of which blocks) or queued calls the limit
            // allows again: as many as are awake, at most, as for a stall.
            wake_idle(&shared, &mut st, waiting.min(running.max(1)));
            continue;
        }
        if started >= running.max(1) as u64 {
            // At least a call per running worker started this tick: the
            // workers are not stuck, only busy (or preempted on a loaded
            // machine). More threads would only compete for the CPUs.
            continue;
        }
        let at = now();
        // Stalled: a worker has sat in one call for a tick, or no worker is
        // running a call at all (none started, or all blocked at the cap).
        let mut running_calls = st.pool.slots.iter().filter_map(|(_, w)| w.busy_since).peekable();
        let stalled = running_calls.peek().is_none() || running_calls.any(|t| at.duration_since(t) >= tick);
        if !stalled {
            continue;
        }
        // Double the running workers (at least one more), but add no more
        // than the calls waiting for a thread. Idle workers first; new ones
        // never past the cap.
        let want = waiting.min(running.max(1));
        let woken = wake_idle(&shared, &mut st, want);
        // New workers only once those asked for before have started (an
        // executor may hold starts back); parked ones are woken regardless.
        let growth = if st.pool.starting > 0 {
            Growth::default()
        } else {
            reserve_workers(&shared, &mut st, want - woken)
        };
        if woken + growth.workers == 0 {
            continue;
        }
        st.counters.stalls += 1;
        drop(st);
        observe::stalled(woken + growth.workers, running);
        grow(&shared, growth);
        st = shared.lock();
    }
}
