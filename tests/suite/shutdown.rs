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
