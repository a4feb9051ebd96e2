//! Whether, and how, the calling thread may block on a runtime's waits:
//! kasync's own workers always may; elsewhere the executor adapter says.

use crate::base::executor::Blocking;
use crate::base::sync::MutexGuard;
use crate::engine::context::{self};
use crate::engine::shared::Shared;
use crate::model::state::State;
use std::sync::Arc;

/// Whether (and how) the calling thread may block on `shared`'s barriers.
/// Kasync's own workers may always block; elsewhere the adapter says.
pub(crate) fn blocking_permission(shared: &Shared) -> Blocking {
    if context::is_any_worker() {
        Blocking::Allowed
    } else {
        shared.executor.blocking(context::in_async_poll())
    }
}

/// Runs a blocking wait as this thread may block (the caller has already
/// refused [`Blocking::Forbidden`]): here, with the lock the caller holds, or
/// inside the executor's `block_in_place`, locking again there. Barriers and
/// items both block through this, so they behave the same on every adapter.
pub(crate) fn block_permitted<'a, R>(
    shared: &'a Arc<Shared>,
    st: MutexGuard<'a, State>,
    permission: Blocking,
    wait: impl FnOnce(MutexGuard<'a, State>) -> R,
) -> R {
    if permission != Blocking::InPlace {
        return wait(st);
    }
    drop(st);
    let mut wait = Some(wait);
    let mut result = None;
    shared.executor.block_in_place(&mut || {
        if let Some(wait) = wait.take() {
            result = Some(wait(shared.lock()));
        }
    });
    match (result, wait) {
        (Some(result), _) => result,
        // An executor whose block_in_place did not run it: block here.
        (None, Some(wait)) => wait(shared.lock()),
        (None, None) => unreachable!("a wait that ran has a result"),
    }
}
