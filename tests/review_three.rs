//! Adversarial review of three public APIs: `Domain::scope` (+ `ScopedTask`),
//! `TaskSet` (+ `JoinNext`) and `Domain::map_unordered`. Each test tries to
//! break one documented promise. Tests named `bug_*` reproduce a bug the
//! review confirmed (each failed before its fix; the "Observed" in its doc
//! is what it saw then); the others are shapes that held.
//!
//! Every wait that could hang runs on a helper thread bounded by
//! `recv_timeout`; on a hang the runtime is leaked so the test fails instead
//! of hanging. Nothing is ordered by sleeping: gates and channels do that.
//!
//! The tests run one at a time (`serial()`): one of them counts live heap
//! bytes through a counting global allocator, which other tests running
//! beside it would disturb.
#![cfg(feature = "threads")]
// Forgetting scoped handles is what one test is about: today they have no
// `Drop`, but the scope must not rely on a handle's drop either way.
#![allow(clippy::forget_non_drop)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::thread;
use std::time::Duration;

use futures::StreamExt;
use kasync::{Domain, Overflow, Runtime, ScopedTask, SyncError, TaskError};

#[allow(dead_code)] // shared with the conformance suite
#[path = "suite/gate.rs"]
mod gate;
use gate::{hold_a_worker, panic_text, CountingWaker, Gate, OpenOnDrop, Pulled};

/// How long a wait may take before the test calls it a hang.
const LIMIT: Duration = Duration::from_secs(10);

// ---- harness -------------------------------------------------------------------

/// Counts the bytes live on the heap, for the memory-bound test.
struct CountingAlloc;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System`; only a counter is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// One test at a time (a failed test's poison is ignored).
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn builder() -> kasync::Builder {
    Runtime::builder().executor(kasync::executor::Threads)
}

/// Runs `f` on a helper thread; `None` if it did not return within `LIMIT`.
/// A panic in `f` is re-raised here.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(r)) => Some(r),
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => None,
    }
}

/// Leaks `rt` (its calls can no longer finish) and fails.
fn hang(rt: Runtime, what: &str) -> ! {
    std::mem::forget(rt);
    panic!("HANG (> {LIMIT:?}): {what}");
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---- compile-time properties -------------------------------------------------

/// Compiles only if `T` is NOT `Send`: were it `Send`, both impls would
/// apply and the call below would be ambiguous.
trait AmbiguousIfSend<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSend<()> for T {}
impl<T: ?Sized + Send> AmbiguousIfSend<u8> for T {}

/// Compiles only if `T` is NOT `Sync`.
trait AmbiguousIfSync<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

/// A `ScopedTask` cannot be waited from another thread (it is neither
/// `Send` nor `Sync`), and a scoped call cannot reach its `Scope` (`Scope`
/// is not `Sync`, so `&Scope` is not `Send`). These hold at compile time:
/// this file would not compile otherwise. (Returning a `ScopedTask` out of
/// the scope's closure does not compile either: the closure is
/// `for<'a> FnOnce(&'a Scope<'env>) -> R` and `R` cannot name `'a`.)
#[test]
fn scoped_task_is_neither_send_nor_sync_and_scope_is_not_sync() {
    let _serial = serial();
    let rt = builder().build().unwrap();
    rt.default_domain().scope(|s| {
        let mut handle: ScopedTask<'_, u8> = s.spawn(|_| 1u8);
        let _ = <ScopedTask<'_, u8> as AmbiguousIfSend<_>>::check;
        let _ = <ScopedTask<'_, u8> as AmbiguousIfSync<_>>::check;
        let _ = <kasync::Scope<'_> as AmbiguousIfSync<_>>::check;
        assert_eq!(handle.wait(), Ok(1));
    });
}

// ---- Domain::scope ---------------------------------------------------------------

/// `mem::forget` on handles: the scope still waits for the calls, frees
/// the values nobody took (once), and re-raises the forgotten handle's
/// panic after every call ended.
#[test]
fn scope_forgotten_handles_are_still_waited_freed_and_reraised() {
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("forget");
    let drops = Arc::new(AtomicUsize::new(0));
    let ended = AtomicUsize::new(0);
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let result = catch_unwind(AssertUnwindSafe(|| {
        domain.scope(|s| {
            std::mem::forget(s.spawn(|_| Counted(drops.clone())));
            std::mem::forget(s.spawn(|_| -> u8 { panic!("forgotten handle") }));
            let (gate, ended) = (&gate, &ended);
            std::mem::forget(s.spawn(move |_| {
                gate.wait();
                ended.fetch_add(1, Ordering::SeqCst);
            }));
            let g = gate.clone();
            thread::spawn(move || g.open());
        })
    }));
    let payload = result.expect_err("the forgotten handle's panic is re-raised");
    assert!(panic_text(&*payload).contains("forgotten handle"));
    assert_eq!(ended.load(Ordering::SeqCst), 1, "scope returned before a call ended");
    assert_eq!(drops.load(Ordering::SeqCst), 1, "an untaken value was not dropped once");
    assert_eq!(
        domain.synchronize().wait(),
        Ok(()),
        "the re-raised panic was reported again"
    );
}

/// The closure panics while its calls are queued behind the only worker,
/// which is held: the scope runs them on this thread before the unwind
/// goes on, and the calls' own panics go to the barriers.
#[test]
fn scope_closure_panic_with_calls_queued_on_held_worker() {
    let _serial = serial();
    let rt = builder().max_workers(1).build().unwrap();
    let held = hold_a_worker(&rt);
    let domain = rt.domain("unwind");
    let d = domain.clone();
    let outcome = within(move || {
        let mut written = [0u8; 4];
        let result = catch_unwind(AssertUnwindSafe(|| {
            d.scope(|s| {
                for (i, slot) in written.iter_mut().enumerate() {
                    s.spawn(move |_| *slot = i as u8 + 1);
                }
                s.spawn(|_| -> u8 { panic!("call panic while the closure unwinds") });
                panic!("closure panic");
            })
        }));
        let text = panic_text(&*result.expect_err("the closure's panic continues"));
        (text, written, d.synchronize().wait())
    });
    drop(held);
    let Some((text, written, barrier)) = outcome else {
        hang(rt, "scope closure unwinding")
    };
    assert!(text.contains("closure panic"), "{text}");
    assert_eq!(written, [1, 2, 3, 4]);
    match barrier {
        Err(SyncError::Panicked(r)) => assert!(r.message().contains("call panic")),
        other => panic!("the call's panic should go to barriers: {other:?}"),
    }
}

/// A panic in the `Drop` of a value nobody took, while the scope frees it.
/// Promise: "a panic in a call whose handle was never waited is re-raised by
/// scope ... any other goes to the barriers ... none is lost", and every
/// untaken value is dropped once.
///
/// Observed: `Scope::finish` (core/src/api/scope.rs, the `free` loop) lets
/// the drop's panic unwind out of `scope`: the unwaited call's panic, held
/// in `raised`, is dropped (neither re-raised nor released to barriers),
/// and every packet after the panicking one is leaked (their values are
/// never dropped).
#[test]
fn bug_scope_value_drop_panic_loses_unwaited_panic_and_leaks_values() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            if !thread::panicking() {
                panic!("value drop");
            }
        }
    }
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("dropper");
    let drops = Arc::new(AtomicUsize::new(0));
    let result = catch_unwind(AssertUnwindSafe(|| {
        domain.scope(|s| {
            s.spawn(|_| PanicOnDrop);
            s.spawn(|_| -> u8 { panic!("unwaited call") });
            s.spawn(|_| Counted(drops.clone()));
        })
    }));
    let text = panic_text(&*result.expect_err("something panics out of the scope"));
    let barrier = domain.synchronize().wait();
    let call_panic_delivered = text.contains("unwaited call")
        || matches!(&barrier, Err(SyncError::Panicked(r)) if r.message().contains("unwaited call"));
    let value_drops = drops.load(Ordering::SeqCst);
    assert!(
        call_panic_delivered && value_drops == 1,
        "scope raised {text:?}; barrier gave {barrier:?} (the unwaited call's panic is \
         delivered: {call_panic_delivered}); the third call's untaken value was dropped \
         {value_drops} times (expected 1)"
    );
}

/// `Overflow::Reject` refuses a spawn in the middle of a scope: the
/// refused closure is dropped once, and the scope still runs the calls it
/// had started (on this thread: the only worker is held) before the
/// rejection's panic leaves it.
#[test]
fn scope_spawn_rejected_midway_still_waits_for_earlier_calls() {
    let _serial = serial();
    let rt = builder()
        .max_workers(1)
        .max_pending(3)
        .overflow(Overflow::Reject)
        .build()
        .unwrap();
    let held = hold_a_worker(&rt); // one pending
    let domain = rt.domain("reject");
    let d = domain.clone();
    let outcome = within(move || {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut ran = [false; 2];
        let result = catch_unwind(AssertUnwindSafe(|| {
            d.scope(|s| {
                for slot in ran.iter_mut() {
                    s.spawn(move |_| *slot = true);
                }
                let captured = Counted(drops.clone());
                s.spawn(move |_| drop(captured)); // refused: runtime full
            })
        }));
        (result.is_err(), ran, drops.load(Ordering::SeqCst))
    });
    drop(held);
    let Some((refused, ran, drops)) = outcome else {
        hang(rt, "scope after a refused spawn")
    };
    assert!(refused, "the third spawn should be refused");
    assert_eq!(ran, [true, true], "the scope unwound before its calls ran");
    assert_eq!(drops, 1, "the refused closure was not dropped once");
    assert_eq!(domain.synchronize().wait(), Ok(()));
}

/// Scopes nested in scoped calls, inside a call, with one worker: every
/// level runs its own queued calls on its thread.
#[test]
fn nested_scopes_inside_a_call_with_one_worker() {
    let _serial = serial();
    let rt = builder().max_workers(1).build().unwrap();
    let domain = rt.domain("nested");
    let d = domain.clone();
    let mut task = domain.spawn(move |_| {
        let data = [1u64, 2, 3];
        let mut total = 0;
        d.scope(|s| {
            let handles: Vec<_> = data
                .iter()
                .map(|x| {
                    let d = &d;
                    s.spawn(move |_| d.scope(|s2| s2.spawn(move |_| *x * 10).wait().unwrap()))
                })
                .collect();
            total = handles.into_iter().map(|mut h| h.wait().unwrap()).sum::<u64>();
        });
        total
    });
    match within(move || task.wait()) {
        Some(r) => assert_eq!(r, Ok(60)),
        None => hang(rt, "nested scopes in a call, one worker"),
    }
}

/// A scoped call waits on its own domain's barrier: up to its own cookie
/// works with one worker; the whole domain (itself included) is refused.
#[test]
fn scoped_call_waits_on_its_domains_barriers() {
    let _serial = serial();
    let rt = builder().max_workers(1).build().unwrap();
    let domain = rt.domain("barriers");
    let d = domain.clone();
    let outcome = within(move || {
        d.scope(|s| {
            for _ in 0..3 {
                s.spawn(|_| ());
            }
            let d = &d;
            let mut h = s.spawn(move |cookie| {
                let own = d.synchronize_cookie(cookie).wait();
                let all = d.synchronize().wait();
                (own, all, cookie)
            });
            h.wait().unwrap()
        })
    });
    let Some((own, all, cookie)) = outcome else {
        hang(rt, "scoped call waiting on its domain")
    };
    assert_eq!(own, Ok(()));
    assert_eq!(all, Err(SyncError::WouldDeadlock { waiter: cookie }));
}

// ---- TaskSet ------------------------------------------------------------------------

/// `JoinNext` polled as a future (pending, its waker registered), dropped,
/// then `.wait()`ed: the blocking join gets the value; the stale waker
/// does no harm.
#[test]
fn join_next_polled_dropped_then_waited() {
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("set");
    let mut set = domain.task_set::<u32>();
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    set.spawn(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
        5
    });
    started_rx.recv_timeout(LIMIT).expect("member started");
    let woken = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let waker = futures::task::waker(woken.clone());
    {
        let mut next = set.join_next();
        let polled = Pin::new(&mut next).poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending());
    }
    let g = gate.clone();
    thread::spawn(move || g.open());
    let outcome = within(move || {
        let first = set.join_next().wait();
        (first, set.join_next().wait(), set.is_empty())
    });
    let Some(outcome) = outcome else {
        hang(rt, "join_next().wait() after a dropped JoinNext future")
    };
    assert_eq!(outcome, (Some(Ok(5)), None, true));
}

/// A waker whose `wake` re-enters kasync (spawns into the set's domain and
/// reads its state): woken with the lock released, so it works.
#[test]
fn join_next_waker_that_reenters_kasync_on_wake() {
    struct Reenter(Domain, AtomicUsize);
    impl futures::task::ArcWake for Reenter {
        fn wake_by_ref(me: &Arc<Self>) {
            let _ = me.0.is_registered();
            drop(me.0.spawn(|_| ()));
            me.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("set");
    let reenter = Arc::new(Reenter(domain.clone(), AtomicUsize::new(0)));
    let r = reenter.clone();
    let outcome = within(move || {
        let mut set = domain.task_set::<u32>();
        let gate = Gate::new();
        let g = gate.clone();
        set.spawn(move |_| {
            g.wait();
            9
        });
        let waker = futures::task::waker(r.clone());
        let mut next = set.join_next();
        let mut cx = Context::from_waker(&waker);
        let mut first = Pin::new(&mut next).poll(&mut cx);
        gate.open();
        while first.is_pending() {
            // Woken by the member's end (re-entering kasync), polled again.
            while r.1.load(Ordering::SeqCst) == 0 {
                thread::yield_now();
            }
            first = Pin::new(&mut next).poll(&mut cx);
        }
        first
    });
    match outcome {
        Some(r) => assert_eq!(r, Poll::Ready(Some(Ok(9)))),
        None => hang(rt, "a waker re-entering kasync on wake"),
    }
}

/// A waker whose `clone` re-enters kasync. `JoinNext::poll` clones
/// `cx.waker()` while it holds the runtime's state lock
/// (core/src/api/task_set.rs, `Future for JoinNext`: `set.group.with(&mut st,
/// .. Wake::Task(cx.waker().clone()))`), so a clone that takes that lock
/// (here `Domain::is_registered`) deadlocks the runtime. The same pattern is
/// in `Submitted::poll` (api/item.rs) and `Barrier::poll` (api/barrier.rs,
/// `st.set_wake(id, Wake::Task(cx.waker().clone()), ..)`), although the
/// code takes care to drop wakers ("foreign code") with the lock released.
#[test]
fn bug_join_next_poll_clones_the_waker_under_the_state_lock() {
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, noop, noop, noop);
    unsafe fn clone(data: *const ()) -> RawWaker {
        // SAFETY: `data` is the leaked `Domain` below.
        let domain = unsafe { &*(data as *const Domain) };
        let _ = domain.is_registered(); // takes the state lock
        RawWaker::new(data, &VTABLE)
    }
    unsafe fn noop(_: *const ()) {}
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("set");
    let gate = Gate::new();
    let release = OpenOnDrop(gate.clone());
    let d = domain.clone();
    let outcome = within(move || {
        let mut set = d.task_set::<u32>();
        let g = gate.clone();
        set.spawn(move |_| {
            g.wait();
            1
        });
        let leaked: &'static Domain = Box::leak(Box::new(d.clone()));
        // SAFETY: the vtable's functions accept this data pointer.
        let waker = unsafe { Waker::from_raw(RawWaker::new(leaked as *const Domain as *const (), &VTABLE)) };
        let mut next = set.join_next();
        let polled = Pin::new(&mut next).poll(&mut Context::from_waker(&waker));
        polled.is_pending()
    });
    if outcome.is_none() {
        // The helper thread holds the state lock forever: dropping anything
        // that takes it (a `Domain`, the runtime) would hang this thread too.
        std::mem::forget(release);
        std::mem::forget(domain);
        hang(
            rt,
            "JoinNext::poll deadlocked: it clones the waker under the state lock",
        );
    }
    assert_eq!(outcome, Some(true));
}

/// A member panics; its panic is joined through the set (by `.await`), and
/// `domain.synchronize().wait()` is then `Ok`. A member whose set was
/// dropped while it ran delivers its later panic to the barriers.
#[test]
fn set_panics_are_delivered_once() {
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("set");
    let mut set = domain.task_set::<u8>();
    set.spawn(|_| panic!("joined by await"));
    match futures::executor::block_on(set.join_next()) {
        Some(Err(TaskError::Panicked(r))) => assert_eq!(r.message(), "joined by await"),
        other => panic!("{other:?}"),
    }
    assert_eq!(domain.synchronize().wait(), Ok(()));

    // Dropped with a registered JoinNext waker and a running member.
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    set.spawn(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
        panic!("after the set was dropped")
    });
    started_rx.recv_timeout(LIMIT).expect("member started");
    let waker = futures::task::waker(Arc::new(CountingWaker(AtomicUsize::new(0))));
    {
        let mut next = set.join_next();
        assert!(Pin::new(&mut next).poll(&mut Context::from_waker(&waker)).is_pending());
    }
    drop(set);
    gate.open();
    let d = domain.clone();
    match within(move || d.synchronize().wait()) {
        Some(Err(SyncError::Panicked(r))) => assert_eq!(r.message(), "after the set was dropped"),
        Some(other) => panic!("a detached member's panic should reach barriers: {other:?}"),
        None => hang(rt, "barrier after dropping a set"),
    }
}

/// `cancel_all` racing with workers that finish members: every member is
/// joined exactly once, as its value or as `Cancelled`, and the number of
/// `Cancelled` equals what `cancel_all` returned.
#[test]
fn cancel_all_racing_with_completion() {
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("race");
    let d = domain.clone();
    let outcome = within(move || {
        for round in 0..300 {
            let mut set = d.task_set::<usize>();
            for i in 0..8 {
                set.spawn(move |_| i);
            }
            let cancelled = set.cancel_all();
            let (mut ok, mut got_cancelled) = (Vec::new(), 0);
            while let Some(r) = set.join_next().wait() {
                match r {
                    Ok(i) => ok.push(i),
                    Err(TaskError::Cancelled) => got_cancelled += 1,
                    Err(e) => panic!("round {round}: {e:?}"),
                }
            }
            assert_eq!(got_cancelled, cancelled, "round {round}");
            assert_eq!(ok.len() + got_cancelled, 8, "round {round}");
            ok.sort_unstable();
            ok.dedup();
            assert_eq!(ok.len() + got_cancelled, 8, "round {round}: a value twice");
        }
        d.synchronize().wait()
    });
    match outcome {
        Some(r) => assert_eq!(r, Ok(())),
        None => hang(rt, "cancel_all racing"),
    }
}

/// The set is dropped from inside one of its own members' call (reached
/// through a shared `Mutex`): the running member is detached, the queued
/// ones cancelled, nothing touches the freed group.
#[test]
fn set_dropped_from_inside_its_own_member() {
    let _serial = serial();
    let rt = builder().max_workers(1).build().unwrap();
    let domain = rt.domain("self-drop");
    let before = rt.stats().cancelled;
    let shared = Arc::new(Mutex::new(Some(domain.task_set::<u32>())));
    let ran_later = Arc::new(AtomicUsize::new(0));
    let (dropped_tx, dropped_rx) = mpsc::channel();
    {
        let mut guard = shared.lock().unwrap();
        let set = guard.as_mut().unwrap();
        let me = shared.clone();
        set.spawn(move |_| {
            let taken = me.lock().unwrap().take();
            drop(taken);
            dropped_tx.send(()).unwrap();
            1
        });
        for _ in 0..3 {
            let ran = ran_later.clone();
            set.spawn(move |_| {
                ran.fetch_add(1, Ordering::SeqCst);
                2
            });
        }
    }
    if dropped_rx.recv_timeout(LIMIT).is_err() {
        hang(rt, "a member dropping its own set");
    }
    let d = domain.clone();
    match within(move || d.synchronize().wait()) {
        Some(r) => assert_eq!(r, Ok(())),
        None => hang(rt, "barrier after a member dropped its set"),
    }
    assert!(shared.lock().unwrap().is_none());
    assert_eq!(
        ran_later.load(Ordering::SeqCst) as u64 + rt.stats().cancelled - before,
        3
    );
}

/// Members wait on their domain's barrier up to their own cookie with one
/// worker (the kernel pattern); a wait on the whole domain is refused.
#[test]
fn members_wait_on_the_domain_barrier_with_one_worker() {
    let _serial = serial();
    let rt = builder().max_workers(1).build().unwrap();
    let domain = rt.domain("set");
    let d = domain.clone();
    let outcome = within(move || {
        let mut set = d.task_set();
        for _ in 0..6 {
            let d = d.clone();
            set.spawn(move |cookie| (d.synchronize_cookie(cookie).wait(), d.synchronize().wait(), cookie));
        }
        let mut results = Vec::new();
        while let Some(r) = set.join_next().wait() {
            results.push(r.unwrap());
        }
        results
    });
    let Some(results) = outcome else {
        hang(rt, "members waiting on their domain barrier")
    };
    assert_eq!(results.len(), 6);
    for (own, all, cookie) in results {
        assert_eq!(own, Ok(()));
        assert_eq!(all, Err(SyncError::WouldDeadlock { waiter: cookie }));
    }
}

// Two more findings of this review, an async call awaiting its own set's
// `join_next()` with one worker (it hung: nothing noted the queued member
// as awaited) and a member joining its own set (it hung instead of
// `WouldDeadlock`), are tests of the conformance suite, run on every
// adapter: `tests/suite/hands.rs`,
// `an_async_call_awaiting_a_set_finishes_with_one_worker` and
// `a_member_joining_its_own_set_is_refused`.

// ---- map_unordered --------------------------------------------------------------------

/// Window 1 is serial and pulls one ahead at most; `usize::MAX` pulls all
/// inputs and still yields each once.
#[test]
fn map_unordered_window_one_and_max() {
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("unordered");
    let d = domain.clone();
    let outcome = within(move || {
        let pulled = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (r, p) = (running.clone(), peak.clone());
        let map = d.map_unordered(
            Pulled {
                inner: 0..50usize,
                pulled: pulled.clone(),
            },
            1,
            move |i| {
                p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                r.fetch_sub(1, Ordering::SeqCst);
                i
            },
        );
        let mut yielded = 0;
        let mut got = Vec::new();
        for result in map {
            yielded += 1;
            got.push(result.unwrap());
            assert!(pulled.load(Ordering::SeqCst) - yielded <= 1, "window 1 pulled ahead");
        }
        let all: Vec<usize> = d
            .map_unordered(0..200usize, usize::MAX, |i| i)
            .map(Result::unwrap)
            .collect();
        (got, peak.load(Ordering::SeqCst), all)
    });
    let Some((got, peak, mut all)) = outcome else {
        hang(rt, "map_unordered windows")
    };
    assert_eq!(got, (0..50).collect::<Vec<_>>(), "window 1 is in input order");
    assert_eq!(peak, 1);
    all.sort_unstable();
    assert_eq!(all, (0..200).collect::<Vec<_>>());
}

/// The input iterator panics once (`inputs.next()`): the panic leaves
/// `next()`, the map stays consistent, and iterating on yields every other
/// input exactly once; the domain ends clean.
#[test]
fn map_unordered_input_iterator_panics_once() {
    struct Flaky {
        next: usize,
        panicked: bool,
    }
    impl Iterator for Flaky {
        type Item = usize;
        fn next(&mut self) -> Option<usize> {
            if self.next == 3 && !self.panicked {
                self.panicked = true;
                panic!("input iterator");
            }
            (self.next < 10).then(|| {
                self.next += 1;
                self.next - 1
            })
        }
    }
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("unordered");
    let d = domain.clone();
    let outcome = within(move || {
        let mut map = d.map_unordered(
            Flaky {
                next: 0,
                panicked: false,
            },
            2,
            |i| i,
        );
        let (mut got, mut input_panics) = (Vec::new(), 0);
        loop {
            match catch_unwind(AssertUnwindSafe(|| map.next())) {
                Ok(Some(r)) => got.push(r.unwrap()),
                Ok(None) => break,
                Err(_) => input_panics += 1,
            }
        }
        drop(map);
        (got, input_panics, d.synchronize().wait())
    });
    let Some((mut got, input_panics, barrier)) = outcome else {
        hang(rt, "map_unordered after its input panicked")
    };
    got.sort_unstable();
    assert_eq!(input_panics, 1);
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    assert_eq!(barrier, Ok(()));
}

/// A stream dropped midway: queued calls are cancelled, the running one
/// finishes detached, no further input is pulled, the domain ends clean.
#[test]
fn map_unordered_stream_dropped_midway() {
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("unordered");
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let pulled = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let (g, r) = (gate.clone(), ran.clone());
    let mut stream = domain
        .map_unordered(
            Pulled {
                inner: 0..100usize,
                pulled: pulled.clone(),
            },
            4,
            move |i| {
                r.fetch_add(1, Ordering::SeqCst);
                if i == 0 {
                    started_tx.lock().unwrap().send(()).unwrap();
                    g.wait();
                }
                i
            },
        )
        .into_stream();
    let first = futures::executor::block_on(stream.next());
    assert!(matches!(first, Some(Ok(i)) if i != 0));
    started_rx.recv_timeout(LIMIT).expect("input 0 started");
    drop(stream);
    let pulled_at_drop = pulled.load(Ordering::SeqCst);
    assert!(
        pulled_at_drop <= 5,
        "pulled {pulled_at_drop} with a window of 4 and 1 yielded"
    );
    gate.open();
    let d = domain.clone();
    match within(move || d.synchronize().wait()) {
        Some(r) => assert_eq!(r, Ok(())),
        None => hang(rt, "barrier after dropping a stream"),
    }
    assert_eq!(pulled.load(Ordering::SeqCst), pulled_at_drop, "pulled after the drop");
    assert!(ran.load(Ordering::SeqCst) <= pulled_at_drop);
}

/// "memory stays O(window)" (core/src/api/unordered.rs, module doc). A
/// stream of 100 000 inputs with a window of 4 must not grow the heap in
/// proportion to the inputs.
///
/// Observed: about 8 bytes per input stay allocated while the stream lives
/// (~1 MiB here). `TaskSet::spawn` pushes every member's cookie onto
/// `to_help` (core/src/api/task_set.rs), and only `JoinNext::wait`'s helper
/// closure ever prunes it (`retain`, and only when it gets to decide). A set
/// joined only by `.await` (the stream path, `UnorderedStream::poll_next`,
/// or any long-lived `TaskSet` joined with `.await`) never prunes it, so it
/// grows by one cookie per spawn for the life of the set. (The blocking
/// path can grow too when results are always ready before `wait`, since
/// `block_until` checks `is_done` before the helper runs.) Fix: drop a
/// member's cookie from `to_help` when the member is joined (e.g. keep the
/// cookie in the slab entry and prune the front of `to_help` lazily in
/// `take_ended`/`spawn`), or bound it by pruning in `spawn` when
/// `to_help.len() > 2 * members.len()`.
#[test]
fn bug_map_unordered_stream_memory_grows_with_inputs() {
    let _serial = serial();
    let rt = builder().max_workers(2).build().unwrap();
    let domain = rt.domain("unordered");
    const WARM: usize = 2_000;
    const TOTAL: usize = 100_000;
    let d = domain.clone();
    let outcome = within(move || {
        let mut stream = d.map_unordered(0..TOTAL, 4, |i| i).into_stream();
        futures::executor::block_on(async {
            for _ in 0..WARM {
                stream.next().await.unwrap().unwrap();
            }
            let before = LIVE_BYTES.load(Ordering::SeqCst);
            for _ in WARM..TOTAL {
                stream.next().await.unwrap().unwrap();
            }
            let after = LIVE_BYTES.load(Ordering::SeqCst);
            assert!(stream.next().await.is_none());
            after - before
        })
    });
    let Some(grown) = outcome else {
        hang(rt, "a long map_unordered stream")
    };
    assert!(
        grown < 256 * 1024,
        "the heap grew by {grown} bytes over {} inputs with a window of 4 (~{} bytes per input)",
        TOTAL - WARM,
        grown / (TOTAL - WARM) as isize
    );
}

/// The blocking iterator, for comparison: the same loop, but joined with
/// `JoinNext::wait`, whose helper prunes `to_help` whenever it runs. It
/// did not grow here, but may when results are always ready before `wait`.
#[test]
fn map_unordered_iterator_memory_over_many_inputs() {
    let _serial = serial();
    let rt = builder().max_workers(1).build().unwrap();
    let held = hold_a_worker(&rt); // the joiner runs every call: it prunes
    let domain = rt.domain("unordered");
    let d = domain.clone();
    let outcome = within(move || {
        let mut map = d.map_unordered(0..50_000usize, 4, |i| i);
        for _ in 0..1_000 {
            map.next().unwrap().unwrap();
        }
        let before = LIVE_BYTES.load(Ordering::SeqCst);
        for r in map.by_ref() {
            r.unwrap();
        }
        LIVE_BYTES.load(Ordering::SeqCst) - before
    });
    drop(held);
    let Some(grown) = outcome else {
        hang(rt, "a long map_unordered iterator")
    };
    assert!(grown < 256 * 1024, "grew by {grown} bytes");
}
