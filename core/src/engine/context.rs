//! The calling thread's place in kasync: which calls it is running (a stack,
//! because a waiting thread helps by running calls inside its wait), and
//! whether it is one of a runtime's workers.

// `const { .. }` thread-local initialisers would be slightly faster, but
// loom's `thread_local!` does not accept them, and the same declarations
// must compile under both.
#![allow(clippy::missing_const_for_thread_local)]

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::base::sync::{thread_local, Condvar};
use crate::model::awaiting::Awaited;
use crate::model::ids::DomainId;
use crate::Cookie;

/// One call being run on this thread.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) runtime: usize,
    pub(crate) domain: DomainId,
    pub(crate) cookie: Cookie,
}

// `const { .. }` initialisers would be faster, but loom's `thread_local!`
// does not accept them, and the same declarations must compile under both.
thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = RefCell::new(Vec::new());
    /// `(runtime id, worker slot)` when this thread is a kasync worker.
    static WORKER: Cell<Option<(usize, usize)>> = Cell::new(None);
    /// Set while a kasync async call is being polled on this thread.
    static IN_ASYNC_POLL: Cell<bool> = Cell::new(false);
    /// The kasync waits found pending during that poll, as `(runtime id,
    /// wait)`: what the call awaits.
    static AWAITED: RefCell<Vec<(usize, Awaited)>> = RefCell::new(Vec::new());
    /// The condition variable this thread parks on in blocking waits.
    static PARKING: Arc<Condvar> = Arc::new(Condvar::new());
}

/// The condition variable this thread blocks on, made once per thread.
///
/// Sharing it between nested waits on one thread is safe: only this thread
/// ever waits on it, and every wait re-checks its own condition on waking.
pub(crate) fn thread_condvar() -> Arc<Condvar> {
    PARKING.with(|cv| cv.clone())
}

/// Returns `true` when called from inside a scheduled call (the kernel's
/// `current_is_async()`), including a call this thread runs while helping a
/// barrier, and including the polls of an async call.
///
/// ```
/// # use kasync_core as kasync;
/// # let rt = kasync::Runtime::new().unwrap();
/// assert!(!kasync::current_is_async());
/// rt.schedule(|_| assert!(kasync::current_is_async()));
/// # rt.synchronize_full().wait().unwrap();
/// ```
pub fn current_is_async() -> bool {
    FRAMES.with(|f| !f.borrow().is_empty())
}

/// The cookie of the innermost call running on this thread, or `None` outside
/// scheduled calls.
pub fn current_cookie() -> Option<Cookie> {
    FRAMES.with(|f| f.borrow().last().map(|frame| frame.cookie))
}

/// Pushes a frame for as long as the guard lives.
pub(crate) struct FrameGuard(());

impl FrameGuard {
    pub(crate) fn enter(frame: Frame) -> FrameGuard {
        FRAMES.with(|f| f.borrow_mut().push(frame));
        FrameGuard(())
    }
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAMES.with(|f| {
            f.borrow_mut().pop();
        });
    }
}

/// How deep this thread is nested in calls (1 inside a plain call, more while
/// helping from inside a call).
pub(crate) fn depth() -> usize {
    FRAMES.with(|f| f.borrow().len())
}

/// The innermost call on this thread's stack, belonging to `runtime`, for
/// which `covers` is true: waiting for it from this thread would never finish.
///
/// Innermost, so that a call that waits on its own cookie is named as the
/// waiter whether it runs on a worker of its own or nested inside another call
/// that is helping (which the barrier may cover as well).
pub(crate) fn find_own_call(runtime: usize, mut covers: impl FnMut(&Frame) -> bool) -> Option<Cookie> {
    with_own_frames(runtime, |mut frames| {
        Iterator::find(&mut frames, |frame| covers(frame)).map(|frame| frame.cookie)
    })
}

/// The cookies of this thread's running calls of `runtime` that `covers`
/// accepts, innermost first.
pub(crate) fn own_calls(runtime: usize, mut covers: impl FnMut(&Frame) -> bool) -> Vec<Cookie> {
    with_own_frames(runtime, |frames| {
        frames.filter(|frame| covers(frame)).map(|frame| frame.cookie).collect()
    })
}

/// Runs `f` over this thread's running calls of `runtime`, innermost first.
fn with_own_frames<R>(runtime: usize, f: impl FnOnce(&mut dyn Iterator<Item = &Frame>) -> R) -> R {
    FRAMES.with(|frames| {
        let frames = frames.borrow();
        f(&mut frames.iter().rev().filter(|frame| frame.runtime == runtime))
    })
}

/// Marks this thread as worker `slot` of `runtime` for the rest of its life
/// (workers never change runtime).
pub(crate) fn set_worker(runtime: usize, slot: usize) {
    WORKER.with(|w| w.set(Some((runtime, slot))));
}

pub(crate) fn clear_worker() {
    WORKER.with(|w| w.set(None));
}

/// This thread's worker slot if it is a worker of `runtime`.
pub(crate) fn worker_slot(runtime: usize) -> Option<usize> {
    WORKER.with(|w| match w.get() {
        Some((rt, slot)) if rt == runtime => Some(slot),
        _ => None,
    })
}

/// Whether this thread is a worker of any kasync runtime.
pub(crate) fn is_any_worker() -> bool {
    WORKER.with(|w| w.get().is_some())
}

pub(crate) fn in_async_poll() -> bool {
    IN_ASYNC_POLL.with(|p| p.get())
}

/// Notes that a kasync wait of `runtime` was found pending in the async call
/// being polled on this thread (none: nothing to note).
pub(crate) fn note_awaited(runtime: usize, awaited: Awaited) {
    if in_async_poll() {
        AWAITED.with(|a| a.borrow_mut().push((runtime, awaited)));
    }
}

/// Marks this thread as polling an async call for as long as the guard
/// lives, and collects what the poll awaits ([`note_awaited`]).
pub(crate) struct AsyncPollGuard {
    previous: bool,
    /// An enclosing poll's notes (a poll nested in a poll), put back when
    /// this one ends.
    outer: Vec<(usize, Awaited)>,
    finished: bool,
}

impl AsyncPollGuard {
    pub(crate) fn enter() -> AsyncPollGuard {
        AsyncPollGuard {
            previous: IN_ASYNC_POLL.with(|p| p.replace(true)),
            outer: AWAITED.with(|a| std::mem::take(&mut *a.borrow_mut())),
            finished: false,
        }
    }

    /// Ends the poll: the kasync waits of `runtime` it found pending.
    pub(crate) fn finish(mut self, runtime: usize) -> Vec<Awaited> {
        self.finished = true;
        let noted = self.restore();
        noted
            .into_iter()
            .filter(|&(rt, _)| rt == runtime)
            .map(|(_, awaited)| awaited)
            .collect()
    }

    fn restore(&mut self) -> Vec<(usize, Awaited)> {
        IN_ASYNC_POLL.with(|p| p.set(self.previous));
        AWAITED.with(|a| std::mem::replace(&mut *a.borrow_mut(), std::mem::take(&mut self.outer)))
    }
}

impl Drop for AsyncPollGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.restore();
        }
    }
}
