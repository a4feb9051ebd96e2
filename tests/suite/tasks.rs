//! Conformance: values, order and cancellation. Typed task handles
//! (`Domain::spawn`, `Domain::spawn_async`, `Task`), cancelling queued calls
//! (`Task::cancel`, `Domain::cancel`) and the ordered parallel map
//! (`Domain::map_ordered`, `OrderedMap`).
//!
//! None sleeps to order events or asserts a duration: gates, channels and
//! atomics order them, and a would-be hang fails on a generous timeout
//! instead. (Some map calls sleep a millisecond or two *inside* their work,
//! to vary how long calls take; that orders nothing.)

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use futures::task::waker;
use futures::StreamExt;
use kasync::{Cookie, Item, SyncError, Task, TaskError, WaitError, Work};

use super::gate::{hold_a_worker, leak_and_fail, panic_text, CountingWaker, Gate, OpenOnDrop, HANG};
use super::MakeBuilder;

/// Counts its drops: captured by a closure, it tells how often the closure
/// was dropped.
#[derive(Debug)]
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls (no sleeping) until `counter` reaches `want`, failing after `HANG`.
fn until_count(counter: &AtomicUsize, want: usize, what: &str) {
    let give_up = Instant::now() + HANG;
    while counter.load(Ordering::SeqCst) < want {
        assert!(
            Instant::now() < give_up,
            "{what}: {} of {want}",
            counter.load(Ordering::SeqCst)
        );
        thread::yield_now();
    }
}

/// A deterministic pseudo-random sequence (xorshift64) of `n` durations of
/// 0 to 2 ms.
fn delays(n: usize, seed: u64) -> Vec<Duration> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Duration::from_micros(x % 2001)
        })
        .collect()
}

/// Panics with `message` as the payload, as a value of any type.
fn fail<T>(message: &'static str) -> T {
    std::panic::panic_any(message)
}

fn assert_error_traits<E: std::error::Error + Clone + PartialEq + Send + Sync + 'static>() {}

// ---- values and cookies -----------------------------------------------------

pub fn spawn_returns_values_and_takes_the_next_cookie(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("values");
    let other = rt.exclusive_domain("other");
    let mut last = 0;
    let mut tasks = Vec::new();
    for i in 0..30u64 {
        let task = match i % 3 {
            0 => domain.spawn(move |cookie| (i * 3, cookie, kasync::current_cookie())),
            1 => other.spawn(move |cookie| (i * 3, cookie, kasync::current_cookie())),
            _ => rt.spawn(move |cookie| (i * 3, cookie, kasync::current_cookie())),
        };
        assert!(task.cookie().get() > last, "cookie {} after {last}", task.cookie());
        last = task.cookie().get();
        // One counter for every kind of call.
        let scheduled = domain.schedule(|_| {});
        assert!(scheduled.get() > last);
        last = scheduled.get();
        tasks.push(task);
    }
    for (i, mut task) in tasks.into_iter().enumerate() {
        let cookie = task.cookie();
        assert_eq!(task.wait(), Ok((i as u64 * 3, cookie, Some(cookie))), "task {i}");
    }
    assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    assert_eq!(other.synchronize().wait_timeout(HANG), Ok(()));
    assert_error_traits::<TaskError>();
}

pub fn a_spawned_call_is_covered_by_barriers(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("covered");
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    let mut task = domain.spawn(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
        42u32
    });
    let after = domain.schedule(|_| {});
    let mut default_task = rt.spawn(|cookie| cookie);
    assert!(task.cookie() < after);
    started_rx.recv_timeout(HANG).expect("the task started");
    let mut by_cookie = domain.synchronize_cookie(after);
    let mut whole = domain.synchronize();
    let mut full = rt.synchronize_full();
    assert!(
        !by_cookie.is_finished(),
        "synchronize_cookie must wait for the running task"
    );
    assert!(!whole.is_finished(), "synchronize must wait for the running task");
    assert!(!full.is_finished(), "synchronize_full must wait for the running task");
    assert!(
        domain.synchronize_cookie(task.cookie()).is_finished(),
        "nothing precedes the task"
    );
    assert!(!task.is_finished());
    gate.open();
    assert_eq!(by_cookie.wait_timeout(HANG), Ok(()));
    assert!(
        task.is_finished(),
        "a barrier over the task returned before it finished"
    );
    assert_eq!(whole.wait_timeout(HANG), Ok(()));
    assert_eq!(full.wait_timeout(HANG), Ok(()));
    assert_eq!(task.wait(), Ok(42));
    // Runtime::spawn is the default domain's.
    assert_eq!(rt.default_domain().synchronize().wait_timeout(HANG), Ok(()));
    assert!(default_task.is_finished());
    let cookie = default_task.cookie();
    assert_eq!(default_task.wait(), Ok(cookie));
}

/// `Task::wait` helps: with the only worker held, the waiting thread runs
/// the task's call itself, and no other (a wait for one call does not
/// depend on the calls queued before it).
pub fn wait_runs_the_task_on_the_waiter_when_no_worker_is_free(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let _release = hold_a_worker(&rt);
    let domain = rt.domain("helped");
    let mut first = domain.spawn(|cookie| (thread::current().id(), cookie));
    let mut second = domain.spawn(|cookie| (thread::current().id(), cookie));
    let (c1, c2) = (first.cookie(), second.cookie());
    assert_eq!(second.wait(), Ok((thread::current().id(), c2)));
    assert!(!first.is_finished(), "a task wait ran an earlier, unrelated call");
    assert_eq!(first.wait(), Ok((thread::current().id(), c1)));
    let stats = rt.stats();
    assert_eq!((stats.helped, stats.cancelled), (2, 0), "{stats:?}");
}

pub fn spawn_async_returns_values(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let name = rt.executor_name();
    let domain = rt.domain("async-values");
    // Ready at once.
    let mut ready = domain.spawn_async(|cookie| async move { futures::future::ready(cookie.get() * 2).await });
    let cookie = ready.cookie();
    assert_eq!(ready.wait(), Ok(cookie.get() * 2), "on {name}");
    // Pending until the test sends, on an executor-neutral channel.
    let (tx, rx) = futures::channel::oneshot::channel::<String>();
    let mut pending = domain.spawn_async(move |cookie| async move {
        let got = rx.await.unwrap();
        (got, cookie, kasync::current_cookie())
    });
    let cookie = pending.cookie();
    assert!(!pending.is_finished());
    tx.send(String::from("sent")).unwrap();
    assert_eq!(
        pending.wait(),
        Ok((String::from("sent"), cookie, Some(cookie))),
        "on {name}"
    );
    // Runtime::spawn_async, awaited from a plain thread.
    let task = rt.spawn_async(|cookie| async move { cookie });
    let cookie = task.cookie();
    assert_eq!(futures::executor::block_on(task), Ok(cookie), "on {name}");
    // Many, mixed with blocking tasks, each with its own value.
    let tasks: Vec<Task<usize>> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                domain.spawn_async(move |_| async move { i })
            } else {
                domain.spawn(move |_| i)
            }
        })
        .collect();
    let values: Vec<usize> = tasks.into_iter().map(|mut t| t.wait().unwrap()).collect();
    assert_eq!(values, (0..20).collect::<Vec<_>>());
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn the_global_runtime_spawns(_make: &MakeBuilder) {
    let mut task = kasync::spawn(|cookie| cookie.get() + 1);
    let cookie = task.cookie();
    assert_eq!(task.wait(), Ok(cookie.get() + 1));
    let mut task = kasync::spawn_async(|cookie| async move { cookie });
    let cookie = task.cookie();
    assert_eq!(task.wait(), Ok(cookie));
}

// ---- panics -----------------------------------------------------------------

pub fn a_task_panic_is_delivered_to_its_task_once(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("panics");
    let mut task = domain.spawn(|_| -> u32 { panic!("task boom") });
    let cookie = task.cookie();
    let err = task.wait().unwrap_err();
    match &err {
        TaskError::Panicked(report) => {
            assert_eq!(report.cookie(), cookie);
            assert_eq!(report.message(), "task boom");
            assert_eq!(report.domain(), "panics");
            assert_eq!(report.others(), 0);
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert!(err.to_string().contains("task boom"), "{err}");
    // Delivered to its task: later barriers do not report it again.
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    // Async calls likewise.
    let mut task = domain.spawn_async(|_| async { fail::<u32>("async task boom") });
    let cookie = task.cookie();
    match task.wait() {
        Err(TaskError::Panicked(report)) => {
            assert_eq!(report.cookie(), cookie);
            assert_eq!(report.message(), "async task boom");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    // A barrier over a panicking task and a panicking closure reports only
    // the closure's once the task has delivered its own.
    let mut task = domain.spawn(|_| -> u32 { panic!("delivered") });
    let closure = domain.schedule(|_| panic!("not delivered"));
    assert!(matches!(task.wait(), Err(TaskError::Panicked(_))));
    match domain.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => {
            assert_eq!(report.cookie(), closure);
            assert_eq!(report.message(), "not delivered");
            assert_eq!(report.others(), 0, "the task's panic was reported again");
        }
        other => panic!("expected the closure's panic, got {other:?}"),
    }
    assert_eq!(rt.stats().panicked, 4);
    // The runtime still works.
    assert_eq!(domain.spawn(|_| 1).wait(), Ok(1));
}

pub fn a_detached_tasks_panic_is_reported_by_a_barrier(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("detached-panic");
    // Dropped at once (before, while or after it runs: any is fine).
    let task = domain.spawn(|_| -> u32 { panic!("nobody waits") });
    let cookie = task.cookie();
    drop(task);
    match domain.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => {
            assert_eq!(report.cookie(), cookie);
            assert_eq!(report.message(), "nobody waits");
        }
        other => panic!("expected the detached task's panic, got {other:?}"),
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()), "reported once");
    // Dropped after it panicked, before any barrier.
    let task = domain.spawn_async(|_| async { fail::<u32>("async, nobody waits") });
    let cookie = task.cookie();
    let give_up = Instant::now() + HANG;
    while !task.is_finished() {
        assert!(Instant::now() < give_up, "the task never finished");
        thread::yield_now();
    }
    drop(task);
    match rt.synchronize_full().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => {
            assert_eq!(report.cookie(), cookie);
            assert_eq!(report.message(), "async, nobody waits");
        }
        other => panic!("expected the detached task's panic, got {other:?}"),
    }
}

// ---- cancelling -------------------------------------------------------------

pub fn cancel_before_start_never_runs_and_drops_the_closure_once(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let release = hold_a_worker(&rt);
    let domain = rt.domain("cancel");
    let ran = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let (probe, r) = (DropCount(drops.clone()), ran.clone());
    let mut task = domain.spawn(move |_| {
        let _probe = &probe;
        r.fetch_add(1, Ordering::SeqCst);
        7u32
    });
    let (probe, r) = (DropCount(drops.clone()), ran.clone());
    let mut async_task = domain.spawn_async(move |_| {
        let probe = probe;
        async move {
            let _probe = probe;
            r.fetch_add(1, Ordering::SeqCst);
            8u32
        }
    });
    let after = domain.schedule(|_| {});
    assert!(!task.is_finished());
    assert!(task.cancel(), "the call had not started");
    assert!(async_task.cancel(), "the async call had not started");
    // Counts as finished for every barrier: none needs a worker or helping.
    let next = Cookie::new(async_task.cookie().get() + 1).unwrap();
    assert_eq!(domain.synchronize_cookie(next).wait_timeout(HANG), Ok(()));
    assert!(task.is_finished(), "a cancelled task counts as finished");
    // Checked last, so that the checks below run either way.
    let dropped_by_cancel = drops.load(Ordering::SeqCst);
    assert_eq!(task.wait(), Err(TaskError::Cancelled));
    assert_eq!(async_task.wait(), Err(TaskError::Cancelled));
    assert!(!TaskError::Cancelled.to_string().is_empty());
    // The uncancelled later call still runs (with the worker released).
    drop(release);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    assert!(domain
        .synchronize_cookie(Cookie::new(after.get() + 1).unwrap())
        .is_finished());
    drop(rt);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a cancelled call ran");
    assert_eq!(drops.load(Ordering::SeqCst), 2, "each closure is dropped exactly once");
    // Cancelling drops the closure (and what it captured): a cancelled task
    // whose handle is kept does not keep its captures alive.
    assert_eq!(
        dropped_by_cancel, 2,
        "the cancelled closures were not all dropped by the time the barrier over them returned"
    );
}

pub fn cancel_after_start_or_finish_returns_false(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("started");
    // Running.
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    let mut task = domain.spawn(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
        "ran"
    });
    started_rx.recv_timeout(HANG).expect("the task started");
    assert!(!task.cancel(), "a running call cannot be cancelled");
    assert!(!task.is_finished());
    gate.open();
    assert_eq!(task.wait(), Ok("ran"));
    // A running async call.
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = futures::channel::oneshot::channel::<u32>();
    let mut task = domain.spawn_async(move |_| async move {
        started_tx.send(()).unwrap();
        go_rx.await.unwrap() + 1
    });
    started_rx.recv_timeout(HANG).expect("the async task started");
    assert!(!task.cancel(), "a running async call cannot be cancelled");
    go_tx.send(41).unwrap();
    assert_eq!(task.wait(), Ok(42));
    // Finished.
    let mut task = domain.spawn(|_| 5);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert!(task.is_finished());
    assert!(!task.cancel(), "a finished call cannot be cancelled");
    assert_eq!(task.wait(), Ok(5));
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

/// An item that counts its runs and its drops.
struct Probe {
    runs: usize,
    ran: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl Probe {
    fn new(ran: &Arc<AtomicUsize>, drops: &Arc<AtomicUsize>) -> Box<Item<Probe>> {
        Item::new(Probe {
            runs: 0,
            ran: ran.clone(),
            drops: drops.clone(),
        })
    }
}

impl Work for Probe {
    fn run(&mut self, _: Cookie) {
        self.runs += 1;
        self.ran.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn domain_cancel_cancels_every_queued_call_of_the_domain(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let release = hold_a_worker(&rt);
    let domain = rt.domain("mixed-cancel");
    let other = rt.domain("other");
    let ran = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let closure = |ran: &Arc<AtomicUsize>, drops: &Arc<AtomicUsize>| {
        let (probe, ran) = (DropCount(drops.clone()), ran.clone());
        move |_: Cookie| {
            let _probe = &probe;
            ran.fetch_add(1, Ordering::SeqCst);
        }
    };
    let async_closure = |ran: &Arc<AtomicUsize>, drops: &Arc<AtomicUsize>| {
        let (probe, ran) = (DropCount(drops.clone()), ran.clone());
        move |_: Cookie| async move {
            let _probe = probe;
            ran.fetch_add(1, Ordering::SeqCst);
        }
    };
    // Two closures, an async call, two tasks, two owned and two detached
    // items: nine queued calls.
    domain.schedule(closure(&ran, &drops));
    domain.schedule_async(async_closure(&ran, &drops));
    let mut task = domain.spawn(closure(&ran, &drops));
    let mut async_task = domain.spawn_async(async_closure(&ran, &drops));
    let submitted: Vec<_> = (0..2).map(|_| domain.submit(Probe::new(&ran, &drops))).collect();
    for _ in 0..2 {
        domain.submit_detached(Probe::new(&ran, &drops));
    }
    domain.schedule(closure(&ran, &drops));
    // Another domain's queued call is not cancelled.
    let (other_ran, other_drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut other_task = other.spawn(closure(&other_ran, &other_drops));
    assert_eq!(domain.cancel(), 9, "every queued call of the domain");
    assert_eq!(domain.cancel(), 0, "nothing is left to cancel");
    // Counts as finished for every barrier, without a worker or helping.
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    // Checked last, so that the checks below run either way.
    let dropped_by_cancel = drops.load(Ordering::SeqCst);
    assert_eq!(task.wait(), Err(TaskError::Cancelled));
    assert_eq!(async_task.wait(), Err(TaskError::Cancelled));
    for mut submitted in submitted {
        match submitted.wait() {
            Err(WaitError::Cancelled { item }) => {
                assert_eq!(item.runs, 0);
                drop(item);
            }
            Err(other) => panic!("expected the item back as Cancelled, got {other:?}"),
            Ok(_) => panic!("expected the item back as Cancelled, got it back as run"),
        }
    }
    assert_eq!(drops.load(Ordering::SeqCst), 5 + 2 + 2);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a cancelled call ran");
    assert_eq!(other_ran.load(Ordering::SeqCst), 0);
    // The domain stays usable (the waiter runs these: the worker is held).
    assert_eq!(domain.spawn(|_| 3).wait(), Ok(3));
    let (tx, rx) = mpsc::channel();
    domain.schedule(move |_| tx.send(()).unwrap());
    let mut returned = domain.submit(Probe::new(
        &Arc::new(AtomicUsize::new(0)),
        &Arc::new(AtomicUsize::new(0)),
    ));
    assert_eq!(returned.wait().map(|item| item.runs).ok(), Some(1));
    assert_eq!(domain.synchronize().wait(), Ok(()));
    assert_eq!(rx.try_recv(), Ok(()));
    drop(release);
    assert_eq!(other_task.wait(), Ok(()));
    assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    assert_eq!(other_ran.load(Ordering::SeqCst), 1);
    drop(rt);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a cancelled call ran");
    assert_eq!(drops.load(Ordering::SeqCst), 5 + 2 + 2, "freed twice");
    assert_eq!(other_drops.load(Ordering::SeqCst), 1);
    // Cancelling drops the closures (and what they captured) and frees the
    // detached items; the owned items wait for their handles.
    assert_eq!(
        dropped_by_cancel,
        5 + 2,
        "the cancelled closures and detached items were not all dropped by the time the barrier over them returned"
    );
}

/// Calls that each register in order (`synchronize_cookie(own)`, never
/// helping) with some of them cancelled: the cancelled ones count as
/// finished, so the chain goes on.
pub fn cancelled_calls_free_a_cookie_chain(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let release = hold_a_worker(&rt);
    let domain = rt.domain("chain");
    let order = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<Task<Result<(), SyncError>>> = (0..8)
        .map(|i| {
            let (d, order) = (domain.clone(), order.clone());
            domain.spawn(move |cookie| {
                let result = d.synchronize_cookie(cookie).wait_timeout(HANG);
                order.lock().unwrap().push(i);
                result
            })
        })
        .collect();
    for i in [2, 3, 6] {
        assert!(tasks[i].cancel(), "call {i} had not started");
    }
    drop(release);
    let mut results = Vec::new();
    for (i, mut task) in tasks.into_iter().enumerate() {
        let result = task.wait_timeout(HANG);
        if result == Err(TaskError::TimedOut) {
            leak_and_fail(rt, format!("call {i} never finished: the chain is stuck"));
        }
        results.push(result);
    }
    for (i, result) in results.iter().enumerate() {
        if [2, 3, 6].contains(&i) {
            assert_eq!(result, &Err(TaskError::Cancelled), "call {i}");
        } else {
            assert_eq!(result, &Ok(Ok(())), "call {i}");
        }
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 4, 5, 7]);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn wait_timeout_times_out_and_the_task_stays_waitable(make: &MakeBuilder) {
    // Queued behind the held worker: wait_timeout never helps, so it times out.
    let rt = make().max_workers(1).build().unwrap();
    let release = hold_a_worker(&rt);
    let domain = rt.domain("timeouts");
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let mut task = domain.spawn(move |_| {
        r.store(true, Ordering::SeqCst);
        thread::current().id()
    });
    assert_eq!(task.wait_timeout(Duration::ZERO), Err(TaskError::TimedOut));
    assert_eq!(task.wait_timeout(Duration::from_millis(20)), Err(TaskError::TimedOut));
    assert!(!ran.load(Ordering::SeqCst), "wait_timeout helped");
    assert!(!task.is_finished());
    drop(release);
    let result = task.wait_timeout(HANG);
    assert!(ran.load(Ordering::SeqCst));
    assert!(
        matches!(result, Ok(id) if id != thread::current().id()),
        "expected the value from a worker, got {result:?}"
    );
    // Running and blocked on a gate.
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let mut task = domain.spawn(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
        "done"
    });
    started_rx.recv_timeout(HANG).expect("the task started");
    assert_eq!(task.wait_timeout(Duration::from_millis(5)), Err(TaskError::TimedOut));
    gate.open();
    assert_eq!(task.wait_timeout(HANG), Ok("done"));
    // A timed-out task can be waited for plainly afterwards.
    let gate = Gate::new();
    let _release2 = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let mut task = domain.spawn(move |_| {
        g.wait();
        9
    });
    assert_eq!(task.wait_timeout(Duration::ZERO), Err(TaskError::TimedOut));
    gate.open();
    assert_eq!(task.wait(), Ok(9));
}

/// Counts how often a value is dropped.
#[derive(Debug)]
struct Value(Arc<AtomicUsize>);

impl Drop for Value {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn dropping_a_task_detaches_it(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("detach");
    // Dropped while queued or running: the call still runs, its value is
    // dropped once.
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let (ran, values) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let (g, r, v) = (gate.clone(), ran.clone(), values.clone());
    let task = domain.spawn(move |_| {
        g.wait();
        r.store(true, Ordering::SeqCst);
        Value(v)
    });
    drop(task);
    gate.open();
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert!(ran.load(Ordering::SeqCst), "a detached call must still run");
    until_count(&values, 1, "the detached task's value was not dropped");
    // Dropped after it finished: the value is dropped with the handle.
    let values = Arc::new(AtomicUsize::new(0));
    let v = values.clone();
    let task = domain.spawn(move |_| Value(v));
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert!(task.is_finished());
    assert_eq!(values.load(Ordering::SeqCst), 0, "the task holds its value");
    drop(task);
    until_count(&values, 1, "the finished task's value was not dropped with it");
    // An async task, dropped before its future is ready.
    let values = Arc::new(AtomicUsize::new(0));
    let v = values.clone();
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let task = domain.spawn_async(move |_| async move {
        rx.await.unwrap();
        Value(v)
    });
    drop(task);
    tx.send(()).unwrap();
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    until_count(&values, 1, "the detached async task's value was not dropped");
    // Taken once, never again.
    let values = Arc::new(AtomicUsize::new(0));
    let v = values.clone();
    let mut task = domain.spawn(move |_| Value(v));
    let value = task.wait().unwrap();
    assert_eq!(values.load(Ordering::SeqCst), 0);
    drop(value);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert_eq!(values.load(Ordering::SeqCst), 1);
}

pub fn a_task_polled_as_a_future_then_waited(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("poll");
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    // Polled while running, woken when done, then ready.
    let g = gate.clone();
    let mut task = domain.spawn(move |_| {
        g.wait();
        9
    });
    let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
    let w = waker(count.clone());
    assert!(Pin::new(&mut task).poll(&mut Context::from_waker(&w)).is_pending());
    gate.open();
    until_count(&count.0, 1, "the task's waker was not woken");
    assert_eq!(
        Pin::new(&mut task).poll(&mut Context::from_waker(&w)),
        Poll::Ready(Ok(9))
    );
    // Polled, then waited.
    let gate = Gate::new();
    let _release2 = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let mut task = domain.spawn(move |cookie| {
        g.wait();
        cookie
    });
    let cookie = task.cookie();
    assert!(Pin::new(&mut task).poll(&mut Context::from_waker(&w)).is_pending());
    gate.open();
    assert_eq!(task.wait(), Ok(cookie));
    // Polled, then waited with a timeout.
    let gate = Gate::new();
    let _release3 = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let mut task = domain.spawn(move |_| {
        g.wait();
        "late"
    });
    assert!(Pin::new(&mut task).poll(&mut Context::from_waker(&w)).is_pending());
    assert_eq!(task.wait_timeout(Duration::ZERO), Err(TaskError::TimedOut));
    gate.open();
    assert_eq!(task.wait_timeout(HANG), Ok("late"));
    // Awaited inside an async call (holds no thread) and from a plain thread.
    let d = domain.clone();
    let outer = domain.spawn_async(move |_| async move {
        let inner = d.spawn(|_| 20);
        inner.await.map(|v| v + 1)
    });
    assert_eq!(futures::executor::block_on(outer), Ok(Ok(21)));
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn waiting_on_a_task_from_inside_its_own_call_would_deadlock(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("self-task");
    let (task_tx, task_rx) = mpsc::channel::<Task<u32>>();
    let (result_tx, result_rx) = mpsc::channel();
    let task = domain.spawn(move |_| {
        let mut me = task_rx.recv().unwrap();
        result_tx.send(me.wait()).unwrap();
        5
    });
    let cookie = task.cookie();
    task_tx.send(task).unwrap();
    match result_rx.recv_timeout(HANG) {
        Ok(result) => assert_eq!(result, Err(TaskError::WouldDeadlock { waiter: cookie })),
        Err(_) => leak_and_fail(rt, String::from("waiting on its own task hung")),
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    let err = TaskError::WouldDeadlock { waiter: cookie };
    assert!(err.to_string().contains("deadlock"), "{err}");
}

/// `.wait()` on a task inside an async call: refused where blocking would
/// stall the executor (smol, async-std), allowed elsewhere; `.await` works
/// everywhere.
pub fn a_blocking_task_wait_inside_an_async_call(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let name = rt.executor_name();
    let domain = rt.domain("outer");
    let other = rt.exclusive_domain("other");
    let (tx, rx) = mpsc::channel();
    let o = other.clone();
    domain.schedule_async(move |_| async move {
        let blocking = o.spawn(|_| 3).wait();
        let awaited = o.spawn(|_| 4).await;
        tx.send((blocking, awaited)).unwrap();
    });
    let (blocking, awaited) = match rx.recv_timeout(HANG) {
        Ok(results) => results,
        Err(_) => leak_and_fail(rt, format!("on {name}: the async call never finished")),
    };
    match name {
        "smol" | "async-std" => match blocking {
            Err(TaskError::BlockingNotAllowed { executor, reason }) => {
                assert_eq!(executor, name);
                assert!(!reason.is_empty());
            }
            other => panic!("on {name}: expected BlockingNotAllowed, got {other:?}"),
        },
        _ => assert_eq!(blocking, Ok(3), "on {name}"),
    }
    assert_eq!(awaited, Ok(4), "on {name}");
    // A refused task was detached: it still ran.
    assert_eq!(other.synchronize().wait_timeout(HANG), Ok(()));
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

// ---- map_ordered --------------------------------------------------------------

/// An input iterator that counts how many items were pulled from it and
/// whether it was dropped.
struct Counted<I> {
    inner: I,
    pulled: Arc<AtomicUsize>,
    _dropped: Option<DropCount>,
}

impl<I> Counted<I> {
    fn new(inner: I, pulled: &Arc<AtomicUsize>) -> Counted<I> {
        Counted {
            inner,
            pulled: pulled.clone(),
            _dropped: None,
        }
    }
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        let next = self.inner.next();
        if next.is_some() {
            self.pulled.fetch_add(1, Ordering::SeqCst);
        }
        next
    }
}

fn ok_range(n: usize, f: impl Fn(usize) -> usize) -> Vec<Result<usize, TaskError>> {
    (0..n).map(|i| Ok(f(i))).collect()
}

pub fn map_ordered_keeps_input_order_under_random_delays(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("map");
    for (window, n) in [(1, 20), (3, 100), (8, 200), (32, 150)] {
        let delays = delays(n, window as u64);
        let results: Vec<_> = domain
            .map_ordered(0..n, window, move |i| {
                thread::sleep(delays[i]);
                i * i
            })
            .collect();
        assert_eq!(results, ok_range(n, |i| i * i), "window {window}");
    }
    // Any input type, any result type.
    let words = vec![String::from("a"), String::from("bb"), String::from("ccc")];
    let lengths: Vec<_> = domain.map_ordered(words, 2, |w: String| w.len()).collect();
    assert_eq!(lengths, vec![Ok(1), Ok(2), Ok(3)]);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn map_ordered_bounds_inputs_pulled_and_calls_running(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("bounded");
    const N: usize = 60;
    for window in [1, 2, 3, 5, 8] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let yielded = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let overpulled = Arc::new(AtomicUsize::new(0));
        let delays = delays(N, 100 + window as u64);
        let (p, y, r, pk, over) = (
            pulled.clone(),
            yielded.clone(),
            running.clone(),
            peak.clone(),
            overpulled.clone(),
        );
        let mut map = domain.map_ordered(Counted::new(0..N, &pulled), window, move |i| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            pk.fetch_max(now, Ordering::SeqCst);
            // The consumer may be inside `next`, having taken one result
            // more than it counted so far.
            if p.load(Ordering::SeqCst) > y.load(Ordering::SeqCst) + 1 + window {
                over.fetch_add(1, Ordering::SeqCst);
            }
            thread::sleep(delays[i]);
            r.fetch_sub(1, Ordering::SeqCst);
            i
        });
        let mut taken = 0;
        loop {
            let before = pulled.load(Ordering::SeqCst);
            assert!(
                before <= taken + window,
                "window {window}: {before} inputs pulled with {taken} results yielded"
            );
            let next = map.next();
            match next {
                Some(result) => {
                    assert_eq!(result, Ok(taken), "window {window}: out of order");
                    taken += 1;
                    yielded.store(taken, Ordering::SeqCst);
                }
                None => break,
            }
            let after = pulled.load(Ordering::SeqCst);
            assert!(
                after <= taken + window,
                "window {window}: {after} inputs pulled with {taken} results yielded"
            );
        }
        assert_eq!(taken, N);
        assert_eq!(pulled.load(Ordering::SeqCst), N);
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            (1..=window).contains(&peak),
            "window {window}: {peak} calls ran at once"
        );
        assert_eq!(
            overpulled.load(Ordering::SeqCst),
            0,
            "window {window}: a call saw more than the window pulled"
        );
        drop(map);
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn map_ordered_yields_panics_in_place(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("map-panics");
    let results: Vec<_> = domain
        .map_ordered(0..40usize, 4, |i| {
            if i % 7 == 3 {
                panic!("input {i} failed");
            }
            i + 100
        })
        .collect();
    assert_eq!(results.len(), 40, "the map goes on after a panic");
    for (i, result) in results.iter().enumerate() {
        if i % 7 == 3 {
            match result {
                Err(TaskError::Panicked(report)) => {
                    assert_eq!(report.message(), format!("input {i} failed"));
                    assert_eq!(report.domain(), "map-panics");
                }
                Err(other) => panic!("input {i}: {other}"),
                Ok(v) => panic!("input {i} panicked, got Ok({v})"),
            }
        } else {
            assert_eq!(result, &Ok(i + 100), "input {i}");
        }
    }
    // The barrier completes (whether it reports the delivered panics is
    // not this test's business); the domain still works.
    match domain.synchronize().wait_timeout(HANG) {
        Ok(()) | Err(SyncError::Panicked(_)) => {}
        other => panic!("expected the barrier to complete, got {other:?}"),
    }
    assert_eq!(domain.spawn(|_| 1).wait(), Ok(1));
}

pub fn map_ordered_makes_progress_with_one_worker(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let domain = rt.domain("one-worker");
    let results: Vec<_> = domain.map_ordered(0..50usize, 4, |i| i * 2).collect();
    assert_eq!(results, ok_range(50, |i| i * 2));
    // The only worker held: the consumer runs every call itself.
    let _release = hold_a_worker(&rt);
    let consumer = thread::current().id();
    let results: Vec<_> = domain
        .map_ordered(0..30usize, 3, move |i| (i, thread::current().id() == consumer))
        .collect();
    assert_eq!(results, (0..30).map(|i| Ok((i, true))).collect::<Vec<_>>());
    assert!(rt.stats().peak_workers <= 1);
}

pub fn map_ordered_stream_and_iterator_give_the_same_results(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("stream");
    let work = |i: usize| -> usize {
        if i == 13 {
            panic!("unlucky {i}");
        }
        thread::sleep(Duration::from_micros((i as u64 * 37) % 700));
        i * 3
    };
    let plain = |r: Result<usize, TaskError>| {
        r.map_err(|error| match error {
            TaskError::Panicked(report) => report.message().to_owned(),
            other => other.to_string(),
        })
    };
    let iterated: Vec<_> = domain.map_ordered(0..64usize, 5, work).map(plain).collect();
    fn send_unpin<S: Send + Unpin>(s: S) -> S {
        s
    }
    let stream = send_unpin(domain.map_ordered(0..64usize, 5, work).into_stream());
    let streamed: Vec<_> = futures::executor::block_on(stream.collect::<Vec<_>>())
        .into_iter()
        .map(plain)
        .collect();
    assert_eq!(iterated.len(), 64);
    assert_eq!(iterated[13], Err(String::from("unlucky 13")));
    assert_eq!(iterated[14], Ok(42));
    assert_eq!(streamed, iterated);
    // The stream's window bound holds too.
    let pulled = Arc::new(AtomicUsize::new(0));
    let mut stream = domain
        .map_ordered(Counted::new(0..20usize, &pulled), 3, |i| i)
        .into_stream();
    let mut taken = 0;
    futures::executor::block_on(async {
        while let Some(result) = stream.next().await {
            assert_eq!(result, Ok(taken));
            taken += 1;
            let pulled = pulled.load(Ordering::SeqCst);
            assert!(pulled <= taken + 3, "{pulled} pulled with {taken} yielded");
        }
    });
    assert_eq!(taken, 20);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn dropping_an_ordered_map_early_cancels_the_rest(make: &MakeBuilder) {
    const WINDOW: usize = 4;
    const TAKE: usize = 5;
    let rt = make().build().unwrap();
    let domain = rt.domain("early-drop");
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let pulled = Arc::new(AtomicUsize::new(0));
    let inputs_dropped = Arc::new(AtomicUsize::new(0));
    let iterator_dropped = Arc::new(AtomicUsize::new(0));
    let f_dropped = Arc::new(AtomicUsize::new(0));
    let made = Arc::new(AtomicUsize::new(0));
    let results_dropped = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let gated = Arc::new(AtomicUsize::new(0));
    let d = inputs_dropped.clone();
    let mut inputs = Counted::new((0..1000usize).map(move |i| (i, DropCount(d.clone()))), &pulled);
    inputs._dropped = Some(DropCount(iterator_dropped.clone()));
    let (g, probe, m, rd, r, gd) = (
        gate.clone(),
        DropCount(f_dropped.clone()),
        made.clone(),
        results_dropped.clone(),
        running.clone(),
        gated.clone(),
    );
    // Calls past the taken results block until the map is dropped (unless
    // the consumer runs one itself while it waits, which must not block).
    let consumer = thread::current().id();
    let mut map = domain.map_ordered(inputs, WINDOW, move |(i, input): (usize, DropCount)| {
        let _probe = &probe;
        r.fetch_add(1, Ordering::SeqCst);
        if i >= TAKE && thread::current().id() != consumer {
            gd.fetch_add(1, Ordering::SeqCst);
            g.wait();
        }
        drop(input);
        m.fetch_add(1, Ordering::SeqCst);
        r.fetch_sub(1, Ordering::SeqCst);
        (i, Value(rd.clone()))
    });
    for i in 0..TAKE {
        match map.next() {
            Some(Ok((got, value))) => {
                assert_eq!(got, i);
                drop(value);
            }
            other => panic!("result {i}: {other:?}"),
        }
    }
    // At least one later call is running (blocked on the gate).
    until_count(&gated, 1, "no call past the taken ones started");
    // Dropping does not wait for the running calls.
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let dropper = thread::spawn(move || {
        drop(map);
        dropped_tx.send(()).unwrap();
    });
    if dropped_rx.recv_timeout(HANG).is_err() {
        gate.open();
        panic!("dropping the map waited for its running calls");
    }
    dropper.join().unwrap();
    let pulled_at_drop = pulled.load(Ordering::SeqCst);
    assert!(
        pulled_at_drop <= TAKE + WINDOW,
        "{pulled_at_drop} inputs pulled with {TAKE} results taken"
    );
    gate.open();
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert_eq!(
        running.load(Ordering::SeqCst),
        0,
        "the barrier returned before calls finished"
    );
    assert!(gated.load(Ordering::SeqCst) <= WINDOW);
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        pulled_at_drop,
        "inputs were pulled after the map was dropped"
    );
    // Nothing leaks: every pulled input, every result, the function and the
    // iterator are dropped once (the last ones may trail the barrier).
    until_count(&inputs_dropped, pulled_at_drop, "pulled inputs not dropped");
    until_count(&results_dropped, made.load(Ordering::SeqCst), "results not dropped");
    until_count(&f_dropped, 1, "the map's function was not dropped");
    until_count(&iterator_dropped, 1, "the input iterator was not dropped");
    assert_eq!(inputs_dropped.load(Ordering::SeqCst), pulled_at_drop);
    assert_eq!(results_dropped.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
    assert_eq!(f_dropped.load(Ordering::SeqCst), 1);
    // The domain stays usable.
    assert_eq!(domain.spawn(|_| 1).wait(), Ok(1));
    assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
}

pub fn map_ordered_with_window_zero_panics_clearly(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("zero");
    let payload = catch_unwind(AssertUnwindSafe(|| {
        let _map = domain.map_ordered(0..3usize, 0, |i| i);
    }))
    .expect_err("window 0 must panic at the map_ordered call");
    let message = panic_text(&*payload);
    assert!(message.contains("window"), "unclear message: {message}");
    // Nothing was scheduled; the domain works.
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    let results: Vec<_> = domain.map_ordered(0..3usize, 1, |i| i).collect();
    assert_eq!(results, ok_range(3, |i| i));
}

pub fn map_ordered_with_window_one_and_a_huge_window(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("windows");
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let results: Vec<_> = domain
        .map_ordered(0..30usize, 1, move |i| {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            thread::sleep(Duration::from_micros((i as u64 * 53) % 500));
            r.fetch_sub(1, Ordering::SeqCst);
            i
        })
        .collect();
    assert_eq!(results, ok_range(30, |i| i));
    assert_eq!(peak.load(Ordering::SeqCst), 1, "window 1 ran calls at once");
    let results: Vec<_> = domain.map_ordered(0..10usize, usize::MAX, |i| i + 1).collect();
    assert_eq!(results, ok_range(10, |i| i + 1));
    let results: Vec<_> = futures::executor::block_on(
        domain
            .map_ordered(0..10usize, usize::MAX, |i| i + 2)
            .into_stream()
            .collect::<Vec<_>>(),
    );
    assert_eq!(results, ok_range(10, |i| i + 2));
    // No inputs at all.
    assert_eq!(domain.map_ordered(std::iter::empty::<usize>(), 4, |i| i).count(), 0);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

/// The slow-head case, scaled down: input 0 blocks until the other
/// calls of the first window have run. Nothing can be yielded meanwhile
/// (results come in input order), yet no thread is parked per pending
/// result: the pool stays within `window + 2` workers.
pub fn map_ordered_slow_head_finishes_with_few_workers(make: &MakeBuilder) {
    const WINDOW: usize = 8;
    const N: usize = 400;
    let rt = make().build().unwrap();
    let domain = rt.domain("slow-head");
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let others = Arc::new(AtomicUsize::new(0));
    let releaser = {
        let (gate, others) = (gate.clone(), others.clone());
        thread::spawn(move || {
            let give_up = Instant::now() + HANG;
            while others.load(Ordering::SeqCst) < WINDOW - 1 && Instant::now() < give_up {
                thread::yield_now();
            }
            let seen = others.load(Ordering::SeqCst);
            gate.open();
            seen
        })
    };
    let (g, o) = (gate.clone(), others.clone());
    let results: Vec<_> = domain
        .map_ordered(0..N, WINDOW, move |i| {
            if i == 0 {
                g.wait();
            } else {
                thread::sleep(Duration::from_micros(100));
                o.fetch_add(1, Ordering::SeqCst);
            }
            i
        })
        .collect();
    let seen = releaser.join().unwrap();
    assert!(
        seen >= WINDOW - 1,
        "only {seen} of the first window's other calls ran while input 0 was blocked"
    );
    assert_eq!(results, ok_range(N, |i| i));
    let stats = rt.stats();
    assert!(stats.peak_workers <= WINDOW + 2, "{stats:?}");
}

/// A detached item whose `Drop` yields a little, widening the window in
/// which a barrier could see its call finished before the free.
struct SlowToFree(Arc<AtomicBool>);

impl Work for SlowToFree {
    fn run(&mut self, _: Cookie) {}
}

impl Drop for SlowToFree {
    fn drop(&mut self) {
        for _ in 0..100 {
            thread::yield_now();
        }
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Review finding: a cancelled call counted as finished before its closure
/// or item was gone, so a barrier over a cancelled `submit_detached` item
/// returned before the item was freed (the free came after the wake-up).
pub fn a_barrier_over_a_cancelled_detached_item_returns_after_the_free(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    for round in 0..20 {
        let held = hold_a_worker(&rt);
        let d = rt.domain("freed");
        let freed = Arc::new(AtomicBool::new(false));
        d.submit_detached(Item::new(SlowToFree(freed.clone())));
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let (d2, f2) = (d.clone(), freed.clone());
        let waiter = thread::spawn(move || {
            waiting_tx.send(()).unwrap();
            let result = d2.synchronize().wait_no_help();
            (result, f2.load(Ordering::SeqCst))
        });
        waiting_rx.recv_timeout(HANG).unwrap();
        assert_eq!(d.cancel(), 1);
        let (result, freed_first) = waiter.join().unwrap();
        assert_eq!(result, Ok(()));
        assert!(
            freed_first,
            "round {round}: the barrier returned before the item was freed"
        );
        // A barrier made after the cancel returns sees it freed too.
        assert_eq!(d.synchronize().wait(), Ok(()));
        assert!(freed.load(Ordering::SeqCst));
        drop(held);
    }
}

/// Review finding: `Domain::cancel` silently withdrew items borrowed by a
/// scope, which promises that every item runs. They are not cancelled.
pub fn domain_cancel_leaves_a_scopes_items_to_run(make: &MakeBuilder) {
    struct Ran(bool);
    impl Work for Ran {
        fn run(&mut self, _: Cookie) {
            self.0 = true;
        }
    }
    let rt = Arc::new(make().max_workers(1).build().unwrap());
    let held = hold_a_worker(&rt);
    let d = rt.domain("scoped");
    let (submitted_tx, submitted_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let d2 = d.clone();
    let scope = thread::spawn(move || {
        let mut item = Item::local(Ran(false));
        d2.scope(|s| {
            s.submit(&mut item);
            submitted_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        item.0
    });
    submitted_rx.recv_timeout(HANG).unwrap();
    assert_eq!(d.cancel(), 0, "a scope's item is not cancelled");
    go_tx.send(()).unwrap();
    drop(held);
    assert!(scope.join().unwrap(), "the scoped item ran");
}

/// Review finding: `OrderedMap::next` where blocking is not allowed
/// detached the front task and went on pulling inputs past the window. It
/// panics instead, telling to use the stream.
pub fn map_ordered_next_where_blocking_is_not_allowed_panics_clearly(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    if !matches!(rt.executor_name(), "smol" | "async-std") {
        return; // threads and tokio workers may block in an async call
    }
    let d = rt.domain("in-async");
    let map_domain = rt.domain("mapped");
    let pulled = Arc::new(AtomicUsize::new(0));
    let p = pulled.clone();
    d.schedule_async(move |_| async move {
        let inputs = (0..1000usize).inspect(move |_| {
            p.fetch_add(1, Ordering::SeqCst);
        });
        let mut map = map_domain.map_ordered(inputs, 4, |i| i);
        for _ in 0..10 {
            let _ = map.next();
        }
    });
    match d.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => assert!(report.message().contains("into_stream"), "{report}"),
        other => panic!("expected the clear panic, got {other:?}"),
    }
    assert!(pulled.load(Ordering::SeqCst) <= 4, "pulled past the window");
}
