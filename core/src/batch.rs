//! Claim-ahead batches: how a worker runs a stream of short calls without
//! taking the runtime's lock for each one.
//!
//! Every call a worker claims costs a trip through the state lock, and with
//! a thread scheduling short calls as fast as it can, that lock moves between
//! cores on every call. So a worker whose last calls were short, when no
//! idle worker would be woken for work (none is idle, or enough are awake
//! after short calls), claims its share of the queue at once (the
//! lowest queued cookies, up to [`MAX_AHEAD`]), keeps the ones it does not
//! run yet in its own [`Batch`], runs them one after the other, and records
//! their ends in one critical section, at the latest [`FLUSH_AFTER`] after
//! the first started.
//!
//! The growth rule is unchanged:
//! 1. A batch holds the lowest queued cookies when it is claimed, so claimed
//!    calls stay a prefix of cookie order.
//! 2. A batch is only its worker's to start first. A helping waiter takes the
//!    calls its barrier covers from any batch ([`steal`]), lowest first, just
//!    as it takes queued ones, so earlier-cookie waits still finish with one
//!    thread.
//! 3. and 4. Batched calls count as queued for compensation and the
//!    watchdog (`PoolState::claimed_ahead`). A batch whose worker has been in
//!    one call for `FLUSH_AFTER`, or is blocked in a kasync wait, is
//!    *stranded*: idle workers the watchdog wakes (doubling the awake ones
//!    per tick), and workers it starts, take its calls. They take queued
//!    calls first, so under a steady stream a stranded call can wait
//!    longer than a tick; a waiter that needs it takes it itself (rule 2).
//!
//! Without the watchdog (`no_stall_watchdog`) workers never claim ahead: a
//! call blocked invisibly could then strand its batch for good.
//!
//! Recording later is what saves the lock trips, and it has two edges. A
//! call that waits on the runtime (a barrier, an item's handle, `stats`)
//! first records the calls its thread ran before it
//! (`Shared::flush_unrecorded`), so it never waits on an end only its own
//! thread could record. A waiter on another thread sees a finished call's
//! end at most `FLUSH_AFTER` plus the run time of the one call its worker
//! started next later: the price of claiming ahead, paid only by streams of
//! calls that each took less than `FLUSH_AFTER`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::call::Claimed;
use crate::state::{Scope, State};
use crate::sync::Mutex;

/// The most calls a worker claims ahead of the one it runs.
pub(crate) const MAX_AHEAD: usize = 31;

/// How long a worker runs calls from its batch before it records their ends
/// (and the watchdog's measure of it is refreshed). Also how long a worker
/// may sit in one call before its batch counts as stranded.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_micros(20);

/// The calls a worker claimed ahead, lowest cookie first. Its own lock is
/// taken by the worker once per call, and by others only to take calls.
pub(crate) struct Batch {
    calls: Mutex<VecDeque<Claimed>>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            calls: Mutex::new(VecDeque::new()),
        }
    }

    /// The worker's next call.
    pub(crate) fn pop(&self) -> Option<Claimed> {
        self.calls.lock().pop_front()
    }
}

/// Claims up to this worker's share of the queued calls into `batch` (the
/// batch of worker `slot`), after the call it just claimed. Called with the
/// state lock held, only when no idle worker would be woken for work.
pub(crate) fn claim_ahead(st: &mut State, slot: usize, batch: &Batch) {
    let active = st.pool.awake().max(1);
    let share = st.queued.div_ceil(active).min(MAX_AHEAD);
    if share == 0 {
        return;
    }
    let mut calls = batch.calls.lock();
    while calls.len() < share {
        match st.claim_lowest() {
            Some(claimed) => calls.push_back(claimed),
            None => break,
        }
    }
    st.pool.claimed_ahead += calls.len();
    st.counters.claimed_ahead += calls.len() as u64;
    drop(calls);
    // Listed under the state lock, as every unlisting is: a batch that
    // fills again after it was found empty is listed again here.
    let worker = &mut st.pool.slots[slot];
    if !worker.listed {
        worker.listed = true;
        st.pool.batched.push(slot);
    }
}

/// Which batched calls a thread may take.
#[derive(Clone, Copy)]
pub(crate) enum Want {
    /// A helping waiter: the calls its barrier covers, from any batch.
    Covered(Scope, u64),
    /// A thread that runs whatever is left (a draining shutdown): any call,
    /// from any batch.
    Any,
    /// An idle worker: any call from a stranded batch (its worker has been
    /// in one call since `stranded_before`, or is blocked in a wait).
    Stranded { stranded_before: Instant },
}

/// Takes, from the workers' batches, the lowest call `want` allows. The
/// batch's worker may start calls meanwhile; a call is taken under the
/// batch's lock, so each still runs exactly once.
pub(crate) fn steal(st: &mut State, want: Want) -> Option<Claimed> {
    if st.pool.claimed_ahead == 0 {
        return None;
    }
    loop {
        let mut best: Option<(usize, u64)> = None;
        let mut at = 0;
        while let Some(&slot) = st.pool.batched.get(at) {
            if let Want::Stranded { stranded_before } = want {
                if !is_stranded(st, slot, stranded_before) {
                    at += 1;
                    continue;
                }
            }
            let calls = st.pool.slots[slot].batch.calls.lock();
            if calls.is_empty() {
                // Its worker ran them all: unlist it until it claims again.
                drop(calls);
                st.pool.batched.swap_remove(at);
                st.pool.slots[slot].listed = false;
                continue;
            }
            // In cookie order: the first wanted call is the batch's lowest.
            let wanted = calls.iter().find(|c| match want {
                Want::Covered(scope, below) => st.covers_call(scope, below, c.domain, c.cookie),
                Want::Any | Want::Stranded { .. } => true,
            });
            if let Some(c) = wanted {
                if best.map_or(true, |(_, lowest)| c.cookie.get() < lowest) {
                    best = Some((slot, c.cookie.get()));
                }
            }
            at += 1;
        }
        let (slot, cookie) = best?;
        let mut calls = st.pool.slots[slot].batch.calls.lock();
        if let Some(at) = calls.iter().position(|c| c.cookie.get() == cookie) {
            let claimed = calls.remove(at);
            drop(calls);
            st.pool.claimed_ahead -= 1;
            return claimed;
        }
        // Its worker started it meanwhile: look again.
    }
}

/// How many calls sit in stranded batches (see [`Want::Stranded`]).
pub(crate) fn stranded_calls(st: &State, stranded_before: Instant) -> usize {
    if st.pool.claimed_ahead == 0 {
        return 0;
    }
    st.pool
        .batched
        .iter()
        .filter(|&&slot| is_stranded(st, slot, stranded_before))
        .map(|&slot| st.pool.slots[slot].batch.calls.lock().len())
        .sum()
}

/// Whether worker `slot` has sat in one run of calls since `stranded_before`,
/// or is blocked in a wait (no run of calls at all).
fn is_stranded(st: &State, slot: usize, stranded_before: Instant) -> bool {
    st.pool.slots[slot]
        .busy_since
        .map_or(true, |since| since <= stranded_before)
}
