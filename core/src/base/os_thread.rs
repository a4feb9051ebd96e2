//! A thread as the operating system names it, so that another thread (the
//! watchdog) can look at it: whether it is on a CPU or waiting for one, or
//! off the CPUs (sleeping, in I/O, on a lock or a channel).
//!
//! On Linux the answer is the state in `/proc/self/task/<id>/stat`: no
//! system call is added anywhere but in the watchdog, and no `unsafe`.
//! Elsewhere there is no such view here, and the watchdog judges by time,
//! as it did before it could look.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::base::sync::AtomicBool;

/// A worker's thread as the watchdog sees it: its id under
/// `/proc/self/task`, read by the thread itself once, and whether it runs a
/// call's own code now (not kasync's: a worker waiting a moment for the
/// runtime's lock between two calls is off the CPUs, but not blocked).
#[derive(Clone, Debug)]
pub(crate) struct OsThread {
    id: u64,
    in_call: Arc<AtomicBool>,
}

impl PartialEq for OsThread {
    fn eq(&self, other: &OsThread) -> bool {
        self.id == other.id
    }
}

impl OsThread {
    /// The calling thread, where the platform lets the watchdog look at it.
    pub(crate) fn current() -> Option<OsThread> {
        #[cfg(all(target_os = "linux", not(miri), not(loom)))]
        {
            // `/proc/thread-self` links to `<pid>/task/<tid>`.
            let link = std::fs::read_link("/proc/thread-self").ok()?;
            let id = link.file_name()?.to_str()?.parse().ok()?;
            Some(OsThread {
                id,
                in_call: Arc::new(AtomicBool::new(false)),
            })
        }
        #[cfg(not(all(target_os = "linux", not(miri), not(loom))))]
        {
            None
        }
    }

    /// The thread enters (`true`) or leaves a call's own code: one relaxed
    /// store, on a line only this thread writes.
    pub(crate) fn set_in_call(&self, in_call: bool) {
        self.in_call.store(in_call, Ordering::Relaxed);
    }

    /// Whether the thread runs a call's own code (as far as a relaxed load
    /// sees: the watchdog only advises).
    pub(crate) fn in_call(&self) -> bool {
        self.in_call.load(Ordering::Relaxed)
    }

    /// Opens what [`View::runnable`] reads, kept open while the thread is
    /// watched (one read per look).
    pub(crate) fn view(&self) -> Option<View> {
        File::open(format!("/proc/self/task/{}/stat", self.id)).ok().map(View)
    }
}

/// The open `stat` file of a watched thread.
#[derive(Debug)]
pub(crate) struct View(File);

impl View {
    /// Whether the thread is on a CPU or waiting for one (state `R`) now,
    /// rather than off the CPUs (sleeping, in I/O). `None` once it is
    /// gone, or the file says nothing readable.
    pub(crate) fn runnable(&self) -> Option<bool> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            let mut buf = [0u8; 512];
            let n = self.0.read_at(&mut buf, 0).ok()?;
            let stat = std::str::from_utf8(&buf[..n]).ok()?;
            // `<tid> (<name>) <state> ...`; the name may hold anything.
            let state = stat.get(stat.rfind(')')? + 2..)?.chars().next()?;
            // `Z`, `X`: it exited and is not reaped yet; as good as gone.
            (!matches!(state, 'Z' | 'X')).then_some(state == 'R')
        }
        #[cfg(not(unix))]
        {
            let _ = &self.0;
            None
        }
    }
}

#[cfg(all(test, target_os = "linux", not(miri), not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};

    /// A thread that computes looks runnable; one parked in a channel does
    /// not; a thread that is gone cannot be looked at. None of it depends on
    /// timing: a computing thread is `R` whenever it is looked at (running
    /// or preempted), a parked one `S`.
    #[test]
    fn a_computing_thread_is_runnable_and_a_parked_one_is_not() {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let s = stop.clone();
        let computing = std::thread::spawn(move || {
            tx.send(OsThread::current().unwrap()).unwrap();
            let mut x = 1u64;
            while !s.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        });
        let view = rx.recv().unwrap().view().unwrap();
        for _ in 0..100 {
            assert_eq!(view.runnable(), Some(true));
        }
        stop.store(true, Ordering::Relaxed);
        computing.join().unwrap();
        // `join` returns once the thread cleared its id, a moment before
        // the kernel reaps it: it goes within that moment, and then stays.
        while view.runnable().is_some() {
            std::thread::yield_now();
        }
        assert_eq!(view.runnable(), None, "gone");

        let (tx, rx) = mpsc::channel();
        let (wake_tx, wake_rx) = mpsc::channel::<()>();
        let parked = std::thread::spawn(move || {
            tx.send(OsThread::current().unwrap()).unwrap();
            wake_rx.recv().unwrap();
        });
        let view = rx.recv().unwrap().view().unwrap();
        // Until it is parked in `recv`; then it stays off the CPUs.
        while view.runnable() == Some(true) {
            std::thread::yield_now();
        }
        for _ in 0..100 {
            assert_eq!(view.runnable(), Some(false));
        }
        wake_tx.send(()).unwrap();
        parked.join().unwrap();
    }
}
