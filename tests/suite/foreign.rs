//! Conformance: foreign code kasync calls — wakers being dropped, an item's
//! wait on a domain nobody holds any more — never runs under the runtime's
//! lock and never trips over state that is gone. A waker whose `Drop` uses
//! the runtime would deadlock on a lock held around it, so each test here
//! would hang (and fail on its timeout) instead of passing.

use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::Context;
use std::thread;
use std::time::Duration;

use futures::task::{waker, ArcWake};
use futures::Future;
use kasync::{Cookie, Domain, Item, Work};

use super::gate::Gate;
use super::MakeBuilder;

const HANG: Duration = Duration::from_secs(60);

/// A waker whose drop makes a barrier on `domain` (which takes the
/// runtime's lock), then opens `gate`.
struct LockingWaker {
    domain: Domain,
    gate: Gate,
}

impl ArcWake for LockingWaker {
    fn wake_by_ref(_: &Arc<Self>) {}
}

impl Drop for LockingWaker {
    fn drop(&mut self) {
        let _ = self.domain.synchronize().is_finished();
        self.gate.open();
    }
}

pub fn a_barrier_polled_then_waited_drops_its_waker_outside_the_lock(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("polled");
    let gate = Gate::new();
    let g = gate.clone();
    // Runs until the waker is dropped: only the blocking wait's own
    // registration replaces (and so drops) it.
    domain.schedule(move |_| g.wait());
    let (tx, rx) = mpsc::channel();
    let d = domain.clone();
    thread::spawn(move || {
        let mut barrier = d.synchronize_cookie(Cookie::MAX);
        let w = waker(Arc::new(LockingWaker {
            domain: d.clone(),
            gate,
        }));
        let pending = Pin::new(&mut barrier).poll(&mut Context::from_waker(&w)).is_pending();
        drop(w); // the barrier's registration holds the only clone now
        tx.send(pending.then(|| barrier.wait_no_help())).unwrap();
    });
    let Ok(result) = rx.recv_timeout(HANG) else {
        // Deadlocked under the lock: dropping the runtime would hang too.
        std::mem::forget(rt);
        panic!("the blocking wait did not return");
    };
    assert_eq!(result, Some(Ok(())));
}

/// Runs until its gate opens, after telling the test it started.
struct Held {
    started: mpsc::Sender<()>,
    gate: Gate,
}

impl Work for Held {
    fn run(&mut self, _: Cookie) {
        self.started.send(()).unwrap();
        self.gate.wait();
    }
}

pub fn an_item_polled_then_waited_drops_its_waker_outside_the_lock(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("item");
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let mut submitted = domain.submit(Item::new(Held {
        started: started_tx,
        gate: gate.clone(),
    }));
    // Running on a worker, so the waiting thread has nothing to help with.
    started_rx.recv_timeout(HANG).expect("the item started");
    let (tx, rx) = mpsc::channel();
    let d = domain.clone();
    thread::spawn(move || {
        let w = waker(Arc::new(LockingWaker { domain: d, gate }));
        let pending = Pin::new(&mut submitted).poll(&mut Context::from_waker(&w)).is_pending();
        drop(w);
        tx.send(pending.then(|| submitted.wait().is_ok())).unwrap();
    });
    let Ok(result) = rx.recv_timeout(HANG) else {
        std::mem::forget(rt);
        panic!("the blocking wait did not return");
    };
    assert_eq!(result, Some(true));
}

/// Does nothing.
struct Quick;

impl Work for Quick {
    fn run(&mut self, _: Cookie) {}
}

pub fn an_observed_item_wait_outlives_its_domain(make: &MakeBuilder) {
    // Waits are labelled with their domain's name when recorded. An item's
    // handle does not keep its domain alive, so the label must not need it.
    let rt = make().record_timeline(true).build().unwrap();
    let mut submitted = rt.domain("gone").submit(Item::new(Quick));
    // The call ends, and its domain, held by nobody, goes away.
    rt.synchronize_full().wait().unwrap();
    assert!(submitted.wait().is_ok());
    let timeline = rt.timeline().unwrap();
    for wait in timeline.waits() {
        assert!(
            wait.what == "synchronize_full()" || wait.what.contains("gone"),
            "{}",
            wait.what
        );
    }
}
