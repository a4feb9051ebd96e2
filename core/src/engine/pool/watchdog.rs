//! The watchdog thread (*grow by progress*): exists only while calls are queued behind
//! a busy pool, and looks at it once per `stall_timeout`.

use std::sync::Arc;

use super::act::{notify_woken, start_threads};
use super::progress::Sampler;
use crate::base::sync::now;
use crate::engine::observe;
use crate::engine::shared::{ProgressSignal, Shared};
use crate::model::growth::Tick;

pub(crate) fn main(shared: Arc<Shared>) {
    let settings = &shared.config.pool;
    let mut sampler = Sampler::new();
    let mut st = shared.lock();
    st.pool.watchdog_started();
    let mut started_before = st.counters.started;
    loop {
        // A tick too long to express is refused by `Builder::build`; were
        // one to slip through, it would be a watchdog that never fires.
        let tick = settings.tick;
        let pause = tick.map(|tick| tick * st.pool.pace());
        st = match pause.and_then(|pause| now().checked_add(pause)) {
            Some(deadline) if st.queued > 0 => shared.watchdog_cv.wait_until(st, deadline).0,
            _ => st,
        };
        // Look at the workers running calls, with the lock released, while
        // calls wait.
        let running = st.pool.running_workers();
        let looking = shared.config.progress == ProgressSignal::Auto && cfg!(target_os = "linux");
        let facts = match tick {
            Some(tick) if looking && st.queued > 0 => {
                drop(st);
                let facts = sampler.judge(&running, tick);
                st = shared.lock();
                Some(facts)
            }
            _ if looking => Some(Vec::new()),
            _ => None,
        };
        let started = st.counters.started - started_before;
        started_before = st.counters.started;
        let awake = st.pool.awake();
        let queued = st.queued;
        match st.pool.on_tick(settings, queued, started, facts.as_deref()) {
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
