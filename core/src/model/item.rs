//! Caller-owned call metadata (case 2 of the seed): the caller provides the
//! memory that describes a call, hands it in, and gets it back when waiting.
//!
//! An [`Item`] is the caller's work plus a small header. Submitting moves the
//! `Box<Item<W>>` in, so the same memory can never describe two outstanding
//! calls; [`Submitted::wait`] (or `.await`) gives the very same box back. The
//! runtime queues a pointer to the item, not a copy, so a submit/run/wait
//! cycle allocates nothing once the runtime's queues have grown to size.
//!
//! Overhead per pending call, on 64-bit targets: the item header
//! (`size_of::<Header>()`, 48 bytes: state, panic message, waker) inside the
//! item, plus one 40-byte slot in the domain's queue; a closure call costs
//! the same 40-byte slot plus the one boxed closure.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use crate::base::sync::UnsafeCell;
use crate::model::state::{PanicRecord, State, Wake, Wakeups};
use crate::Cookie;

/// The work an [`Item`] describes: the kernel's `async_func_t` with its data.
///
/// ```
/// # use kasync_core as kasync;
/// use kasync::{Cookie, Item, Work};
/// struct Probe { port: u16, found: bool }
/// impl Work for Probe {
///     fn run(&mut self, _cookie: Cookie) {
///         self.found = self.port % 2 == 0; // slow, blocking probing here
///     }
/// }
/// let rt = kasync::Runtime::new().unwrap();
/// let item = Item::new(Probe { port: 80, found: false });
/// let item = rt.default_domain().submit(item).wait().unwrap();
/// assert!(item.found);
/// ```
pub trait Work: Send + 'static {
    /// Runs the call; `cookie` is the call's cookie.
    fn run(&mut self, cookie: Cookie);
}

/// What happens to an item when its call ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// A [`Submitted`] handle will take it back.
    Owned,
    /// As `Owned`, and a `TaskSet` hears when its call ends: it is member
    /// `member` of `group`.
    Grouped { group: NonNull<GroupCell>, member: usize },
    /// Nobody will: kasync frees it (its `Drop` is the seed's free function).
    Detached,
    /// It is borrowed by a `Scope`, which counts it down. `handled`: a
    /// `ScopedTask` takes its end (done, panic); otherwise the scope keeps
    /// its panic to re-raise.
    Scoped {
        counter: NonNull<ScopeCounter>,
        handled: bool,
    },
}

/// The header's state, touched only under the runtime's state lock.
pub(crate) struct Slot {
    pub(crate) done: bool,
    /// Cancelled before it ran (then `done` too).
    pub(crate) cancelled: bool,
    pub(crate) mode: Mode,
    /// The call's panic, for the handle to deliver.
    pub(crate) panic: Option<Arc<PanicRecord>>,
    pub(crate) wake: Wake,
}

/// The header every item carries: where the runtime records the end of the
/// call and who to wake. It lives inside the caller's memory, so recording
/// needs no allocation.
pub(crate) struct Header {
    slot: UnsafeCell<Slot>,
}

impl Header {
    fn new() -> Header {
        Header {
            slot: UnsafeCell::new(Slot {
                done: false,
                cancelled: false,
                mode: Mode::Owned,
                panic: None,
                wake: Wake::Nobody,
            }),
        }
    }

    /// Accesses the slot. Taking `&mut State` proves the caller holds the
    /// runtime's state lock, which serialises every access to every slot.
    pub(crate) fn with<R>(&self, _locked: &mut State, f: impl FnOnce(&mut Slot) -> R) -> R {
        // SAFETY: the slot is only ever accessed through this function, and
        // the `&mut State` argument can only come from the runtime's state
        // lock guard, so no two accesses overlap. The header outlives every
        // access: the item is freed only after its call ended and no handle
        // can reach it any more.
        self.slot.with_mut(|slot| f(unsafe { &mut *slot }))
    }
}

/// Caller-owned memory describing one call: a [`Work`] and a small header.
/// Derefs to the work.
#[repr(C)]
pub struct Item<W: ?Sized> {
    // First, so a pointer to the item is a pointer to its header.
    header: Header,
    work: W,
}

// SAFETY: the header's slot is only accessed under the runtime's state lock
// (see `Header::with`); the `NonNull` in `Mode::Scoped` points at a counter
// that is itself only accessed under that lock. The work is `Send`.
unsafe impl<W: Send + ?Sized> Send for Item<W> {}
// SAFETY: shared references to an item only reach `work` through `Deref`
// (requiring `W: Sync`) or the header under the state lock.
unsafe impl<W: Sync + ?Sized> Sync for Item<W> {}

impl<W: Work> Item<W> {
    /// Boxes `work` as an item to submit.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(work: W) -> Box<Item<W>> {
        Box::new(Item::local(work))
    }

    /// An item in memory you provide (a stack frame, an arena), to submit
    /// through [`Domain::scope`](crate::Domain::scope).
    pub fn local(work: W) -> Item<W> {
        Item {
            header: Header::new(),
            work,
        }
    }

    /// Takes the work out of the item (and frees the item's memory).
    #[allow(clippy::boxed_local)] // it takes what `submit`/`wait` hand out
    pub fn into_inner(self: Box<Self>) -> W {
        self.work
    }

    pub(crate) fn erase(ptr: NonNull<Item<W>>, detached: bool) -> ItemCall {
        ItemCall {
            ptr: ptr.cast(),
            run: run_erased::<W>,
            free: free_erased::<W>,
            cancelled: None,
            detached,
            scoped: false,
        }
    }

    /// Like [`Item::erase`], for an item borrowed by a scope: never
    /// cancelled, since the scope promises its items run.
    pub(crate) fn erase_scoped(ptr: NonNull<Item<W>>) -> ItemCall {
        ItemCall {
            scoped: true,
            ..Item::erase(ptr, false)
        }
    }
}

/// Like [`Item::erase`], for work that lets go of what it holds when its
/// call is cancelled (a task's closure).
pub(crate) fn erase_cancellable<W: Cancellable>(ptr: NonNull<Item<W>>) -> ItemCall {
    ItemCall {
        cancelled: Some(cancelled_erased::<W>),
        ..Item::erase(ptr, false)
    }
}

/// Work that is told when its call is cancelled before it ran.
pub(crate) trait Cancellable: Work {
    /// Called instead of `run`, on the cancelling thread, before the item
    /// learns it was cancelled: drop what the call would have consumed.
    fn cancelled(&mut self);
}

/// Tells the work of the item at `ptr` that its call was cancelled.
///
/// # Safety
/// As for `run_erased`: the call was taken out of its queue, so nothing
/// else touches the work until the item learns it was cancelled.
unsafe fn cancelled_erased<W: Cancellable>(ptr: NonNull<Header>) {
    // SAFETY: guaranteed by the caller, as in `run_erased`.
    let work = unsafe { &mut *ptr::addr_of_mut!((*ptr.cast::<Item<W>>().as_ptr()).work) };
    work.cancelled();
}

impl<W: ?Sized> Deref for Item<W> {
    type Target = W;
    fn deref(&self) -> &W {
        &self.work
    }
}

impl<W: ?Sized> DerefMut for Item<W> {
    fn deref_mut(&mut self) -> &mut W {
        &mut self.work
    }
}

impl<W: fmt::Debug + ?Sized> fmt::Debug for Item<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Item").field("work", &&self.work).finish()
    }
}

/// The header of the item at `ptr`, without borrowing the rest of the item
/// (its work may be running on another thread).
///
/// # Safety
/// `ptr` points to a live `Item<W>` for `'a`.
pub(crate) unsafe fn header_of<'a, W: ?Sized>(ptr: NonNull<Item<W>>) -> &'a Header {
    // SAFETY: guaranteed by the caller.
    unsafe { &*ptr::addr_of!((*ptr.as_ptr()).header) }
}

/// Runs the work of the item at `ptr`.
///
/// # Safety
/// `ptr` points to a live `Item<W>` that nothing else accesses until the
/// call ends (the runtime claimed its call exactly once).
unsafe fn run_erased<W: Work>(ptr: NonNull<Header>, cookie: Cookie) {
    // SAFETY: guaranteed by the caller; `Item` is `repr(C)` with the header
    // first, so the header pointer is the item pointer. Only the work is
    // borrowed: other threads read the header meanwhile (under the lock), so
    // no reference to the whole item may exist while it runs.
    let work = unsafe { &mut *ptr::addr_of_mut!((*ptr.cast::<Item<W>>().as_ptr()).work) };
    work.run(cookie);
}

/// Frees the boxed item at `ptr`, running `W`'s `Drop`.
///
/// # Safety
/// `ptr` came from `Box::<Item<W>>::into_raw`/`leak` and nothing can reach
/// the item any more.
unsafe fn free_erased<W: Work>(ptr: NonNull<Header>) {
    // SAFETY: guaranteed by the caller.
    drop(unsafe { Box::from_raw(ptr.cast::<Item<W>>().as_ptr()) });
}

/// A queued item call, type-erased.
pub(crate) struct ItemCall {
    ptr: NonNull<Header>,
    run: unsafe fn(NonNull<Header>, Cookie),
    free: unsafe fn(NonNull<Header>),
    /// Tells the work its call was cancelled, if it wants to know.
    cancelled: Option<unsafe fn(NonNull<Header>)>,
    /// Submitted detached: freed right after it runs.
    detached: bool,
    /// Borrowed by a scope.
    scoped: bool,
}

// SAFETY: an `ItemCall` is the only handle that runs the item; the item is
// `Send` (its `W: Work` is `Send`) and its header is lock-guarded.
unsafe impl Send for ItemCall {}

impl ItemCall {
    /// Runs the item's work on this thread.
    pub(crate) fn run(&self, cookie: Cookie) {
        // SAFETY: the call was claimed exactly once, so this is the only
        // access to the work until the call ends; the item is alive until
        // then (its owner waits, or kasync frees it only afterwards).
        unsafe { (self.run)(self.ptr, cookie) }
    }

    /// Tells the work its call was cancelled (a task drops its closure).
    /// Called with the lock released, after the call left its queue and
    /// before [`ItemCall::cancel`].
    pub(crate) fn tell_cancelled(&self) {
        if let Some(cancelled) = self.cancelled {
            // SAFETY: the call left its queue, so it never runs, and its
            // handle reaches the work only after `cancel` marks it done.
            unsafe { cancelled(self.ptr) }
        }
    }

    /// Its header, for the awaiting registry to reach its waiter while its
    /// call is pending.
    pub(crate) fn header_ptr(&self) -> NonNull<Header> {
        self.ptr
    }

    /// Wakes whoever waits for the item's call (a blocked thread, or the
    /// task awaiting it), without its end: the call now awaits something
    /// the waiter may run.
    pub(crate) fn wake_waiter(&self, st: &mut State, wakeups: &mut Wakeups) {
        self.header().with(st, |slot| slot.wake.fire(wakeups));
    }

    /// Whether a scope borrowed this item.
    pub(crate) fn is_scoped(&self) -> bool {
        self.scoped
    }

    /// Whether this item is freed as soon as it ran.
    pub(crate) fn is_detached(&self) -> bool {
        self.detached
    }

    /// Frees a boxed item nobody can reach any more.
    pub(crate) fn free(self) {
        // SAFETY: called only for boxed items whose handle is gone (detached
        // from the start, or whose `Submitted` was dropped) after their call
        // ended.
        unsafe { (self.free)(self.ptr) }
    }

    fn header(&self) -> &Header {
        // SAFETY: the item is alive while its call is pending.
        unsafe { self.ptr.as_ref() }
    }

    /// Whether its handle was dropped while it ran: then nobody but the
    /// thread that ran it will touch it again, and that thread frees it.
    pub(crate) fn is_orphaned(&self, st: &mut State) -> bool {
        matches!(self.header().with(st, |slot| slot.mode), Mode::Detached)
    }

    /// Records, under the state lock, that the call was cancelled before it
    /// ran. Returns the item if nobody will take it back (detached, or its
    /// handle was dropped): the caller frees it with the lock released.
    pub(crate) fn cancel(self, st: &mut State, wakeups: &mut Wakeups) -> Option<ItemCall> {
        if self.detached {
            return Some(self);
        }
        let mode = self.header().with(st, |slot| slot.mode);
        match mode {
            Mode::Detached => Some(self),
            Mode::Owned | Mode::Grouped { .. } => {
                self.header().with(st, |slot| {
                    slot.done = true;
                    slot.cancelled = true;
                    slot.wake.fire(wakeups);
                });
                if let Mode::Grouped { group, member } = mode {
                    // SAFETY: a group outlives its members' grouped mode (its
                    // set detaches them, under the lock, before freeing it).
                    unsafe { group.as_ref() }.with(st, |g| g.ended(member, wakeups));
                }
                None
            }
            Mode::Scoped { counter, .. } => {
                debug_assert!(false, "items borrowed by a scope are never cancelled");
                // SAFETY: as in `complete`.
                unsafe { &mut *counter.as_ptr() }.count_down(wakeups);
                None
            }
        }
    }

    /// Records the end of the call in the item, under the state lock, and
    /// hands it the call's panic if it will deliver it (its handle or its
    /// scope). Returns the panic otherwise, for the barriers. An orphaned
    /// item was freed before (`record_end`).
    pub(crate) fn complete(
        self,
        st: &mut State,
        panic: Option<Arc<PanicRecord>>,
        wakeups: &mut Wakeups,
    ) -> Option<Arc<PanicRecord>> {
        let mode = self.header().with(st, |slot| slot.mode);
        let handled = |slot: &mut Slot, wakeups: &mut Wakeups| {
            slot.done = true;
            slot.panic = panic.clone();
            slot.wake.fire(wakeups);
        };
        match mode {
            Mode::Detached => {
                debug_assert!(false, "an orphaned item is freed before its end is recorded");
                return panic;
            }
            Mode::Owned => self.header().with(st, |slot| handled(slot, wakeups)),
            Mode::Grouped { group, member } => {
                self.header().with(st, |slot| handled(slot, wakeups));
                // SAFETY: as in `cancel`.
                unsafe { group.as_ref() }.with(st, |g| g.ended(member, wakeups));
            }
            Mode::Scoped { counter, handled: true } => {
                self.header().with(st, |slot| handled(slot, wakeups));
                // SAFETY: the counter lives in `Domain::scope`'s frame, which
                // waits for this call before returning; the lock is held.
                unsafe { &mut *counter.as_ptr() }.count_down(wakeups);
            }
            Mode::Scoped {
                counter,
                handled: false,
            } => {
                // SAFETY: as above.
                let counter = unsafe { &mut *counter.as_ptr() };
                counter.count_down(wakeups);
                // The scope re-raises one panic; any other goes to barriers.
                if counter.panic.is_none() {
                    counter.panic = panic;
                } else {
                    return panic;
                }
            }
        }
        None
    }
}

/// How many of a scope's items are still pending; lives in `Domain::scope`'s
/// stack frame and is only accessed under the state lock.
pub(crate) struct ScopeCounter {
    pub(crate) remaining: usize,
    /// The first panic among its submitted items, which the scope
    /// re-raises (later ones go to barriers).
    pub(crate) panic: Option<Arc<PanicRecord>>,
    pub(crate) wake: Wake,
}

impl ScopeCounter {
    /// One of the scope's calls ended.
    fn count_down(&mut self, wakeups: &mut Wakeups) {
        self.remaining -= 1;
        if self.remaining == 0 {
            self.wake.fire(wakeups);
        }
    }
}

/// The members of one `TaskSet` whose calls ended, in the order they
/// ended, and who waits for the next: kept where the set's items can reach
/// it (a box the set owns), touched only under the state lock.
pub(crate) struct Group {
    ended: std::collections::VecDeque<usize>,
    pub(crate) wake: Wake,
}

impl Group {
    /// Member `member`'s call ended (ran, panicked or was cancelled).
    fn ended(&mut self, member: usize, wakeups: &mut Wakeups) {
        self.ended.push_back(member);
        self.wake.fire(wakeups);
    }

    /// The member whose call ended first and was not taken yet.
    pub(crate) fn take_ended(&mut self) -> Option<usize> {
        self.ended.pop_front()
    }

    /// How many members' calls ended and were not taken yet.
    pub(crate) fn ended_count(&self) -> usize {
        self.ended.len()
    }

    /// Whether a member's call ended that was not taken yet.
    pub(crate) fn has_ended(&self) -> bool {
        !self.ended.is_empty()
    }
}

/// A [`Group`] behind the state lock, as [`Header`] keeps an item's slot.
pub(crate) struct GroupCell(UnsafeCell<Group>);

impl GroupCell {
    pub(crate) fn new() -> GroupCell {
        GroupCell(UnsafeCell::new(Group {
            ended: std::collections::VecDeque::new(),
            wake: Wake::Nobody,
        }))
    }

    /// Accesses the group; `&mut State` proves the state lock is held.
    pub(crate) fn with<R>(&self, _locked: &mut State, f: impl FnOnce(&mut Group) -> R) -> R {
        // SAFETY: the group is only accessed through this function, under
        // the runtime's state lock, which serialises every access.
        self.0.with_mut(|group| f(unsafe { &mut *group }))
    }
}

// SAFETY: as `Header`: every access goes through `with`, under the lock.
unsafe impl Send for GroupCell {}
// SAFETY: as above.
unsafe impl Sync for GroupCell {}
