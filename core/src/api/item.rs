//! Item handles: `Submitted`, `WaitError`, `Domain::submit` and friends, and
//! `Domain::scope` with its `ItemScope`.

use crate::base::error::PanicReport;
use crate::base::executor::Blocking;
use crate::base::sync::MutexGuard;
use crate::engine::context;
use crate::engine::pool::{self};
use crate::engine::shared::{Admission, Shared};
use crate::model::awaiting::Awaited;
use crate::model::call::Body;
use crate::model::ids::DomainId;
use crate::model::ids::Scope;
use crate::model::item::{header_of, Header, Item, Mode, Work};
use crate::model::state::{State, Wake};
use crate::Cookie;
use std::fmt;
use std::future::Future;

use futures::future::FusedFuture;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// How a submitted item's call ended: the item back, or why not cleanly.
pub(crate) type Ended<W> = Result<Box<Item<W>>, WaitError<W>>;

/// Why [`Submitted::wait`] did not give the item back cleanly.
///
/// A panic or a cancellation gives the item back; every other error leaves
/// the handle waitable.
#[non_exhaustive]
pub enum WaitError<W: ?Sized> {
    /// The item's `run` panicked. The item comes back anyway.
    Panicked {
        /// The item, ready to be submitted again.
        item: Box<Item<W>>,
        /// The panic.
        report: PanicReport,
    },
    /// The call was cancelled before it ran ([`Domain::cancel`](crate::Domain::cancel)):
    /// `run` was never called. The item comes back untouched.
    Cancelled {
        /// The item, ready to be submitted again.
        item: Box<Item<W>>,
    },
    /// Blocking here would stall the async runtime the thread belongs to:
    /// `.await` the handle instead. It is still waitable.
    BlockingNotAllowed {
        /// The executor adapter that refused.
        executor: &'static str,
        /// Why blocking is not possible on this thread.
        reason: &'static str,
    },
    /// The item's call is running on the waiting thread itself (the item's
    /// `run`, or a call it runs nested, waits for it), so waiting could
    /// never finish. The handle is still waitable from elsewhere.
    WouldDeadlock {
        /// The item's call's cookie.
        waiter: Cookie,
    },
    /// [`Submitted::wait_timeout`] ran out of time; the handle is still
    /// waitable.
    TimedOut,
}

impl<W: ?Sized> fmt::Debug for WaitError<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Panicked { report, .. } => f.debug_struct("Panicked").field("report", report).finish(),
            WaitError::Cancelled { .. } => f.write_str("Cancelled"),
            WaitError::BlockingNotAllowed { executor, reason } => f
                .debug_struct("BlockingNotAllowed")
                .field("executor", executor)
                .field("reason", reason)
                .finish(),
            WaitError::WouldDeadlock { waiter } => f.debug_struct("WouldDeadlock").field("waiter", waiter).finish(),
            WaitError::TimedOut => f.write_str("TimedOut"),
        }
    }
}

impl<W: ?Sized> fmt::Display for WaitError<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Panicked { report, .. } => report.fmt(f),
            WaitError::Cancelled { .. } => f.write_str("the item's call was cancelled before it ran"),
            WaitError::BlockingNotAllowed { executor, reason } => write!(
                f,
                "cannot block on this thread ({executor}: {reason}); `.await` the item's handle instead"
            ),
            WaitError::WouldDeadlock { waiter } => write!(
                f,
                "waiting would deadlock: item call {waiter} is running on this very thread"
            ),
            WaitError::TimedOut => f.write_str("timed out waiting for the item"),
        }
    }
}

impl<W: ?Sized> std::error::Error for WaitError<W> {}

/// A submitted item: wait for it (or `.await` it) to get the same box back.
/// Dropping it detaches the item: kasync frees it after it runs. Only
/// [`Domain::submit_detached`](crate::Domain::submit_detached) promises the
/// free happens before barriers covering the call return; a handle dropped
/// while its call is queued or running lets the item be freed just after.
///
/// A panic in `run` comes back with the item ([`WaitError::Panicked`]),
/// and only there: barriers do not report it, unless the handle is dropped
/// before it took the panic (then the barriers get it, as though the call
/// had panicked at that moment).
#[must_use = "dropping the handle detaches the item; wait for it to get it back"]
pub struct Submitted<W: ?Sized> {
    shared: Arc<Shared>,
    domain: DomainId,
    cookie: Cookie,
    item: Option<NonNull<Item<W>>>,
    domain_name: Arc<str>,
}

// SAFETY: the handle owns the right to take the item back; the item is `Send`.
unsafe impl<W: Send + ?Sized> Send for Submitted<W> {}
// SAFETY: `&Submitted` only exposes the cookie.
unsafe impl<W: Send + ?Sized> Sync for Submitted<W> {}

impl<W: Work> Submitted<W> {
    /// The same handle, its item seen through an unsized type (a trait
    /// object the work implements): how `Task<T>` erases its closure's type
    /// without another allocation.
    pub(crate) fn unsize<U: ?Sized>(self, coerce: impl FnOnce(NonNull<Item<W>>) -> NonNull<Item<U>>) -> Submitted<U> {
        let mut this = std::mem::ManuallyDrop::new(self);
        Submitted {
            // SAFETY: `this` is never used or dropped again; each field is
            // moved out exactly once.
            shared: unsafe { std::ptr::read(&this.shared) },
            domain: this.domain,
            cookie: this.cookie,
            item: this.item.take().map(coerce),
            // SAFETY: as above.
            domain_name: unsafe { std::ptr::read(&this.domain_name) },
        }
    }
}

impl<W: Work + ?Sized> Submitted<W> {
    /// The item's call's cookie.
    pub fn cookie(&self) -> Cookie {
        self.cookie
    }

    fn header(&self, ptr: NonNull<Item<W>>) -> &Header {
        // SAFETY: the item stays alive while this handle holds its pointer.
        unsafe { header_of(ptr) }
    }

    /// Takes the item back once its call is done (lock held).
    fn take(&mut self, st: &mut State) -> Option<Result<Box<Item<W>>, WaitError<W>>> {
        let ptr = self.item?;
        let (done, cancelled, panic) = self.header(ptr).with(st, |slot| {
            if slot.done {
                slot.done = false;
                (true, std::mem::take(&mut slot.cancelled), slot.panic.take())
            } else {
                (false, false, None)
            }
        });
        if !done {
            return None;
        }
        self.item = None;
        // SAFETY: the pointer came from `Box::leak` in `submit`, the call has
        // ended, and this handle was the only way back to it.
        let item = unsafe { Box::from_raw(ptr.as_ptr()) };
        if cancelled {
            return Some(Err(WaitError::Cancelled { item }));
        }
        // The panic was kept for this handle: delivered here, and nowhere else.
        Some(match panic {
            None => Ok(item),
            Some(record) => Err(WaitError::Panicked {
                item,
                report: record.report(),
            }),
        })
    }

    /// The item's call if it runs lower on this thread: waiting for it
    /// here could never finish.
    fn own_call(&self) -> Option<Cookie> {
        let (runtime, domain, cookie) = (self.shared.id(), self.domain, self.cookie);
        context::find_own_call(runtime, |f| f.domain == domain && f.cookie == cookie)
    }

    /// Blocks until the call ran and gives the item back — the same box,
    /// ready to be submitted again. If the call is still queued, this thread
    /// runs it itself (and nothing else: a wait for one call does not run
    /// unrelated calls).
    ///
    /// Errors: [`WaitError::Panicked`] and [`WaitError::Cancelled`] give the
    /// item back; after [`WaitError::BlockingNotAllowed`] (where blocking
    /// would stall an async runtime: `.await` instead) and
    /// [`WaitError::WouldDeadlock`] (the item's call runs lower on this very
    /// thread) the handle is still waitable.
    ///
    /// # Panics
    ///
    /// If the item was already given back (by an earlier wait or `.await`).
    pub fn wait(&mut self) -> Result<Box<Item<W>>, WaitError<W>> {
        self.wait_for(true, None)
    }

    /// Like [`Submitted::wait`], but gives up with [`WaitError::TimedOut`]
    /// after `timeout` (the handle is still waitable), and never runs calls
    /// on this thread, so it returns on time.
    ///
    /// # Panics
    ///
    /// If the item was already given back.
    pub fn wait_timeout(&mut self, timeout: std::time::Duration) -> Result<Box<Item<W>>, WaitError<W>> {
        let deadline = crate::base::sync::now().checked_add(timeout);
        self.wait_for(false, deadline)
    }

    /// Whether the call has ended (ran, panicked or was cancelled), or the
    /// item was given back.
    pub fn is_finished(&self) -> bool {
        match self.item {
            Some(ptr) => self.header(ptr).with(&mut self.shared.lock(), |slot| slot.done),
            None => true,
        }
    }

    /// The one way to wait: helping if `help`, until the call ended or
    /// `deadline` passed.
    pub(crate) fn wait_for(&mut self, help: bool, deadline: Option<Instant>) -> Ended<W> {
        assert!(
            self.item.is_some(),
            "kasync: an item's handle was waited for after it gave its item back"
        );
        if let Some(waiter) = self.own_call() {
            return Err(WaitError::WouldDeadlock { waiter });
        }
        let shared = self.shared.clone();
        let permission = crate::engine::blocking::blocking_permission(&shared);
        if let Blocking::Forbidden(reason) = permission {
            return Err(WaitError::BlockingNotAllowed {
                executor: shared.executor.name(),
                reason,
            });
        }
        let st = shared.lock();
        crate::engine::blocking::block_permitted(&shared, st, permission, |st| self.block(&shared, st, help, deadline))
            .unwrap_or(Err(WaitError::TimedOut))
    }

    /// Whether the item was already taken back.
    pub(crate) fn is_spent(&self) -> bool {
        self.item.is_none()
    }

    /// Cancels the item's call if it has not started (see `Task::cancel`).
    pub(crate) fn cancel(&self) -> bool {
        if self.item.is_none() {
            return false;
        }
        self.shared.cancel_call(self.domain, self.cookie)
    }

    fn block<'a>(
        &mut self,
        shared: &'a Arc<Shared>,
        st: MutexGuard<'a, State>,
        help: bool,
        deadline: Option<Instant>,
    ) -> Option<Result<Box<Item<W>>, WaitError<W>>> {
        let ptr = match self.item {
            Some(ptr) => ptr,
            None => unreachable!("a Submitted handle holds its item until it returns it"),
        };
        let (domain, cookie) = (self.domain, self.cookie);
        // Runs this call if it is still queued (or what it awaits, if it is
        // a pending async call), and nothing unrelated.
        let mut claim = |st: &mut State| st.claim_for_call(domain, cookie);
        let wait = pool::Wait {
            scope: Scope::Domain(self.domain),
            below: self.cookie.get() + 1,
            // The handle does not keep the domain alive.
            domain_name: Some(&self.domain_name),
            help: help.then_some(&mut claim as pool::Helper),
            deadline,
        };
        let header = self.header(ptr) as *const Header;
        // SAFETY (both closures): the item is alive while `self` holds it.
        let (mut st, _) = pool::block_until(
            shared,
            st,
            wait,
            &mut |st| unsafe { &*header }.with(st, |slot| slot.done),
            &mut |st, wake, _| unsafe { &*header }.with(st, |slot| std::mem::replace(&mut slot.wake, wake)),
        );
        let taken = self.take(&mut st);
        if taken.is_none() {
            // Timed out: take this thread's wake-up back (a later wait
            // registers again), and drop it with the lock released.
            // SAFETY: the item is alive while `self` holds it.
            let stale = unsafe { &*header }.with(&mut st, |slot| std::mem::replace(&mut slot.wake, Wake::Nobody));
            drop(st);
            drop(stale);
        }
        taken
    }
}

impl<W: Work + ?Sized> Future for Submitted<W> {
    type Output = Result<Box<Item<W>>, WaitError<W>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        // Cloned before locking: a waker's clone is foreign code, which may
        // call kasync (dropped, if unused, after the lock is released).
        let waker = cx.waker().clone();
        let mut st = shared.lock();
        if let Some(result) = this.take(&mut st) {
            drop(st);
            return Poll::Ready(result);
        }
        let Some(ptr) = this.item else {
            panic!("Submitted polled after it returned its item");
        };
        if let Some(waiter) = this.own_call() {
            // Still waitable: only this thread's own call cannot wait for it.
            drop(st);
            return Poll::Ready(Err(WaitError::WouldDeadlock { waiter }));
        }
        let waker = Wake::Task(waker);
        let previous = this
            .header(ptr)
            .with(&mut st, |slot| std::mem::replace(&mut slot.wake, waker));
        drop(st);
        // After unlocking: a waker's drop is foreign code.
        drop(previous);
        // Inside an async call: the thread that polls it, or one waiting
        // for it, may run this call if it is queued.
        let (domain, cookie) = (this.domain, this.cookie);
        context::note_awaited(shared.id(), Awaited::Call { domain, cookie });
        Poll::Pending
    }
}

impl<W: Work + ?Sized> FusedFuture for Submitted<W> {
    /// True once the item was given back.
    fn is_terminated(&self) -> bool {
        self.item.is_none()
    }
}

impl<W: ?Sized> Drop for Submitted<W> {
    fn drop(&mut self) {
        let Some(ptr) = self.item.take() else {
            return;
        };
        let (free_now, registration) = {
            let mut st = self.shared.lock();
            // SAFETY: the item is alive until this handle or the runtime frees it.
            let header = unsafe { header_of(ptr) };
            let (free_now, registration, panic) = header.with(&mut st, |slot| {
                let registration = std::mem::replace(&mut slot.wake, Wake::Nobody);
                if slot.done {
                    (true, registration, slot.panic.take())
                } else {
                    slot.mode = Mode::Detached;
                    (false, registration, None)
                }
            });
            if let Some(record) = panic {
                // Nobody took it: the barriers get it, so it is not lost.
                st.release_panic(record);
            }
            (free_now, registration)
        };
        drop(registration); // after unlocking: it may hold a waker
        if free_now {
            // SAFETY: the call ended and this handle was the last way to the item.
            drop(unsafe { Box::from_raw(ptr.as_ptr()) });
        }
    }
}

impl<W: ?Sized> fmt::Debug for Submitted<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Submitted").field("cookie", &self.cookie).finish()
    }
}

impl crate::Domain {
    /// Submits a boxed item; its ownership moves in and comes back through
    /// [`Submitted::wait`] or `.await`, so the same memory can never describe
    /// two outstanding calls:
    ///
    /// ```compile_fail
    /// # use kasync_core as kasync;
    /// # use kasync::{Cookie, Item, Work};
    /// # struct Nop;
    /// # impl Work for Nop { fn run(&mut self, _: Cookie) {} }
    /// # let rt = kasync::Runtime::new().unwrap();
    /// let item = Item::new(Nop);
    /// let first = rt.default_domain().submit(item);
    /// let second = rt.default_domain().submit(item); // error: `item` was moved
    /// ```
    pub fn submit<W: Work>(&self, item: Box<Item<W>>) -> Submitted<W> {
        match self.submit_boxed(item, Admission::Policy) {
            Ok(submitted) => submitted,
            Err(item) => {
                drop(item);
                crate::api::domain::reject_panic()
            }
        }
    }

    /// Like [`Domain::submit`](crate::Domain::submit), but when the runtime
    /// already has `max_pending` unfinished calls the item comes back in
    /// [`Full`](crate::Full), unsubmitted, whatever the overflow policy.
    pub fn try_submit<W: Work>(&self, item: Box<Item<W>>) -> Result<Submitted<W>, crate::Full<Box<Item<W>>>> {
        self.submit_boxed(item, Admission::Try).map_err(crate::Full)
    }

    fn submit_boxed<W: Work>(&self, item: Box<Item<W>>, admission: Admission) -> Result<Submitted<W>, Box<Item<W>>> {
        self.submit_owned(item, admission, Mode::Owned, |ptr| Body::Item(Item::erase(ptr, false)))
    }

    /// Submits a boxed item whose work lets go of what it holds when its call
    /// is cancelled (`spawn`'s task); `mode` is `Owned`, or `Grouped` for a
    /// `TaskSet`'s member.
    pub(crate) fn submit_cancellable<W: crate::model::item::Cancellable>(
        &self,
        item: Box<Item<W>>,
        mode: Mode,
    ) -> Submitted<W> {
        match self.submit_owned(item, Admission::Policy, mode, |ptr| {
            Body::Item(crate::model::item::erase_cancellable(ptr))
        }) {
            Ok(submitted) => submitted,
            Err(item) => {
                drop(item);
                crate::api::domain::reject_panic()
            }
        }
    }

    /// Submits a boxed item whose call is the async call `make` returns; the
    /// item learns of its end (`spawn_async`'s task).
    pub(crate) fn submit_async<W: Work>(
        &self,
        item: Box<Item<W>>,
        make: Box<dyn FnOnce(Cookie) -> crate::model::call::BoxFuture + Send + 'static>,
    ) -> Submitted<W> {
        let body = |ptr| Body::Async(make, Some(Item::erase(ptr, false)));
        match self.submit_owned(item, Admission::Policy, Mode::Owned, body) {
            Ok(submitted) => submitted,
            Err(item) => {
                drop(item);
                crate::api::domain::reject_panic()
            }
        }
    }

    /// Submits a boxed item its handle will take back (`mode`: `Owned` or
    /// `Grouped`), as the call `body` makes of it.
    fn submit_owned<W: Work>(
        &self,
        item: Box<Item<W>>,
        admission: Admission,
        mode: Mode,
        body: impl FnOnce(NonNull<Item<W>>) -> Body,
    ) -> Result<Submitted<W>, Box<Item<W>>> {
        let ptr = NonNull::from(Box::leak(item));
        let prepare = &mut |st: &mut State| {
            // SAFETY: we own the item; nobody else can reach it yet.
            unsafe { header_of(ptr) }.with(st, |slot| {
                slot.mode = mode;
                slot.done = false;
                slot.panic = None;
            });
        };
        match self.submit_erased(body(ptr), prepare, admission) {
            Some(cookie) => Ok(Submitted {
                shared: self.shared().clone(),
                domain: self.id(),
                cookie,
                item: Some(ptr),
                domain_name: self.name_arc(),
            }),
            // SAFETY: refused before anything saw the pointer; we still own it.
            None => Err(unsafe { Box::from_raw(ptr.as_ptr()) }),
        }
    }

    /// Submits a boxed item that kasync frees after it runs (the seed's kfree
    /// flag). `W`'s `Drop` is the free function: it runs exactly once, after
    /// `run` and before the call counts as finished, so a barrier covering
    /// the item returns only after it was freed.
    pub fn submit_detached<W: Work>(&self, item: Box<Item<W>>) -> Cookie {
        let ptr = NonNull::from(Box::leak(item));
        let prepare = &mut |st: &mut State| {
            // SAFETY: we own the item; nobody else can reach it yet.
            unsafe { header_of(ptr) }.with(st, |slot| slot.mode = Mode::Detached);
        };
        match self.submit_erased(Body::Item(Item::erase(ptr, true)), prepare, Admission::Policy) {
            Some(cookie) => cookie,
            None => {
                // SAFETY: refused before anything saw the pointer; we own it.
                drop(unsafe { Box::from_raw(ptr.as_ptr()) });
                crate::api::domain::reject_panic()
            }
        }
    }
}

#[cfg(all(test, not(loom), feature = "threads"))]
mod tests {
    //! The unsafe parts' lifecycle on real threads; named `miri_*` so CI runs
    //! them under miri.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::{Cookie, Item, Runtime, Work};

    struct Count(Arc<AtomicUsize>, u64);

    impl Work for Count {
        fn run(&mut self, cookie: Cookie) {
            self.1 += cookie.get();
        }
    }

    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn rt() -> Runtime {
        Runtime::builder().max_workers(1).no_stall_watchdog().build().unwrap()
    }

    #[test]
    fn miri_submit_wait_detach_and_scope() {
        let rt = rt();
        let drops = Arc::new(AtomicUsize::new(0));
        let domain = rt.default_domain();
        let mut item = Item::new(Count(drops.clone(), 0));
        for _ in 0..3 {
            item = domain.submit(item).wait().unwrap();
        }
        assert!(item.1 > 0);
        drop(domain.submit(item)); // detached via drop
        domain.submit_detached(Item::new(Count(drops.clone(), 0)));
        let mut local = [
            Item::local(Count(drops.clone(), 0)),
            Item::local(Count(drops.clone(), 0)),
        ];
        domain.scope(|s| {
            for item in local.iter_mut() {
                s.submit(item);
            }
        });
        assert!(local.iter().all(|i| i.1 > 0));
        domain.synchronize().wait().unwrap();
        drop(local);
        // The dropped handle's item may be freed by the worker just after the
        // barrier, but before the worker leaves, and the runtime's drop waits
        // for that.
        drop(rt);
        assert_eq!(drops.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn miri_runtime_drop_frees_every_pending_item() {
        let rt = rt();
        let drops = Arc::new(AtomicUsize::new(0));
        let domain = rt.exclusive_domain("pending");
        for _ in 0..4 {
            domain.submit_detached(Item::new(Count(drops.clone(), 0)));
            drop(domain.submit(Item::new(Count(drops.clone(), 0))));
        }
        drop(rt);
        assert_eq!(drops.load(Ordering::SeqCst), 8);
    }

    #[test]
    fn miri_panicking_item_comes_back() {
        struct Boom;
        impl Work for Boom {
            fn run(&mut self, _: Cookie) {
                panic!("boom");
            }
        }
        let rt = rt();
        match rt.default_domain().submit(Item::new(Boom)).wait() {
            Err(crate::WaitError::Panicked { item, report }) => {
                assert_eq!(report.message(), "boom");
                drop(item);
            }
            _ => panic!("expected the item back with its panic"),
        }
    }
}
