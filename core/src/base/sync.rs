//! The one door to synchronisation primitives.
//!
//! Everything in kasync-core that blocks, locks or spawns a thread goes through
//! this module, so that `--cfg loom` can swap in loom's model-checked versions
//! (the approach tokio and crossbeam take). parking_lot is used otherwise: it is
//! small, fast and its guards never poison, which matters because a panicking
//! scheduled call must never poison the runtime.

use std::time::Instant;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
#[cfg(not(loom))]
pub(crate) use std::thread_local;

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::thread_local;

/// A mutex whose guard never poisons.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            #[cfg(not(loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Like [`lock`](Mutex::lock), but a contended lock is first waited for
    /// by spinning, up to `budget`, before the thread yields or parks.
    /// Under loom, a plain `lock`.
    pub(crate) fn lock_spinning(&self, budget: std::time::Duration) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            let mut guard = self.inner.try_lock();
            if guard.is_none() && !budget.is_zero() {
                let acquired = || {
                    // Look before trying: a failed try is a write that
                    // takes the lock's cache line from its holder.
                    if !self.inner.is_locked() {
                        guard = self.inner.try_lock();
                    }
                    guard.is_some()
                };
                // Short rounds, so the budget is kept closely, and no yield
                // between them: yielding is what this avoids.
                spin_rounds(acquired, budget, 8, || {});
            }
            guard.unwrap_or_else(|| self.inner.lock())
        }
        #[cfg(loom)]
        {
            let _ = budget;
            self.lock()
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            // kasync never panics while holding its lock, so poisoning cannot
            // happen; recover the guard rather than unwrap to stay panic-free.
            self.inner.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// A condition variable used with [`Mutex`]. Guards are passed by value so the
/// same call sites compile against parking_lot and loom.
pub(crate) struct Condvar {
    #[cfg(not(loom))]
    inner: parking_lot::Condvar,
    #[cfg(loom)]
    inner: loom::sync::Condvar,
}

impl Condvar {
    pub(crate) fn new() -> Self {
        Condvar {
            #[cfg(not(loom))]
            inner: parking_lot::Condvar::new(),
            #[cfg(loom)]
            inner: loom::sync::Condvar::new(),
        }
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        #[cfg(not(loom))]
        {
            let mut guard = guard;
            self.inner.wait(&mut guard);
            guard
        }
        #[cfg(loom)]
        {
            self.inner.wait(guard).unwrap_or_else(|e| e.into_inner())
        }
    }

    /// Waits until notified or until `deadline`; returns the guard and whether
    /// the deadline passed. Under loom time is not modelled: the wait is untimed.
    pub(crate) fn wait_until<'a, T>(&self, guard: MutexGuard<'a, T>, deadline: Instant) -> (MutexGuard<'a, T>, bool) {
        #[cfg(not(loom))]
        {
            let mut guard = guard;
            let timed_out = self.inner.wait_until(&mut guard, deadline).timed_out();
            (guard, timed_out)
        }
        #[cfg(loom)]
        {
            let _ = deadline;
            (self.wait(guard), false)
        }
    }

    /// Wakes one waiter; returns whether one was waiting (under loom,
    /// which cannot tell, always `true`).
    pub(crate) fn notify_one(&self) -> bool {
        #[cfg(not(loom))]
        {
            self.inner.notify_one()
        }
        #[cfg(loom)]
        {
            self.inner.notify_one();
            true
        }
    }

    pub(crate) fn notify_all(&self) {
        #[cfg(not(loom))]
        {
            self.inner.notify_all();
        }
        #[cfg(loom)]
        {
            self.inner.notify_all();
        }
    }
}

/// The current time; a function so a model checker could replace it.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Whether `deadline` has passed. Under loom time is not modelled: never,
/// so what a model does next (take a lock or not) cannot depend on the
/// wall clock, which loom would see as a nondeterministic execution.
pub(crate) fn passed(deadline: Instant) -> bool {
    #[cfg(not(loom))]
    {
        Instant::now() >= deadline
    }
    #[cfg(loom)]
    {
        let _ = deadline;
        false
    }
}

/// Whether `later` came less than `d` after `earlier`. Under loom, always,
/// as [`passed`] never passes: what a model does must not depend on time.
pub(crate) fn within(earlier: Instant, later: Instant, d: std::time::Duration) -> bool {
    #[cfg(not(loom))]
    {
        later.saturating_duration_since(earlier) < d
    }
    #[cfg(loom)]
    {
        let _ = (earlier, later, d);
        true
    }
}

/// Spins, yielding the CPU between checks, until `counter` moves past `seen`
/// or `budget` has passed; returns whether it moved.
pub(crate) fn spin_until_changed(counter: &AtomicU64, seen: u64, budget: std::time::Duration) -> bool {
    spin_until(|| counter.load(std::sync::atomic::Ordering::Relaxed) != seen, budget)
}

/// Spins, yielding the CPU between checks, until `ready` or `budget` has
/// passed; returns whether it became ready. What it watches is only a hint
/// (the caller re-checks under the lock), so it needs no model: under loom
/// this returns `false` at once and the caller parks as usual.
pub(crate) fn spin_until(ready: impl FnMut() -> bool, budget: std::time::Duration) -> bool {
    #[cfg(not(loom))]
    {
        // Leave the core to the thread whose work we wait for.
        spin_rounds(ready, budget, 64, std::thread::yield_now)
    }
    #[cfg(loom)]
    {
        let _ = (ready, budget);
        false
    }
}

/// Checks `ready` between pause instructions, in rounds of `round` checks,
/// until it holds or `budget` has passed (looked at after each round),
/// running `between_rounds` after each round; returns whether it became
/// ready.
#[cfg(not(loom))]
fn spin_rounds(
    mut ready: impl FnMut() -> bool,
    budget: std::time::Duration,
    round: u32,
    between_rounds: impl Fn(),
) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..round {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= budget {
            return false;
        }
        between_rounds();
    }
}

/// An `UnsafeCell` whose accesses loom can check. kasync only touches the
/// cells behind it while holding the runtime's state lock.
pub(crate) struct UnsafeCell<T> {
    #[cfg(not(loom))]
    inner: std::cell::UnsafeCell<T>,
    #[cfg(loom)]
    inner: loom::cell::UnsafeCell<T>,
}

impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell {
            #[cfg(not(loom))]
            inner: std::cell::UnsafeCell::new(value),
            #[cfg(loom)]
            inner: loom::cell::UnsafeCell::new(value),
        }
    }

    /// Gives `f` a mutable pointer to the value.
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(not(loom))]
        {
            f(self.inner.get())
        }
        #[cfg(loom)]
        {
            self.inner.with_mut(f)
        }
    }
}
