//! The `Domain` handle: scheduling calls and making barriers.

use crate::api::barrier::Barrier;
use crate::base::error::Full;
use crate::base::inline_fn::BlockingFn;
use crate::engine::shared::{Admission, Shared};
use crate::model::call::Body;
use crate::model::domain::DomainHint;
use crate::model::ids::{DomainId, Scope};
use crate::model::state::State;
use crate::Cookie;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

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
/// # use kasync_core as kasync;
/// let rt = kasync::Runtime::new().unwrap();
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
        body: Body,
        prepare: &mut dyn FnMut(&mut State),
        admission: Admission,
    ) -> Option<Cookie> {
        let mut body = Some(body);
        let mut make = |st: &mut State| {
            prepare(st);
            match body.take() {
                Some(body) => body,
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
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let domain = rt.default_domain();
    /// domain.schedule_async(|cookie| async move {
    ///     assert_eq!(kasync::current_cookie(), Some(cookie));
    /// });
    /// domain.synchronize().wait().unwrap();
    /// ```
    pub fn schedule_async<F, Fut>(&self, f: F) -> Cookie
    where
        F: FnOnce(Cookie) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut body = Some(Body::Async(
            Box::new(move |cookie| Box::pin(f(cookie)) as crate::model::call::BoxFuture),
            None,
        ));
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
    /// # use kasync_core as kasync;
    /// use std::sync::{Arc, Mutex};
    /// let rt = kasync::Runtime::new().unwrap();
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
        let shared = &self.inner.shared;
        let mut wakeups = Default::default();
        let mut st = shared.lock();
        st.unregister(self.inner.id, &mut wakeups);
        if st.domain(self.inner.id).has_queued() {
            // A queued call of this domain may have been handed to a helper
            // parked in `synchronize_full` (`on_enqueue`), which no longer
            // covers it: find it a thread, as its scheduling would have.
            st = crate::engine::pool::dispatch_waiting(shared, st);
        }
        drop(st);
        crate::model::state::Wakeups::wake_all(wakeups);
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
