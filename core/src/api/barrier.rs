//! Barriers: one value, two ways to wait — `.await` (holds no thread) or
//! `.wait()` (blocks, and helps by running the calls it waits for).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::FusedFuture;

use crate::api::domain::Domain;
use crate::base::error::SyncError;
use crate::base::executor::Blocking;
use crate::base::sync::{now, MutexGuard};
use crate::engine::blocking::{block_permitted, blocking_permission};
use crate::engine::context::{self};
use crate::engine::observe::{self};
use crate::engine::pool::{self};
use crate::engine::shared::Shared;
use crate::model::ids::Scope;
use crate::model::ids::WaiterId;
use crate::model::state::{State, Wake};
use crate::Cookie;

/// A wait for a set of calls: everything in a domain
/// ([`Domain::synchronize`]), everything before a cookie
/// ([`Domain::synchronize_cookie`]) or everything in every registered domain
/// ([`Runtime::synchronize_full`](crate::Runtime::synchronize_full)).
///
/// A barrier starts watching when it is made: it reports every panic in its
/// range that happens from then on, plus any earlier panic in its range that
/// no other barrier had reported when it was made. A call with a handle (a
/// [`Task`](crate::Task), a [`Submitted`](crate::Submitted), a scope)
/// delivers its panic there instead, and no barrier reports it, unless the
/// handle is dropped before it took it: then the barriers get it, as
/// though the call had panicked at that moment. Wait for it in one of two
/// ways:
///
/// * `.await` it: it is a `Future<Output = Result<(), SyncError>>` that works
///   on any executor and holds no thread while pending;
/// * [`Barrier::wait`] from blocking code: the thread first runs queued calls
///   the barrier covers, lowest cookie first (they must finish anyway), then
///   blocks.
///
/// ```
/// # use kasync_core as kasync;
/// let rt = kasync::Runtime::new().unwrap();
/// rt.schedule(|_| {});
/// // Blocking:
/// rt.synchronize_full().wait().unwrap();
/// // Or from async code, on any executor:
/// futures::executor::block_on(async { rt.synchronize_full().await }).unwrap();
/// ```
///
/// Dropping a barrier without waiting is fine; the calls run regardless.
#[must_use = "a barrier does nothing unless waited for or awaited"]
pub struct Barrier {
    shared: Arc<Shared>,
    waiter: Option<WaiterId>,
    /// The result once taken, so polling again after completion repeats it.
    result: Option<Result<(), SyncError>>,
    /// Keeps a domain barrier's domain alive.
    _domain: Option<Domain>,
    /// When an observed `.await` first found the barrier pending.
    pending_since: Option<Instant>,
    /// Whether `poll` returned `Ready` ([`FusedFuture::is_terminated`]).
    terminated: bool,
}

impl Barrier {
    pub(crate) fn new(shared: Arc<Shared>, scope: Scope, below: u64, domain: Option<Domain>) -> Barrier {
        let waiter = shared.lock().add_waiter(scope, below);
        Barrier {
            shared,
            waiter,
            // Already satisfied, nothing to report: done without registering.
            result: if waiter.is_none() { Some(Ok(())) } else { None },
            _domain: domain,
            pending_since: None,
            terminated: false,
        }
    }

    /// A barrier whose calls have all finished, with nothing to report.
    pub(crate) fn finished(shared: Arc<Shared>) -> Barrier {
        Barrier {
            shared,
            waiter: None,
            result: Some(Ok(())),
            _domain: None,
            pending_since: None,
            terminated: false,
        }
    }

    /// Whether the barrier's calls have all finished, without waiting.
    pub fn is_finished(&self) -> bool {
        match self.waiter {
            Some(id) => self.shared.lock().waiter_done(id),
            None => true,
        }
    }

    /// Former name of [`Barrier::is_finished`].
    #[deprecated(since = "0.2.0", note = "renamed `is_finished`, as on `Task` and `Submitted`")]
    pub fn is_done(&self) -> bool {
        self.is_finished()
    }

    /// Blocks until the barrier's calls have finished, running queued calls
    /// it covers on this thread meanwhile, lowest cookie first (the growth
    /// rule's "borrow the waiter's thread").
    ///
    /// Returns [`SyncError::Panicked`] if a covered call panicked,
    /// [`SyncError::WouldDeadlock`] at once if the barrier covers a call
    /// running on this very thread, and [`SyncError::BlockingNotAllowed`]
    /// where blocking would stall an async runtime (`.await` there
    /// instead). After `Ok` or `Panicked`, waiting again returns the same
    /// result at once; after any other error the barrier is still waitable.
    pub fn wait(&mut self) -> Result<(), SyncError> {
        self.block(true, None)
    }

    /// Like [`Barrier::wait`], but never runs calls on this thread: for
    /// callers that hold locks a scheduled call might need.
    pub fn wait_no_help(&mut self) -> Result<(), SyncError> {
        self.block(false, None)
    }

    /// Like [`Barrier::wait_no_help`], giving up with [`SyncError::TimedOut`]
    /// after `timeout`. It does not help, so it returns on time; the calls
    /// keep running after a timeout, and the barrier is still waitable.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<(), SyncError> {
        let deadline = now().checked_add(timeout);
        self.block(false, deadline)
    }

    /// The waiter's own call that this barrier covers, if any.
    fn own_call(&self, st: &State, id: WaiterId) -> Option<Cookie> {
        let (scope, below) = st.waiter_scope(id);
        context::find_own_call(self.shared.id(), |frame| {
            st.covers_call(scope, below, frame.domain, frame.cookie)
        })
    }

    /// Records the barrier's result: `Ok` and a panic are final (the
    /// waiter is gone, the result kept for later waits and polls). Any
    /// other error leaves the barrier waitable: only this wait's wake-up is
    /// taken back, and dropped (it may hold a waker: foreign code) after the
    /// lock is released.
    fn finish(
        &mut self,
        mut st: MutexGuard<'_, State>,
        id: WaiterId,
        result: Result<(), SyncError>,
    ) -> Result<(), SyncError> {
        let registration = match &result {
            Ok(()) | Err(SyncError::Panicked(_)) => {
                self.waiter = None;
                self.result = Some(result.clone());
                Wake::Nobody
            }
            Err(_) => st.set_wake(id, Wake::Nobody, false),
        };
        drop(st);
        drop(registration);
        result
    }

    fn block(&mut self, help: bool, deadline: Option<Instant>) -> Result<(), SyncError> {
        let shared = self.shared.clone();
        // Kasync's own workers may always block; elsewhere the adapter says.
        // Asked first, even if the barrier is done, so the answer does not
        // depend on timing.
        let permission = blocking_permission(&shared);
        if let Blocking::Forbidden(reason) = permission {
            return Err(SyncError::BlockingNotAllowed {
                executor: shared.executor.name(),
                reason,
            });
        }
        let Some(id) = self.waiter else {
            return self.result.clone().unwrap_or(Ok(()));
        };
        let mut st = shared.lock();
        if st.waiter_done(id) {
            let result = st.take_result(id);
            return self.finish(st, id, result);
        }
        if let Some(waiter) = self.own_call(&st, id) {
            return self.finish(st, id, Err(SyncError::WouldDeadlock { waiter }));
        }
        block_permitted(&shared, st, permission, |st| {
            self.block_here(&shared, st, id, help, deadline)
        })
    }

    /// The blocking wait proper, entered with the state locked.
    fn block_here<'a>(
        &mut self,
        shared: &'a Arc<Shared>,
        st: MutexGuard<'a, State>,
        id: WaiterId,
        help: bool,
        deadline: Option<Instant>,
    ) -> Result<(), SyncError> {
        let (scope, below) = st.waiter_scope(id);
        // Every call the barrier covers is one it waits for: lowest first.
        let mut claim = |st: &mut State| st.claim_for_barrier(scope, below);
        let wait = pool::Wait {
            scope,
            below,
            // The barrier keeps its domain alive: the state has the name.
            domain_name: None,
            help: help.then_some(&mut claim as pool::Helper),
            deadline,
        };
        let (mut st, done) = pool::block_until(
            shared,
            st,
            wait,
            &mut |st| st.waiter_done(id),
            &mut |st, wake, helper| st.set_wake(id, wake, helper),
        );
        let result = if done {
            st.take_result(id)
        } else {
            Err(SyncError::TimedOut)
        };
        self.finish(st, id, result)
    }
}

impl Future for Barrier {
    type Output = Result<(), SyncError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(id) = this.waiter else {
            this.terminated = true;
            return Poll::Ready(this.result.clone().unwrap_or(Ok(())));
        };
        let shared = this.shared.clone();
        // Cloned before locking: a waker's clone is foreign code, which may
        // call kasync (dropped, if unused, after the lock is released).
        let waker = cx.waker().clone();
        let mut st = shared.lock();
        if st.waiter_done(id) {
            let observed = this.pending_since.and_then(|since| {
                let (scope, below) = st.waiter_scope(id);
                // The barrier keeps its domain alive: the state has the name.
                observe::wait_finished(&st, scope, below, None, Some(since))
            });
            let result = st.take_result(id);
            let result = this.finish(st, id, result);
            if let Some(finished) = observed {
                finished.report(&shared, 0, false);
            }
            this.terminated = true;
            return Poll::Ready(result);
        }
        if let Some(waiter) = this.own_call(&st, id) {
            this.terminated = true;
            return Poll::Ready(this.finish(st, id, Err(SyncError::WouldDeadlock { waiter })));
        }
        if this.pending_since.is_none() {
            this.pending_since = observe::wait_started(&shared);
        }
        let (scope, below) = st.waiter_scope(id);
        let awaited = st.awaited_range(scope, below);
        let previous = st.set_wake(id, Wake::Task(waker), false);
        drop(st);
        drop(previous);
        // Inside an async call: the thread that polls it, or one waiting
        // for it, may run what this barrier waits for.
        context::note_awaited(shared.id(), awaited);
        Poll::Pending
    }
}

impl FusedFuture for Barrier {
    /// True once `poll` has returned `Ready`; a barrier done when it was
    /// made is not terminated until it is polled, so `select!` polls it.
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        if let Some(id) = self.waiter.take() {
            let registration = self.shared.lock().remove_waiter(id);
            drop(registration); // after unlocking: it may hold a waker
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("finished", &self.is_finished())
            .finish()
    }
}
