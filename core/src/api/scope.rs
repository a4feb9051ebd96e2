//! `Domain::scope`: calls that borrow what outlives the `scope` call, and
//! items in memory the caller provides. The scope returns only after every
//! call it started has ended, so nothing it lent can be freed under a call.

use std::cell::{RefCell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::api::domain::Domain;
use crate::base::error::{PanicReport, TaskError};
use crate::engine::context;
use crate::engine::pool::{self};
use crate::engine::shared::Admission;
use crate::model::call::Body;
use crate::model::ids::Scope as Covers;
use crate::model::item::{header_of, Header, Item, Mode, ScopeCounter, Work};
use crate::model::state::{PanicRecord, State, Wake};
use crate::Cookie;

/// Starts calls that borrow from the caller's stack, and submits items in
/// memory the caller provides; see [`Domain::scope`].
///
/// Invariant in `'env` (like [`std::thread::Scope`]): what a call borrows,
/// or an item lent to it, must live for exactly the lifetime `scope` was
/// called with, which outlives the call, so a borrow of something made
/// inside the scope's closure, or a second borrow of the same item, does
/// not compile.
pub struct Scope<'env> {
    domain: Domain,
    counter: NonNull<ScopeCounter>,
    /// The cookies of its calls, in order: the calls its wait may run.
    calls: RefCell<Vec<Cookie>>,
    /// The calls `spawn` made, freed once every call has ended.
    spawned: RefCell<Vec<Spawned>>,
    _env: PhantomData<&'env mut &'env ()>,
}

/// Former name of [`Scope`], when a scope took items only.
#[deprecated(since = "0.2.0", note = "renamed `Scope`: a scope now spawns calls too")]
pub type ItemScope<'env> = Scope<'env>;

/// A call started by [`Scope::spawn`]: wait for its value, or leave it to
/// the scope, which waits for it anyway (and re-raises its panic if nobody
/// took it).
pub struct ScopedTask<'scope, T> {
    /// Never turned into a reference: the call's thread writes the packet's
    /// work and value while the handle lives.
    packet: NonNull<Packet<T>>,
    domain: &'scope Domain,
    cookie: Cookie,
    /// The value or the panic was taken.
    spent: bool,
}

/// One spawned call: the item it runs as, and the value it leaves. Boxed
/// by `spawn` and freed by the scope once every call has ended; only ever
/// reached through raw pointers meanwhile.
struct Packet<T> {
    item: Item<ErasedCall>,
    /// Written by the call (once), read by its handle after the call ended
    /// (the state lock orders the two).
    value: UnsafeCell<Option<T>>,
}

impl<T> Packet<T> {
    /// The packet's item.
    ///
    /// # Safety
    /// `packet` is alive.
    unsafe fn item(packet: NonNull<Packet<T>>) -> NonNull<Item<ErasedCall>> {
        // SAFETY: guaranteed by the caller; no reference is made.
        unsafe { NonNull::new_unchecked(std::ptr::addr_of_mut!((*packet.as_ptr()).item)) }
    }

    /// The packet's value slot.
    ///
    /// # Safety
    /// `packet` is alive.
    unsafe fn value(packet: NonNull<Packet<T>>) -> *mut Option<T> {
        // SAFETY: guaranteed by the caller; no reference is made.
        UnsafeCell::raw_get(unsafe { std::ptr::addr_of!((*packet.as_ptr()).value) })
    }

    /// The packet's item's header.
    ///
    /// # Safety
    /// `packet` is alive for `'a`.
    unsafe fn header<'a>(packet: NonNull<Packet<T>>) -> &'a Header {
        // SAFETY: guaranteed by the caller.
        unsafe { header_of(Packet::item(packet)) }
    }
}

/// The spawned closure with its borrows' lifetime erased: `Work` wants
/// `'static`, and the scope guarantees the call ends before the borrows do.
struct ErasedCall(Option<Box<dyn FnOnce(Cookie) + Send + 'static>>);

impl Work for ErasedCall {
    fn run(&mut self, cookie: Cookie) {
        if let Some(call) = self.0.take() {
            call(cookie);
        }
    }
}

/// A spawned call's packet, its type erased, for the scope's end.
struct Spawned {
    packet: NonNull<()>,
    /// Takes the packet's untaken panic (lock held).
    untaken_panic: unsafe fn(NonNull<()>, &mut State) -> Option<Arc<PanicRecord>>,
    /// Frees the packet (and a value nobody took).
    free: unsafe fn(NonNull<()>),
}

/// # Safety
/// `packet` is a live `Packet<T>`.
unsafe fn untaken_panic<T>(packet: NonNull<()>, st: &mut State) -> Option<Arc<PanicRecord>> {
    // SAFETY: guaranteed by the caller.
    let header = unsafe { Packet::<T>::header(packet.cast()) };
    header.with(st, |slot| slot.panic.take())
}

/// # Safety
/// `packet` came from `Box::into_raw` of a `Packet<T>`, whose call ended,
/// and nothing reaches it any more.
unsafe fn free<T>(packet: NonNull<()>) {
    // SAFETY: guaranteed by the caller.
    drop(unsafe { Box::from_raw(packet.cast::<Packet<T>>().as_ptr()) });
}

/// A raw pointer a call may carry to another thread: to its own packet's
/// value, written once before the call ends.
struct ValueSlot<T>(*mut Option<T>);

// SAFETY: the slot is written by the one thread running the call, and read
// only after the call ended, under the state lock, by its handle's thread;
// `T: Send` makes handing the value over sound.
unsafe impl<T: Send> Send for ValueSlot<T> {}

impl<'env> Scope<'env> {
    /// Runs `f` on a worker as a call of the scope's domain (it takes the
    /// next cookie and counts for barriers) and returns a handle for its
    /// value. `f` may borrow anything that outlives the `scope` call. It is
    /// never cancelled: [`Domain::cancel`] leaves it, as a scope promises
    /// its calls run.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let text = String::from("one two three");
    /// let mut words = Vec::new();
    /// let total = rt.default_domain().scope(|s| {
    ///     let handles: Vec<_> = text.split(' ').map(|w| s.spawn(move |_| w.len())).collect();
    ///     words.push("borrowed mutably, beside the calls");
    ///     handles.into_iter().map(|mut h| h.wait().unwrap()).sum::<usize>()
    /// });
    /// assert_eq!((total, words.len()), (11, 1));
    /// ```
    pub fn spawn<'scope, F, T>(&'scope self, f: F) -> ScopedTask<'scope, T>
    where
        F: FnOnce(Cookie) -> T + Send + 'env,
        T: Send + 'env,
    {
        let raw = Box::into_raw(Box::new(Packet {
            item: Item::local(ErasedCall(None)),
            value: UnsafeCell::new(None),
        }));
        // SAFETY: `Box::into_raw` is never null.
        let packet = unsafe { NonNull::new_unchecked(raw) };
        // SAFETY: the packet is alive (freed only at the scope's end).
        let slot = ValueSlot(unsafe { Packet::value(packet) });
        let call: Box<dyn FnOnce(Cookie) + Send + 'env> = Box::new(move |cookie| {
            let slot = slot;
            let value = f(cookie);
            // SAFETY: see `ValueSlot`: the packet lives until the scope
            // ends, after this call, and nothing reads the slot meanwhile.
            unsafe { *slot.0 = Some(value) };
        });
        // SAFETY: only the lifetime is changed. The call ends before
        // `Domain::scope` returns (it waits for every call of the scope,
        // even when its closure panics), so before `'env` ends; and it is
        // never cancelled, so the closure is consumed by running it.
        let call: Box<dyn FnOnce(Cookie) + Send + 'static> = unsafe { std::mem::transmute(call) };
        // SAFETY: nothing else reaches the packet before it is queued, so
        // this is the only reference to its item.
        let item: &mut Item<ErasedCall> = unsafe { &mut (*raw).item };
        item.0 = Some(call);
        self.spawned.borrow_mut().push(Spawned {
            packet: packet.cast(),
            untaken_panic: untaken_panic::<T>,
            free: free::<T>,
        });
        // SAFETY: the packet is alive.
        let cookie = self.enqueue(unsafe { Packet::item(packet) }, true);
        ScopedTask {
            packet,
            domain: &self.domain,
            cookie,
            spent: false,
        }
    }

    /// Submits an item borrowed for the scope. It runs like any call of the
    /// domain; the scope returns only after it finished, and re-raises its
    /// panic.
    pub fn submit<W: Work>(&self, item: &'env mut Item<W>) -> Cookie {
        self.enqueue(NonNull::from(item), false)
    }

    /// Queues the scope's item at `ptr`; `handled`: a `ScopedTask` takes its
    /// end.
    fn enqueue<W: Work>(&self, ptr: NonNull<Item<W>>, handled: bool) -> Cookie {
        let counter = self.counter;
        let prepare = &mut |st: &mut State| {
            // SAFETY: the counter lives in the scope's frame; the lock is held.
            unsafe { &mut *counter.as_ptr() }.remaining += 1;
            // SAFETY: the item lives until the scope ends, after its call.
            unsafe { header_of(ptr) }.with(st, |slot| {
                slot.mode = Mode::Scoped { counter, handled };
                slot.done = false;
                slot.panic = None;
            });
        };
        match self
            .domain
            .submit_erased(Body::Item(Item::erase_scoped(ptr)), prepare, Admission::Policy)
        {
            Some(cookie) => {
                self.calls.borrow_mut().push(cookie);
                cookie
            }
            None => crate::api::domain::reject_panic(),
        }
    }

    /// Blocks until every call of the scope ended, running those still
    /// queued on this thread meanwhile (and no other call: the scope waits
    /// for its own calls only). Always blocks, whatever the executor: the
    /// calls borrow memory that must outlive them.
    fn wait_all(&self) {
        // Even with no cookie recorded (a submit may have unwound after
        // queueing its call), wait until the counter says nothing is pending.
        let calls = self.calls.borrow();
        let below = calls.last().map_or(u64::MAX, |c| c.get() + 1);
        let shared = self.domain.shared();
        let (domain, counter) = (self.domain.id(), self.counter);
        // A call that is not queued now never will be again: each is looked
        // at until it is found not queued, in order.
        let mut next = 0;
        let mut claim = |st: &mut State| {
            while let Some(&cookie) = calls.get(next) {
                if let Some(claimed) = st.claim_call(domain, cookie) {
                    return Some(claimed);
                }
                next += 1;
            }
            None
        };
        let wait = pool::Wait {
            scope: Covers::Domain(domain),
            below,
            // The scope borrows its domain: the state has the name.
            domain_name: None,
            help: Some(&mut claim),
            deadline: None,
        };
        // SAFETY (both closures): the counter lives in the scope's frame;
        // the lock is held whenever they run.
        let (st, _) = pool::block_until(
            shared,
            shared.lock(),
            wait,
            &mut |_| unsafe { &*counter.as_ptr() }.remaining == 0,
            &mut |_, wake, _| std::mem::replace(&mut unsafe { &mut *counter.as_ptr() }.wake, wake),
        );
        drop(st);
    }

    /// Once every call ended: frees the spawned calls' packets, and returns
    /// what the scope re-raises unless its closure is unwinding: the first
    /// panic nobody took (a submitted item's, or a spawned call's whose
    /// handle did not take it), or else the first panic of dropping a value
    /// nobody took. Every other call panic goes to the barriers, so none is
    /// lost; every packet is freed, whichever drop panics.
    fn finish(&self, unwinding: bool) -> Option<Raise> {
        let spawned = std::mem::take(&mut *self.spawned.borrow_mut());
        let mut st = self.domain.shared().lock();
        // SAFETY: all calls ended; the lock is held.
        let counter = unsafe { &mut *self.counter.as_ptr() };
        let mut untaken: Vec<Arc<PanicRecord>> = counter.panic.take().into_iter().collect();
        for s in &spawned {
            // SAFETY: the packet is alive until freed below.
            untaken.extend(unsafe { (s.untaken_panic)(s.packet, &mut st) });
        }
        untaken.sort_by_key(|r| r.report().cookie());
        let mut untaken = untaken.into_iter();
        let raised = if unwinding { None } else { untaken.next() };
        for record in untaken {
            st.release_panic(record);
        }
        drop(st);
        let mut drop_panic = None;
        for s in spawned {
            // SAFETY: every call ended and no handle outlives the scope's
            // closure; values nobody took are dropped here, each caught so
            // that one panicking drop leaks none of the others.
            let freed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { (s.free)(s.packet) }));
            if let Err(payload) = freed {
                drop_panic.get_or_insert(payload);
            }
        }
        match (raised, drop_panic) {
            (Some(record), _) => Some(Raise::Call(record.report())),
            (None, Some(payload)) if !unwinding => Some(Raise::Drop(payload)),
            // While the closure unwinds, its panic goes on; a second one
            // raised from here would abort the process.
            (None, _) => None,
        }
    }
}

/// What a scope re-raises once every call ended.
enum Raise {
    /// A call's panic that no handle took.
    Call(PanicReport),
    /// The panic of dropping a value that no handle took.
    Drop(Box<dyn std::any::Any + Send>),
}

impl<T: Send> ScopedTask<'_, T> {
    /// The call's cookie.
    pub fn cookie(&self) -> Cookie {
        self.cookie
    }

    /// Whether the call has ended.
    pub fn is_finished(&self) -> bool {
        let shared = self.domain.shared();
        // SAFETY: the packet lives as long as the scope.
        unsafe { Packet::header(self.packet) }.with(&mut shared.lock(), |slot| slot.done)
    }

    /// Blocks until the call ended and returns its value, running it on
    /// this thread if it is still queued. A scope blocks whatever the
    /// executor (its calls borrow), and so does this wait.
    ///
    /// Errors: [`TaskError::Panicked`] (the scope then does not re-raise
    /// it); [`TaskError::WouldDeadlock`] if the call runs lower on this
    /// very thread.
    ///
    /// # Panics
    ///
    /// If the result was already taken.
    pub fn wait(&mut self) -> Result<T, TaskError> {
        assert!(
            !self.spent,
            "kasync: a scoped call was waited for after its result was taken"
        );
        let shared = self.domain.shared();
        // SAFETY: the packet lives as long as the scope.
        let header: &Header = unsafe { Packet::header(self.packet) };
        let (domain, cookie) = (self.domain.id(), self.cookie);
        if let Some(waiter) = context::find_own_call(shared.id(), |f| f.domain == domain && f.cookie == cookie) {
            return Err(TaskError::WouldDeadlock { waiter });
        }
        let mut claim = |st: &mut State| st.claim_call(domain, cookie);
        let wait = pool::Wait {
            scope: Covers::Domain(domain),
            below: cookie.get() + 1,
            domain_name: None,
            help: Some(&mut claim),
            deadline: None,
        };
        let (mut st, _) = pool::block_until(
            shared,
            shared.lock(),
            wait,
            &mut |st| header.with(st, |slot| slot.done),
            &mut |st, wake, _| header.with(st, |slot| std::mem::replace(&mut slot.wake, wake)),
        );
        let panic = header.with(&mut st, |slot| slot.panic.take());
        drop(st);
        self.spent = true;
        match panic {
            Some(record) => Err(TaskError::Panicked(record.report())),
            // SAFETY: the call ended (seen under the lock, after it wrote
            // the slot); only this handle reads it, once.
            None => match unsafe { (*Packet::value(self.packet)).take() } {
                Some(value) => Ok(value),
                None => unreachable!("a scoped call that ended without a panic left its value"),
            },
        }
    }
}

impl<T> fmt::Debug for ScopedTask<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedTask").field("cookie", &self.cookie).finish()
    }
}

impl fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("domain", &self.domain.name())
            .field("calls", &self.calls.borrow().len())
            .finish()
    }
}

impl Domain {
    /// Runs `f` with a scope: `s.spawn(|cookie| ..)` starts a call that may
    /// borrow anything that outlives the `scope` call (as
    /// [`std::thread::scope`] and `rayon::scope` do), and
    /// `s.submit(&mut item)` runs an item in memory you provide (a stack
    /// frame, an arena). Every call the scope started has ended when
    /// `scope` returns, waited for or not; meanwhile this thread runs the
    /// scope's calls that are still queued. The scope's calls are never
    /// cancelled ([`Domain::cancel`] leaves them).
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let mut counts = [0usize; 3];
    /// let text = "a bb ccc";
    /// rt.default_domain().scope(|s| {
    ///     for (slot, word) in counts.iter_mut().zip(text.split(' ')) {
    ///         s.spawn(move |_| *slot = word.len()); // disjoint `&mut`, borrowed
    ///     }
    /// });
    /// assert_eq!(counts, [1, 2, 3]);
    /// ```
    ///
    /// Items, with no allocation per call:
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// use kasync::{Cookie, Item, Work};
    /// struct Square(u64);
    /// impl Work for Square {
    ///     fn run(&mut self, _: Cookie) { self.0 *= self.0; }
    /// }
    /// let rt = kasync::Runtime::new().unwrap();
    /// let mut items = [Item::local(Square(2)), Item::local(Square(3))];
    /// rt.default_domain().scope(|s| {
    ///     for item in items.iter_mut() {
    ///         s.submit(item);
    ///     }
    /// });
    /// assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), [4, 9]);
    /// ```
    ///
    /// What calls borrow must outlive the scope, and an item can be lent
    /// once:
    ///
    /// ```compile_fail
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// rt.default_domain().scope(|s| {
    ///     let short_lived = String::from("gone too soon");
    ///     s.spawn(|_| short_lived.len()); // error: does not live long enough
    /// });
    /// ```
    ///
    /// ```compile_fail
    /// # use kasync_core as kasync;
    /// # use kasync::{Cookie, Item, Work};
    /// # struct Nop;
    /// # impl Work for Nop { fn run(&mut self, _: Cookie) {} }
    /// let rt = kasync::Runtime::new().unwrap();
    /// let mut item = Item::local(Nop);
    /// rt.default_domain().scope(|s| {
    ///     s.submit(&mut item);
    ///     s.submit(&mut item); // error: already borrowed for the scope
    /// });
    /// ```
    ///
    /// # Panics
    ///
    /// After every call ended: if `f` panicked (the panic continues), or,
    /// like `std::thread::scope`, if a call panicked and nobody took its
    /// panic (a submitted item's, or a spawned call's whose handle was not
    /// waited for): the first such panic is re-raised, and any other goes
    /// to the barriers covering its call, as does every one when `f`
    /// panicked. Failing those, if dropping a value nobody took panicked
    /// (every other value is still dropped), that panic continues.
    pub fn scope<'env, R>(&self, f: impl FnOnce(&Scope<'env>) -> R) -> R {
        let counter = UnsafeCell::new(ScopeCounter {
            remaining: 0,
            panic: None,
            wake: Wake::Nobody,
        });
        let scope = Scope {
            domain: self.clone(),
            // SAFETY: `UnsafeCell::get` is never null.
            counter: unsafe { NonNull::new_unchecked(counter.get()) },
            calls: RefCell::new(Vec::new()),
            spawned: RefCell::new(Vec::new()),
            _env: PhantomData,
        };
        /// Waits for the scope's calls even if `f` panics, and frees what
        /// `spawn` made: they borrow memory that must outlive them.
        struct WaitOnDrop<'s, 'env>(&'s Scope<'env>);
        impl Drop for WaitOnDrop<'_, '_> {
            fn drop(&mut self) {
                self.0.wait_all();
                // `f` is unwinding: its panic goes on, and the calls' go to
                // barriers.
                let _ = self.0.finish(true);
            }
        }
        let guard = WaitOnDrop(&scope);
        let result = f(&scope);
        std::mem::forget(guard);
        scope.wait_all();
        match scope.finish(false) {
            Some(Raise::Call(panic)) => panic!("kasync: a call in a scope panicked and nobody took it: {panic}"),
            Some(Raise::Drop(payload)) => std::panic::resume_unwind(payload),
            None => {}
        }
        result
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};

    use crate::{Runtime, TaskError};

    use crate::base::drop_count::Counted;

    /// The packets behind scoped calls: borrowed memory written by calls,
    /// values taken, left untaken and panicked, a closure that unwinds
    /// while calls still run. Each value and closure is dropped once, and
    /// nothing is touched after `scope` returns (miri checks both).
    #[test]
    fn miri_scoped_calls_borrow_and_free_each_packet_once() {
        let rt = Runtime::builder().max_workers(1).no_stall_watchdog().build().unwrap();
        let domain = rt.default_domain();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut slots = [0u64; 3];
        let taken = domain.scope(|s| {
            for (i, slot) in slots.iter_mut().enumerate() {
                s.spawn(move |_| *slot = i as u64 + 1);
            }
            let mut waited = s.spawn(|_| Counted(drops.clone()));
            s.spawn(|_| Counted(drops.clone())); // its value is freed by the scope
            let mut panicked = s.spawn(|_| -> u8 { panic!("taken") });
            assert!(matches!(panicked.wait(), Err(TaskError::Panicked(_))));
            waited.wait().unwrap()
        });
        assert_eq!(slots, [1, 2, 3]);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(taken);
        assert_eq!(drops.load(Ordering::SeqCst), 2);

        // The closure unwinds while a call it started is held: the scope
        // waits for it before the borrowed memory goes.
        let (release, held) = mpsc::channel::<()>();
        let mut written = 0u8;
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            domain.scope(|s| {
                let written = &mut written;
                s.spawn(move |_| {
                    held.recv().unwrap();
                    *written = 7;
                });
                release.send(()).unwrap();
                panic!("the closure");
            })
        }));
        assert!(unwound.is_err());
        assert_eq!(written, 7);

        // A value nobody took panics in its drop: every other packet is
        // still freed, and that panic leaves the scope.
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("value drop");
            }
        }
        let before = drops.load(Ordering::SeqCst);
        let raised = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            domain.scope(|s| {
                s.spawn(|_| PanicOnDrop);
                s.spawn(|_| Counted(drops.clone()));
            })
        }));
        assert!(raised.is_err());
        assert_eq!(drops.load(Ordering::SeqCst), before + 1);
    }
}
