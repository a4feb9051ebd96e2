//! Conformance: regression tests for promises the docs make and the code
//! once broke. Each test names the bug it guards. None sleeps or asserts a
//! duration: a would-be hang fails on a generous timeout instead, and a
//! runtime that cannot be dropped any more (its lock or a call is stuck) is
//! leaked so the failure is reported instead of hanging the test binary.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use futures::future::FusedFuture;
use futures::task::{noop_waker, waker, ArcWake};
use kasync::{Barrier, BuildError, Cookie, Domain, Item, Runtime, SyncError, Work};

use super::gate::{leak_and_fail, panic_text, CountingWaker, Gate, OpenOnDrop, HANG};
use super::MakeBuilder;

/// Bug: after short calls a worker claimed calls ahead into a batch and kept
/// the ends of the ones it ran in a thread-local list, recorded only after
/// its run of calls ended. A barrier over calls that had all returned then
/// waited for an unrelated later call (here `c2`, blocked until the test
/// releases it) that the same worker ran next.
pub fn a_barrier_over_returned_calls_does_not_wait_for_a_later_call(make: &MakeBuilder) {
    for round in 0..20 {
        let rt = make().max_workers(2).eager_workers(1).build().unwrap();
        let domain = rt.domain("returned");
        let gate = Gate::new();
        let _release = OpenOnDrop(gate.clone());
        let (started_tx, started_rx) = mpsc::channel();
        let (d, g) = (domain.clone(), gate.clone());
        // Scheduled from inside a call, so that all three are queued at once
        // behind a worker that just ran a short call.
        domain.schedule(move |_| {
            d.schedule(|_| {});
            let _c1 = d.schedule(|_| {});
            d.schedule(move |cookie| {
                started_tx.send(cookie).unwrap();
                g.wait();
            });
        });
        let c2 = started_rx.recv_timeout(HANG).expect("c2 started");
        // Covers c1 and the calls before it, which have all returned.
        let result = domain.synchronize_cookie(c2).wait_timeout(HANG);
        gate.open();
        assert_eq!(result, Ok(()), "round {round}: the barrier waited for c2, a later call");
        assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    }
}

/// Bug: as above (ends of returned calls recorded only after the worker's
/// next call returned), turned into a deadlock: `c3` waits for the calls
/// before `c2`, which have all returned, and only then feeds `c2`, which
/// blocks the worker that ran them until it is fed.
pub fn a_wait_on_returned_calls_does_not_wait_for_the_call_it_feeds(make: &MakeBuilder) {
    for round in 0..20 {
        let rt = make().max_workers(4).eager_workers(1).build().unwrap();
        let domain = rt.domain("feeds");
        let (feed_tx, feed_rx) = mpsc::channel::<()>();
        let rescue = feed_tx.clone();
        let (result_tx, result_rx) = mpsc::channel();
        let d = domain.clone();
        domain.schedule(move |_| {
            d.schedule(|_| {});
            let _c1 = d.schedule(|_| {});
            let c2 = d.schedule(move |_| {
                let _ = feed_rx.recv();
            });
            let d3 = d.clone();
            d.schedule(move |_| {
                let result = d3.synchronize_cookie(c2).wait();
                let _ = feed_tx.send(());
                result_tx.send(result).unwrap();
            });
        });
        let result = result_rx.recv_timeout(HANG);
        if result.is_err() {
            // Deadlocked: feed c2 from here so everything can finish.
            let _ = rescue.send(());
        }
        let all = domain.synchronize().wait_timeout(HANG);
        assert_eq!(
            result,
            Ok(Ok(())),
            "round {round}: c3's wait on returned calls waited for c2, which only c3 feeds"
        );
        assert_eq!(all, Ok(()));
    }
}

/// Waits for the calls before `before` in `calls`, then for the items before
/// it in `items`.
struct WaitsForEarlier {
    calls: Domain,
    before: Cookie,
    items: Domain,
    ran: bool,
}

impl Work for WaitsForEarlier {
    fn run(&mut self, cookie: Cookie) {
        self.calls.synchronize_cookie(self.before).wait().unwrap();
        self.items.synchronize_cookie(cookie).wait().unwrap();
        self.ran = true;
    }
}

/// Bug: an `ItemScope` opened inside a call that a worker ran from a
/// claim-ahead batch blocked without recording the ends of the calls the
/// worker had run before it. The scope's items wait on those earlier calls:
/// a deadlock, deterministic with `help(false)` (the scope's thread never
/// runs the items itself).
pub fn a_scope_after_short_calls_finishes_without_helping(make: &MakeBuilder) {
    for round in 0..20 {
        let rt = make().help(false).max_workers(4).eager_workers(1).build().unwrap();
        let calls = rt.domain("calls");
        let items = rt.domain("items");
        let (done_tx, done_rx) = mpsc::channel();
        let (c, i) = (calls.clone(), items.clone());
        calls.schedule(move |_| {
            for _ in 0..8 {
                c.schedule(|_| {});
            }
            let (c2, i2) = (c.clone(), i.clone());
            c.schedule(move |me| {
                let mut work: Vec<Item<WaitsForEarlier>> = (0..4)
                    .map(|_| {
                        Item::local(WaitsForEarlier {
                            calls: c2.clone(),
                            before: me,
                            items: i2.clone(),
                            ran: false,
                        })
                    })
                    .collect();
                i2.scope(|s| {
                    for item in work.iter_mut() {
                        s.submit(item);
                    }
                });
                done_tx.send(work.iter().all(|w| w.ran)).unwrap();
            });
        });
        match done_rx.recv_timeout(HANG) {
            Ok(all_ran) => assert!(all_ran, "round {round}: the scope returned before its items ran"),
            Err(_) => leak_and_fail(rt, format!("round {round}: the scope never returned")),
        }
        assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    }
}

/// Bug: helping ran an async call with a nested `futures::executor::block_on`
/// on the threads adapter. A blocking wait inside the user's own
/// `futures::executor::block_on` that helped with a queued async call
/// panicked ("cannot execute `LocalPool` executor from within another
/// executor") and the helped call was dropped unrun.
pub fn a_blocking_wait_inside_block_on_helps_an_async_call(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    // Hold the only worker, so the waiter below runs the async call itself.
    let hold = rt.exclusive_domain("hold");
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    hold.schedule(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
    });
    started_rx.recv_timeout(HANG).expect("the holding call started");
    let domain = rt.domain("async");
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    domain.schedule_async(move |_| async move {
        r.store(true, Ordering::SeqCst);
    });
    // A plain test thread is inside no adapter's runtime: blocking is
    // allowed here on every adapter.
    let result = catch_unwind(AssertUnwindSafe(|| {
        futures::executor::block_on(async { domain.synchronize().wait() })
    }));
    gate.open();
    match result {
        Ok(result) => assert_eq!(result, Ok(()), "on {}", rt.executor_name()),
        Err(payload) => panic!("the wait panicked: {}", panic_text(&*payload)),
    }
    assert!(ran.load(Ordering::SeqCst), "the helped async call did not run");
    assert_eq!(hold.synchronize().wait_timeout(HANG), Ok(()));
}

/// Bug: as above, from inside an async call: on the threads adapter an async
/// call is polled inside `futures::executor::block_on`, so its blocking wait
/// that helped with a queued async call of another domain panicked, and
/// both calls were reported as panicked. Other adapters may refuse the
/// blocking wait there instead, but nothing may panic.
pub fn a_blocking_wait_inside_an_async_call_helps_an_async_call(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let name = rt.executor_name();
    let domain = rt.domain("outer");
    let other = rt.exclusive_domain("other");
    let ran = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (o, r) = (other.clone(), ran.clone());
    domain.schedule_async(move |_| async move {
        // Queued behind this call: with one worker, the wait runs it.
        o.schedule_async(move |_| async move {
            r.store(true, Ordering::SeqCst);
        });
        tx.send(o.synchronize().wait()).unwrap();
    });
    let result = rx.recv_timeout(HANG);
    let others = other.synchronize().wait_timeout(HANG);
    let outer = domain.synchronize().wait_timeout(HANG);
    match (name, &result) {
        (_, Ok(Ok(()))) => {}
        ("threads", _) => panic!("on threads the wait must help and succeed, got {result:?}"),
        (_, Ok(Err(SyncError::BlockingNotAllowed { .. }))) => {}
        _ => panic!("on {name}: expected Ok or BlockingNotAllowed, got {result:?}"),
    }
    assert_eq!(others, Ok(()), "the inner async call must run, not be dropped");
    assert_eq!(outer, Ok(()), "the outer async call must not panic");
    assert!(ran.load(Ordering::SeqCst));
}

/// Bug: a call queued while a helping `synchronize_full` waiter was parked
/// was handed to that waiter instead of getting a worker; when its domain
/// was unregistered before the waiter woke, the waiter's barrier no longer
/// covered it, and nobody ran it. Here the waiter is a worker (so
/// `Stats::blocked` shows it parked) and the only other worker is blocked
/// until the call runs, with worker slots to spare.
pub fn a_call_handed_to_a_parked_helper_survives_unregister(make: &MakeBuilder) {
    for round in 0..30 {
        let rt = Arc::new(make().max_workers(4).eager_workers(3).build().unwrap());
        let gate = Gate::new();
        let _release = OpenOnDrop(gate.clone());
        // A registered call that runs until released: synchronize_full
        // cannot finish before.
        let (held_tx, held_rx) = mpsc::channel();
        let g = gate.clone();
        rt.schedule(move |_| {
            held_tx.send(()).unwrap();
            g.wait();
        });
        held_rx.recv_timeout(HANG).expect("the held call started");
        // The helper: a worker blocked in synchronize_full (its own call is
        // in an exclusive domain, so it does not wait for itself).
        let helper = rt.exclusive_domain("helper");
        let (helper_tx, helper_rx) = mpsc::channel();
        let rt2 = rt.clone();
        helper.schedule(move |_| {
            let result = rt2.synchronize_full().wait();
            drop(rt2);
            helper_tx.send(result).unwrap();
        });
        // Blocked is counted, under the lock, in the same critical section
        // in which the worker parks.
        let give_up = Instant::now() + HANG;
        while rt.stats().blocked == 0 {
            assert!(Instant::now() < give_up, "the helper never blocked: {:?}", rt.stats());
            thread::yield_now();
        }
        let gone = rt.domain("gone");
        let (ran_tx, ran_rx) = mpsc::channel();
        gone.schedule(move |_| ran_tx.send(()).unwrap());
        gone.unregister();
        let ran = ran_rx.recv_timeout(HANG);
        gate.open();
        assert!(
            ran.is_ok(),
            "round {round}: the call was lost while a worker slot was free: {:?}",
            rt.stats()
        );
        assert_eq!(gone.synchronize().wait_timeout(HANG), Ok(()));
        assert_eq!(helper_rx.recv_timeout(HANG), Ok(Ok(())));
        assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    }
}

/// Review finding on the fix above: a call handed to a parked helper that
/// is not a worker, when the same `unregister` also satisfies the helper's
/// wait. The helper returned without running the call and without finding
/// it a thread, so a call blocked on it (invisibly, on a channel) waited
/// forever although worker slots and eager starts were free.
pub fn a_call_handed_to_a_helper_that_unregister_satisfies_still_runs(make: &MakeBuilder) {
    for round in 0..30 {
        let rt = Arc::new(make().max_workers(3).eager_workers(2).build().unwrap());
        let d = rt.domain("handed");
        // B waits, invisibly, for X, which is scheduled later into `d`.
        let (x_tx, x_rx) = mpsc::channel::<()>();
        let (b_started_tx, b_started_rx) = mpsc::channel();
        let (b_done_tx, b_done_rx) = mpsc::channel();
        d.schedule(move |_| {
            b_started_tx.send(()).unwrap();
            let fed = x_rx.recv_timeout(HANG);
            b_done_tx.send(fed.is_ok()).unwrap();
        });
        b_started_rx.recv_timeout(HANG).expect("B started");
        // The helper: a plain thread parked in synchronize_full (it covers B).
        let arrived = Arc::new(AtomicBool::new(false));
        let (rt2, a2) = (rt.clone(), arrived.clone());
        let helper = thread::spawn(move || {
            a2.store(true, Ordering::SeqCst);
            rt2.synchronize_full().wait()
        });
        while !arrived.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        for _ in 0..round % 8 {
            thread::yield_now(); // vary how far the helper got
        }
        d.schedule(move |_| x_tx.send(()).unwrap());
        d.unregister();
        assert_eq!(
            b_done_rx.recv_timeout(HANG),
            Ok(true),
            "round {round}: X was never run: {:?}",
            rt.stats()
        );
        assert_eq!(helper.join().unwrap(), Ok(()));
        assert_eq!(d.synchronize().wait_timeout(HANG), Ok(()));
    }
}

/// Ready on its second poll (waking itself after the first).
struct ReadySecond(bool);

impl Future for ReadySecond {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What `futures::select!` does with two fused futures: each round, polls
/// those not terminated, and returns the first result.
async fn select_fused<A, B>(mut a: A, mut b: B) -> futures::future::Either<A::Output, B::Output>
where
    A: FusedFuture + Unpin,
    B: FusedFuture + Unpin,
{
    futures::future::poll_fn(move |cx| {
        if !a.is_terminated() {
            if let Poll::Ready(out) = Pin::new(&mut a).poll(cx) {
                return Poll::Ready(futures::future::Either::Left(out));
            }
        }
        if !b.is_terminated() {
            if let Poll::Ready(out) = Pin::new(&mut b).poll(cx) {
                return Poll::Ready(futures::future::Either::Right(out));
            }
        }
        assert!(!(a.is_terminated() && b.is_terminated()), "both futures are terminated");
        Poll::Pending
    })
    .await
}

/// Bug: `Barrier::is_terminated()` (`FusedFuture`) was true before the
/// first poll for a barrier satisfied when it was made, so `select!` never
/// polled it and never saw its result.
pub fn a_satisfied_barrier_is_not_terminated_before_its_first_poll(make: &MakeBuilder) {
    use futures::FutureExt;

    let rt = make().build().unwrap();
    let empty = rt.exclusive_domain("empty");
    let mut barrier = empty.synchronize();
    assert!(!barrier.is_terminated(), "terminated before it was ever polled");
    let w = waker(Arc::new(CountingWaker(AtomicUsize::new(0))));
    let polled = Pin::new(&mut barrier).poll(&mut Context::from_waker(&w));
    assert_eq!(polled, Poll::Ready(Ok(())));
    assert!(barrier.is_terminated(), "not terminated after it returned Ready");
    // A domain whose calls have all finished, likewise.
    let done = rt.domain("done");
    done.schedule(|_| {});
    done.synchronize().wait().unwrap();
    let barrier = done.synchronize();
    assert!(!barrier.is_terminated());
    // `futures::select!` (not enabled in this workspace's `futures`) polls
    // only the futures that are not terminated; so does `select_fused`.
    let picked = futures::executor::block_on(select_fused(barrier, ReadySecond(false).fuse()));
    let picked = match picked {
        futures::future::Either::Left(result) => Some(result),
        futures::future::Either::Right(()) => None,
    };
    assert_eq!(picked, Some(Ok(())), "select! did not pick the satisfied barrier");
}

/// A waker whose drop takes the runtime's lock (through `domain`).
struct LocksOnDrop {
    domain: Domain,
}

impl ArcWake for LocksOnDrop {
    fn wake_by_ref(_: &Arc<Self>) {}
}

impl Drop for LocksOnDrop {
    fn drop(&mut self) {
        let _ = self.domain.is_registered();
        let _ = self.domain.synchronize().is_finished();
    }
}

/// Bug: when a barrier returned `WouldDeadlock`, it dropped the waker of an
/// earlier poll under the runtime's state lock. A waker whose `Drop` uses
/// kasync then deadlocked the whole runtime. The barrier is polled on the
/// test thread (where it does not cover an own call), then moved into the
/// call it covers and waited for (`.wait()`) or polled again there.
pub fn would_deadlock_drops_the_earlier_waker_outside_the_lock(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("self");
    for how in ["wait", "poll"] {
        let (barrier_tx, barrier_rx) = mpsc::channel::<Barrier>();
        let (started_tx, started_rx) = mpsc::channel();
        let (result_tx, result_rx) = mpsc::channel();
        domain.schedule(move |_| {
            started_tx.send(()).unwrap();
            let mut barrier = barrier_rx.recv().unwrap();
            let result = if how == "wait" {
                barrier.wait()
            } else {
                let w = noop_waker();
                match Pin::new(&mut barrier).poll(&mut Context::from_waker(&w)) {
                    Poll::Ready(result) => result,
                    Poll::Pending => Ok(()),
                }
            };
            result_tx.send(result).unwrap();
        });
        started_rx.recv_timeout(HANG).expect("the call started");
        // Covers the running call; registers a waker that locks on drop.
        let mut barrier = domain.synchronize();
        let w = waker(Arc::new(LocksOnDrop { domain: domain.clone() }));
        assert!(Pin::new(&mut barrier).poll(&mut Context::from_waker(&w)).is_pending());
        drop(w); // the barrier's registration holds the only clone now
        barrier_tx.send(barrier).unwrap();
        match result_rx.recv_timeout(HANG) {
            Ok(result) => assert!(
                matches!(result, Err(SyncError::WouldDeadlock { .. })),
                "{how}: expected WouldDeadlock, got {result:?}"
            ),
            Err(_) => leak_and_fail(rt, format!("{how}: the self-wait deadlocked dropping the waker")),
        }
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

/// Bug: on the threads adapter an async call's `.await` held its worker with
/// no compensation: without the watchdog, an async call awaiting a barrier
/// over a call queued after it hung, although worker slots were free.
pub fn await_inside_an_async_call_does_not_hold_back_a_queued_call(make: &MakeBuilder) {
    let rt = make()
        .no_stall_watchdog()
        .max_workers(8)
        .eager_workers(1)
        .build()
        .unwrap();
    let domain = rt.domain("awaits");
    let other = rt.domain("other");
    let (ready_tx, ready_rx) = futures::channel::oneshot::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel();
    let o = other.clone();
    domain.schedule_async(move |_| async move {
        started_tx.send(()).unwrap();
        ready_rx.await.unwrap();
        o.synchronize().await.unwrap();
    });
    started_rx.recv_timeout(HANG).expect("the async call started");
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    other.schedule(move |_| r.store(true, Ordering::SeqCst));
    ready_tx.send(()).unwrap();
    // Never helps: the queued call needs a worker.
    let result = rt.synchronize_full().wait_timeout(HANG);
    assert_eq!(result, Ok(()), "{:?}", rt.stats());
    assert!(ran.load(Ordering::SeqCst));
}

/// A value whose drop panics (unless already unwinding).
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("a drop panicked");
        }
    }
}

/// A future that is ready at once and whose drop panics.
struct ReadyThenPanicsWhenDropped;

impl Future for ReadyThenPanicsWhenDropped {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

impl Drop for ReadyThenPanicsWhenDropped {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("the future's drop panicked");
        }
    }
}

/// Runs a call and checks it ran: the pool still works.
fn still_runs_calls(rt: Runtime, domain: &Domain, what: &str) -> Runtime {
    let (tx, rx) = mpsc::channel();
    domain.schedule(move |_| tx.send(()).unwrap());
    if rx.recv_timeout(HANG).is_err() {
        leak_and_fail(rt, format!("{what}: the pool stopped running calls"));
    }
    rt
}

/// Bug: a panic payload whose `Drop` panics killed the worker: the payload
/// was dropped outside `catch_unwind`, so the call never finished, the
/// worker count never dropped, and dropping the runtime hung.
pub fn a_panic_payload_whose_drop_panics_is_reported(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("payload");
    let cookie = domain.schedule(|_| std::panic::panic_any(PanicsWhenDropped));
    match domain.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => assert_eq!(report.cookie(), cookie),
        other => leak_and_fail(rt, format!("expected Panicked, got {other:?}")),
    }
    let rt = still_runs_calls(rt, &domain, "blocking call");
    assert_eq!(rt.shutdown_timeout(HANG), Ok(()), "a worker died");
}

/// Bug: as above for an async call: a panic payload whose `Drop` panics
/// escaped the call on the thread polling it (on the threads adapter:
/// killing the worker, so the runtime never shut down).
pub fn an_async_call_whose_panic_payload_drop_panics_is_reported(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("async-payload");
    let cookie = domain.schedule_async(|_| async { std::panic::panic_any(PanicsWhenDropped) });
    match domain.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => assert_eq!(report.cookie(), cookie),
        other => leak_and_fail(rt, format!("expected Panicked, got {other:?}")),
    }
    let rt = still_runs_calls(rt, &domain, "async payload");
    assert_eq!(rt.shutdown_timeout(HANG), Ok(()), "a worker died");
}

/// Bug: an async call's future whose `Drop` panics (dropped after it
/// completed) escaped kasync: on the threads adapter it killed the worker,
/// so the runtime never shut down; on executors built on `async-task`
/// (smol, async-std) a future that panics when the executor drops it aborts
/// the process, so kasync must drop it itself, containing the panic.
pub fn an_async_call_whose_future_drop_panics_is_contained(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("future-drop");
    domain.schedule_async(|_| ReadyThenPanicsWhenDropped);
    match domain.synchronize().wait_timeout(HANG) {
        // The call itself completed; its drop panicked: either is fine.
        Ok(()) | Err(SyncError::Panicked(_)) => {}
        other => leak_and_fail(rt, format!("expected Ok or Panicked, got {other:?}")),
    }
    let rt = still_runs_calls(rt, &domain, "future drop");
    assert_eq!(rt.shutdown_timeout(HANG), Ok(()), "a worker died");
}

/// Bug: `eager_workers(0)` with `no_stall_watchdog()` was accepted, and then
/// nothing ever started a worker. Such a runtime must be refused at build
/// time (or run its calls anyway).
pub fn eager_workers_zero_without_a_watchdog_is_refused(make: &MakeBuilder) {
    let builders: [(&str, kasync::Builder); 2] = [
        (
            "eager_workers(0).no_stall_watchdog()",
            make().eager_workers(0).no_stall_watchdog(),
        ),
        (
            "no_stall_watchdog().eager_workers(0)",
            make().no_stall_watchdog().eager_workers(0),
        ),
    ];
    for (what, builder) in builders {
        match builder.build() {
            Err(BuildError::InvalidConfig(why)) => assert!(why.contains("eager_workers"), "{what}: {why}"),
            Err(other) => panic!("{what}: expected InvalidConfig, got {other:?}"),
            Ok(_) => panic!("{what}: accepted a runtime that never starts a worker"),
        }
    }
    // A tick too long to express is no watchdog either: refused, or working.
    match make().eager_workers(0).stall_timeout(Duration::MAX).build() {
        Err(BuildError::InvalidConfig(why)) => assert!(why.contains("eager_workers"), "{why}"),
        Err(other) => panic!("stall_timeout(MAX): expected InvalidConfig, got {other:?}"),
        Ok(rt) => {
            let (tx, rx) = mpsc::channel();
            rt.schedule(move |_| tx.send(()).unwrap());
            if rx.recv_timeout(HANG).is_err() {
                leak_and_fail(rt, "eager_workers(0).stall_timeout(MAX) never ran a call".into());
            }
        }
    }
    // With the watchdog, eager_workers(0) stays valid.
    let rt = make().eager_workers(0).build().unwrap();
    let (tx, rx) = mpsc::channel();
    rt.schedule(move |_| tx.send(()).unwrap());
    if rx.recv_timeout(HANG).is_err() {
        leak_and_fail(rt, "eager_workers(0) with the watchdog never ran a call".into());
    }
}

/// Runs until its gate opens, after telling the test it started; its drop
/// panics.
struct HeldThenPanicsWhenDropped {
    started: mpsc::Sender<()>,
    gate: Gate,
    dropped: Arc<AtomicBool>,
}

impl Work for HeldThenPanicsWhenDropped {
    fn run(&mut self, _: Cookie) {
        self.started.send(()).unwrap();
        self.gate.wait();
    }
}

impl Drop for HeldThenPanicsWhenDropped {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
        if !thread::panicking() {
            panic!("the item's drop panicked");
        }
    }
}

/// Bug: the `Drop` panic of an item whose handle was dropped while it ran
/// (so kasync frees it after it runs) was swallowed: no barrier and no stat
/// reported it.
pub fn panicking_drop_of_an_item_whose_handle_was_dropped_is_reported(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("freed-late");
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let dropped = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let submitted = domain.submit(Item::new(HeldThenPanicsWhenDropped {
        started: started_tx,
        gate: gate.clone(),
        dropped: dropped.clone(),
    }));
    let cookie = submitted.cookie();
    started_rx.recv_timeout(HANG).expect("the item started");
    drop(submitted); // while it runs: kasync frees it afterwards
    gate.open();
    // The free may trail the call's end: poll (no sleeping) for the panic.
    let give_up = Instant::now() + HANG;
    while rt.stats().panicked == 0 {
        assert!(
            Instant::now() < give_up,
            "the drop's panic was not counted (dropped: {}): {:?}",
            dropped.load(Ordering::SeqCst),
            rt.stats()
        );
        thread::yield_now();
    }
    assert!(dropped.load(Ordering::SeqCst));
    match domain.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => assert_eq!(report.cookie(), cookie),
        other => panic!("expected the drop's panic to be reported, got {other:?}"),
    }
}
