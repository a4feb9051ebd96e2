//! The watchdog thread (rule 4): exists only while calls are queued behind
//! a busy pool, and looks at it once per `stall_timeout`.

use std::sync::Arc;

use super::act::{notify_woken, start_threads};
use crate::base::sync::now;
use crate::engine::observe;
use crate::engine::shared::Shared;
use crate::model::growth::Tick;

pub(crate) fn main(shared: Arc<Shared>) {
    let settings = &shared.config.pool;
    let mut st = shared.lock();
    st.pool.watchdog_started();
    let mut started_before = st.counters.started;
    loop {
        // A tick too long to express is refused by `Builder::build`; were
        // one to slip through, it would be a watchdog that never fires.
        st = match settings.tick.and_then(|tick| now().checked_add(tick)) {
            Some(deadline) if st.queued > 0 => shared.watchdog_cv.wait_until(st, deadline).0,
            _ => st,
        };
        let started = st.counters.started - started_before;
        started_before = st.counters.started;
        let awake = st.pool.awake();
        let queued = st.queued;
        match st.pool.on_tick(settings, queued, started) {
            Tick::Leave => {
                shared.notify_drain(&st);
                return;
            }
            Tick::Stay { actions, stalled } => {
                if stalled {
                    st.counters.stalls += 1;
                }
                let start = notify_woken(&mut st, actions);
                if stalled || start.threads_to_start() {
                    drop(st);
                    if stalled {
                        observe::stalled(actions.woken + actions.start_workers, awake);
                    }
                    start_threads(&shared, start);
                    st = shared.lock();
                }
            }
        }
    }
}
