//! Scheduling: the admission rule (`Overflow`), assigning the cookie and
//! queueing in one step, and finding the call a thread.

use crate::engine::observe::{self};
use crate::engine::pool::{self};
use crate::engine::shared::{Admission, Overflow, Shared};
use crate::model::call::Body;
use crate::model::ids::DomainId;
use crate::model::ids::Scope;
use crate::model::state::{State, Wakeups};
use crate::Cookie;
use std::sync::Arc;

impl Shared {
    /// Schedules the body `make` returns, applying the admission rule. `None`
    /// when the call was refused (`make` was not called).
    pub(crate) fn schedule(
        self: &Arc<Self>,
        domain: DomainId,
        make: &mut dyn FnMut(&mut State) -> Body,
        admission: Admission,
    ) -> Option<Cookie> {
        let mut st = self.lock();
        let mut inline = false;
        while st.pending >= self.config.max_pending {
            match (admission, self.config.overflow) {
                (Admission::Try, _) | (Admission::Policy, Overflow::Reject) => return None,
                (Admission::Policy, Overflow::RunInline) => {
                    inline = true;
                    break;
                }
                (Admission::Policy, Overflow::Block) if !self.may_block_for_room() => {
                    // Inside a call (waiting for room could wait on itself)
                    // or where blocking would stall an async runtime: run
                    // inline instead, as the kernel does.
                    inline = true;
                    break;
                }
                (Admission::Policy, Overflow::Block) => {
                    // Make room by running the lowest queued call ourselves.
                    if let Some(claimed) = st.claim_lowest() {
                        st.counters.helped += 1;
                        drop(st);
                        self.run_claimed(claimed);
                        st = self.lock();
                    } else {
                        st.space_waiters += 1;
                        st = self.space_cv.wait(st);
                        st.space_waiters -= 1;
                    }
                }
            }
        }
        let body = make(&mut st);
        let cookie = st.enqueue(domain, body);
        if st.pool.count(pool::Phase::Spinning) > 0 {
            // Only spinning idle workers watch it. One that starts spinning
            // later looks at the queue first, under this lock.
            self.enqueued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        observe::queued(self, &st, domain, cookie);
        self.notify_drain(&st);
        if inline {
            // Run the domain's earlier queued calls and then this one here,
            // so started calls stay a prefix of the domain's cookie order.
            while let Some(claimed) = st.claim_for(Scope::Domain(domain), cookie.get() + 1) {
                drop(st);
                self.run_claimed(claimed);
                st = self.lock();
            }
            return Some(cookie);
        }
        let start = pool::on_enqueue(self, &mut st, domain, cookie);
        // A pending async call may await it: nudge its waiters to run it.
        let mut wakeups = Wakeups::default();
        st.nudge_awaiting(domain, cookie, &mut wakeups);
        drop(st);
        wakeups.wake_all();
        if start.threads_to_start() {
            pool::start_threads(self, start);
        }
        Some(cookie)
    }

    /// Whether `schedule` may block this thread until there is room.
    fn may_block_for_room(&self) -> bool {
        crate::engine::context::find_own_call(self.id(), |_| true).is_none()
            && crate::engine::blocking::blocking_permission(self) == crate::base::executor::Blocking::Allowed
    }
}
