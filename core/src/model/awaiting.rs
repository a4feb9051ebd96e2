//! What pending async calls wait for. An async call whose poll found a
//! kasync wait pending (a barrier, a task, an item) holds no thread, but a
//! thread blocked waiting for that call depends on what it awaits: rule 2
//! lets that thread run those calls (`State::claim_awaited`), so a chain
//! "thread waits on async call A, A awaits call B" finishes with one thread
//! on every executor, not only where futures are polled on the waiter.

use crate::model::ids::{DomainId, Scope};
use crate::Cookie;

/// One kasync wait a pending async call awaits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Awaited {
    /// A barrier: the calls of `scope` below `below`.
    Range { scope: Scope, below: u64 },
    /// A task or item: that one call.
    Call { domain: DomainId, cookie: Cookie },
}

/// A pending async call and the waits its last poll found pending.
struct Pending {
    domain: DomainId,
    cookie: Cookie,
    awaits: Vec<Awaited>,
}

/// The pending async calls that await kasync waits of their own runtime.
/// Usually empty: an entry exists only between a pending poll that awaited
/// a kasync wait and the call's next poll.
#[derive(Default)]
pub(crate) struct Awaiting {
    calls: Vec<Pending>,
}

impl Awaiting {
    /// Call `cookie` of `domain` is pending, awaiting `awaits` (none: it is
    /// polled again, or awaits nothing kasync knows).
    pub(crate) fn set(&mut self, domain: DomainId, cookie: Cookie, awaits: Vec<Awaited>) {
        let at = self.calls.iter().position(|p| p.cookie == cookie && p.domain == domain);
        match (at, awaits.is_empty()) {
            (Some(at), true) => {
                self.calls.swap_remove(at);
            }
            (Some(at), false) => self.calls[at].awaits = awaits,
            (None, true) => {}
            (None, false) => self.calls.push(Pending { domain, cookie, awaits }),
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
        let mut a = Awaiting::default();
        let d = DomainId(0);
        let range = Awaited::Range {
            scope: Scope::Full,
            below: u64::MAX,
        };
        let call = Awaited::Call {
            domain: d,
            cookie: cookie(9),
        };
        a.set(d, cookie(3), vec![range]);
        a.set(d, cookie(4), vec![call]);
        assert_eq!(a.awaited_by(|_, c| c == cookie(3)), [range]);
        a.set(d, cookie(3), vec![call, range]);
        assert_eq!(a.awaited_by(|_, c| c <= cookie(4)), [call, range, call]);
        a.set(d, cookie(3), Vec::new());
        a.set(d, cookie(4), Vec::new());
        assert!(a.is_empty());
        // Removing what is not there is nothing.
        a.set(d, cookie(5), Vec::new());
        assert!(a.is_empty());
    }
}
