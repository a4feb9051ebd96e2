//! A one-shot gate: calls block on it until the test opens it. Tests use
//! gates and channels to order events, never sleeps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    pub fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }
}

/// Counts how many times a waker was woken.
pub struct CountingWaker(pub std::sync::atomic::AtomicUsize);

impl futures::task::ArcWake for CountingWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How long a test waits before it calls a wait a hang. Never reached by a
/// passing test.
pub const HANG: Duration = Duration::from_secs(30);

/// Leaks `rt` (dropping it would wait for calls that can no longer finish)
/// and fails with `message`.
pub fn leak_and_fail(rt: kasync::Runtime, message: String) -> ! {
    std::mem::forget(rt);
    panic!("{message}");
}

/// Opens its gate when dropped: a failing test releases the calls it held,
/// so dropping the runtime during the unwind does not hang.
pub struct OpenOnDrop(pub Gate);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<non-string panic payload>")
    }
}

/// Holds one of `rt`'s workers (with `max_workers(1)`: the only one) in a
/// call of an exclusive domain until the returned guard is dropped, so
/// calls queued meanwhile stay unstarted unless a waiter helps.
pub fn hold_a_worker(rt: &kasync::Runtime) -> OpenOnDrop {
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    rt.exclusive_domain("hold").schedule(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
    });
    started_rx.recv_timeout(HANG).expect("the holding call started");
    OpenOnDrop(gate)
}

/// An iterator that counts how many items were pulled from it (a map's
/// window bound, counted with atomics).
pub struct Pulled<I> {
    pub inner: I,
    pub pulled: Arc<AtomicUsize>,
}

impl<I: Iterator> Iterator for Pulled<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.pulled.fetch_add(1, Ordering::SeqCst);
        Some(item)
    }
}
