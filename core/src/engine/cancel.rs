//! Cancelling queued calls, in three steps so no barrier over a cancelled
//! call returns before what it held is gone: (1) under the lock, the call
//! leaves its queue, still pending; (2) with the lock released, its closure
//! is dropped (a task's too) and an item nobody will take back is freed;
//! (3) under the lock, an owned item learns it was cancelled and the call
//! ends, counting as finished for every barrier; waiters wake after that.

use crate::engine::observe;
use crate::engine::run::catch;
use crate::engine::shared::Shared;
use crate::model::call::Body;
use crate::model::domain::DomainId;
use crate::model::item::ItemCall;
use crate::model::state::{State, Wakeups};
use crate::Cookie;

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
    /// frees are user code: a panic there is contained (the call never ran,
    /// so there is no call to report it against).
    fn settle_cancelled(&self, domain: DomainId, calls: Vec<(Cookie, Body)>) {
        let mut ended = Vec::with_capacity(calls.len());
        let mut items: Vec<(Cookie, ItemCall)> = Vec::new();
        for (cookie, body) in calls {
            observe::cancelled(self, cookie);
            match body {
                Body::Item(item) => items.push((cookie, item)),
                Body::Async(make, item) => {
                    let _ = catch(move || drop(make));
                    match item {
                        Some(item) => items.push((cookie, item)),
                        None => ended.push(cookie),
                    }
                }
                body @ Body::Blocking(_) => {
                    let _ = catch(move || drop(body));
                    ended.push(cookie);
                }
            }
        }
        for (_, item) in &items {
            let _ = catch(|| item.tell_cancelled());
        }
        let mut wakeups = Wakeups::default();
        loop {
            let mut st = self.lock();
            let mut to_free = Vec::new();
            for (cookie, item) in items.drain(..) {
                match item.cancel(&mut st, &mut wakeups) {
                    Some(item) => to_free.push((cookie, item)),
                    None => st.finish_cancelled(domain, cookie, &mut wakeups),
                }
            }
            for cookie in ended.drain(..) {
                st.finish_cancelled(domain, cookie, &mut wakeups);
            }
            if to_free.is_empty() {
                self.after_cancel(&st);
                break;
            }
            // Nobody will take these back: freed before their calls end,
            // as a detached item is freed before its call counts finished.
            drop(st);
            for (cookie, item) in to_free {
                let _ = catch(move || item.free());
                ended.push(cookie);
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
