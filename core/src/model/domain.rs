//! A domain's state under the lock: its pending calls in cookie order, its
//! waiters, and the lock-free hint of its lowest unfinished cookie.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::base::sync::{AtomicU64, AtomicUsize};
use crate::model::call::Body;
use crate::model::ids::WaiterId;
use crate::Cookie;

/// What a domain's handles may read without taking the runtime's lock, so
/// that a barrier on calls already finished costs no lock. Written under the
/// lock by [`State`](crate::model::state::State); the lowest cookie is stored last
/// (release), after the panic count, so a reader that loads the cookie first
/// (acquire) and sees a call finished also sees its panic.
#[derive(Debug)]
pub(crate) struct DomainHint {
    /// The lowest unfinished cookie, `u64::MAX` when none is unfinished.
    pub(crate) lowest: AtomicU64,
    /// This domain's panics that no barrier has reported yet.
    pub(crate) unreported: AtomicUsize,
}

impl DomainHint {
    /// Whether a barrier below `below` is already satisfied with nothing to
    /// report.
    pub(crate) fn finished_below(&self, below: u64) -> bool {
        self.lowest.load(Ordering::Acquire) >= below && self.unreported.load(Ordering::Acquire) == 0
    }
}

/// One pending call of a domain: queued while it has its `body` and is not
/// `cancelled`; cancelled but not settled while it has both (its body is
/// yet to be dropped, by the cancelling thread or a thread waiting for it);
/// running, or being settled, once its body is taken; then `done`.
struct CallSlot {
    cookie: Cookie,
    body: Option<Body>,
    cancelled: bool,
    done: bool,
}

impl CallSlot {
    /// Whether a worker may claim it.
    fn is_queued(&self) -> bool {
        self.body.is_some() && !self.cancelled
    }
}

/// A domain's pending calls, in cookie order. Calls start in cookie order
/// within a domain (workers and barrier helpers take the lowest queued one),
/// so `calls[..started]` have started and `calls[started..]` are queued,
/// except for calls a wait for that one call ran early (a task or an item,
/// [`DomainState::claim_call`]), which sit among the queued ones without a
/// body, like calls being cancelled. Finished
/// calls are dropped from the front as soon as everything before them is done,
/// so the front is always the lowest unfinished cookie: the kernel's
/// `lowest_in_progress`.
pub(crate) struct DomainState {
    /// Unique for the runtime's life, unlike the slab index.
    pub(crate) uid: u64,
    pub(crate) name: Arc<str>,
    pub(crate) registered: bool,
    /// No handle refers to the domain any more.
    pub(crate) orphaned: bool,
    calls: VecDeque<CallSlot>,
    started: usize,
    unfinished: usize,
    /// Barriers waiting on this domain, as `(below, waiter)` sorted by
    /// `below`: the ones a finished call satisfies are always a prefix.
    pub(crate) waiters: Vec<(u64, WaiterId)>,
    /// Shared with the domain's handles.
    pub(crate) hint: Arc<DomainHint>,
}

impl DomainState {
    pub(crate) fn new(name: Arc<str>, registered: bool, uid: u64) -> Self {
        DomainState {
            uid,
            name,
            registered,
            orphaned: false,
            calls: VecDeque::new(),
            started: 0,
            unfinished: 0,
            waiters: Vec::new(),
            hint: Arc::new(DomainHint {
                lowest: AtomicU64::new(u64::MAX),
                unreported: AtomicUsize::new(0),
            }),
        }
    }

    /// Publishes the lowest unfinished cookie to the handles.
    pub(crate) fn publish_lowest(&self) {
        self.hint.lowest.store(self.lowest_pending(), Ordering::Release);
    }

    pub(crate) fn push(&mut self, cookie: Cookie, body: Body) {
        let was_empty = self.calls.is_empty();
        self.calls.push_back(CallSlot {
            cookie,
            body: Some(body),
            cancelled: false,
            done: false,
        });
        self.unfinished += 1;
        if was_empty {
            self.publish_lowest();
        }
    }

    pub(crate) fn has_queued(&self) -> bool {
        self.started < self.calls.len()
    }

    pub(crate) fn next_queued(&self) -> Option<Cookie> {
        self.calls.get(self.started).map(|slot| slot.cookie)
    }

    /// Takes the lowest queued call.
    pub(crate) fn claim(&mut self) -> Option<(Cookie, Body)> {
        let slot = self.calls.get_mut(self.started).filter(|slot| slot.is_queued())?;
        let cookie = slot.cookie;
        let body = slot.body.take()?;
        self.started += 1;
        self.skip_taken();
        Some((cookie, body))
    }

    /// Takes call `cookie` for a wait for that one call (a task, an item)
    /// to run it now, ahead of the domain's earlier queued calls if any, or,
    /// if it is cancelled and not settled yet, to settle it (`true`: drop
    /// its body in its frame and end it). Its slot stays in place until it
    /// finishes. `None` if it is neither.
    pub(crate) fn claim_call(&mut self, cookie: Cookie) -> Option<(Body, bool)> {
        let at = self.calls.binary_search_by_key(&cookie, |slot| slot.cookie).ok()?;
        let slot = &mut self.calls[at];
        debug_assert!(slot.body.is_none() || slot.cancelled || at >= self.started);
        let body = slot.body.take()?;
        let cancelled = slot.cancelled;
        self.skip_taken();
        Some((body, cancelled))
    }

    /// Whether [`DomainState::claim_call`] would take call `cookie`: it is
    /// queued, or cancelled and not settled yet.
    pub(crate) fn is_claimable(&self, cookie: Cookie) -> bool {
        self.calls
            .binary_search_by_key(&cookie, |slot| slot.cookie)
            .is_ok_and(|at| self.calls[at].body.is_some())
    }

    /// Where the queued call `cookie` is, if it is queued.
    fn queued_at(&self, cookie: Cookie) -> Option<usize> {
        // Every call is in cookie order; the queued ones are in `calls[started..]`.
        let at = self.calls.binary_search_by_key(&cookie, |slot| slot.cookie).ok()?;
        (at >= self.started && self.calls[at].is_queued()).then_some(at)
    }

    /// Marks a started call finished. Returns whether the lowest unfinished
    /// cookie moved (only then can a waiter's condition have become true).
    pub(crate) fn finish(&mut self, cookie: Cookie) -> bool {
        // A call claimed out of order sits among the queued ones: search the
        // whole deque (in cookie order).
        match self.calls.binary_search_by_key(&cookie, |slot| slot.cookie) {
            Ok(at) => self.finish_at(at),
            Err(_) => {
                debug_assert!(false, "finished call {cookie} is not pending");
                false
            }
        }
    }

    /// Marks the call at `at` done; returns whether the front moved.
    fn finish_at(&mut self, at: usize) -> bool {
        debug_assert!(self.calls[at].body.is_none() && !self.calls[at].done);
        self.calls[at].done = true;
        self.unfinished -= 1;
        if at != 0 {
            return false;
        }
        while self.calls.front().is_some_and(|slot| slot.done) {
            self.calls.pop_front();
            // A done slot at the front is never queued: the queue's head is
            // always a real call (`skip_taken`).
            self.started -= 1;
        }
        true
    }

    /// Cancels the queued, unstarted call `cookie`: it will never run. Its
    /// slot keeps its body, cancelled, until it is settled
    /// ([`DomainState::take_cancelled`], or a wait for it,
    /// [`DomainState::claim_call`]), and stays, unfinished, until then, so
    /// the call counts as finished for barriers only once what it held is
    /// gone. `false` if the call is not queued (started, finished,
    /// cancelled, or never in this domain), or is an item borrowed by a
    /// scope (which promises its items run).
    pub(crate) fn cancel(&mut self, cookie: Cookie) -> bool {
        let Some(at) = self.queued_at(cookie) else {
            return false;
        };
        let slot = &mut self.calls[at];
        if slot.body.as_ref().is_some_and(Body::is_scoped) {
            return false;
        }
        slot.cancelled = true;
        self.skip_taken();
        true
    }

    /// Cancels every queued, unstarted call but scoped items (see
    /// [`DomainState::cancel`]); their cookies go to `out`, in order.
    pub(crate) fn cancel_queued(&mut self, out: &mut Vec<Cookie>) {
        for slot in self.calls.range_mut(self.started..) {
            if slot.is_queued() && !slot.body.as_ref().is_some_and(Body::is_scoped) {
                slot.cancelled = true;
                out.push(slot.cookie);
            }
        }
        self.skip_taken();
    }

    /// Takes the body of the cancelled call `cookie` to settle it, unless a
    /// thread waiting for it took it first.
    pub(crate) fn take_cancelled(&mut self, cookie: Cookie) -> Option<Body> {
        let at = self.calls.binary_search_by_key(&cookie, |slot| slot.cookie).ok()?;
        let slot = &mut self.calls[at];
        if !slot.cancelled {
            return None;
        }
        slot.body.take()
    }

    /// Counts the slots at the queue's head that are not queued (cancelled,
    /// or claimed out of order) as started: they are not claimable, so the
    /// next queued call is always a real one.
    fn skip_taken(&mut self) {
        while self.calls.get(self.started).is_some_and(|slot| !slot.is_queued()) {
            self.started += 1;
        }
    }

    pub(crate) fn lowest_pending(&self) -> u64 {
        self.calls.front().map_or(u64::MAX, |slot| slot.cookie.get())
    }

    /// Whether a barrier below `below` waits for at least one and at most
    /// `most` unfinished calls, and its bound is closed (the domain already
    /// holds a call at or past it, so no call scheduled later can extend the
    /// wait): then it is usually about to be satisfied (the "register in
    /// cookie order" chain, where the bound is the waiter's own call). Looks
    /// at a few calls at most; a longer run answers `false`.
    pub(crate) fn waits_for_few(&self, below: u64, most: usize) -> bool {
        const LOOK: usize = 8;
        if self.lowest_pending() >= below {
            return false;
        }
        let mut unfinished = 0;
        for slot in self.calls.iter().take(LOOK) {
            if slot.cookie.get() >= below {
                return true;
            }
            if !slot.done {
                unfinished += 1;
                if unfinished > most {
                    return false;
                }
            }
        }
        false
    }

    pub(crate) fn unfinished(&self) -> usize {
        self.unfinished
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod state_tests {
    use super::DomainState;
    use crate::model::call::Body;
    use crate::Cookie;

    fn cookie(n: u64) -> Cookie {
        Cookie::new(n).unwrap()
    }

    /// A domain holding calls with these cookies, all started.
    fn started(cookies: &[u64]) -> DomainState {
        let mut d = DomainState::new("test".into(), true, 0);
        for &c in cookies {
            d.push(
                cookie(c),
                Body::Blocking(crate::base::inline_fn::BlockingFn::new(|_| {})),
            );
            assert!(d.claim().is_some());
        }
        d
    }

    #[test]
    fn waits_for_few_counts_the_unfinished_calls_below_the_bound() {
        let mut d = started(&[3, 5, 8, 9]);
        // Nothing below 3 is unfinished: satisfied, not "few".
        assert!(!d.waits_for_few(3, 1));
        // Below 4 and below 5: only 3.
        assert!(d.waits_for_few(4, 1));
        assert!(d.waits_for_few(5, 1));
        // Below 6: 3 and 5.
        assert!(!d.waits_for_few(6, 1));
        assert!(d.waits_for_few(6, 2));
        // Finished calls behind the front do not count.
        assert!(!d.finish(cookie(5)));
        assert!(!d.waits_for_few(9, 1) && d.waits_for_few(9, 2));
        assert!(d.finish(cookie(3)));
        assert_eq!(d.lowest_pending(), 8);
        assert!(d.waits_for_few(9, 1));
        // An open bound (past the last call, as `synchronize()` has) never
        // counts as few: calls scheduled later would extend the wait.
        assert!(!d.waits_for_few(10, 2));
        assert!(!d.waits_for_few(u64::MAX, 2));
    }

    #[test]
    fn waits_for_few_gives_up_on_a_long_run_of_finished_calls() {
        let cookies: Vec<u64> = (1..=20).collect();
        let mut d = started(&cookies);
        for c in 2..=19 {
            assert!(!d.finish(cookie(c)));
        }
        // Only call 1 is unfinished below 20, but it is too far to look.
        assert!(!d.waits_for_few(20, 1));
        // Nearby bounds are still seen.
        assert!(d.waits_for_few(3, 1));
    }
}
