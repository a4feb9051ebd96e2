//! Fault injection at the executor seam: an [`Executor`] that wraps
//! [`Threads`] and refuses every thread after the first N (by returning an
//! `io::Error`, or by dropping the body uncalled and claiming success),
//! counting the threads it started and how many of them returned.
//!
//! With N = 0, 1 and 2 and both ways of refusing, these workloads must still
//! finish, without a panic, because waiting threads run what they wait for:
//! independent calls over registered and exclusive domains; the kernel's
//! "probe in parallel, register in order" (`synchronize_cookie(own)`);
//! parents waiting for their children in exclusive domains. The runtime
//! reports the refusals in `stats().spawn_failures`, never starts more than N
//! threads, and every thread it did start returns once the runtime is gone.
//!
//! A refused stall-watchdog thread must not strand calls either: the parked
//! workers it would have woken are woken at once.
//!
//! Scenarios that cannot finish without a worker (a call blocking on a channel
//! that only a later call feeds, or a `wait_no_help` with no thread to run the
//! calls) are deliberately not here.
#![cfg(feature = "threads")]

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use kasync::executor::{ExecutorFuture, Threads, WorkerSpec};
use kasync::{Builder, Domain, Executor, Runtime, SyncError};

/// Hang guard: a bug fails the test after this instead of hanging CI.
const GUARD: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
enum Refuse {
    /// `spawn_worker` returns `Err(io::Error)`.
    Error,
    /// `spawn_worker` drops the body uncalled and returns `Ok(())`.
    DropBody,
}

#[derive(Default)]
struct Counts {
    /// Threads asked for (workers and the stall watchdog alike).
    asked: AtomicUsize,
    refused: AtomicUsize,
    /// Threads granted and actually spawned.
    started: AtomicUsize,
    /// Threads whose body returned; guarded so the test can wait for it.
    returned: Mutex<usize>,
    returned_cv: Condvar,
}

/// [`Threads`], except that every thread after the first `budget` is refused.
struct Faulty {
    budget: usize,
    refuse: Refuse,
    counts: Arc<Counts>,
}

/// Counts a thread as returned even if its body unwinds.
struct Returned(Arc<Counts>);

impl Drop for Returned {
    fn drop(&mut self) {
        *self.0.returned.lock().unwrap() += 1;
        self.0.returned_cv.notify_all();
    }
}

impl Executor for Faulty {
    fn name(&self) -> &'static str {
        "faulty-threads"
    }

    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        if self.counts.asked.fetch_add(1, Ordering::SeqCst) >= self.budget {
            self.counts.refused.fetch_add(1, Ordering::SeqCst);
            return match self.refuse {
                Refuse::Error => Err(io::Error::new(io::ErrorKind::WouldBlock, "no more threads (injected)")),
                Refuse::DropBody => {
                    drop(body);
                    Ok(())
                }
            };
        }
        let counts = self.counts.clone();
        let spawned = Threads.spawn_worker(
            spec,
            Box::new(move || {
                let _returned = Returned(counts);
                body();
            }),
        );
        if spawned.is_ok() {
            self.counts.started.fetch_add(1, Ordering::SeqCst);
        }
        spawned
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        Threads.spawn_future(future)
    }
}

/// Runs `f` on its own thread and fails if it does not finish within the
/// guard, so a hang is reported instead of hanging CI. Panics in `f` fail the
/// test as usual.
fn within_guard<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(GUARD) {
        Ok(value) => {
            runner.join().unwrap();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the runner sends before it returns"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: did not finish within {GUARD:?} (hang)"),
    }
}

/// A workload: schedules its calls on the runtime, waits for them from this
/// (non-worker) thread with helping waits, and checks what ran.
type Workload = fn(&Runtime);

/// Independent calls over the default, a registered and an exclusive domain.
fn independent_calls(rt: &Runtime) {
    let ran = Arc::new(AtomicUsize::new(0));
    let (registered, exclusive) = (rt.domain("registered"), rt.exclusive_domain("exclusive"));
    for i in 0..300 {
        let ran = ran.clone();
        let f = move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        };
        match i % 3 {
            0 => rt.schedule(f),
            1 => registered.schedule(f),
            _ => exclusive.schedule(f),
        };
    }
    rt.synchronize_full().wait().unwrap();
    exclusive.synchronize().wait().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 300);
}

/// The kernel's pattern: probe in parallel, then register in cookie order.
fn ordered_registration(rt: &Runtime) {
    let probes = rt.domain("probes");
    let registered = Arc::new(Mutex::new(Vec::new()));
    let mut cookies = Vec::new();
    for _ in 0..200 {
        let (probes2, registered) = (probes.clone(), registered.clone());
        cookies.push(probes.schedule(move |cookie| {
            probes2.synchronize_cookie(cookie).wait().unwrap();
            registered.lock().unwrap().push(cookie);
        }));
    }
    rt.synchronize_full().wait().unwrap();
    assert_eq!(*registered.lock().unwrap(), cookies);
}

/// Parents in the default domain, each waiting for its children in an
/// exclusive domain of its own; each child waits for its own grandchildren
/// the same way.
fn nested_parents_and_children(rt: &Runtime) {
    let leaves = Arc::new(AtomicUsize::new(0));
    for p in 0..8 {
        let children = rt.exclusive_domain(&format!("children-{p}"));
        let leaves = leaves.clone();
        let grandchildren: Vec<Domain> = (0..3)
            .map(|c| rt.exclusive_domain(&format!("grandchildren-{p}-{c}")))
            .collect();
        rt.schedule(move |_| {
            for mine in grandchildren {
                let leaves = leaves.clone();
                children.schedule(move |_| {
                    for _ in 0..3 {
                        let leaves = leaves.clone();
                        mine.schedule(move |_| {
                            leaves.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    mine.synchronize().wait().unwrap();
                });
            }
            children.synchronize().wait().unwrap();
        });
    }
    rt.synchronize_full().wait().unwrap();
    assert_eq!(leaves.load(Ordering::SeqCst), 8 * 3 * 3);
}

/// Builds a runtime on a faulty executor, runs `work` within the guard,
/// checks the counters, drops the runtime and waits for the started threads
/// to return.
fn run(budget: usize, refuse: Refuse, work: Workload, configure: fn(Builder) -> Builder, expect_refusal: bool) {
    let counts = Arc::new(Counts::default());
    let executor = Faulty {
        budget,
        refuse,
        counts: counts.clone(),
    };
    let what = format!("budget {budget}, {refuse:?}");
    let stats = within_guard(&what, move || {
        let rt = configure(Runtime::builder().executor(executor)).build().unwrap();
        work(&rt);
        let stats = rt.stats();
        drop(rt);
        stats
    });
    // Read after the snapshot: every failure the runtime counted was a refusal.
    let refused = counts.refused.load(Ordering::SeqCst);
    assert!(
        stats.spawn_failures as usize <= refused,
        "{what}: {stats:?}, {refused} refused"
    );
    assert!(counts.started.load(Ordering::SeqCst) <= budget, "{what}");
    assert!(stats.spawned <= budget as u64, "{what}: {stats:?}");
    assert_eq!((stats.pending, stats.queued), (0, 0), "{what}: {stats:?}");
    if expect_refusal {
        assert!(stats.spawn_failures > 0, "{what}: {stats:?}");
    }
    // Dropping the runtime lets every thread it started return (idle workers
    // exit at once, the watchdog exits with nothing queued).
    let returned = counts.returned.lock().unwrap();
    let (returned, _) = counts
        .returned_cv
        .wait_timeout_while(returned, GUARD, |r| *r < counts.started.load(Ordering::SeqCst))
        .unwrap();
    assert_eq!(
        *returned,
        counts.started.load(Ordering::SeqCst),
        "{what}: started threads returned"
    );
}

fn natural(builder: Builder) -> Builder {
    builder
}

/// Asks for one thread more than the executor grants, at build time, so a
/// refusal is certain whatever the timing; the workload then runs with at
/// most `budget` workers plus the waiting threads.
fn more_than_granted<const BUDGET: usize>(builder: Builder) -> Builder {
    builder.min_workers(BUDGET + 1).max_workers(BUDGET + 1)
}

fn every_budget_and_refusal(work: Workload) {
    for refuse in [Refuse::Error, Refuse::DropBody] {
        // With no thread granted, the very first call's worker is refused.
        run(0, refuse, work, natural, true);
        run(0, refuse, work, more_than_granted::<0>, true);
        // With one or two, refusals depend on timing unless forced.
        run(1, refuse, work, natural, false);
        run(1, refuse, work, more_than_granted::<1>, true);
        run(2, refuse, work, natural, false);
        run(2, refuse, work, more_than_granted::<2>, true);
    }
}

#[test]
fn independent_calls_finish_when_workers_are_refused() {
    every_budget_and_refusal(independent_calls);
}

#[test]
fn ordered_registration_finishes_when_workers_are_refused() {
    every_budget_and_refusal(ordered_registration);
}

#[test]
fn nested_parents_and_children_finish_when_workers_are_refused() {
    every_budget_and_refusal(nested_parents_and_children);
}

#[test]
fn with_no_thread_at_all_the_waiter_runs_the_call() {
    for refuse in [Refuse::Error, Refuse::DropBody] {
        run(
            0,
            refuse,
            |rt| {
                let (tx, rx) = mpsc::channel();
                let cookie = rt.schedule(move |cookie| tx.send((cookie, thread::current().id())).unwrap());
                // Nobody runs it: no worker was granted, and a waiter that
                // does not help only times out.
                assert_eq!(
                    rt.synchronize_full().wait_timeout(Duration::from_millis(20)),
                    Err(SyncError::TimedOut)
                );
                assert_eq!(rt.stats().queued, 1);
                // A helping waiter runs it on its own thread.
                rt.synchronize_full().wait().unwrap();
                assert_eq!(rx.try_recv().unwrap(), (cookie, thread::current().id()));
                let stats = rt.stats();
                assert_eq!((stats.completed, stats.helped, stats.spawned), (1, 1, 0), "{stats:?}");
            },
            natural,
            true,
        );
    }
}

/// Dropping the runtime lets idle workers go at once, whatever `keep_alive`:
/// with `keep_alive` forever, a drop that missed an idle worker would wait
/// forever for it to leave.
#[test]
fn dropping_the_runtime_releases_idle_workers_whatever_keep_alive() {
    for round in 0..20 {
        let counts = Arc::new(Counts::default());
        let executor = Faulty {
            budget: usize::MAX,
            refuse: Refuse::Error,
            counts: counts.clone(),
        };
        within_guard(&format!("round {round}: dropping the runtime"), move || {
            let rt = Runtime::builder()
                .executor(executor)
                .keep_alive(Duration::MAX)
                .build()
                .unwrap();
            rt.schedule(|_| {});
            // Not helping: a worker runs the call and then goes idle.
            rt.synchronize_full().wait_no_help().unwrap();
            drop(rt);
        });
        let returned = counts.returned.lock().unwrap();
        let (returned, _) = counts
            .returned_cv
            .wait_timeout_while(returned, GUARD, |r| *r < counts.started.load(Ordering::SeqCst))
            .unwrap();
        assert_eq!(*returned, counts.started.load(Ordering::SeqCst), "round {round}");
    }
}

/// [`Threads`], except that the stall watchdog's thread is always refused.
struct NoWatchdog;

impl Executor for NoWatchdog {
    fn name(&self) -> &'static str {
        "threads-without-watchdog"
    }

    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        if spec.name.ends_with("-watchdog") {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "no watchdog (injected)"));
        }
        Threads.spawn_worker(spec, body)
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        Threads.spawn_future(future)
    }
}

/// After short calls only `eager_workers` workers are kept awake and the
/// watchdog wakes the parked ones when a call blocks. If the watchdog's
/// thread is refused, the parked workers are woken at once instead: a call
/// blocking on a channel that a later call feeds still finishes.
#[test]
fn a_refused_watchdog_leaves_no_call_to_parked_workers() {
    within_guard("invisible blocking without a watchdog thread", || {
        let rt = Runtime::builder()
            .executor(NoWatchdog)
            .eager_workers(1)
            .max_workers(8)
            .keep_alive(Duration::MAX)
            .build()
            .unwrap();
        // A chain of parents that wait (without helping) on a child in the
        // next domain: each blocked parent's worker is replaced at once
        // (*compensate at once*), so four workers exist, idle once the chain is done.
        fn parent(rt: Arc<Runtime>, domains: Arc<Vec<Domain>>, level: usize) {
            if level + 1 < domains.len() {
                let (rt2, domains2) = (rt.clone(), domains.clone());
                domains[level + 1].schedule(move |_| parent(rt2, domains2, level + 1));
                domains[level + 1].synchronize().wait_no_help().unwrap();
            }
        }
        let rt = Arc::new(rt);
        let domains: Arc<Vec<Domain>> = Arc::new((0..4).map(|i| rt.exclusive_domain(&format!("level-{i}"))).collect());
        let (rt2, domains2) = (rt.clone(), domains.clone());
        domains[0].schedule(move |_| parent(rt2, domains2, 0));
        domains[0].synchronize().wait_no_help().unwrap();
        assert_eq!(rt.stats().workers, 4, "{:?}", rt.stats());
        // Short calls: from now on one worker is kept awake.
        let short = rt.exclusive_domain("short");
        (0..1000).for_each(|_| {
            short.schedule(|_| {});
        });
        short.synchronize().wait_no_help().unwrap();
        // Two calls that meet at a barrier kasync cannot see.
        let meet = Arc::new(std::sync::Barrier::new(2));
        let pair = rt.exclusive_domain("pair");
        for meet in [meet.clone(), meet] {
            pair.schedule(move |_| {
                meet.wait();
            });
        }
        pair.synchronize().wait_no_help().unwrap();
        let stats = rt.stats();
        assert_eq!((stats.spawned, stats.completed), (4, 1006), "{stats:?}");
    });
}
