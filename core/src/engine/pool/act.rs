//! Carrying the growth rule's decisions out: the one place where workers are
//! notified and threads are started.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{watchdog, worker};
use crate::base::executor::WorkerSpec;
use crate::engine::observe;
use crate::engine::shared::Shared;
use crate::model::growth::{Actions, Phase};
use crate::model::ids::DomainId;
use crate::model::state::State;
use crate::Cookie;

/// Notifies the workers `actions` woke (under the lock, where they were
/// chosen) and returns what to start once the lock is released.
pub(crate) fn notify_woken(st: &mut State, actions: Actions) -> Actions {
    if actions.woken > 0 {
        for parker in st.pool.drain_woken() {
            parker.notify_one();
        }
    }
    actions
}

/// Carries `actions` out: notifies the woken workers now, under the lock,
/// and starts threads after releasing it. Takes the guard and gives it
/// back (the same, or a new one when threads were started).
pub(crate) fn apply<'a>(
    shared: &'a Arc<Shared>,
    mut st: crate::base::sync::MutexGuard<'a, State>,
    actions: Actions,
) -> crate::base::sync::MutexGuard<'a, State> {
    let start = notify_woken(&mut st, actions);
    if !start.threads_to_start() {
        return st;
    }
    drop(st);
    start_threads(shared, start);
    shared.lock()
}

/// Starts the threads `actions` asked for. Called with the lock released.
pub(crate) fn start_threads(shared: &Arc<Shared>, actions: Actions) {
    if actions.start_workers > 0 {
        start_unstarted(shared);
    }
    if actions.start_watchdog {
        let spec = WorkerSpec::new(format!("{}-watchdog", shared.config.thread_name), None);
        let reservation = Reservation {
            shared: Some(shared.clone()),
            slot: None,
        };
        let _ = shared
            .executor
            .spawn_worker(spec, Box::new(move || watchdog::main(reservation.start())));
    }
}

/// Decides who runs a call that was just queued, and acts on it.
pub(crate) fn on_enqueue(shared: &Arc<Shared>, st: &mut State, domain: DomainId, cookie: Cookie) -> Actions {
    let s = &shared.config.pool;
    let actions = if st.pool.would_wake_for_call(s) {
        // Wake at most FAN_OUT workers from the scheduling thread; they
        // wake the rest.
        st.pool.on_enqueue(s, st.queued)
    } else if st.wake_helper_for(domain, cookie) {
        // A waiter blocked on a barrier covering the call runs it. Only
        // `Domain::unregister` can take the call out of its range before it
        // does; that dispatches the domain's queued calls.
        Actions::default()
    } else {
        let queued = st.queued;
        st.pool.dispatch(s, queued, 0)
    };
    notify_woken(st, actions)
}

/// Finds threads for the queued calls nobody is on the way for, as their
/// scheduling would have (`Domain::unregister`: a call handed to a helper
/// may have left the helper's range).
pub(crate) fn dispatch_waiting<'a>(
    shared: &'a Arc<Shared>,
    mut st: crate::base::sync::MutexGuard<'a, State>,
) -> crate::base::sync::MutexGuard<'a, State> {
    let queued = st.queued;
    if st.pool.waiting_for_thread(queued) == 0 {
        return st;
    }
    let actions = st.pool.dispatch(&shared.config.pool, queued, 1);
    apply(shared, st, actions)
}

/// Starts `min_workers` at build time.
pub(crate) fn start_min_workers(shared: &Arc<Shared>) {
    let start_workers = shared
        .lock()
        .pool
        .reserve(&shared.config.pool, shared.config.pool.min_workers);
    start_threads(
        shared,
        Actions {
            start_workers,
            ..Actions::default()
        },
    );
}

/// Hands reserved workers to the executor until none are left.
pub(crate) fn start_unstarted(shared: &Arc<Shared>) {
    loop {
        let Some(slot) = shared.lock().pool.take_unstarted() else {
            return;
        };
        let n = shared.worker_names.fetch_add(1, Ordering::Relaxed);
        let spec = WorkerSpec::new(format!("{}-{}", shared.config.thread_name, n), shared.config.stack_size);
        let reservation = Reservation {
            shared: Some(shared.clone()),
            slot: Some(slot),
        };
        // On refusal the body is dropped and the reservation undoes itself:
        // the runtime keeps going with the workers it has.
        let _ = shared
            .executor
            .spawn_worker(spec, Box::new(move || worker::main(reservation.start(), slot)));
    }
}

/// Undoes a thread's reservation if the executor drops its body uncalled
/// (or refuses to start it), so the pool's state stays true.
struct Reservation {
    shared: Option<Arc<Shared>>,
    /// The worker's slot; `None` for the watchdog.
    slot: Option<usize>,
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
        let Some(shared) = self.shared.take() else {
            return;
        };
        observe::spawn_refused(&shared);
        let mut st = shared.lock();
        st.counters.spawn_failures += 1;
        let retry = match self.slot {
            None => {
                st.pool.watchdog_refused();
                false
            }
            Some(slot) => {
                let queued = st.queued;
                st.pool.start_refused(&shared.config.pool, slot, queued)
            }
        };
        shared.notify_drain(&st);
        drop(st);
        if retry {
            start_threads(
                &shared,
                Actions {
                    start_watchdog: true,
                    ..Actions::default()
                },
            );
        }
    }
}

/// A worker counted as blocked (*compensate at once*), to be unblocked with
/// [`unblock_worker`].
#[must_use]
pub(crate) struct BlockedWorker {
    slot: usize,
    before: Phase,
}

/// *Compensate at once*: this thread, worker `slot`, is about to block in a kasync wait
/// or a pending async call. A parked worker takes its place, or a new one
/// starts. Returns the guard (released and taken again if threads were
/// started).
pub(crate) fn block_worker<'a>(
    shared: &'a Arc<Shared>,
    mut st: crate::base::sync::MutexGuard<'a, State>,
    slot: usize,
) -> (crate::base::sync::MutexGuard<'a, State>, BlockedWorker) {
    let queued = st.queued;
    let (before, actions) = st.pool.on_block(&shared.config.pool, slot, queued);
    let blocked = BlockedWorker { slot, before };
    let start = notify_woken(&mut st, actions);
    if !start.threads_to_start() {
        return (st, blocked);
    }
    let compensated = start.start_workers > 0;
    if compensated {
        st.counters.compensations += 1;
    }
    drop(st);
    if compensated {
        observe::compensated();
    }
    start_threads(shared, start);
    (shared.lock(), blocked)
}

impl BlockedWorker {
    /// The blocked worker's slot.
    pub(crate) fn slot(&self) -> usize {
        self.slot
    }
}

/// The worker blocked by [`block_worker`] runs again.
pub(crate) fn unblock_worker(st: &mut State, blocked: BlockedWorker) {
    debug_assert_eq!(st.pool.phase(blocked.slot), Phase::Blocked);
    st.pool.set_phase(blocked.slot, blocked.before);
}
