//! loom models of the core state machine with real worker threads: claims,
//! completion, blocking and async barrier wake-ups, helping, the lowest
//! unfinished cookie of a domain, items and shutdown.
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p kasync-core --release --lib loom_`.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::base::executor::{Executor, ExecutorFuture, WorkerSpec};
use crate::Runtime;

/// Workers are loom threads; futures are polled on the claiming worker.
struct LoomThreads;

impl Executor for LoomThreads {
    fn name(&self) -> &'static str {
        "loom"
    }

    fn spawn_worker(&self, _spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        loom::thread::spawn(body);
        Ok(())
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        loom::future::block_on(future)
    }

    fn polls_futures_on_caller(&self) -> bool {
        true
    }
}

fn builder(workers: usize) -> crate::Builder {
    Runtime::builder()
        .executor(LoomThreads)
        .max_workers(workers)
        .eager_workers(workers)
        .no_stall_watchdog()
}

fn runtime(workers: usize) -> Runtime {
    builder(workers).build().unwrap()
}

#[test]
fn loom_call_runs_exactly_once_and_barrier_sees_it() {
    loom::model(|| {
        let rt = runtime(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        rt.schedule(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        // Either the worker or this thread (helping) runs it; exactly once.
        rt.synchronize_full().wait().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_blocking_waiter_is_woken_by_the_worker() {
    loom::model(|| {
        let rt = runtime(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        rt.schedule(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        rt.synchronize_full().wait_no_help().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_cookie_wait_inside_a_call() {
    loom::model(|| {
        let rt = runtime(1);
        let domain = rt.default_domain().clone();
        let order = Arc::new(AtomicUsize::new(0));
        let o = order.clone();
        rt.schedule(move |_| {
            o.fetch_add(1, Ordering::SeqCst);
        });
        let (d, o) = (domain.clone(), order.clone());
        rt.schedule(move |cookie| {
            d.synchronize_cookie(cookie).wait().unwrap();
            assert_eq!(o.load(Ordering::SeqCst), 1, "the earlier call finished first");
            o.fetch_add(1, Ordering::SeqCst);
        });
        domain.synchronize().wait().unwrap();
        assert_eq!(order.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn loom_async_barrier_waker_is_not_lost() {
    loom::model(|| {
        let rt = runtime(1);
        rt.schedule(|_| {});
        loom::future::block_on(rt.synchronize_full()).unwrap();
    });
}

#[test]
fn loom_panic_is_reported() {
    loom::model(|| {
        let rt = runtime(1);
        let bad = rt.schedule(|_| panic!("loom"));
        match rt.synchronize_full().wait_no_help() {
            Err(crate::SyncError::Panicked(r)) => assert_eq!(r.cookie(), bad),
            other => panic!("{other:?}"),
        }
    });
}

/// A work that counts its runs and drops.
struct Counted {
    runs: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
}

impl crate::Work for Counted {
    fn run(&mut self, _cookie: crate::Cookie) {
        self.runs.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

fn counted() -> (Box<crate::Item<Counted>>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (runs, drops) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let item = crate::Item::new(Counted {
        runs: runs.clone(),
        drops: drops.clone(),
    });
    (item, runs, drops)
}

#[test]
fn loom_item_submit_run_wait() {
    loom::model(|| {
        let rt = runtime(1);
        let (item, runs, drops) = counted();
        let item = rt.default_domain().submit(item).wait().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        drop(item);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_item_handle_dropped_while_it_may_run() {
    loom::model(|| {
        let rt = runtime(1);
        let (item, runs, drops) = counted();
        drop(rt.default_domain().submit(item));
        rt.synchronize_full().wait_no_help().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Freed exactly once, by whichever side was last; if the worker was,
        // it frees just after the barrier.
        while drops.load(Ordering::SeqCst) == 0 {
            loom::thread::yield_now();
        }
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_detached_item_is_freed_before_the_barrier() {
    loom::model(|| {
        let rt = runtime(1);
        let (item, runs, drops) = counted();
        rt.default_domain().submit_detached(item);
        rt.synchronize_full().wait_no_help().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_item_awaited() {
    loom::model(|| {
        let rt = runtime(1);
        let (item, runs, _) = counted();
        let submitted = rt.default_domain().submit(item);
        let _item = loom::future::block_on(submitted).unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn loom_lowest_in_progress_advances_in_any_finish_order() {
    loom::model(|| {
        let rt = runtime(2);
        let domain = rt.default_domain().clone();
        let first_done = Arc::new(AtomicUsize::new(0));
        let f = first_done.clone();
        rt.schedule(move |_| {
            f.store(1, Ordering::SeqCst);
        });
        let second = rt.schedule(|_| {});
        // Two workers may finish the calls in either order; a wait on the
        // second cookie returns only once the first call has finished.
        domain.synchronize_cookie(second).wait_no_help().unwrap();
        assert_eq!(first_done.load(Ordering::SeqCst), 1);
        domain.synchronize().wait_no_help().unwrap();
    });
}

#[test]
fn loom_shutdown_drains_every_call_and_lets_workers_go() {
    loom::model(|| {
        let rt = runtime(1);
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let r = ran.clone();
            rt.exclusive_domain("x").schedule(move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            });
        }
        rt.shutdown().unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn loom_lock_free_barrier_on_finished_calls_sees_their_effects_and_panics() {
    loom::model(|| {
        let rt = runtime(1);
        let domain = rt.default_domain().clone();
        let effect = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
        let e = effect.clone();
        let first = rt.schedule(move |_| {
            // Relaxed: only the barrier's own ordering makes it visible.
            e.store(1, Ordering::Relaxed);
        });
        let bad = rt.schedule(|_| panic!("loom"));
        let after_first = crate::Cookie::new(first.get() + 1).unwrap();
        // Made before or after the worker finished the call, with or
        // without the lock: either way the effect is visible once it returns.
        domain.synchronize_cookie(after_first).wait_no_help().unwrap();
        assert_eq!(effect.load(Ordering::Relaxed), 1);
        let after_bad = crate::Cookie::new(bad.get() + 1).unwrap();
        match domain.synchronize_cookie(after_bad).wait_no_help() {
            Err(crate::SyncError::Panicked(r)) => assert_eq!(r.cookie(), bad),
            other => panic!("the panic must be reported, got {other:?}"),
        }
        // Reported once: a later barrier over it is clean, and may skip the lock.
        domain.synchronize_cookie(after_bad).wait_no_help().unwrap();
    });
}

#[test]
fn loom_waiter_woken_early_is_woken_again_when_its_call_ends() {
    loom::model(|| {
        let rt = runtime(1);
        let domain = rt.default_domain().clone();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let d = done.clone();
            rt.schedule(move |_| {
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        let third = rt.schedule(|_| {});
        // Once the first call ends, this wait is for the second alone: the
        // first call's end wakes it early (it would spin; under loom it
        // re-arms at once) and the second call's end must wake it again.
        domain.synchronize_cookie(third).wait_no_help().unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 2);
        domain.synchronize().wait_no_help().unwrap();
    });
}

/// An async call that awaits a call queued after it, on an executor that
/// polls futures on the worker: the pending poll blocks that worker, which
/// counts as blocked, so *compensate at once* starts a second one for the queued call.
#[test]
fn loom_pending_async_call_on_a_worker_is_compensated() {
    loom::model(|| {
        let rt = Runtime::builder()
            .executor(LoomThreads)
            .max_workers(2)
            .eager_workers(1)
            .no_stall_watchdog()
            .build()
            .unwrap();
        let later = rt.domain("later");
        let l = later.clone();
        rt.schedule_async(move |_| async move {
            l.synchronize().await.unwrap();
        });
        later.schedule(|_| {});
        // Never helps: only a second worker can run the later call.
        rt.synchronize_full().wait_no_help().unwrap();
    });
}

/// The watchdog's life (`model::growth`), driven from real loom threads
/// under one lock as the engine drives it: a watchdog leaving because
/// nothing is queued races a call that asks for one. Exactly one watchdog
/// runs at a time, none is left requested without a thread to start it,
/// and the last one leaves with nothing queued.
#[test]
fn loom_a_leaving_watchdog_and_a_new_call_agree_on_one_watchdog() {
    use crate::model::growth::{PoolState, Settings, Tick, Watchdog};
    use loom::sync::Mutex;

    struct Pool {
        pool: PoolState<()>,
        queued: usize,
        /// Watchdog threads asked for and not yet started.
        to_start: usize,
    }
    fn watchdog(state: Arc<Mutex<Pool>>, s: Settings) {
        let mut st = state.lock().unwrap();
        st.to_start -= 1;
        st.pool.watchdog_started();
        loop {
            let queued = st.queued;
            match st.pool.on_tick(&s, queued, 1, None) {
                Tick::Leave => return,
                Tick::Stay { .. } => {}
            }
            drop(st);
            loom::thread::yield_now();
            st = state.lock().unwrap();
        }
    }
    loom::model(|| {
        let s = Settings {
            max_workers: 1,
            min_workers: 0,
            eager_workers: 1,
            spinners: 1,
            tick: Some(std::time::Duration::from_millis(1)),
        };
        let state = Arc::new(Mutex::new(Pool {
            pool: PoolState::default(),
            queued: 0,
            to_start: 0,
        }));
        // A busy pool: one worker runs a call, another call is queued, so
        // the watchdog is asked for.
        {
            let mut st = state.lock().unwrap();
            assert_eq!(st.pool.reserve(&s, 1), 1);
            let slot = st.pool.take_unstarted().unwrap();
            st.pool.started(slot, (), None);
            st.pool.set_phase(slot, crate::model::growth::Phase::Running);
            st.queued = 1;
            let actions = st.pool.dispatch(&s, 1, 2);
            assert!(actions.start_watchdog);
            st.to_start += 1;
        }
        let first = {
            let (state, s) = (state.clone(), s.clone());
            loom::thread::spawn(move || watchdog(state, s))
        };
        // The queued call is claimed, then a new call is queued: it asks for
        // a watchdog only if the first one has left.
        let second = {
            let mut st = state.lock().unwrap();
            st.queued = 0;
            drop(st);
            let mut st = state.lock().unwrap();
            st.queued = 1;
            let actions = st.pool.dispatch(&s, 1, 2);
            if actions.start_watchdog {
                st.to_start += 1;
                let (state, s) = (state.clone(), s.clone());
                Some(loom::thread::spawn(move || watchdog(state, s)))
            } else {
                assert_ne!(st.pool.watchdog, Watchdog::Off, "a call queued with no watchdog coming");
                None
            }
        };
        // The last call is claimed: every watchdog leaves.
        state.lock().unwrap().queued = 0;
        first.join().unwrap();
        if let Some(second) = second {
            second.join().unwrap();
        }
        let st = state.lock().unwrap();
        assert_eq!((st.pool.watchdog, st.to_start), (Watchdog::Off, 0));
    });
}

/// Cancelling a task races its worker claiming it: exactly one of
/// "cancelled" and "ran" happens, and waiting agrees with it.
#[test]
fn loom_cancel_and_claim_agree_on_one_outcome() {
    loom::model(|| {
        let rt = runtime(1);
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let mut task = rt.spawn(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
            7
        });
        let cancelled = task.cancel();
        let result = task.wait();
        rt.synchronize_full().wait().unwrap();
        if cancelled {
            assert_eq!(result, Err(crate::TaskError::Cancelled));
            assert_eq!(ran.load(Ordering::SeqCst), 0);
        } else {
            assert_eq!(result, Ok(7));
            assert_eq!(ran.load(Ordering::SeqCst), 1);
        }
    });
}

/// A task's completion races its handle being polled as a future: the
/// waker is not lost and the value arrives once.
#[test]
fn loom_task_completion_and_poll_do_not_lose_the_wake_up() {
    loom::model(|| {
        let rt = runtime(1);
        let task = rt.spawn(|cookie| cookie.get());
        let cookie = task.cookie();
        assert_eq!(loom::future::block_on(task), Ok(cookie.get()));
        rt.synchronize_full().wait().unwrap();
    });
}

/// A wait for one task claims that call out of order (ahead of an earlier
/// queued call it does not depend on) while the worker claims lowest
/// first: each call runs exactly once, the wait returns its value, and a
/// barrier over both sees both finished (the domain's front moves past a
/// call finished out of order only once the one before it finished).
#[test]
fn loom_a_task_wait_claims_its_call_while_a_worker_claims_lowest_first() {
    loom::model(|| {
        let rt = runtime(1);
        let domain = rt.default_domain();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        domain.schedule(move |_| {
            r.fetch_add(1, Ordering::SeqCst);
        });
        let r = runs.clone();
        let mut task = domain.spawn(move |cookie| {
            r.fetch_add(10, Ordering::SeqCst);
            cookie.get()
        });
        let cookie = task.cookie();
        assert_eq!(task.wait(), Ok(cookie.get()));
        domain.synchronize().wait_no_help().unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 11);
    });
}

/// A task panics while its handle is being dropped: the panic goes to the
/// handle while it lives and to the barriers once it is dropped, whichever
/// comes first, so the next barrier reports it exactly once.
#[test]
fn loom_a_panic_and_its_handles_drop_agree_on_who_reports_it() {
    loom::model(|| {
        let rt = runtime(1);
        let task = rt.spawn(|_| -> u8 { panic!("loom") });
        let cookie = task.cookie();
        drop(task);
        match rt.synchronize_full().wait_no_help() {
            Err(crate::SyncError::Panicked(r)) => assert_eq!(r.cookie(), cookie),
            other => panic!("the dropped task's panic was lost: {other:?}"),
        }
        assert_eq!(rt.synchronize_full().wait_no_help(), Ok(()));
    });
}

/// Futures run on a thread of their own (as tokio's, async-std's and
/// smol's executors run them): a pending poll holds no kasync thread.
struct LoomSpawned;

impl Executor for LoomSpawned {
    fn name(&self) -> &'static str {
        "loom-spawned"
    }

    fn spawn_worker(&self, _spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        loom::thread::spawn(body);
        Ok(())
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        loom::thread::spawn(move || loom::future::block_on(future));
    }
}

/// The only worker runs H, which waits on domain `a`; `a` holds async call
/// A, which awaits a barrier over call B, queued. A's poll runs on a
/// thread of its own, so only H's thread can run B: it learns what A
/// awaits when A publishes it, which races H parking. H is never left
/// parked while B is queued and A pending.
#[test]
fn loom_a_waiter_helps_what_a_pending_async_call_awaits() {
    loom::model(|| {
        let rt = Runtime::builder()
            .executor(LoomSpawned)
            .max_workers(1)
            .eager_workers(1)
            .no_stall_watchdog()
            .build()
            .unwrap();
        let (a, b) = (rt.domain("a"), rt.exclusive_domain("b"));
        let b2 = b.clone();
        a.schedule_async(move |_| async move {
            b2.synchronize().await.unwrap();
        });
        let a2 = a.clone();
        rt.schedule(move |_| a2.synchronize().wait().unwrap());
        b.schedule(|_| {});
        // Never helps: the worker must finish H, A and B on its own.
        rt.synchronize_full().wait_no_help().unwrap();
    });
}

/// The watchdog looks at a worker with the lock released, then ticks with
/// what it saw; meanwhile the worker leaves that call for another. A fact
/// about the call it left must not count: the worker is not blocked, and
/// the pool does not grow for it.
#[test]
fn loom_a_fact_about_a_call_left_meanwhile_is_dropped() {
    use crate::model::growth::{Fact, Phase, PoolState, Progress, Settings, Tick, Watchdog};
    use loom::sync::Mutex;

    loom::model(|| {
        let s = Settings {
            max_workers: 4,
            min_workers: 0,
            eager_workers: 1,
            spinners: 1,
            tick: Some(std::time::Duration::from_millis(1)),
        };
        let pool = Arc::new(Mutex::new(PoolState::<()>::default()));
        let slot = {
            let mut p = pool.lock().unwrap();
            assert_eq!(p.reserve(&s, 1), 1);
            let slot = p.take_unstarted().unwrap();
            p.started(slot, (), None);
            p.set_phase(slot, Phase::Running);
            p.watchdog = Watchdog::Running;
            slot
        };
        // The worker: its call returns, and it claims the next one.
        let worker = {
            let pool = pool.clone();
            loom::thread::spawn(move || {
                let mut p = pool.lock().unwrap();
                p.set_phase(slot, Phase::Spinning);
                drop(p);
                pool.lock().unwrap().set_phase(slot, Phase::Running);
            })
        };
        // The watchdog: collects the running workers, looks (lock
        // released), finds the one it looked at off the CPUs, ticks.
        let seen = pool.lock().unwrap().running_workers();
        let facts: Vec<Fact> = seen
            .iter()
            .map(|w| Fact {
                slot: w.slot,
                runs: w.runs,
                progress: Progress::OffCpu,
            })
            .collect();
        let mut p = pool.lock().unwrap();
        let moved_on = p
            .running_workers()
            .iter()
            .all(|w| !seen.iter().any(|v| v.runs == w.runs));
        let tick = p.on_tick(&s, 2, 0, Some(&facts));
        drop(p);
        worker.join().unwrap();
        if moved_on {
            // The fact was about a call the worker left: it counts as
            // running, and one runnable worker is enough.
            assert!(matches!(tick, Tick::Stay { stalled: false, .. }), "{tick:?}");
        }
    });
}

/// A cancelled call is settled (its closure dropped, then ended) by the
/// cancelling thread or, if it waits for it first, by a thread waiting for
/// it: one of them, once, while the worker may claim the call before the
/// cancel reaches it. However it goes, the closure is dropped once and the
/// wait agrees with the cancel.
#[test]
fn loom_a_cancelled_call_is_settled_once_by_its_canceller_or_its_waiter() {
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    loom::model(|| {
        let rt = runtime(1);
        let domain = rt.domain("cancelled");
        let drops = Arc::new(AtomicUsize::new(0));
        let held = Dropped(drops.clone());
        let mut task = domain.spawn(move |_| {
            let _held = held;
            7
        });
        let d = domain.clone();
        let canceller = loom::thread::spawn(move || d.cancel());
        let result = task.wait();
        let cancelled = canceller.join().unwrap();
        match result {
            Err(crate::TaskError::Cancelled) => assert_eq!(cancelled, 1),
            Ok(7) => assert_eq!(cancelled, 0, "a call both cancelled and run"),
            other => panic!("{other:?}"),
        }
        rt.synchronize_full().wait().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    });
}

/// A set's joiner and a worker race for its members: the joiner runs one
/// only while none runs, a member's end is never lost, and each member is
/// joined exactly once, in the order the calls ended, both by `.wait()`
/// and by `.await`.
#[test]
fn loom_a_task_set_joins_each_member_once_while_joiner_and_worker_race() {
    loom::model(|| {
        let rt = runtime(1);
        let domain = rt.default_domain();
        let mut set = domain.task_set();
        set.spawn(|_| 1u32);
        set.spawn(|_| 2u32);
        let first = set.join_next().wait().unwrap().unwrap();
        let second = loom::future::block_on(set.join_next()).unwrap().unwrap();
        assert_eq!(first + second, 3);
        assert!(set.join_next().wait().is_none());
        rt.synchronize_full().wait().unwrap();
    });
}
