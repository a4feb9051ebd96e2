//! Shutdown: dropping a runtime (or `shutdown`) runs every unfinished call
//! in every domain, then lets the workers go; `shutdown_timeout` gives up
//! without cancelling anything; shutting down from inside an own call is
//! refused instead of waiting for itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use kasync::{Item, SyncError, Work};

use super::MakeBuilder;

/// A hang guard for waits that must finish; generous, never a threshold.
const HANG: Duration = Duration::from_secs(60);

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

struct Bump(Arc<AtomicUsize>);

impl Work for Bump {
    fn run(&mut self, _: kasync::Cookie) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn dropping_the_runtime_runs_every_pending_call(make: &MakeBuilder) {
    let rt = make().max_workers(2).build().unwrap();
    let ran = counter();
    let (registered, exclusive) = (rt.domain("registered"), rt.exclusive_domain("exclusive"));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    // Hold a worker so calls are still queued when the runtime is dropped.
    let held = ran.clone();
    exclusive.schedule(move |_| {
        gate_rx.recv().unwrap();
        held.fetch_add(1, Ordering::SeqCst);
    });
    for n in 0..300 {
        let (ran, again) = (ran.clone(), registered.clone());
        let domain = if n % 2 == 0 { &registered } else { &exclusive };
        domain.schedule(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
            if n % 50 == 0 {
                // Calls scheduled while draining are drained too.
                let ran = ran.clone();
                again.schedule(move |_| {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
    }
    for _ in 0..10 {
        exclusive.submit_detached(Item::new(Bump(ran.clone())));
    }
    gate_tx.send(()).unwrap();
    drop(rt);
    assert_eq!(ran.load(Ordering::SeqCst), 1 + 300 + 6 + 10, "no call is lost");
}

pub fn shutdown_reports_success_and_workers_leave(make: &MakeBuilder) {
    let rt = make().keep_alive(Duration::MAX).build().unwrap();
    let ran = counter();
    for _ in 0..64 {
        let ran = ran.clone();
        rt.schedule(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    let domain = rt.exclusive_domain("outlives the runtime");
    rt.shutdown().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 64);
    // A leftover domain handle still works: its call gets a thread.
    let late = ran.clone();
    domain.schedule(move |_| {
        late.fetch_add(1, Ordering::SeqCst);
    });
    domain.synchronize().wait_no_help().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 65);
}

pub fn shutdown_timeout_gives_up_without_cancelling(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    rt.schedule(move |_| {
        started_tx.send(()).unwrap();
        gate_rx.recv().unwrap();
        done_tx.send(()).unwrap();
    });
    started_rx.recv().unwrap();
    // The call cannot finish before the gate opens, so this must time out.
    assert_eq!(rt.shutdown_timeout(Duration::from_millis(1)), Err(SyncError::TimedOut));
    gate_tx.send(()).unwrap();
    done_rx.recv_timeout(HANG).expect("the call still ran to the end");
}

pub fn shutdown_inside_an_own_call_is_refused(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let slot = Arc::new(Mutex::new(None));
    let (result_tx, result_rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let taken = slot.clone();
    let cookie = rt.schedule(move |_| {
        ready_rx.recv().unwrap();
        let rt: kasync::Runtime = taken.lock().unwrap().take().expect("the runtime was handed over");
        result_tx.send(rt.shutdown()).unwrap();
    });
    *slot.lock().unwrap() = Some(rt);
    ready_tx.send(()).unwrap();
    let result = result_rx.recv_timeout(HANG).expect("shutdown returned");
    assert_eq!(result, Err(SyncError::WouldDeadlock { waiter: cookie }));
}

pub fn shutdown_timeout_runs_no_call_itself(make: &MakeBuilder) {
    let rt = make().max_workers(1).no_stall_watchdog().build().unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (queued_gate_tx, queued_gate_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<&str>();
    let done = done_tx.clone();
    rt.schedule(move |_| {
        started_tx.send(()).unwrap();
        gate_rx.recv().unwrap();
        done.send("held").unwrap();
    });
    started_rx.recv().unwrap();
    // Queued behind the only worker; if the shutdown ran it, it would block
    // on its gate and the shutdown could not return on time.
    rt.schedule(move |_| {
        queued_gate_rx.recv().unwrap();
        done_tx.send("queued").unwrap();
    });
    assert_eq!(rt.shutdown_timeout(Duration::from_millis(1)), Err(SyncError::TimedOut));
    gate_tx.send(()).unwrap();
    queued_gate_tx.send(()).unwrap();
    let mut finished = [done_rx.recv_timeout(HANG).unwrap(), done_rx.recv_timeout(HANG).unwrap()];
    finished.sort();
    assert_eq!(finished, ["held", "queued"], "both calls still ran");
}

/// Holds the last handle to a runtime and drops it from its own `Drop`.
struct OwnsRuntime(Option<kasync::Runtime>, mpsc::Sender<()>);

impl Drop for OwnsRuntime {
    fn drop(&mut self) {
        drop(self.0.take());
        self.1.send(()).unwrap();
    }
}

impl Work for OwnsRuntime {
    fn run(&mut self, _: kasync::Cookie) {}
}

pub fn last_handle_dropped_on_an_own_thread_does_not_hang(make: &MakeBuilder) {
    let (tx, rx) = mpsc::channel();
    // A detached item owning the runtime: freed on the thread that ran it.
    let rt = make().build().unwrap();
    let domain = rt.exclusive_domain("item");
    domain.submit_detached(Item::new(OwnsRuntime(Some(rt), tx.clone())));
    rx.recv_timeout(HANG)
        .expect("the item's drop, which dropped the runtime, returned");
    // A call's closure owning the runtime, dropped inside the call.
    let rt = make().build().unwrap();
    let domain = rt.domain("closure");
    let holder = OwnsRuntime(Some(rt), tx.clone());
    domain.schedule(move |_| drop(holder));
    rx.recv_timeout(HANG)
        .expect("dropping the runtime inside its own call returned");
    // An async call's state owning the runtime: dropped by whoever drops the
    // finished future, possibly a worker outside any call.
    let rt = make().build().unwrap();
    let domain = rt.domain("future");
    let holder = OwnsRuntime(Some(rt), tx);
    domain.schedule_async(move |_| async move {
        let _keep = &holder;
    });
    rx.recv_timeout(HANG)
        .expect("dropping the runtime with an async call's state returned");
}

/// A watchdog with a long tick does not hold a shutdown up: it learns that
/// nothing is queued any more when the last call ends, not a tick later.
pub fn shutdown_does_not_wait_for_a_long_watchdog_tick(make: &MakeBuilder) {
    let rt = make()
        .max_workers(1)
        .eager_workers(1)
        .stall_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let gate = super::gate::Gate::new();
    let (g, ran) = (gate.clone(), counter());
    let (ran1, ran2) = (ran.clone(), ran.clone());
    rt.schedule(move |_| {
        g.wait();
        ran1.fetch_add(1, Ordering::SeqCst);
    });
    // Queued behind the only worker, so the watchdog is asked for. The
    // shutdown runs it on this thread, which lets the first call end while
    // the shutdown is under way.
    rt.schedule(move |_| {
        gate.open();
        ran2.fetch_add(1, Ordering::SeqCst);
    });
    rt.shutdown().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 2);
}
