//! A worker thread's loop: claim the lowest queued cookie (*lowest cookie first*), run it,
//! and when nothing is queued spin briefly, then park until woken or until
//! `keep_alive` passes (*cap and shrink*).

use std::sync::Arc;
use std::time::Instant;

use super::act::{notify_woken, start_threads, start_unstarted};
use crate::base::os_thread::OsThread;
use crate::base::sync::{now, passed, spin_until_changed, within};
use crate::engine::context;
use crate::engine::observe;
use crate::engine::run;
use crate::engine::shared::{ProgressSignal, Shared};
use crate::model::growth::{Phase, FAN_OUT, SHORT_CALL, SPIN_FOR};

/// Worker `slot`'s thread.
pub(crate) fn main(shared: Arc<Shared>, slot: usize) {
    let parker = context::thread_condvar();
    // Read once, here: the watchdog looks at the thread by this name.
    let thread = match shared.config.progress {
        ProgressSignal::Auto => OsThread::current(),
        _ => None,
    };
    {
        let mut st = shared.lock();
        st.pool.started(slot, parker.clone(), thread.clone());
        st.counters.spawned += 1;
    }
    context::set_worker(shared.id(), slot);
    observe::worker_started(&shared);
    start_unstarted(&shared);
    let settings = &shared.config.pool;
    // Whether this worker's last call was short: only then is a new call
    // likely to come while it spins when idle. After a long call (a probe
    // that slept 20 ms) a spin rarely finds one, and it would take a CPU
    // and a spinner's place from a waiter about to be satisfied.
    let mut spin_when_idle = true;
    // When its current call started: the clock is read once per call, at
    // its start, which is also about when the call before it ended.
    let mut current_since: Option<Instant> = None;
    let mut st = shared.lock();
    loop {
        if let Some(claimed) = st.claim_lowest() {
            let started = now();
            if let Some(previous) = current_since.replace(started) {
                spin_when_idle = within(previous, started, SHORT_CALL);
                st.pool.calls_are_short = spin_when_idle;
            }
            st.pool.set_phase(slot, Phase::Running);
            let queued = st.queued;
            let actions = st.pool.dispatch(settings, queued, FAN_OUT);
            let start = notify_woken(&mut st, actions);
            drop(st);
            if start.threads_to_start() {
                start_threads(&shared, start);
            }
            let (domain, cookie) = (claimed.domain, claimed.cookie);
            let in_call = thread.as_ref().inspect(|t| t.set_in_call(true));
            let finished = run::execute(&shared, claimed);
            if let Some(t) = in_call {
                t.set_in_call(false);
            }
            // Its end is recorded in the critical section that claims the
            // next call: one lock per call.
            st = shared.lock();
            if let Some(finished) = finished {
                let (guard, wakeups) = shared.record_end(st, domain, cookie, finished);
                st = shared.wake_unlocked(guard, wakeups);
            }
            continue;
        }
        if let Some(previous) = current_since.take() {
            spin_when_idle = !passed(previous + SHORT_CALL);
            st.pool.calls_are_short = spin_when_idle;
        }
        if st.shutdown {
            break;
        }
        if spin_when_idle && st.pool.may_spin(settings) {
            st.pool.set_phase(slot, Phase::Spinning);
            let seen = shared.enqueued.load(std::sync::atomic::Ordering::Relaxed);
            drop(st);
            spin_until_changed(&shared.enqueued, seen, SPIN_FOR);
            st = shared.lock();
            if st.queued > 0 || st.shutdown {
                // Take the call, or leave: a shutdown's wake-up may have
                // come while this worker was spinning, not parked.
                continue;
            }
        }
        st.pool.set_phase(slot, Phase::Parked);
        // A keep-alive too long to express as a deadline means "forever".
        let deadline = now().checked_add(shared.config.keep_alive);
        let retire = loop {
            let (guard, timed_out) = match deadline {
                Some(deadline) => parker.wait_until(st, deadline),
                None => (parker.wait(st), false),
            };
            st = guard;
            if st.pool.phase(slot) == Phase::Notified {
                break false;
            }
            if timed_out {
                let queued = st.queued;
                break st.pool.should_retire(settings, slot, true, queued);
            }
            // Woken spuriously: still parked.
        };
        if retire {
            break;
        }
    }
    st.pool.remove(slot);
    shared.notify_drain(&st);
    drop(st);
    context::clear_worker();
}
