//! One scheduled call: its body, how it runs on a thread, and how a panic in it
//! is turned into a report instead of a hang.

use std::any::Any;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::context::{AsyncPollGuard, Frame, FrameGuard};
use crate::domain::DomainId;
use crate::inline_fn::BlockingFn;
use crate::item::ItemCall;
use crate::observe::{self, CallObserver};
use crate::runtime::Shared;
use crate::Cookie;

/// A boxed, sendable future: what async calls hand to the executor.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// How a call ended: `Err` carries the panic message.
pub(crate) type Outcome = Result<(), Arc<str>>;

/// What a call runs.
pub(crate) enum Body {
    /// A blocking function: the kernel's `async_func_t`. Kept inline when
    /// small; boxing a big one is the one allocation a closure costs.
    Blocking(BlockingFn),
    /// A function that makes a future, polled on the runtime's executor.
    Async(Box<dyn FnOnce(Cookie) -> BoxFuture + Send + 'static>),
    /// Caller-owned memory: queued by pointer, no allocation.
    Item(ItemCall),
}

/// A call that ended on the thread that ran it.
pub(crate) struct Finished {
    pub(crate) outcome: Outcome,
    /// The item to tell about it (not for detached items: already freed).
    pub(crate) item: Option<ItemCall>,
}

impl From<Outcome> for Finished {
    fn from(outcome: Outcome) -> Finished {
        Finished { outcome, item: None }
    }
}

/// A claimed call, ready to run on the claiming thread.
pub(crate) struct Claimed {
    pub(crate) domain: DomainId,
    pub(crate) cookie: Cookie,
    pub(crate) body: Body,
}

/// Turns a panic payload into a message.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("<non-string panic payload>")
    }
}

/// Runs a claimed call on this thread. Returns its outcome when it finished
/// here, or `None` when it became a future on the executor, which reports its
/// own outcome when it completes.
pub(crate) fn execute(shared: &Arc<Shared>, call: Claimed) -> Option<Finished> {
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
            let result = panic::catch_unwind(AssertUnwindSafe(move || f.call(call.cookie)));
            drop(guard);
            Some(result.map_err(|payload| panic_message(&*payload)).into())
        }
        Body::Item(item) => {
            let result = panic::catch_unwind(AssertUnwindSafe(|| item.run(call.cookie)));
            let outcome = result.map_err(|payload| panic_message(&*payload));
            if item.is_detached() {
                // The seed's kfree flag: freed before the call counts as
                // finished, so a barrier over it returns after the free. The
                // free still runs inside the call's frame: a `Drop` that
                // waits on the runtime (or drops its last handle) is refused
                // as a self-wait instead of hanging.
                let freed = panic::catch_unwind(AssertUnwindSafe(|| item.free()));
                drop(guard);
                let outcome = match (outcome, freed) {
                    (Err(message), _) => Err(message),
                    (Ok(()), Err(payload)) => Err(panic_message(&*payload)),
                    (Ok(()), Ok(())) => Ok(()),
                };
                Some(outcome.into())
            } else {
                drop(guard);
                Some(Finished {
                    outcome,
                    item: Some(item),
                })
            }
        }
        Body::Async(make) => {
            let made = panic::catch_unwind(AssertUnwindSafe(move || make(call.cookie)));
            drop(guard);
            match made {
                Ok(future) => {
                    drop(span);
                    let future = CallFuture {
                        shared: Some(shared.clone()),
                        frame,
                        future,
                        observer: Some(observer),
                    };
                    shared.executor.spawn_future(Box::pin(future));
                    return None;
                }
                Err(payload) => Some(Err(panic_message(&*payload)).into()),
            }
        }
    };
    drop(span);
    if let Some(finished) = &finished {
        observer.finished(shared, finished.outcome.is_err());
    }
    finished
}

/// An async call on its executor. Each poll runs with the call's frame pushed,
/// so `current_cookie()` and the deadlock check work inside it; completion (or
/// a panic, or the executor dropping it) finishes the call exactly once.
struct CallFuture {
    shared: Option<Arc<Shared>>,
    frame: Frame,
    future: BoxFuture,
    /// Taken when the call finishes.
    observer: Option<CallObserver>,
}

impl Future for CallFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.shared.is_none() {
            return Poll::Ready(());
        }
        let result = {
            let _span = this.observer.as_ref().map(CallObserver::enter);
            let _frame = FrameGuard::enter(this.frame);
            let _poll = AsyncPollGuard::enter();
            let future = &mut this.future;
            panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)))
        };
        let outcome = match result {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(())) => Ok(()),
            Err(payload) => Err(panic_message(&*payload)),
        };
        if let Some(shared) = this.shared.take() {
            if let Some(observer) = this.observer.take() {
                observer.finished(&shared, outcome.is_err());
            }
            shared.finish_call(this.frame.domain, this.frame.cookie, outcome.into());
        }
        Poll::Ready(())
    }
}

impl Drop for CallFuture {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            if let Some(observer) = self.observer.take() {
                observer.finished(&shared, true);
            }
            // The executor dropped the future before it finished (it shut
            // down). Finish the call anyway so no barrier hangs, and say why.
            shared.finish_call(
                self.frame.domain,
                self.frame.cookie,
                Finished::from(Err(Arc::from(
                    "async call was dropped by its executor before it finished",
                ))),
            );
        }
    }
}
