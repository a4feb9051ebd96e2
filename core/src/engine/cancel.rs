//! Cancelling queued calls, in steps so no barrier over a cancelled call
//! returns before what it held is gone: (1) under the lock, the calls leave
//! their queue, still pending, their bodies in place; then, one call at a
//! time in cookie order, (2) its body is taken and, with the lock released
//! and inside a frame for the call, dropped (a task's closure too) and an
//! item nobody will take back freed (`run::settle`), and (3) under the
//! lock, an owned item learns it was cancelled and the call ends, counting
//! as finished for every barrier; waiters wake after that. A thread that
//! waits for one cancelled call before its turn settles it itself.

use std::sync::Arc;

use crate::engine::run;
use crate::engine::shared::Shared;
use crate::model::ids::DomainId;
use crate::Cookie;

impl Shared {
    /// Cancels call `cookie` of `domain` if it is queued and has not
    /// started; returns whether it did.
    pub(crate) fn cancel_call(self: &Arc<Self>, domain: DomainId, cookie: Cookie) -> bool {
        if !self.lock().cancel(domain, cookie) {
            return false;
        }
        self.settle_cancelled(domain, &[cookie]);
        true
    }

    /// Cancels every queued, unstarted call of `domain` but items borrowed
    /// by a scope; returns how many.
    pub(crate) fn cancel_domain(self: &Arc<Self>, domain: DomainId) -> usize {
        let mut cancelled = Vec::new();
        self.lock().cancel_domain(domain, &mut cancelled);
        self.settle_cancelled(domain, &cancelled);
        cancelled.len()
    }

    /// Settles the cancelled calls, one at a time in cookie order, each
    /// ended before the next one's drop runs: a drop that waits for an
    /// earlier call of the same cancellation finds it ended. One a thread
    /// waiting for it settled first is skipped.
    fn settle_cancelled(self: &Arc<Self>, domain: DomainId, cookies: &[Cookie]) {
        for &cookie in cookies {
            let Some(claimed) = self.lock().take_cancelled(domain, cookie) else {
                continue;
            };
            if let Some(finished) = run::execute(self, claimed) {
                self.finish_call(domain, cookie, finished);
            }
        }
    }
}
