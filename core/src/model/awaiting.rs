//! What pending async calls wait for. An async call whose poll found a
//! kasync wait pending (a barrier, a task, an item) holds no thread, but a
//! thread blocked waiting for that call depends on what it awaits: *borrow the waiter's thread*
//! lets that thread run those calls (`State::claim_awaited`), so a chain
//! "thread waits on async call A, A awaits call B" finishes with one thread
//! on every executor, not only where futures are polled on the waiter.

use crate::model::ids::{DomainId, Scope};
use crate::Cookie;

/// One kasync wait a pending async call awaits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Awaited {
    /// A barrier: the calls of `scope` below `below`. `domain_uid` names a
    /// domain scope's domain for good: the registry does not keep domains
    /// alive, and a slot may be reused once its domain is gone.
    Range { scope: Scope, below: u64, domain_uid: u64 },
    /// A task or item: that one call.
    Call { domain: DomainId, cookie: Cookie },
}

/// A pending async call, the waits its last poll found pending, and `N`:
/// how to nudge those who wait for it when a call it awaits is queued.
struct Pending<N> {
    domain: DomainId,
    cookie: Cookie,
    awaits: Vec<Awaited>,
    nudge: N,
}

/// The pending async calls that await kasync waits of their own runtime.
/// Usually empty: an entry exists only between a pending poll that awaited
/// a kasync wait and the call's next poll.
pub(crate) struct Awaiting<N> {
    calls: Vec<Pending<N>>,
}

impl<N> Default for Awaiting<N> {
    fn default() -> Self {
        Awaiting { calls: Vec::new() }
    }
}

impl<N> Awaiting<N> {
    /// Call `cookie` of `domain` is pending, awaiting `awaits` (none: it is
    /// polled again, or awaits nothing kasync knows), and `nudge` reaches
    /// those who wait for it. Returns the nudge it no longer keeps (the
    /// one replaced, or `nudge` itself), for the caller to drop after
    /// unlocking: it holds a waker, whose drop is foreign code.
    pub(crate) fn set(&mut self, domain: DomainId, cookie: Cookie, awaits: Vec<Awaited>, nudge: N) -> Option<N> {
        let at = self.calls.iter().position(|p| p.cookie == cookie && p.domain == domain);
        match (at, awaits.is_empty()) {
            (Some(at), true) => Some(self.calls.swap_remove(at).nudge),
            (Some(at), false) => {
                self.calls[at].awaits = awaits;
                Some(std::mem::replace(&mut self.calls[at].nudge, nudge))
            }
            (None, true) => Some(nudge),
            (None, false) => {
                self.calls.push(Pending {
                    domain,
                    cookie,
                    awaits,
                    nudge,
                });
                None
            }
        }
    }

    /// What the pending calls `depends_on` picks await, in the order they
    /// were registered.
    pub(crate) fn awaited_by(&self, mut depends_on: impl FnMut(DomainId, Cookie) -> bool) -> Vec<Awaited> {
        let mut out = Vec::new();
        for pending in &self.calls {
            if depends_on(pending.domain, pending.cookie) {
                out.extend_from_slice(&pending.awaits);
            }
        }
        out
    }

    /// The pending calls that await something `covers` accepts: their
    /// domain, cookie and nudge.
    pub(crate) fn awaiting(
        &self,
        mut covers: impl FnMut(&Awaited) -> bool,
    ) -> impl Iterator<Item = (DomainId, Cookie, &N)> {
        self.calls
            .iter()
            .filter(move |p| p.awaits.iter().any(&mut covers))
            .map(|p| (p.domain, p.cookie, &p.nudge))
    }

    /// Whether no pending call awaits anything: the common case, checked
    /// before anything is collected.
    pub(crate) fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn cookie(n: u64) -> Cookie {
        Cookie::new(n).unwrap()
    }

    #[test]
    fn entries_are_set_replaced_and_removed() {
        let mut a = Awaiting::<()>::default();
        let d = DomainId(0);
        let range = Awaited::Range {
            scope: Scope::Full,
            below: u64::MAX,
            domain_uid: 0,
        };
        let call = Awaited::Call {
            domain: d,
            cookie: cookie(9),
        };
        a.set(d, cookie(3), vec![range], ());
        a.set(d, cookie(4), vec![call], ());
        assert_eq!(a.awaited_by(|_, c| c == cookie(3)), [range]);
        a.set(d, cookie(3), vec![call, range], ());
        assert_eq!(a.awaited_by(|_, c| c <= cookie(4)), [call, range, call]);
        let covering: Vec<_> = a.awaiting(|w| *w == range).map(|(_, c, _)| c).collect();
        assert_eq!(covering, [cookie(3)]);
        a.set(d, cookie(3), Vec::new(), ());
        a.set(d, cookie(4), Vec::new(), ());
        assert!(a.is_empty());
        assert_eq!(a.awaiting(|_| true).count(), 0);
        // Removing what is not there is nothing.
        a.set(d, cookie(5), Vec::new(), ());
        assert!(a.is_empty());
    }
}
