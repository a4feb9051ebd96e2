//! Domains: named sets of pending calls with their own barrier.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::barrier::Barrier;
use crate::call::Body;
use crate::error::Full;
use crate::inline_fn::BlockingFn;
use crate::item::ItemCall;
use crate::runtime::{Admission, Shared};
use crate::state::{Scope, State, WaiterId};
use crate::sync::{AtomicU64, AtomicUsize};
use crate::Cookie;

/// Index of a domain in the runtime's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct DomainId(pub(crate) usize);

/// What a domain's handles may read without taking the runtime's lock, so
/// that a barrier on calls already finished costs no lock. Written under the
/// lock by [`State`](crate::state::State); the lowest cookie is stored last
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
    fn finished_below(&self, below: u64) -> bool {
        self.lowest.load(Ordering::Acquire) >= below && self.unreported.load(Ordering::Acquire) == 0
    }
}

/// One pending call of a domain: queued while `body` is `Some`.
struct CallSlot {
    cookie: Cookie,
    body: Option<Body>,
    done: bool,
}

/// A domain's pending calls, in cookie order. Calls start in cookie order
/// within a domain (workers and helpers both take the lowest queued one), so
/// `calls[..started]` have started and `calls[started..]` are queued. Finished
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
        let slot = self.calls.get_mut(self.started)?;
        let body = slot.body.take()?;
        self.started += 1;
        Some((slot.cookie, body))
    }

    /// Marks a started call finished. Returns whether the lowest unfinished
    /// cookie moved (only then can a waiter's condition have become true).
    pub(crate) fn finish(&mut self, cookie: Cookie) -> bool {
        // Only started calls can finish: search that prefix, which is as long
        // as the calls running now, not the whole (possibly long) queue.
        let (mut low, mut high) = (0, self.started);
        while low < high {
            let mid = low + (high - low) / 2;
            if self.calls[mid].cookie < cookie {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let at = low;
        if !matches!(self.calls.get(at), Some(slot) if slot.cookie == cookie) {
            debug_assert!(false, "finished call {cookie} is not pending");
            return false;
        }
        debug_assert!(at < self.started && !self.calls[at].done);
        self.calls[at].done = true;
        self.unfinished -= 1;
        if at != 0 {
            return false;
        }
        while self.calls.front().is_some_and(|slot| slot.done) {
            self.calls.pop_front();
            self.started -= 1;
        }
        true
    }

    /// The lowest unfinished cookie, or `u64::MAX` when the domain is empty.
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

/// Keeps a domain alive; the last one frees it once its calls finished.
struct DomainRef {
    shared: Arc<Shared>,
    id: DomainId,
    name: Arc<str>,
    hint: Arc<DomainHint>,
}

impl Drop for DomainRef {
    fn drop(&mut self) {
        self.shared.state.lock().release_domain(self.id);
    }
}

/// A named set of pending calls with its own barrier (the kernel's
/// `struct async_domain`).
///
/// A *registered* domain ([`Runtime::domain`](crate::Runtime::domain)) is also
/// covered by [`Runtime::synchronize_full`](crate::Runtime::synchronize_full);
/// an *exclusive* one ([`Runtime::exclusive_domain`](crate::Runtime::exclusive_domain))
/// is only waited for through its own barriers. Handles are cheap to clone and
/// all refer to the same domain.
///
/// ```
/// let rt = kasync_core::Runtime::new().unwrap();
/// let disks = rt.exclusive_domain("disks");
/// for n in 0..4 {
///     disks.schedule(move |cookie| println!("probing disk {n} as call {cookie}"));
/// }
/// disks.synchronize().wait().unwrap(); // all four probes finished
/// ```
#[derive(Clone)]
pub struct Domain {
    inner: Arc<DomainRef>,
}

impl Domain {
    pub(crate) fn create(shared: &Arc<Shared>, name: &str, registered: bool) -> Domain {
        let name: Arc<str> = Arc::from(name);
        let (id, hint) = {
            let mut st = shared.state.lock();
            let id = st.add_domain(name.clone(), registered);
            (id, st.domain(id).hint.clone())
        };
        Domain {
            inner: Arc::new(DomainRef {
                shared: shared.clone(),
                id,
                name,
                hint,
            }),
        }
    }

    pub(crate) fn id(&self) -> DomainId {
        self.inner.id
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        self.inner.name.clone()
    }

    /// Queues an item call; `prepare` initialises the item's header under the
    /// state lock, just before the call becomes visible to workers. `None`
    /// (and neither `prepare` nor anything else ran) when `admission`
    /// refused it.
    pub(crate) fn submit_erased(
        &self,
        call: ItemCall,
        prepare: &mut dyn FnMut(&mut State),
        admission: Admission,
    ) -> Option<Cookie> {
        let mut call = Some(call);
        let mut make = |st: &mut State| {
            prepare(st);
            match call.take() {
                Some(call) => Body::Item(call),
                None => unreachable!("the body is made at most once"),
            }
        };
        self.inner.shared.schedule(self.inner.id, &mut make, admission)
    }

    /// The name given when the domain was made.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether [`Runtime::synchronize_full`](crate::Runtime::synchronize_full)
    /// covers this domain.
    pub fn is_registered(&self) -> bool {
        self.inner.shared.state.lock().domain(self.inner.id).registered
    }

    /// Schedules `f` to run on a worker (the kernel's `async_schedule_domain`)
    /// and returns its cookie. `f` receives the same cookie.
    ///
    /// A closure that captures at most four machine words (32 bytes on
    /// 64-bit targets: a few handles, numbers or `Arc`s) is kept in the queue
    /// itself, so scheduling it allocates nothing; a bigger one is boxed
    /// per call (capture big, shared data through an `Arc` to avoid that).
    ///
    /// When the runtime already has `max_pending` unfinished calls, the
    /// runtime's [`Overflow`](crate::Overflow) policy applies: by default the
    /// caller waits, running queued calls itself meanwhile.
    ///
    /// # Panics
    ///
    /// Only under [`Overflow::Reject`](crate::Overflow::Reject) when the runtime
    /// is full; use [`Domain::try_schedule`] to get the function back instead.
    pub fn schedule<F>(&self, f: F) -> Cookie
    where
        F: FnOnce(Cookie) + Send + 'static,
    {
        // Made before the lock is taken: a big closure's allocation stays
        // out of the critical section every worker contends for.
        let mut body = Some(Body::Blocking(BlockingFn::new(f)));
        let mut make = |_: &mut State| body.take().expect("made once");
        self.inner
            .shared
            .schedule(self.inner.id, &mut make, Admission::Policy)
            .unwrap_or_else(|| reject_panic())
    }

    /// Schedules `f` unless the runtime already has `max_pending` unfinished
    /// calls, in which case `f` comes back uncalled in [`Full`]. Never runs `f`
    /// on the calling thread.
    pub fn try_schedule<F>(&self, f: F) -> Result<Cookie, Full<F>>
    where
        F: FnOnce(Cookie) + Send + 'static,
    {
        let mut slot = Some(f);
        let mut make = |_: &mut State| match slot.take() {
            Some(f) => Body::Blocking(BlockingFn::new(f)),
            None => unreachable!("the body is made at most once"),
        };
        match self.inner.shared.schedule(self.inner.id, &mut make, Admission::Try) {
            Some(cookie) => Ok(cookie),
            None => match slot.take() {
                Some(f) => Err(Full(f)),
                None => unreachable!("a call that was not scheduled keeps its function"),
            },
        }
    }

    /// Schedules an async call: `f(cookie)` makes a future that runs on the
    /// runtime's executor (on the native-threads adapter: polled on a worker).
    /// It counts as a call of this domain until the future completes; a panic
    /// while polling is reported like a panic in a blocking call.
    ///
    /// ```
    /// let rt = kasync_core::Runtime::new().unwrap();
    /// let domain = rt.default_domain();
    /// domain.schedule_async(|cookie| async move {
    ///     assert_eq!(kasync_core::current_cookie(), Some(cookie));
    /// });
    /// domain.synchronize().wait().unwrap();
    /// ```
    pub fn schedule_async<F, Fut>(&self, f: F) -> Cookie
    where
        F: FnOnce(Cookie) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut body = Some(Body::Async(Box::new(move |cookie| {
            Box::pin(f(cookie)) as crate::call::BoxFuture
        })));
        let mut make = |_: &mut State| body.take().expect("made once");
        self.inner
            .shared
            .schedule(self.inner.id, &mut make, Admission::Policy)
            .unwrap_or_else(|| reject_panic())
    }

    /// A barrier for every call of this domain, including calls scheduled
    /// while waiting: it completes once the domain has been empty (the
    /// kernel's `async_synchronize_full_domain`).
    pub fn synchronize(&self) -> Barrier {
        self.barrier_below(u64::MAX)
    }

    /// A barrier for this domain's calls below `below`. One already
    /// satisfied, with no panic to report, is made without the lock.
    fn barrier_below(&self, below: u64) -> Barrier {
        if self.inner.hint.finished_below(below) {
            return Barrier::finished(self.inner.shared.clone());
        }
        Barrier::new(
            self.inner.shared.clone(),
            Scope::Domain(self.inner.id),
            below,
            Some(self.clone()),
        )
    }

    /// A barrier for the calls of this domain with a cookie lower than
    /// `cookie` (the kernel's `async_synchronize_cookie_domain`). Calls with
    /// `cookie` or later may still be running when it completes.
    ///
    /// Called with its own cookie, a scheduled call waits for exactly the calls
    /// scheduled before it in this domain:
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// let rt = kasync_core::Runtime::new().unwrap();
    /// let registered = Arc::new(Mutex::new(Vec::new()));
    /// let domain = rt.default_domain().clone();
    /// for n in 0..8u32 {
    ///     let (domain2, registered) = (domain.clone(), registered.clone());
    ///     domain.schedule(move |cookie| {
    ///         // ... slow probing in parallel ...
    ///         domain2.synchronize_cookie(cookie).wait().unwrap();
    ///         registered.lock().unwrap().push(n); // in cookie order
    ///     });
    /// }
    /// domain.synchronize().wait().unwrap();
    /// assert_eq!(*registered.lock().unwrap(), (0..8).collect::<Vec<_>>());
    /// ```
    pub fn synchronize_cookie(&self, cookie: Cookie) -> Barrier {
        self.barrier_below(cookie.get())
    }

    /// Takes the domain out of
    /// [`Runtime::synchronize_full`](crate::Runtime::synchronize_full)'s reach
    /// (the kernel's `async_unregister_domain`). Its own barriers keep working.
    /// Unlike the kernel, calls may still be pending: `synchronize_full` simply
    /// stops waiting for them.
    pub fn unregister(&self) {
        let mut wakeups = Default::default();
        self.inner.shared.state.lock().unregister(self.inner.id, &mut wakeups);
        crate::state::Wakeups::wake_all(wakeups);
    }
}

#[cold]
pub(crate) fn reject_panic() -> ! {
    panic!(
        "kasync: the runtime has max_pending unfinished calls and its overflow policy is \
         Overflow::Reject; use try_schedule to get the function back instead"
    )
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Domain").field("name", &self.inner.name).finish()
    }
}

#[cfg(all(test, not(loom), feature = "threads"))]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::{Cookie, Runtime, SyncError};

    /// Waits for `f` on another thread that holds the runtime's lock: it can
    /// only return if `f` never takes the lock.
    fn with_lock_held(domain: &super::Domain, f: impl FnOnce() -> Result<(), SyncError> + Send + 'static) {
        let shared = domain.inner.shared.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let held = shared.lock();
            tx.send(f()).unwrap();
            drop(held);
        });
        let result = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("returned without the lock");
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn barrier_on_finished_calls_takes_no_lock() {
        let rt = Runtime::new().unwrap();
        let domain = rt.domain("finished");
        let last = domain.schedule(|_| {});
        domain.synchronize().wait().unwrap();
        let after = Cookie::new(last.get() + 1).unwrap();
        let d = domain.clone();
        with_lock_held(&domain, move || d.synchronize_cookie(after).wait());
        let d = domain.clone();
        with_lock_held(&domain, move || d.synchronize().wait());
    }

    #[test]
    fn unreported_panic_keeps_barriers_on_the_locked_path() {
        let rt = Runtime::new().unwrap();
        let domain = rt.domain("panicked");
        let bad = domain.schedule(|_| panic!("reported once"));
        let after = Cookie::new(bad.get() + 1).unwrap();
        match domain.synchronize_cookie(after).wait() {
            Err(SyncError::Panicked(report)) => assert_eq!(report.cookie(), bad),
            other => panic!("expected the panic, got {other:?}"),
        }
        // Reported: the next barrier over it is lock-free again.
        let d = domain.clone();
        with_lock_held(&domain, move || d.synchronize_cookie(after).wait());
    }
}

#[cfg(all(test, not(loom)))]
mod state_tests {
    use super::DomainState;
    use crate::call::Body;
    use crate::Cookie;

    fn cookie(n: u64) -> Cookie {
        Cookie::new(n).unwrap()
    }

    /// A domain holding calls with these cookies, all started.
    fn started(cookies: &[u64]) -> DomainState {
        let mut d = DomainState::new("test".into(), true, 0);
        for &c in cookies {
            d.push(cookie(c), Body::Blocking(crate::inline_fn::BlockingFn::new(|_| {})));
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
