//! The one blocking-wait loop that barriers, items and scopes share: the
//! growth rule's *borrow the waiter's thread* (help with what you wait for)
//! and *compensate at once* (a worker that must block is replaced),
//! applied to the calling thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::act::{self, BlockedWorker};
use crate::base::sync::{now, spin_until, MutexGuard};
use crate::engine::context;
use crate::engine::observe;
use crate::engine::run;
use crate::engine::shared::Shared;
use crate::model::call::Claimed;
use crate::model::domain::DomainHint;
use crate::model::growth::{Phase, SPIN_FOR};
use crate::model::ids::Scope;
use crate::model::state::{State, Wake, NEAR_CALLS};

/// Takes a queued call the wait depends on, for the waiting thread to run
/// (*borrow the waiter's thread*): a barrier's lowest covered call ([`State::claim_for_barrier`]),
/// the one call a task or item wait is for ([`State::claim_for_call`]), or
/// one of a scope's own calls.
pub(crate) type Helper<'a> = &'a mut dyn FnMut(&mut State) -> Option<Claimed>;

/// What a blocking wait waits for and how.
pub(crate) struct Wait<'a> {
    /// The calls it waits for, at most: `scope`, cookies below `below` (a
    /// wait for one call: its domain, below the cookie after it). For the
    /// timeline and for spinning.
    pub(crate) scope: Scope,
    pub(crate) below: u64,
    /// The domain's name, for waits whose handle does not keep the domain
    /// alive (its slot may be gone, or reused, once the wait is done).
    pub(crate) domain_name: Option<&'a str>,
    /// How it helps, if the caller allows helping at all.
    pub(crate) help: Option<Helper<'a>>,
    pub(crate) deadline: Option<Instant>,
}

/// Blocks the calling thread until `is_done`, applying *borrow the waiter's thread* and *compensate at once*: it runs
/// queued calls the wait covers (up to `help_depth` deep), and a worker about
/// to block is replaced when calls are queued. `arm` registers how to wake
/// this thread (and whether it helps) with the thing waited for. Returns the
/// guard and `false` if the deadline passed.
pub(crate) fn block_until<'a>(
    shared: &'a Arc<Shared>,
    mut st: MutexGuard<'a, State>,
    mut wait: Wait<'_>,
    is_done: &mut dyn FnMut(&mut State) -> bool,
    arm: &mut dyn FnMut(&mut State, Wake, bool) -> Wake,
) -> (MutexGuard<'a, State>, bool) {
    let may_help = shared.config.help && context::depth() < shared.config.help_depth;
    let mut helper = wait.help.take().filter(|_| may_help);
    let observed_since = observe::wait_started(shared);
    let mut helped = 0;
    let worker_slot = context::worker_slot(shared.id());
    let mut blocked: Option<BlockedWorker> = None;
    let cv = context::thread_condvar();
    // Whether this thread spun since it last parked: it spins at most once
    // per wake-up, then parks.
    let mut spun = false;
    let done = loop {
        if is_done(&mut st) {
            break true;
        }
        if let Some(help) = helper.as_mut() {
            if let Some(claimed) = help(&mut st) {
                st.counters.helped += 1;
                helped += 1;
                // On a worker, the helped call is its current call (for the
                // watchdog), blocked or not before.
                let outer = worker_slot.map(|slot| {
                    let outer = st.pool.phase(slot);
                    st.pool.set_phase(slot, Phase::Running);
                    (slot, outer)
                });
                drop(st);
                let (domain, cookie) = (claimed.domain, claimed.cookie);
                let finished = run::execute(shared, claimed);
                // Its end is recorded in the critical section this loop
                // takes anyway: one lock per helped call, not two.
                st = shared.lock();
                if let Some((slot, outer)) = outer {
                    st.pool.set_phase(slot, outer);
                }
                if let Some(finished) = finished {
                    let (guard, wakeups) = shared.record_end(st, domain, cookie, finished);
                    st = shared.wake_unlocked(guard, wakeups);
                }
                continue;
            }
        }
        if wait.deadline.is_some_and(|d| now() >= d) {
            break false;
        }
        if let (Some(slot), None) = (worker_slot, &blocked) {
            // *Compensate at once*: this worker is about to block in a kasync wait.
            let (guard, worker) = act::block_worker(shared, st, slot);
            st = guard;
            blocked = Some(worker);
            continue;
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
        let replaced = arm(&mut st, Wake::Thread(cv.clone()), helper.is_some());
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
    if let Some(worker) = blocked {
        act::unblock_worker(&mut st, worker);
    }
    if let Some(finished) = observe::wait_finished(&st, wait.scope, wait.below, wait.domain_name, observed_since) {
        drop(st);
        finished.report(shared, helped, true);
        st = shared.lock();
    }
    (st, done)
}

/// Whether a blocking wait should spin before it parks, and on what: only
/// a domain wait for the one call at its domain's front (usually about to
/// end: "register in cookie order"), and only while fewer threads than
/// `spinners` (one per CPU) spin, idle workers and waiters together. Takes
/// a spinner's place.
fn spin_hint(shared: &Shared, st: &mut State, wait: &Wait) -> Option<Arc<DomainHint>> {
    let Scope::Domain(id) = wait.scope else {
        return None;
    };
    if !st.pool.may_spin(&shared.config.pool) {
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
