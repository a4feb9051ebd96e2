//! A scheduled closure without an allocation: [`BlockingFn`] keeps a small
//! closure inside the queue slot itself and boxes only the big ones.
//!
//! Why: the thread that schedules allocates a call's closure and a worker on
//! another core frees it. The allocator's per-thread caches then never help
//! (one thread's cache only empties, the other's only fills), so each call
//! paid for the allocator's slow, shared path twice. Profiled with `perf` on
//! 100,000 no-op calls, that was about a quarter of the scheduling thread's
//! time and a sixth of the worker's.
//!
//! Most closures handed to `schedule` capture a few handles or numbers, so
//! they fit in [`WORDS`] machine words. The one type-erasure trick needed is
//! moving a closure out of untyped storage to call it, done by a function
//! monomorphised for the closure's type; the checks that make it sound are
//! all in [`BlockingFn::new`].

use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};

use crate::Cookie;

/// How many machine words a closure may take to be stored inline.
const WORDS: usize = 4;

type Storage = [MaybeUninit<usize>; WORDS];

/// What a closure's type contributes: how to call it and how to drop it
/// uncalled, both on the storage holding it.
struct VTable {
    /// Moves the closure out of the storage and calls it.
    call: unsafe fn(*mut Storage, Cookie),
    /// Drops the closure in place, uncalled.
    drop: unsafe fn(*mut Storage),
}

/// Whether an `F` fits in the inline storage: size and alignment.
const fn fits<F>() -> bool {
    mem::size_of::<F>() <= mem::size_of::<Storage>() && mem::align_of::<F>() <= mem::align_of::<Storage>()
}

/// The vtable of one closure type `F`.
struct VTableOf<F>(PhantomData<F>);

impl<F: FnOnce(Cookie)> VTableOf<F> {
    const VTABLE: &'static VTable = &VTable {
        call: call_in_place::<F>,
        drop: drop_in_place::<F>,
    };
}

/// # Safety
/// `storage` holds a live `F` (written by [`BlockingFn::new`]); afterwards
/// it holds none, so the caller must not use or drop it again.
unsafe fn call_in_place<F: FnOnce(Cookie)>(storage: *mut Storage, cookie: Cookie) {
    // SAFETY: the caller guarantees a live `F` at `storage`, suitably
    // aligned (checked in `new`), and that it is read out only this once.
    let f = unsafe { storage.cast::<F>().read() };
    f(cookie);
}

/// # Safety
/// `storage` holds a live `F` that is not used afterwards.
unsafe fn drop_in_place<F>(storage: *mut Storage) {
    // SAFETY: as for `call_in_place`; dropped in place exactly once.
    unsafe { storage.cast::<F>().drop_in_place() }
}

/// A `FnOnce(Cookie) + Send + 'static` closure, stored inline when it fits
/// in [`WORDS`] words with at most a word's alignment, boxed otherwise.
pub(crate) struct BlockingFn {
    storage: Storage,
    vtable: &'static VTable,
    /// Auto traits follow the erased closure: `Send`, not `Sync`.
    _erased: PhantomData<Box<dyn FnOnce(Cookie) + Send>>,
}

impl BlockingFn {
    pub(crate) fn new<F>(f: F) -> BlockingFn
    where
        F: FnOnce(Cookie) + Send + 'static,
    {
        if fits::<F>() {
            BlockingFn::inline(f)
        } else {
            // Too big: box it, and keep the box (one word) inline.
            let boxed = Box::new(f);
            BlockingFn::inline(move |cookie: Cookie| (*boxed)(cookie))
        }
    }

    /// Stores `f` in place.
    ///
    /// # Panics
    ///
    /// If `f` does not [fit](fits); `new` boxes such closures first.
    fn inline<F>(f: F) -> BlockingFn
    where
        F: FnOnce(Cookie) + Send + 'static,
    {
        assert!(fits::<F>(), "only closures that fit are stored inline");
        let mut storage: Storage = [MaybeUninit::uninit(); WORDS];
        // SAFETY: `F` fits in the storage and needs no more alignment than
        // it has (asserted just above); the storage is fresh, so nothing is
        // overwritten. From here on `vtable` belongs to what it holds.
        unsafe { (&mut storage as *mut Storage).cast::<F>().write(f) };
        BlockingFn {
            storage,
            vtable: VTableOf::<F>::VTABLE,
            _erased: PhantomData,
        }
    }

    /// Calls the closure, consuming it.
    pub(crate) fn call(self, cookie: Cookie) {
        // The closure is moved out by `call`: `Drop` must not run too, even
        // if the closure panics.
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `storage` holds the live closure `vtable` was made for
        // (`new`), and `this` is never used or dropped again.
        unsafe { (this.vtable.call)(&mut this.storage, cookie) }
    }
}

impl Drop for BlockingFn {
    fn drop(&mut self) {
        // SAFETY: not called (`call` forgets `self`), so `storage` still
        // holds the closure `vtable` was made for; dropped only here.
        unsafe { (self.vtable.drop)(&mut self.storage) }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Named `miri_*` so CI runs them under miri: each path through the
    //! unsafe code, with closures that own heap memory so a double drop or a
    //! leak shows.

    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn cookie() -> Cookie {
        Cookie::new(7).unwrap()
    }

    #[test]
    fn miri_small_closure_is_called_once_with_its_captures() {
        let hits = Arc::new(AtomicUsize::new(0));
        let (h, text) = (hits.clone(), String::from("owned"));
        let f = BlockingFn::new(move |c: Cookie| {
            assert_eq!((c.get(), text.as_str()), (7, "owned"));
            h.fetch_add(1, Ordering::Relaxed);
        });
        f.call(cookie());
        assert_eq!(hits.load(Ordering::Relaxed), 1);
        assert_eq!(Arc::strong_count(&hits), 1, "the capture was dropped after the call");
    }

    #[test]
    fn miri_big_closure_is_boxed_and_called() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let big = [1u64; 16];
        assert!(mem::size_of_val(&big) > mem::size_of::<Storage>());
        BlockingFn::new(move |_| {
            h.fetch_add(big.iter().sum::<u64>() as usize, Ordering::Relaxed);
        })
        .call(cookie());
        assert_eq!(hits.load(Ordering::Relaxed), 16);
        assert_eq!(Arc::strong_count(&hits), 1);
    }

    #[test]
    fn miri_uncalled_closures_drop_their_captures() {
        let owned = Arc::new(());
        let small = owned.clone();
        let (big, pad) = (owned.clone(), [0u64; 8]);
        drop(BlockingFn::new(move |_| drop(small)));
        drop(BlockingFn::new(move |_| drop((big, pad))));
        assert_eq!(Arc::strong_count(&owned), 1);
    }

    #[test]
    fn miri_a_panicking_closure_drops_its_captures_once() {
        let owned = Arc::new(());
        let o = owned.clone();
        let f = BlockingFn::new(move |_| {
            let _keep = &o;
            panic!("boom");
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f.call(cookie())));
        assert!(result.is_err());
        assert_eq!(Arc::strong_count(&owned), 1);
    }

    #[test]
    fn miri_over_aligned_closures_are_boxed() {
        #[repr(align(64))]
        struct Aligned(u8);
        let value = Aligned(3);
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        BlockingFn::new(move |_| {
            assert_eq!(&value as *const Aligned as usize % 64, 0);
            s.store(value.0 as usize, Ordering::Relaxed);
        })
        .call(cookie());
        assert_eq!(seen.load(Ordering::Relaxed), 3);
    }
}
