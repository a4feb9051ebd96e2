//! Shutting a runtime down: run or wait for every unfinished call, then for
//! every worker to leave.

use crate::base::error::SyncError;
use crate::base::executor::Blocking;
use crate::base::sync::{now, MutexGuard};
use crate::engine::blocking::{block_permitted, blocking_permission};
use crate::engine::context::{self};
use crate::engine::pool::{self};
use crate::engine::shared::Shared;
use crate::model::state::State;
use std::sync::Arc;
use std::time::Instant;

impl Shared {
    /// Shuts the runtime down: runs or waits for every unfinished call, in
    /// every domain, then lets the workers go and waits until they have
    /// left. See [`Runtime::shutdown`].
    pub(crate) fn shut_down(self: &Arc<Self>, deadline: Option<Instant>) -> Result<(), SyncError> {
        let refused = if let Some(waiter) = context::find_own_call(self.id(), |_| true) {
            // Draining would wait for the very call we are in.
            Some(SyncError::WouldDeadlock { waiter })
        } else if context::worker_slot(self.id()).is_some() {
            // Outside any call, but on one of our own workers (the last
            // handle lived in state a worker dropped): waiting for every
            // worker to leave would wait for this thread.
            Some(SyncError::BlockingNotAllowed {
                executor: self.executor.name(),
                reason: crate::base::error::OWN_WORKER,
            })
        } else {
            match blocking_permission(self) {
                Blocking::Forbidden(reason) => Some(SyncError::BlockingNotAllowed {
                    executor: self.executor.name(),
                    reason,
                }),
                permission => {
                    let st = self.lock();
                    return block_permitted(self, st, permission, |st| self.drain(st, deadline));
                }
            }
        };
        // Cannot wait here: the calls still run, and workers leave once the
        // queue is empty.
        self.release_workers(&mut self.lock());
        Err(refused.unwrap_or(SyncError::TimedOut))
    }

    /// Idle workers leave now instead of after `keep_alive`; busy ones once
    /// the queue is empty.
    fn release_workers(&self, st: &mut State) {
        st.shutdown = true;
        let woken = st.pool.on_shutdown();
        let _ = pool::notify_woken(st, woken);
        self.watchdog_cv.notify_all();
    }

    /// Waits until every call has finished and every worker has left.
    /// Without a deadline it runs queued calls itself meanwhile (when
    /// helping is on, or when no worker is left to run them); with one it
    /// runs none, so it can return on time.
    fn drain<'a>(
        self: &'a Arc<Self>,
        mut st: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> Result<(), SyncError> {
        // Idle workers leave now, busy ones once the queue is empty.
        self.release_workers(&mut st);
        loop {
            if st.pending == 0 && st.pool.workers() == 0 && st.pool.watchdog == pool::Watchdog::Off {
                return Ok(());
            }
            let runs_calls = deadline.is_none() && (self.config.help || st.pool.workers() == 0);
            if runs_calls {
                if let Some(claimed) = st.claim_lowest() {
                    st.counters.helped += 1;
                    drop(st);
                    self.run_claimed(claimed);
                    st = self.lock();
                    continue;
                }
            }
            if deadline.is_some_and(|d| now() >= d) {
                return Err(SyncError::TimedOut);
            }
            st.drain_waiters += 1;
            st.drain_runners += usize::from(runs_calls);
            st = match deadline {
                Some(d) => self.drain_cv.wait_until(st, d).0,
                None => self.drain_cv.wait(st),
            };
            st.drain_waiters -= 1;
            st.drain_runners -= usize::from(runs_calls);
        }
    }
}
