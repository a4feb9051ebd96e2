//! Cancelling queued calls, in three steps so no barrier over a cancelled
//! call returns before what it held is gone: (1) under the lock, the call
//! leaves its queue, still pending; (2) with the lock released and inside
//! a frame for the call, its closure is dropped (a task's too) and an item
//! nobody will take back is freed; (3) under the lock, an owned item learns
//! it was cancelled and the call ends, counting as finished for every
//! barrier; waiters wake after that.

use crate::engine::observe;
use crate::engine::run::catch;
use crate::engine::shared::Shared;
use crate::model::call::{Body, Outcome};
use crate::model::ids::DomainId;
use crate::model::item::ItemCall;
use crate::model::state::{State, Wakeups};
use crate::Cookie;

/// A cancelled call between leaving its queue and ending.
struct Settling {
    cookie: Cookie,
    /// A panic while dropping what it held.
    outcome: Outcome,
    /// Its item, until the item learns it was cancelled.
    item: Option<ItemCall>,
}

impl Shared {
    /// Cancels call `cookie` of `domain` if it is queued and has not
    /// started; returns whether it did.
    pub(crate) fn cancel_call(&self, domain: DomainId, cookie: Cookie) -> bool {
        let Some(body) = self.lock().cancel(domain, cookie) else {
            return false;
        };
        self.settle_cancelled(domain, vec![(cookie, body)]);
        true
    }

    /// Cancels every queued, unstarted call of `domain` but items borrowed
    /// by a scope; returns how many.
    pub(crate) fn cancel_domain(&self, domain: DomainId) -> usize {
        let mut cancelled = Vec::new();
        self.lock().cancel_domain(domain, &mut cancelled);
        let n = cancelled.len();
        if n > 0 {
            self.settle_cancelled(domain, cancelled);
        }
        n
    }

    /// Steps (2) and (3) for calls taken out of `domain`'s queue. Drops and
    /// frees are user code, and run where a call's own drops run: inside a
    /// frame for that call on this thread, so a drop that waits on its own
    /// call, or drops the runtime's last handle, is refused instead of
    /// hanging (the call is still pending). A panic there is the call's
    /// panic, reported by the barriers covering it.
    fn settle_cancelled(&self, domain: DomainId, calls: Vec<(Cookie, Body)>) {
        let mut settling: Vec<Settling> = calls
            .into_iter()
            .map(|(cookie, body)| {
                observe::cancelled(self, cookie);
                let _frame = self.call_frame(domain, cookie);
                let (outcome, item) = match body {
                    Body::Item(item) => (catch(|| item.tell_cancelled()), Some(item)),
                    Body::Async(make, item) => (catch(move || drop(make)), item),
                    body @ Body::Blocking(_) => (catch(move || drop(body)), None),
                };
                Settling { cookie, outcome, item }
            })
            .collect();
        let mut wakeups = Wakeups::default();
        loop {
            let mut st = self.lock();
            let mut to_free = Vec::new();
            for call in settling.drain(..) {
                // An owned item learns it was cancelled; one nobody will take
                // back is freed before its call ends, as a detached item is
                // freed before its call counts as finished.
                match call.item.and_then(|item| item.cancel(&mut st, &mut wakeups)) {
                    Some(item) => to_free.push((call.cookie, call.outcome, item)),
                    None => st.finish_cancelled(domain, call.cookie, call.outcome, &mut wakeups),
                }
            }
            if to_free.is_empty() {
                self.after_cancel(&st);
                break;
            }
            drop(st);
            for (cookie, outcome, item) in to_free {
                let _frame = self.call_frame(domain, cookie);
                let freed = catch(move || item.free());
                settling.push(Settling {
                    cookie,
                    outcome: outcome.and(freed),
                    item: None,
                });
            }
        }
        wakeups.wake_all();
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
