//! Running a claimed call on this thread: panic capture, the async call's
//! future, and recording its end.

use crate::base::sync::MutexGuard;
use crate::engine::context::{self, AsyncPollGuard, Frame, FrameGuard};
use crate::engine::observe::{self, CallObserver};
use crate::engine::pool::act::{self, BlockedWorker};
use crate::engine::shared::Shared;
use crate::model::awaiting::Awaited;
use crate::model::call::{self, Body, BoxFuture, Claimed, Finished};
use crate::model::ids::DomainId;
use crate::model::item::ItemCall;
use crate::model::state::{Nudge, State, Wakeups};
use crate::Cookie;
use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Turns a panic payload into a message, and drops the payload where its
/// own `Drop` may panic too (a payload is any value): that second panic is
/// contained, and a third (the second one's payload panicking on drop) is
/// avoided by leaking that payload. A worker never unwinds out of a call.
pub(crate) fn panic_message(payload: Box<dyn Any + Send>) -> Arc<str> {
    let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("<non-string panic payload>")
    };
    if let Err(second) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
    message
}

/// Runs `f`, catching a panic as its message.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Arc<str>> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(panic_message)
}

/// Runs a claimed call on this thread. Returns its outcome when it finished
/// here, or `None` when it became a future on the executor, which reports its
/// own outcome when it completes.
pub(crate) fn execute(shared: &Arc<Shared>, call: Claimed) -> Option<Finished> {
    if call.cancelled {
        return Some(settle(shared, call));
    }
    let frame = Frame {
        runtime: shared.id(),
        domain: call.domain,
        cookie: call.cookie,
    };
    let observer = observe::call_started(shared, call.domain, call.cookie);
    let span = observer.enter();
    let guard = FrameGuard::enter(frame);
    let finished = match call.body {
        Body::Blocking(f) => {
            let result = catch(move || f.call(call.cookie));
            drop(guard);
            Some(result.into())
        }
        Body::Item(item) => {
            let outcome = catch(|| item.run(call.cookie));
            if item.is_detached() {
                // The seed's kfree flag: freed before the call counts as
                // finished, so a barrier over it returns after the free. The
                // free still runs inside the call's frame: a `Drop` that
                // waits on the runtime (or drops its last handle) is refused
                // as a self-wait instead of hanging.
                let freed = catch(|| item.free());
                drop(guard);
                Some(outcome.and(freed).into())
            } else {
                drop(guard);
                Some(Finished {
                    outcome,
                    item: Some(item),
                    cancelled: false,
                })
            }
        }
        Body::Async(make, item) => {
            let made = catch(move || make(call.cookie));
            drop(guard);
            match made {
                Ok(future) => {
                    drop(span);
                    let future = CallFuture {
                        shared: Some(shared.clone()),
                        frame,
                        future: Some(future),
                        observer: Some(observer),
                        blocked: None,
                        item,
                        awaiting: Vec::new(),
                        waker: None,
                    };
                    shared.executor.spawn_future(Box::pin(future));
                    return None;
                }
                Err(message) => Some(Finished {
                    outcome: Err(message),
                    item,
                    cancelled: false,
                }),
            }
        }
    };
    drop(span);
    if let Some(finished) = &finished {
        observer.finished(shared, finished.outcome.is_err());
    }
    finished
}

/// Settles a cancelled call on this thread: what it held is dropped (a
/// task's closure, an async call's maker) and a detached item freed, in its
/// frame, as a call's own drops run; a panic there is the call's. It then
/// ends through `record_end`, which tells its item it was cancelled.
fn settle(shared: &Arc<Shared>, call: Claimed) -> Finished {
    observe::cancelled(shared, call.cookie);
    let _frame = shared.call_frame(call.domain, call.cookie);
    let (outcome, item) = match call.body {
        Body::Item(item) => {
            let told = catch(|| item.tell_cancelled());
            if item.is_detached() {
                // Nobody takes it back: freed before the call ends, as a
                // detached item that ran is.
                (told.and(catch(move || item.free())), None)
            } else {
                (told, Some(item))
            }
        }
        Body::Async(make, item) => (catch(move || drop(make)), item),
        body @ Body::Blocking(_) => (catch(move || drop(body)), None),
    };
    Finished {
        outcome,
        item,
        cancelled: true,
    }
}

/// An async call on its executor. Each poll runs with the call's frame pushed,
/// so `current_cookie()` and the deadlock check work inside it; completion (or
/// a panic, or the executor dropping it) finishes the call exactly once.
struct CallFuture {
    shared: Option<Arc<Shared>>,
    frame: Frame,
    /// Dropped (inside `catch`: its `Drop` is user code) when it completes.
    future: Option<BoxFuture>,
    /// Taken when the call finishes.
    observer: Option<CallObserver>,
    /// The item that learns of the call's end (`spawn_async`'s task).
    item: Option<ItemCall>,
    /// Set while the kasync worker polling it waits for it to be woken:
    /// on an executor that polls futures on the caller (threads), a
    /// pending poll blocks that worker, so *compensate at once* replaces it.
    blocked: Option<BlockedWorker>,
    /// The kasync waits of its runtime its last pending poll awaited, as
    /// the runtime knows them (`State::set_awaiting`), and the waker it
    /// published with them.
    awaiting: Vec<Awaited>,
    waker: Option<Waker>,
}

impl CallFuture {
    /// The worker polling this future, if a pending poll blocks it.
    fn blocking_worker(shared: &Shared) -> Option<usize> {
        if shared.executor.polls_futures_on_caller() {
            context::worker_slot(shared.id())
        } else {
            None
        }
    }
}

impl Future for CallFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(shared) = this.shared.clone() else {
            return Poll::Ready(());
        };
        if let Some(worker) = this.blocked.take() {
            // Polled again on the worker it blocked, as `polls_futures_on_caller`
            // promises. An executor that broke that promise moved the future:
            // its worker went on, and its next phase change replaced Blocked.
            if context::worker_slot(shared.id()) == Some(worker.slot()) {
                act::unblock_worker(&mut shared.lock(), worker);
            }
        }
        let outcome = loop {
            let Some(future) = this.future.as_mut() else {
                return Poll::Ready(());
            };
            let (result, awaited) = {
                let _span = this.observer.as_ref().map(CallObserver::enter);
                let _frame = FrameGuard::enter(this.frame);
                let poll = AsyncPollGuard::enter();
                let result = catch(|| future.as_mut().poll(cx));
                (result, poll.finish(shared.id()))
            };
            match result {
                Ok(Poll::Pending) => {
                    if this.help_here(&shared, &awaited) {
                        // Ran a call it awaits: poll again at once.
                        continue;
                    }
                    this.publish_awaiting(&shared, awaited, cx.waker());
                    if let Some(slot) = Self::blocking_worker(&shared) {
                        let (st, worker) = act::block_worker(&shared, shared.lock(), slot);
                        drop(st);
                        this.blocked = Some(worker);
                    }
                    return Poll::Pending;
                }
                Ok(Poll::Ready(())) => {
                    let future = this.future.take();
                    let _frame = FrameGuard::enter(this.frame);
                    break catch(move || drop(future));
                }
                Err(message) => {
                    let future = this.future.take();
                    let _frame = FrameGuard::enter(this.frame);
                    // The first panic is the one to report.
                    let _ = catch(move || drop(future));
                    break Err(message);
                }
            }
        };
        this.publish_awaiting(&shared, Vec::new(), cx.waker());
        if let Some(shared) = this.shared.take() {
            if let Some(observer) = this.observer.take() {
                observer.finished(&shared, outcome.is_err());
            }
            let item = this.item.take();
            shared.finish_call(
                this.frame.domain,
                this.frame.cookie,
                Finished {
                    outcome,
                    item,
                    cancelled: false,
                },
            );
        }
        Poll::Ready(())
    }
}

impl CallFuture {
    /// *Borrow the waiter's thread* on the thread polling a pending call, where the executor polls
    /// futures on the caller (the threads adapter): that thread blocks until
    /// the call is woken, so it first runs a queued call the poll awaits,
    /// with the pending call's frame pushed (a wait in the helped call that
    /// covers it is refused, as on any call's stack). Returns whether it ran
    /// one.
    fn help_here(&self, shared: &Arc<Shared>, awaited: &[Awaited]) -> bool {
        let config = &shared.config;
        if awaited.is_empty()
            || !shared.executor.polls_futures_on_caller()
            || !config.help
            || context::depth() + 1 >= config.help_depth
        {
            return false;
        }
        let claimed = {
            let mut st = shared.lock();
            let claimed = awaited.iter().find_map(|&a| st.claim_awaited_call(a));
            if claimed.is_some() {
                st.counters.helped += 1;
            }
            claimed
        };
        let Some(claimed) = claimed else {
            return false;
        };
        let _frame = FrameGuard::enter(self.frame);
        shared.run_claimed(claimed);
        true
    }

    /// Tells the runtime what this pending call awaits (nothing once it is
    /// polled to its end), so a thread waiting for it may run those calls,
    /// and how to nudge its waiters (`waker`, its item) when such a call is
    /// queued later; wakes the threads waiting for it when it starts to
    /// await something. Takes the lock only when that changed.
    fn publish_awaiting(&mut self, shared: &Shared, awaited: Vec<Awaited>, waker: &Waker) {
        let same_waker = self.waker.as_ref().is_some_and(|w| w.will_wake(waker));
        if awaited == self.awaiting && (awaited.is_empty() || same_waker) {
            return;
        }
        let (domain, cookie) = (self.frame.domain, self.frame.cookie);
        let nudge = Nudge {
            future: Arc::new(waker.clone()),
            item: self.item.as_ref().map(ItemCall::header_ptr),
        };
        let mut wakeups = Wakeups::default();
        let mut st = shared.lock();
        let (awaiting, unkept) = st.set_awaiting(domain, cookie, awaited.clone(), nudge);
        if awaiting && awaited != self.awaiting {
            st.wake_helper_for(domain, cookie);
            if let Some(item) = &self.item {
                item.wake_waiter(&mut st, &mut wakeups);
            }
        }
        drop(st);
        drop(unkept); // after unlocking: it holds a waker
        self.awaiting = awaited;
        self.waker = Some(waker.clone());
        wakeups.wake_all();
    }
}

impl Drop for CallFuture {
    fn drop(&mut self) {
        if let (Some(shared), Some(worker)) = (&self.shared, self.blocked.take()) {
            if context::worker_slot(shared.id()) == Some(worker.slot()) {
                act::unblock_worker(&mut shared.lock(), worker);
            }
        }
        if let Some(shared) = self.shared.clone() {
            self.publish_awaiting(&shared, Vec::new(), futures::task::noop_waker_ref());
        }
        if let Some(shared) = self.shared.take() {
            // Its own `Drop` is user code: contained, like a panic in a poll,
            // and run in the call's frame, as the call's own drops are (a
            // drop that waits on its call is refused, not a hang).
            let future = self.future.take();
            let frame = FrameGuard::enter(self.frame);
            let _ = catch(move || drop(future));
            drop(frame);
            if let Some(observer) = self.observer.take() {
                observer.finished(&shared, true);
            }
            // The executor dropped the future before it finished (it shut
            // down). Finish the call anyway so no barrier hangs, and say why.
            shared.finish_call(
                self.frame.domain,
                self.frame.cookie,
                Finished {
                    outcome: Err(Arc::from("async call was dropped by its executor before it finished")),
                    item: self.item.take(),
                    cancelled: false,
                },
            );
        }
    }
}

impl Shared {
    /// Runs a claimed call on this thread and records its end.
    pub(crate) fn run_claimed(self: &Arc<Self>, claimed: call::Claimed) {
        let (domain, cookie) = (claimed.domain, claimed.cookie);
        if let Some(finished) = execute(self, claimed) {
            self.finish_call(domain, cookie, finished);
        }
    }

    /// Records that a call finished, given the lock; returns who to wake
    /// once it is released. An item whose handle was dropped while it ran
    /// is freed first, with the lock released and inside the call's frame,
    /// as a detached item is: a panic in its `Drop` is the call's panic,
    /// reported by the barriers covering it, and a `Drop` that waits on its
    /// own call is refused instead of hanging.
    pub(crate) fn record_end<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        domain: DomainId,
        cookie: Cookie,
        mut finished: call::Finished,
    ) -> (MutexGuard<'a, State>, Wakeups) {
        if let Some(item) = finished.item.take_if(|item| item.is_orphaned(&mut st)) {
            drop(st);
            let freed = {
                let _frame = self.call_frame(domain, cookie);
                catch(move || item.free())
            };
            finished.outcome = finished.outcome.and(freed);
            st = self.lock();
        }
        let mut wakeups = Wakeups::default();
        self.finish_locked(&mut st, domain, cookie, finished, &mut wakeups);
        (st, wakeups)
    }

    /// Records that a call finished and wakes whoever that satisfies.
    pub(crate) fn finish_call(&self, domain: DomainId, cookie: Cookie, finished: call::Finished) {
        let (st, wakeups) = self.record_end(self.lock(), domain, cookie, finished);
        drop(st);
        wakeups.wake_all();
    }

    fn finish_locked(
        &self,
        st: &mut State,
        domain: DomainId,
        cookie: Cookie,
        finished: call::Finished,
        wakeups: &mut Wakeups,
    ) {
        // The item learns of its end in the same critical section in which
        // the call stops counting as pending.
        if finished.cancelled {
            if let Some(item) = finished.item {
                // An owned item learns it was cancelled; an orphaned one was
                // freed above, a detached one when it was settled.
                let leftover = item.cancel(st, wakeups);
                debug_assert!(leftover.is_none(), "an item nobody takes back is freed first");
            }
            st.finish_cancelled(domain, cookie, finished.outcome, wakeups);
        } else {
            st.finish(domain, cookie, finished.outcome, finished.item, wakeups);
        }
        if st.space_waiters > 0 {
            self.space_cv.notify_one();
        }
        self.notify_drain(st);
    }
}
