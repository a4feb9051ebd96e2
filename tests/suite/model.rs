//! Conformance: cookies, domains, barriers, panics, overflow, async calls.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use futures::task::waker;
use kasync::{Cookie, Overflow, Runtime, SyncError};

use super::gate::{CountingWaker, Gate};
use super::MakeBuilder;

fn runtime(make: &MakeBuilder) -> Runtime {
    make().build().expect("runtime builds")
}

pub fn cookies_are_nonzero_and_increase_across_domains(make: &MakeBuilder) {
    let rt = runtime(make);
    let a = rt.domain("a");
    let b = rt.exclusive_domain("b");
    let mut last = 0;
    for i in 0..30 {
        let cookie = match i % 3 {
            0 => rt.schedule(|_| {}),
            1 => a.schedule(|_| {}),
            _ => b.schedule(|_| {}),
        };
        assert!(cookie.get() > last, "cookie {cookie} after {last}");
        last = cookie.get();
    }
    assert_eq!(Cookie::new(0), None);
    rt.synchronize_full().wait().unwrap();
    b.synchronize().wait().unwrap();
}

pub fn call_receives_its_own_cookie(make: &MakeBuilder) {
    let rt = runtime(make);
    let (tx, rx) = mpsc::channel();
    let mut scheduled = Vec::new();
    for _ in 0..20 {
        let tx = tx.clone();
        scheduled.push(rt.schedule(move |cookie| tx.send(cookie).unwrap()));
    }
    rt.synchronize_full().wait().unwrap();
    drop(tx);
    let mut received: Vec<Cookie> = rx.iter().collect();
    received.sort();
    assert_eq!(received, scheduled);
}

pub fn context_inside_and_outside_calls(make: &MakeBuilder) {
    let rt = runtime(make);
    assert!(!kasync::current_is_async());
    assert_eq!(kasync::current_cookie(), None);
    let (tx, rx) = mpsc::channel();
    let cookie = rt.schedule(move |cookie| {
        tx.send((kasync::current_is_async(), kasync::current_cookie(), cookie))
            .unwrap();
    });
    let (inside, current, given) = rx.recv().unwrap();
    assert!(inside);
    assert_eq!(current, Some(cookie));
    assert_eq!(given, cookie);
    rt.synchronize_full().wait().unwrap();
    assert!(!kasync::current_is_async());
}

pub fn exclusive_domain_is_not_covered_by_synchronize_full(make: &MakeBuilder) {
    let rt = runtime(make);
    let exclusive = rt.exclusive_domain("exclusive");
    assert!(!exclusive.is_registered());
    let gate = Gate::new();
    let g = gate.clone();
    exclusive.schedule(move |_| g.wait());
    // Returns although the exclusive call is still blocked on its gate.
    rt.synchronize_full().wait_no_help().unwrap();
    assert!(!exclusive.synchronize().is_finished());
    gate.open();
    exclusive.synchronize().wait().unwrap();
}

pub fn registered_domains_are_covered_by_synchronize_full(make: &MakeBuilder) {
    let rt = runtime(make);
    let registered = rt.domain("registered");
    assert!(registered.is_registered());
    assert!(rt.default_domain().is_registered());
    let gate = Gate::new();
    let g = gate.clone();
    registered.schedule(move |_| g.wait());
    let mut barrier = rt.synchronize_full();
    assert!(!barrier.is_finished());
    gate.open();
    barrier.wait().unwrap();
    assert!(registered.synchronize().is_finished());
}

pub fn unregistered_domain_is_no_longer_covered(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("leaving");
    let gate = Gate::new();
    let g = gate.clone();
    domain.schedule(move |_| g.wait());
    let mut full = rt.synchronize_full();
    assert!(!full.is_finished());
    domain.unregister();
    assert!(!domain.is_registered());
    // The waiting barrier no longer waits for the unregistered domain.
    full.wait_no_help().unwrap();
    assert!(!domain.synchronize().is_finished());
    gate.open();
    domain.synchronize().wait().unwrap();
}

pub fn synchronize_cookie_waits_only_for_earlier_calls(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("d");
    let (first_gate, second_gate) = (Gate::new(), Gate::new());
    let (g1, g2) = (first_gate.clone(), second_gate.clone());
    let second_done = Arc::new(AtomicBool::new(false));
    let done = second_done.clone();
    domain.schedule(move |_| g1.wait());
    let second = domain.schedule(move |_| {
        g2.wait();
        done.store(true, Ordering::SeqCst);
    });
    let mut barrier = domain.synchronize_cookie(second);
    assert!(!barrier.is_finished(), "the first call is still blocked");
    first_gate.open();
    barrier.wait().unwrap();
    assert!(
        !second_done.load(Ordering::SeqCst),
        "cookie `second` itself is not waited for"
    );
    second_gate.open();
    domain.synchronize().wait().unwrap();
    assert!(second_done.load(Ordering::SeqCst));
    // A barrier on a cookie nothing precedes is done at once.
    assert!(domain.synchronize_cookie(Cookie::FIRST).is_finished());
}

pub fn synchronize_waits_for_calls_scheduled_while_waiting(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("chain");
    let finished = Arc::new(AtomicUsize::new(0));
    let (d, f) = (domain.clone(), finished.clone());
    domain.schedule(move |_| {
        // Each call schedules the next before finishing: a chain of 50.
        fn link(d: kasync::Domain, f: Arc<AtomicUsize>, left: usize) {
            if left > 0 {
                let (d2, f2) = (d.clone(), f.clone());
                d.schedule(move |_| link(d2, f2, left - 1));
            }
            f.fetch_add(1, Ordering::SeqCst);
        }
        link(d, f, 49);
    });
    domain.synchronize().wait().unwrap();
    assert_eq!(finished.load(Ordering::SeqCst), 50);
}

pub fn wait_timeout_times_out_and_calls_keep_running(make: &MakeBuilder) {
    let rt = runtime(make);
    let gate = Gate::new();
    let g = gate.clone();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    rt.schedule(move |_| {
        g.wait();
        d.store(true, Ordering::SeqCst);
    });
    assert_eq!(
        rt.synchronize_full().wait_timeout(Duration::from_millis(5)),
        Err(SyncError::TimedOut)
    );
    gate.open();
    rt.synchronize_full().wait_timeout(Duration::from_secs(600)).unwrap();
    assert!(done.load(Ordering::SeqCst));
}

pub fn barrier_is_a_future(make: &MakeBuilder) {
    let rt = runtime(make);
    let gate = Gate::new();
    let g = gate.clone();
    let domain = rt.domain("future");
    let cookie = domain.schedule(move |_| g.wait());
    let later = domain.schedule(|_| {});
    let opener = thread::spawn(move || gate.open());
    futures::executor::block_on(async {
        domain.synchronize_cookie(later).await.unwrap();
        domain.synchronize().await.unwrap();
        rt.synchronize_full().await.unwrap();
    });
    opener.join().unwrap();
    assert!(domain.synchronize_cookie(cookie).is_finished());
}

pub fn only_satisfied_waiters_are_woken(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("wake");
    let (gate1, gate2) = (Gate::new(), Gate::new());
    let (g1, g2) = (gate1.clone(), gate2.clone());
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    let c1 = domain.schedule(move |_| {
        g1.wait();
        tx.send(1).unwrap();
    });
    let c2 = domain.schedule(move |_| {
        g2.wait();
        tx2.send(2).unwrap();
    });
    let c3 = Cookie::new(c2.get() + 1).unwrap();
    let mut early = Box::pin(domain.synchronize_cookie(c2)); // waits for c1
    let mut late = Box::pin(domain.synchronize_cookie(c3)); // waits for c1 and c2
    let early_count = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let late_count = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let early_waker = waker(early_count.clone());
    let late_waker = waker(late_count.clone());
    assert!(early.as_mut().poll(&mut Context::from_waker(&early_waker)).is_pending());
    assert!(late.as_mut().poll(&mut Context::from_waker(&late_waker)).is_pending());
    // Call 2 finishes first: neither condition holds yet, nobody is woken.
    gate2.open();
    assert_eq!(rx.recv().unwrap(), 2);
    while rt.stats().completed < 1 {
        thread::yield_now(); // until call 2 has been recorded as finished
    }
    let _ = c1;
    assert_eq!(early_count.0.load(Ordering::SeqCst), 0);
    assert_eq!(late_count.0.load(Ordering::SeqCst), 0);
    // Call 1 finishes: both hold now, each is woken once.
    gate1.open();
    assert_eq!(rx.recv().unwrap(), 1);
    domain.synchronize().wait().unwrap();
    // Task wakers run just after the finishing thread unlocks.
    while early_count.0.load(Ordering::SeqCst) == 0 || late_count.0.load(Ordering::SeqCst) == 0 {
        thread::yield_now();
    }
    assert_eq!(early_count.0.load(Ordering::SeqCst), 1);
    assert_eq!(late_count.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        early.as_mut().poll(&mut Context::from_waker(&early_waker)),
        Poll::Ready(Ok(()))
    );
    assert_eq!(
        late.as_mut().poll(&mut Context::from_waker(&late_waker)),
        Poll::Ready(Ok(()))
    );
}

pub fn dispatch_is_lowest_cookie_first(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let order = Arc::new(Mutex::new(Vec::new()));
    let a = rt.domain("a");
    let b = rt.domain("b");
    rt.schedule(move |_| g.wait());
    let mut expected = Vec::new();
    for i in 0..60 {
        let order = order.clone();
        let f = move |cookie: Cookie| order.lock().unwrap().push(cookie);
        expected.push(match i % 3 {
            0 => rt.schedule(f),
            1 => a.schedule(f),
            _ => b.schedule(f),
        });
    }
    gate.open();
    rt.synchronize_full().wait_no_help().unwrap();
    assert_eq!(*order.lock().unwrap(), expected);
}

pub fn panics_are_reported_and_do_not_poison(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("panicky");
    let before = domain.schedule(|_| {});
    let bad = domain.schedule(|_| panic!("probe failed"));
    let err = domain.synchronize().wait().unwrap_err();
    match &err {
        SyncError::Panicked(report) => {
            assert_eq!(report.cookie(), bad);
            assert_eq!(report.message(), "probe failed");
            assert_eq!(report.domain(), "panicky");
            assert_eq!(report.others(), 0);
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(err.to_string().contains("probe failed"));
    // Reported once: later barriers are clean, and the runtime still works.
    domain.synchronize().wait().unwrap();
    domain.synchronize_cookie(bad).wait().unwrap();
    let _ = before;
    let (tx, rx) = mpsc::channel();
    domain.schedule(move |_| tx.send(()).unwrap());
    rx.recv().unwrap();
    domain.synchronize().wait().unwrap();
    assert_eq!(rt.stats().panicked, 1);
}

pub fn panic_is_reported_by_every_waiting_barrier_once(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("p");
    let gate = Gate::new();
    let g = gate.clone();
    let bad = domain.schedule(move |_| {
        g.wait();
        panic!("boom");
    });
    let other = domain.schedule(|_| panic!("second"));
    let b1 = domain.synchronize();
    let b2 = rt.synchronize_full();
    let mut b3 = domain.synchronize_cookie(bad); // does not cover `bad`
    gate.open();
    for mut barrier in [b1, b2] {
        match barrier.wait_no_help() {
            Err(SyncError::Panicked(r)) => {
                assert_eq!(r.cookie(), bad);
                assert_eq!(r.others(), 1);
                let _ = other;
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
    }
    b3.wait().unwrap();
    rt.synchronize_full().wait().unwrap();
}

pub fn panic_before_any_barrier_is_not_lost(make: &MakeBuilder) {
    let rt = runtime(make);
    let (tx, rx) = mpsc::channel();
    let bad = rt.schedule(move |_| {
        let _notify = Notify(tx);
        panic!("early");
    });
    struct Notify(mpsc::Sender<()>);
    impl Drop for Notify {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    rx.recv().unwrap();
    while rt.stats().completed < 1 {
        thread::yield_now(); // until the panic has been recorded
    }
    // The call has panicked before any barrier existed; a barrier made now
    // still reports it, and dropping an unreported barrier keeps it.
    drop(rt.synchronize_full());
    match rt.synchronize_full().wait() {
        Err(SyncError::Panicked(r)) => assert_eq!(r.cookie(), bad),
        other => panic!("expected Panicked, got {other:?}"),
    }
    rt.synchronize_full().wait().unwrap();
}

pub fn waiting_on_own_call_would_deadlock(make: &MakeBuilder) {
    let rt = Arc::new(runtime(make));
    let domain = rt.domain("self");
    let exclusive = rt.exclusive_domain("excl");
    let (tx, rx) = mpsc::channel();
    let (r, d) = (rt.clone(), domain.clone());
    let cookie = domain.schedule(move |cookie| {
        let full = r.synchronize_full().wait();
        let own = d.synchronize().wait();
        let earlier = d.synchronize_cookie(cookie).wait();
        tx.send((full, own, earlier)).unwrap();
    });
    let (full, own, earlier) = rx.recv().unwrap();
    assert_eq!(full, Err(SyncError::WouldDeadlock { waiter: cookie }));
    assert_eq!(own, Err(SyncError::WouldDeadlock { waiter: cookie }));
    assert_eq!(earlier, Ok(()));
    // An exclusive call waiting on the registered domains is fine.
    let (tx, rx) = mpsc::channel();
    let r = rt.clone();
    exclusive.schedule(move |_| tx.send(r.synchronize_full().wait()).unwrap());
    assert_eq!(rx.recv().unwrap(), Ok(()));
    exclusive.synchronize().wait().unwrap();
    rt.synchronize_full().wait().unwrap();
    assert!(SyncError::WouldDeadlock { waiter: cookie }
        .to_string()
        .contains("deadlock"));
}

/// A call run nested inside another call that is helping is the one named
/// as the waiter, even when the barrier covers the outer call as well.
/// A runtime whose only worker is held for the runtime's life: its calls run
/// only on the threads that wait for them, so nesting is certain.
/// (`eager_workers(0)` without the watchdog, which would start no worker at
/// all, is refused by `build`.)
pub struct Workerless {
    pub rt: Arc<kasync::Runtime>,
    held: Gate,
}

impl Drop for Workerless {
    fn drop(&mut self) {
        self.held.open();
    }
}

pub fn workerless(make: &MakeBuilder) -> Workerless {
    let rt = Arc::new(
        make()
            .max_workers(1)
            .eager_workers(1)
            .no_stall_watchdog()
            .build()
            .unwrap(),
    );
    let held = Gate::new();
    let (g, (tx, rx)) = (held.clone(), mpsc::channel());
    rt.exclusive_domain("held").schedule(move |_| {
        tx.send(()).unwrap();
        g.wait();
    });
    rx.recv().unwrap();
    Workerless { rt, held }
}

pub fn a_nested_self_wait_names_the_innermost_call(make: &MakeBuilder) {
    // No free worker: every call runs on the thread that waits for it, so
    // the nesting below is certain.
    let held = workerless(make);
    let rt = held.rt.clone();
    let (inner_domain, outer_domain) = (rt.domain("inner"), rt.domain("outer"));
    let (tx, rx) = mpsc::channel();
    let r = rt.clone();
    let inner = inner_domain.schedule(move |_| tx.send(r.synchronize_full().wait()).unwrap());
    let d = inner_domain.clone();
    let outer = outer_domain.schedule(move |_| d.synchronize().wait().unwrap());
    assert!(inner < outer);
    // This thread runs the outer call, which runs the inner call while it
    // waits; the inner call's full barrier covers both.
    outer_domain.synchronize().wait().unwrap();
    assert_eq!(rx.recv().unwrap(), Err(SyncError::WouldDeadlock { waiter: inner }));
    assert_eq!(rt.stats().completed, 2);
    drop(held);
}

pub fn waiting_inside_async_call_on_own_domain_would_deadlock(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("async-self");
    let (tx, rx) = mpsc::channel();
    let d = domain.clone();
    let cookie = domain.schedule_async(move |cookie| async move {
        let own = d.synchronize().await;
        let earlier = d.synchronize_cookie(cookie).await;
        tx.send((own, earlier)).unwrap();
    });
    let (own, earlier) = rx.recv().unwrap();
    assert_eq!(own, Err(SyncError::WouldDeadlock { waiter: cookie }));
    assert_eq!(earlier, Ok(()));
    domain.synchronize().wait().unwrap();
}

pub fn try_schedule_gives_the_function_back_when_full(make: &MakeBuilder) {
    let rt = make().max_pending(2).build().unwrap();
    let gate = Gate::new();
    for _ in 0..2 {
        let g = gate.clone();
        rt.try_schedule(move |_| g.wait()).unwrap();
    }
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let full = rt.try_schedule(move |_| r.store(true, Ordering::SeqCst)).unwrap_err();
    assert!(full.to_string().contains("max_pending"));
    assert!(
        !ran.load(Ordering::SeqCst),
        "try_schedule never runs the function inline"
    );
    let f = full.into_inner();
    gate.open();
    rt.synchronize_full().wait().unwrap();
    rt.try_schedule(f).unwrap();
    rt.synchronize_full().wait().unwrap();
    assert!(ran.load(Ordering::SeqCst));
}

pub fn reject_policy_panics_with_a_clear_message(make: &MakeBuilder) {
    let rt = make().max_pending(1).overflow(Overflow::Reject).build().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    rt.schedule(move |_| g.wait());
    let err = catch_unwind(AssertUnwindSafe(|| rt.schedule(|_| {}))).unwrap_err();
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("max_pending") && msg.contains("try_schedule"), "{msg}");
    gate.open();
    rt.synchronize_full().wait().unwrap();
    rt.schedule(|_| {});
    rt.synchronize_full().wait().unwrap();
}

pub fn run_inline_policy_runs_on_the_caller_with_a_cookie(make: &MakeBuilder) {
    let rt = make().max_pending(1).overflow(Overflow::RunInline).build().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let first = rt.schedule(move |_| {
        started_tx.send(()).unwrap();
        g.wait()
    });
    started_rx.recv().unwrap(); // a worker runs call 1; only call 2 runs inline
    let (tx, rx) = mpsc::channel();
    let caller = thread::current().id();
    let second = rt.schedule(move |cookie| {
        tx.send((thread::current().id(), cookie, kasync::current_cookie()))
            .unwrap();
    });
    let (ran_on, got, current) = rx.try_recv().expect("ran before schedule returned");
    assert_eq!(ran_on, caller);
    assert_eq!(got, second);
    assert_eq!(current, Some(second));
    assert!(second > first);
    gate.open();
    rt.synchronize_full().wait().unwrap();
}

pub fn block_policy_makes_room_by_helping(make: &MakeBuilder) {
    let rt = make()
        .max_workers(1)
        .max_pending(2)
        .overflow(Overflow::Block)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    rt.schedule(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
    });
    started_rx.recv().unwrap(); // the only worker is now stuck in call 1
    let (tx, rx) = mpsc::channel();
    let queued = rt.schedule(move |cookie| tx.send((thread::current().id(), cookie)).unwrap());
    // Full: this schedule runs the queued call itself to make room.
    let third = rt.schedule(|_| {});
    let (ran_on, cookie) = rx.try_recv().expect("the queued call ran inside schedule");
    assert_eq!(ran_on, thread::current().id());
    assert_eq!(cookie, queued);
    assert!(third > queued);
    gate.open();
    rt.synchronize_full().wait().unwrap();
}

pub fn async_calls_run_and_count_as_calls(make: &MakeBuilder) {
    let rt = runtime(make);
    let domain = rt.domain("async");
    let (tx, rx) = mpsc::channel();
    let mut cookies = Vec::new();
    for _ in 0..10 {
        let tx = tx.clone();
        cookies.push(domain.schedule_async(move |cookie| async move {
            futures::future::ready(()).await;
            tx.send((cookie, kasync::current_cookie())).unwrap();
        }));
    }
    let gate = Gate::new();
    let g = gate.clone();
    let blocked = domain.schedule_async(move |_| async move { g.wait() });
    let mut barrier = domain.synchronize();
    assert!(!barrier.is_finished());
    gate.open();
    barrier.wait().unwrap();
    drop(tx);
    let mut got: Vec<(Cookie, Option<Cookie>)> = rx.iter().collect();
    got.sort();
    assert_eq!(got, cookies.iter().map(|&c| (c, Some(c))).collect::<Vec<_>>());
    assert!(blocked > cookies[9]);
}

pub fn async_call_panics_are_reported(make: &MakeBuilder) {
    let rt = runtime(make);
    let bad = rt.schedule_async(|_| async { panic!("async boom") });
    match rt.synchronize_full().wait() {
        Err(SyncError::Panicked(r)) => {
            assert_eq!(r.cookie(), bad);
            assert_eq!(r.message(), "async boom");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

pub fn stats_count_what_happened(make: &MakeBuilder) {
    let rt = runtime(make);
    for _ in 0..25 {
        rt.schedule(|_| {});
    }
    rt.schedule(|_| panic!("counted"));
    let _ = rt.synchronize_full().wait();
    let stats = rt.stats();
    assert_eq!(stats.completed, 26);
    assert_eq!(stats.panicked, 1);
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.queued, 0);
    assert!(stats.peak_workers >= 1);
    assert!(stats.workers <= stats.peak_workers);
    assert!(!rt.executor_name().is_empty());
}

pub fn builder_rejects_bad_settings(make: &MakeBuilder) {
    assert!(matches!(
        make().max_workers(0).build(),
        Err(kasync::BuildError::InvalidConfig(_))
    ));
    assert!(matches!(
        make().max_workers(2).min_workers(3).build(),
        Err(kasync::BuildError::InvalidConfig(_))
    ));
    assert!(matches!(
        make().max_pending(0).build(),
        Err(kasync::BuildError::InvalidConfig(_))
    ));
    assert!(matches!(
        make().stall_timeout(Duration::ZERO).build(),
        Err(kasync::BuildError::InvalidConfig(_))
    ));
    // Nothing would ever start a worker.
    match make().eager_workers(0).no_stall_watchdog().build() {
        Err(kasync::BuildError::InvalidConfig(why)) => assert!(why.contains("eager_workers"), "{why}"),
        other => panic!("accepted a runtime that never starts a worker: {other:?}"),
    }
    // With the watchdog it is fine (growth::no_eager_workers_still_runs_calls),
    // and so is a fixed pool of `min_workers`.
    assert!(make().eager_workers(0).build().is_ok());
    let fixed = make()
        .eager_workers(0)
        .min_workers(1)
        .no_stall_watchdog()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    fixed.schedule(move |_| tx.send(()).unwrap());
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the fixed pool runs calls");
}

pub fn panics_of_a_dropped_exclusive_domain_do_not_haunt_new_domains(make: &MakeBuilder) {
    let rt = runtime(make);
    let a = rt.exclusive_domain("a");
    let (tx, rx) = mpsc::channel();
    struct Notify(mpsc::Sender<()>);
    impl Drop for Notify {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    a.schedule(move |_| {
        let _n = Notify(tx);
        panic!("in a");
    });
    drop(a);
    rx.recv().unwrap();
    while rt.stats().completed < 1 {
        thread::yield_now();
    }
    let b = rt.exclusive_domain("b");
    b.synchronize().wait().unwrap();
    b.synchronize_cookie(Cookie::MAX).wait().unwrap();
}

pub fn timeline_records_blocking_and_async_calls(make: &MakeBuilder) {
    let rt = make().record_timeline(true).build().unwrap();
    let domain = rt.domain("recorded");
    for _ in 0..3 {
        domain.schedule(|_| {});
    }
    domain.schedule_async(|_| async {});
    domain.synchronize().wait().unwrap();
    let timeline = rt.timeline().expect("recording is on");
    let cookies: Vec<u64> = timeline.calls().iter().map(|c| c.cookie.get()).collect();
    assert_eq!(cookies, [1, 2, 3, 4]);
    for call in timeline.calls() {
        assert_eq!(&*call.domain, "recorded");
        assert!(call.thread < timeline.threads().len());
        assert!(call.queued <= call.started && call.started <= call.finished);
    }
    assert!(make().build().unwrap().timeline().is_none());
}

pub fn waiting_across_runtimes_works_and_a_cross_runtime_self_wait_is_refused(make: &MakeBuilder) {
    let a = make().build().unwrap();
    // No free worker: B's calls run only on threads that wait for them.
    let held = workerless(make);
    let b = &held.rt;
    let (a_domain, b_domain) = (a.domain("a"), b.domain("b"));
    let (tx, rx) = mpsc::channel();
    let (a2, b2) = (a_domain.clone(), b_domain.clone());
    let x = a_domain.schedule(move |own| {
        // Y, on runtime B, waits for A's calls up to and including X.
        let after_x = Cookie::new(own.get() + 1).unwrap();
        let (a3, tx2) = (a2.clone(), tx.clone());
        b2.schedule(move |_| tx2.send(("y", a3.synchronize_cookie(after_x).wait())).unwrap());
        // X waits for B's domain and so runs Y on its own thread: Y's wait
        // covers X, below it on this very thread, and must be refused.
        tx.send(("x", b2.synchronize().wait())).unwrap();
    });
    let mut results: Vec<_> = (0..2).map(|_| rx.recv().unwrap()).collect();
    results.sort_by_key(|(who, _)| *who);
    assert_eq!(results[0], ("x", Ok(())));
    assert_eq!(results[1], ("y", Err(SyncError::WouldDeadlock { waiter: x })));
    // Plain waits across runtimes work: A's thread runs B's call.
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    b_domain.schedule(move |_| r.store(true, Ordering::SeqCst));
    let b3 = b_domain.clone();
    a_domain.schedule(move |_| b3.synchronize().wait().unwrap());
    a.synchronize_full().wait().unwrap();
    assert!(ran.load(Ordering::SeqCst));
}
