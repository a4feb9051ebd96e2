//! Cancelling queued calls: taken out of their domain under the lock (they
//! count as finished for every barrier), then, with the lock released,
//! their closures dropped and their items told, and only then the waiters
//! woken.

use crate::engine::run::catch;
use crate::engine::shared::Shared;
use crate::model::call::Body;
use crate::model::domain::DomainId;
use crate::model::state::{State, Wakeups};
use crate::Cookie;

impl Shared {
    /// Cancels call `cookie` of `domain` if it is queued and has not
    /// started; returns whether it did.
    pub(crate) fn cancel_call(&self, domain: DomainId, cookie: Cookie) -> bool {
        let mut wakeups = Wakeups::default();
        let mut st = self.lock();
        let Some(body) = st.cancel(domain, cookie, &mut wakeups) else {
            return false;
        };
        self.after_cancel(&st);
        drop(st);
        self.settle_cancelled(std::iter::once(body), wakeups);
        true
    }

    /// Cancels every queued, unstarted call of `domain`; returns how many.
    pub(crate) fn cancel_domain(&self, domain: DomainId) -> usize {
        let mut wakeups = Wakeups::default();
        let mut cancelled = Vec::new();
        let mut st = self.lock();
        st.cancel_domain(domain, &mut cancelled, &mut wakeups);
        self.after_cancel(&st);
        drop(st);
        let n = cancelled.len();
        self.settle_cancelled(cancelled.into_iter().map(|(_, body)| body), wakeups);
        n
    }

    /// What cancelled calls leave to do, with the lock released: their
    /// closures dropped (a task's too), then their items told under the
    /// lock (an owned one comes back as cancelled, one nobody will take
    /// back is freed), then the waiters woken, so a barrier or handle that
    /// waited for the call sees its closure gone. Drops and frees are user
    /// code: a panic there is contained (the call never ran, so there is no
    /// call to report it against).
    fn settle_cancelled(&self, bodies: impl Iterator<Item = Body>, mut wakeups: Wakeups) {
        let mut items = Vec::new();
        for body in bodies {
            match body {
                Body::Item(item) => items.push(item),
                Body::Async(make, item) => {
                    let _ = catch(move || drop(make));
                    items.extend(item);
                }
                body @ Body::Blocking(_) => {
                    let _ = catch(move || drop(body));
                }
            }
        }
        let mut to_free = Vec::new();
        if !items.is_empty() {
            for item in &items {
                let _ = catch(|| item.tell_cancelled());
            }
            let mut st = self.lock();
            for item in items {
                to_free.extend(item.cancel(&mut st, &mut wakeups));
            }
        }
        wakeups.wake_all();
        for item in to_free {
            let _ = catch(move || item.free());
        }
    }

    /// Fewer calls are pending: a scheduler waiting for room, or a drain,
    /// may go on.
    fn after_cancel(&self, st: &State) {
        if st.space_waiters > 0 {
            self.space_cv.notify_all();
        }
        self.notify_drain(st);
    }
}
