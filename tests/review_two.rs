//! Regression tests from the review of the second round of promises
//! (commit 1dbf23a), each of which failed there: a cancellation whose drops
//! wait for other calls of the same cancellation, the awaiting registry
//! (a range whose domain is gone; a call queued into what a pending async
//! call awaits), futures dropped by their executor, and panics a scope
//! used to lose. They run on the threads adapter and on a user executor
//! whose futures the test polls and drops itself; the adapter-independent
//! ones run on every adapter in the conformance suite too.
#![cfg(feature = "threads")]

use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use kasync::{Cookie, Runtime, SyncError, Task, TaskError};

#[allow(dead_code)] // shared with the conformance suite, which uses all of it
#[path = "suite/gate.rs"]
mod gate;
use gate::{hold_a_worker, Gate, OpenOnDrop, HANG};

fn builder() -> kasync::Builder {
    Runtime::builder().executor(kasync::executor::Threads)
}

fn returns_within_hang<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(r)) => Some(r),
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => None,
    }
}

// ---- A manual executor: futures are stored, and the test polls or drops
// them itself (a user executor; the trait is public).

type Fut = kasync::executor::ExecutorFuture;

#[derive(Clone, Default)]
struct Manual(Arc<(Mutex<Vec<Fut>>, Condvar)>);

impl kasync::Executor for Manual {
    fn name(&self) -> &'static str {
        "manual"
    }
    fn spawn_worker(
        &self,
        spec: kasync::executor::WorkerSpec,
        body: Box<dyn FnOnce() + Send + 'static>,
    ) -> std::io::Result<()> {
        thread::Builder::new().name(spec.name).spawn(body).map(drop)
    }
    fn spawn_future(&self, future: Fut) {
        self.0 .0.lock().unwrap().push(future);
        self.0 .1.notify_all();
    }
}

impl Manual {
    fn take_future(&self) -> Fut {
        let mut v = self.0 .0.lock().unwrap();
        while v.is_empty() {
            let (g, t) = self.0 .1.wait_timeout(v, HANG).unwrap();
            assert!(!t.timed_out(), "no future was spawned");
            v = g;
        }
        v.remove(0)
    }
}

/// A runtime of one worker whose futures the test polls or drops itself.
fn one_worker_on_a_manual_executor() -> (Manual, Runtime) {
    let exec = Manual::default();
    let rt = Runtime::builder()
        .executor(exec.clone())
        .max_workers(1)
        .no_stall_watchdog()
        .build()
        .unwrap();
    (exec, rt)
}

fn poll_once(f: &mut Fut) -> std::task::Poll<()> {
    let waker = futures::task::noop_waker();
    f.as_mut().poll(&mut std::task::Context::from_waker(&waker))
}

/// Pending on its first poll, ready on the next.
struct PendingOnce(bool);
impl std::future::Future for PendingOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            std::task::Poll::Pending
        }
    }
}

use std::future::Future;

// ---- Finding B: the awaiting registry keeps a Range whose domain is gone.

/// On a one-worker runtime whose futures the test polls: async task A polls
/// a barrier over domain `gone` once, drops it (as a `select!` drops the
/// branch that lost) with the domain's last handle, and pends on something
/// kasync does not know; then `gone` empties and is removed. Returns the
/// runtime, A's handle, A's future (pending, with its stale range
/// published) and the hold on the only worker.
fn an_async_task_after_a_removed_domain() -> (Runtime, Task<()>, Fut, OpenOnDrop) {
    let (exec, rt) = one_worker_on_a_manual_executor();
    let a_domain = rt.domain("a");
    let gone = rt.exclusive_domain("gone");
    let gone_in_a = gone.clone();
    let task_a = a_domain.spawn_async(move |_| async move {
        let mut barrier = Box::pin(gone_in_a.synchronize());
        std::future::poll_fn(|cx| {
            let _ = barrier.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
        drop(barrier);
        drop(gone_in_a);
        PendingOnce(false).await;
    });
    let mut fut_a = exec.take_future(); // the worker ran A's `make`
    let hold = hold_a_worker(&rt);
    let mut x = gone.spawn(|_| ()); // queued behind the held worker
    drop(gone);
    assert!(poll_once(&mut fut_a).is_pending()); // publishes Range{gone}
                                                 // `gone` becomes idle once `x` ends and, having no handle, is removed.
    assert!(x.cancel());
    assert_eq!(x.wait(), Err(TaskError::Cancelled));
    (rt, task_a, fut_a, hold)
}

#[test]
fn a_stale_awaited_range_of_a_removed_domain_does_not_panic_the_waiter() {
    let (rt, task_a, mut fut_a, hold) = an_async_task_after_a_removed_domain();

    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut task_a = task_a;
            task_a.wait()
        }));
        let _ = tx.send(r.map_err(|p| {
            p.downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        }));
    });
    // A correct runtime parks the waiter until A is polled again.
    match rx.recv_timeout(Duration::from_millis(500)) {
        Err(_) => {}
        Ok(Err(message)) => {
            std::mem::forget(rt);
            panic!("Task::wait panicked through a stale awaited range: {message}");
        }
        Ok(Ok(r)) => panic!("returned early: {r:?}"),
    }
    assert!(poll_once(&mut fut_a).is_ready());
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Ok(Ok(())));
    drop(hold);
}

/// Variant: the removed domain's slab slot is reused by a new domain, and
/// the wait for task A runs a call of that unrelated domain.
#[test]
fn a_wait_for_an_async_task_does_not_run_an_unrelated_domains_call() {
    let (rt, task_a, mut fut_a, hold) = an_async_task_after_a_removed_domain();
    // A new, unrelated domain (likely in the freed slot), with a queued call.
    let unrelated = rt.exclusive_domain("unrelated");
    let (ran_tx, ran_rx) = mpsc::channel();
    unrelated.schedule(move |_| {
        let _ = ran_tx.send(thread::current().name().map(str::to_owned));
    });
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("waits-for-a".into())
        .spawn(move || {
            let _ = tx.send(
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let mut task_a = task_a;
                    task_a.wait()
                }))
                .is_ok(),
            );
        })
        .unwrap();
    let ran_on = ran_rx.recv_timeout(Duration::from_millis(500)).ok();
    assert!(poll_once(&mut fut_a).is_ready());
    let _ = rx.recv_timeout(HANG);
    drop(hold);
    assert_eq!(
        ran_on, None,
        "the wait for task A ran a queued call of an unrelated domain"
    );
}

// ---- Finding C: a call queued into a range a pending async call awaits
// wakes nobody who waits for that async call.

#[test]
fn a_call_queued_into_what_a_pending_async_call_awaits_is_run_by_its_waiter() {
    let rt = builder().max_workers(2).no_stall_watchdog().build().unwrap();
    let z_domain = rt.domain("z");
    let a_domain = rt.domain("a");
    let b = rt.domain("b");
    let (start_tx, start_rx) = futures::channel::oneshot::channel::<()>();
    let (a_started_tx, a_started_rx) = mpsc::channel();
    let (armed_tx, armed_rx) = mpsc::channel();
    let b_in_a = b.clone();
    let task_a = a_domain.spawn_async(move |_| async move {
        a_started_tx.send(()).unwrap();
        let _ = start_rx.await;
        let barrier = b_in_a.synchronize();
        armed_tx.send(()).unwrap();
        barrier.await
    });
    a_started_rx.recv_timeout(HANG).unwrap(); // polled on worker 1, pending
    let (z_tx, z_rx) = mpsc::channel();
    z_domain.schedule(move |_| {
        let mut task_a = task_a;
        let _ = z_tx.send(task_a.wait()); // worker 2 waits for A
    });
    let wait_blocked = |n: usize| {
        let deadline = std::time::Instant::now() + HANG;
        while rt.stats().blocked < n {
            assert!(std::time::Instant::now() < deadline, "workers did not block");
            thread::yield_now();
        }
    };
    wait_blocked(2);
    // P: a call of `b` running on a user thread (helped through its task).
    let gate_p = Gate::default();
    let g = gate_p.clone();
    let (p_started_tx, p_started_rx) = mpsc::channel();
    let p = b.spawn(move |_| {
        p_started_tx.send(()).unwrap();
        g.wait();
    });
    let u = thread::spawn(move || {
        let mut p = p;
        p.wait()
    });
    p_started_rx.recv_timeout(HANG).unwrap();
    // A now awaits a barrier over `b` (P unfinished, nothing queued).
    start_tx.send(()).unwrap();
    armed_rx.recv_timeout(HANG).unwrap();
    wait_blocked(2);
    // Y: queued into the range A awaits, while both workers wait.
    let (y_tx, y_rx) = mpsc::channel();
    b.schedule(move |_| {
        let _ = y_tx.send(());
    });
    gate_p.open();
    u.join().unwrap().unwrap();
    let ran = y_rx.recv_timeout(HANG).is_ok();
    // Cleanup: this thread runs Y, A's barrier completes, Z returns.
    b.synchronize().wait().unwrap();
    let z = z_rx.recv_timeout(HANG);
    assert!(
        ran,
        "Y was never run: the thread waiting for A (which awaits Y's range) was not woken"
    );
    assert_eq!(z.unwrap(), Ok(Ok(())));
}

// ---- Finding D: an async call dropped by its executor drops its future
// outside the call's frame.

struct WaitsOnDomainWhenDropped(kasync::Domain, mpsc::Sender<(Option<Cookie>, Result<(), SyncError>)>);
impl Drop for WaitsOnDomainWhenDropped {
    fn drop(&mut self) {
        let r = self.0.synchronize().wait();
        let _ = self.1.send((kasync::current_cookie(), r));
    }
}

#[test]
fn an_async_call_dropped_by_its_executor_drops_its_future_in_its_frame() {
    let (exec, rt) = one_worker_on_a_manual_executor();
    let d = rt.domain("dropped");
    let (tx, rx) = mpsc::channel();
    let guard = WaitsOnDomainWhenDropped(d.clone(), tx);
    let cookie = d.schedule_async(move |_| async move {
        let _guard = guard;
        std::future::pending::<()>().await
    });
    let fut = exec.take_future();
    // The executor shuts down and drops the pending call.
    let dropped = returns_within_hang(move || drop(fut));
    if dropped.is_none() {
        std::mem::forget(rt);
        panic!("dropping the async call's future hung: its drop waited for its own call");
    }
    let (seen, r) = rx.recv_timeout(HANG).unwrap();
    assert_eq!(seen, Some(cookie), "the future was dropped outside its call's frame");
    assert_eq!(r, Err(SyncError::WouldDeadlock { waiter: cookie }));
}

/// Finding B on the threads adapter, within one poll: `help_here` claims
/// through the range this very poll noted, after the poll removed its
/// domain. The worker thread unwinds out of `CallFuture::poll` (outside any
/// `catch`), and task A never ends.
#[test]
fn an_async_call_whose_poll_removes_the_domain_it_awaited_still_finishes() {
    let rt = builder().max_workers(1).no_stall_watchdog().build().unwrap();
    let hold = hold_a_worker(&rt);
    let gone = rt.exclusive_domain("gone");
    let (x_tx, x_rx) = mpsc::channel::<Task<()>>();
    let (started_tx, started_rx) = mpsc::channel();
    let gone_in_a = gone.clone();
    // A gets the lower cookie, so the worker runs it before X.
    let task_a = rt.domain("a").spawn_async(move |_| async move {
        started_tx.send(()).unwrap();
        let x = x_rx.recv().unwrap();
        let mut barrier = Box::pin(gone_in_a.synchronize());
        std::future::poll_fn(|cx| {
            let _ = barrier.as_mut().poll(cx); // pending: X is queued
            std::task::Poll::Ready(())
        })
        .await;
        assert!(x.cancel()); // `gone` is idle now ...
        drop(barrier);
        drop(gone_in_a); // ... and has no handle: removed
        PendingOnce(false).await;
        "done"
    });
    x_tx.send(gone.spawn(|_| ())).unwrap();
    drop(gone);
    // The worker claims A. Waited for before it started, A could run on
    // the waiting thread, and the worker would take X before A cancels it.
    drop(hold);
    started_rx.recv_timeout(HANG).expect("A started on the worker");
    let waited = returns_within_hang(move || {
        let mut task_a = task_a;
        task_a.wait()
    });
    // The runtime's drop waits for every worker to leave.
    let dropped = returns_within_hang(move || drop(rt)).is_some();
    assert_eq!(
        waited,
        Some(Ok("done")),
        "task A did not end cleanly: its worker unwound out of CallFuture::poll ('invalid key' above)"
    );
    assert!(dropped, "Runtime::drop hung: the dead worker never left the pool");
}

/// Finding D, second half of the promise: the future owns the runtime's
/// last handle; its drop by the executor runs the runtime's shutdown, which
/// waits for the very call being dropped.
#[test]
fn an_async_call_owning_the_last_runtime_dropped_by_its_executor_does_not_hang() {
    struct OwnsRuntime(Option<Arc<Runtime>>);
    impl Drop for OwnsRuntime {
        fn drop(&mut self) {
            drop(self.0.take());
        }
    }
    let exec = Manual::default();
    let rt = Arc::new(
        Runtime::builder()
            .executor(exec.clone())
            .max_workers(1)
            .no_stall_watchdog()
            .build()
            .unwrap(),
    );
    let owner = OwnsRuntime(Some(rt.clone()));
    rt.schedule_async(move |_| async move {
        let _owner = owner;
        std::future::pending::<()>().await
    });
    let fut = exec.take_future();
    drop(rt); // the future holds the last handle
    assert!(
        returns_within_hang(move || drop(fut)).is_some(),
        "the executor's drop of the async call hung in the runtime's shutdown"
    );
}

/// Finding D on the shipped tokio adapter: a tokio runtime shut down with a
/// pending kasync async call on it drops the call's future outside its frame.
#[cfg(feature = "tokio")]
#[test]
fn tokio_shutdown_dropping_a_pending_async_call_drops_it_in_its_frame() {
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rt = Runtime::builder()
        .executor(kasync::executor::Tokio::with_handle(tokio_rt.handle().clone()))
        .max_workers(1)
        .no_stall_watchdog()
        .build()
        .unwrap();
    let d = rt.domain("dropped");
    let (tx, rx) = mpsc::channel();
    let guard = WaitsOnDomainWhenDropped(d.clone(), tx);
    let (made_tx, made_rx) = mpsc::channel();
    let cookie = d.schedule_async(move |_| {
        made_tx.send(()).unwrap();
        async move {
            let _guard = guard;
            std::future::pending::<()>().await
        }
    });
    made_rx.recv_timeout(HANG).unwrap(); // spawned onto tokio_rt, never polled
    let dropped = returns_within_hang(move || drop(tokio_rt));
    if dropped.is_none() {
        std::mem::forget(rt);
        panic!("tokio's shutdown hung dropping the kasync call: its drop waited for its own call");
    }
    let (seen, r) = rx.recv_timeout(HANG).unwrap();
    assert_eq!(seen, Some(cookie), "dropped outside the call's frame (result {r:?})");
}
