//! One scheduled call: its body, how it runs on a thread, and how a panic in it
//! is turned into a report instead of a hang.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::base::inline_fn::BlockingFn;
use crate::model::ids::DomainId;
use crate::model::item::ItemCall;
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
    /// A function that makes a future, polled on the runtime's executor;
    /// with the item that learns of its end (`spawn_async`'s task).
    Async(Box<dyn FnOnce(Cookie) -> BoxFuture + Send + 'static>, Option<ItemCall>),
    /// Caller-owned memory: queued by pointer, no allocation.
    Item(ItemCall),
}

impl Body {
    /// Whether this is an item borrowed by a scope (never cancelled).
    pub(crate) fn is_scoped(&self) -> bool {
        matches!(self, Body::Item(item) if item.is_scoped())
    }
}

/// A call that ended on the thread that ran it.
pub(crate) struct Finished {
    pub(crate) outcome: Outcome,
    /// The item to tell about it (not for detached items: already freed).
    pub(crate) item: Option<ItemCall>,
    /// It was cancelled: its body was dropped, not run.
    pub(crate) cancelled: bool,
}

impl From<Outcome> for Finished {
    fn from(outcome: Outcome) -> Finished {
        Finished {
            outcome,
            item: None,
            cancelled: false,
        }
    }
}

/// A claimed call, ready to run on the claiming thread, or, if it was
/// cancelled, to be settled there: its body dropped in its frame, without
/// running.
pub(crate) struct Claimed {
    pub(crate) domain: DomainId,
    pub(crate) cookie: Cookie,
    pub(crate) body: Body,
    pub(crate) cancelled: bool,
}
