//! Conformance: the deadlock-free growth rule. Every test here finishes by
//! the rule alone; none asserts a duration.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kasync::{Cookie, Domain, Runtime};

use super::gate::Gate;
use super::MakeBuilder;

fn nested_parents_and_children(make: &MakeBuilder, cap: usize) {
    let rt = Arc::new(make().max_workers(cap).build().unwrap());
    let children_done = Arc::new(AtomicUsize::new(0));
    for p in 0..16 {
        let (rt2, done) = (rt.clone(), children_done.clone());
        rt.schedule(move |_| {
            let mine = rt2.exclusive_domain(&format!("parent-{p}"));
            for _ in 0..4 {
                let done = done.clone();
                mine.schedule(move |_| {
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
            mine.synchronize().wait().unwrap();
        });
    }
    rt.synchronize_full().wait_no_help().unwrap();
    assert_eq!(children_done.load(Ordering::SeqCst), 64);
    assert!(rt.stats().peak_workers <= cap);
}

pub fn nested_parents_and_children_finish_with_one_worker(make: &MakeBuilder) {
    nested_parents_and_children(make, 1);
}

pub fn nested_parents_and_children_finish_with_two_workers(make: &MakeBuilder) {
    nested_parents_and_children(make, 2);
}

pub fn ten_thousand_predecessor_waits_with_one_worker(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let domain = rt.default_domain().clone();
    let order = Arc::new(Mutex::new(Vec::with_capacity(10_000)));
    for _ in 0..10_000 {
        let (d, order) = (domain.clone(), order.clone());
        domain.schedule(move |cookie| {
            d.synchronize_cookie(cookie).wait().unwrap();
            order.lock().unwrap().push(cookie);
        });
    }
    rt.synchronize_full().wait_no_help().unwrap();
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 10_000);
    assert!(order.windows(2).all(|w| w[0] < w[1]), "registered in cookie order");
    assert_eq!(rt.stats().peak_workers, 1);
}

pub fn cross_domain_chains_finish_with_a_small_cap(make: &MakeBuilder) {
    let rt = make().max_workers(2).build().unwrap();
    let (a, b, c) = (rt.domain("a"), rt.domain("b"), rt.exclusive_domain("c"));
    let done = Arc::new(AtomicUsize::new(0));
    // A waits on B, which waits on C; scheduled A first, so the lowest cookies
    // wait on later ones: only helping and compensation make this finish.
    for _ in 0..8 {
        let (b, done) = (b.clone(), done.clone());
        a.schedule(move |_| {
            b.synchronize().wait().unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    for _ in 0..8 {
        let (c, done) = (c.clone(), done.clone());
        b.schedule(move |_| {
            c.synchronize().wait().unwrap();
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    for _ in 0..8 {
        let done = done.clone();
        c.schedule(move |_| {
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    rt.synchronize_full().wait_no_help().unwrap();
    c.synchronize().wait().unwrap();
    assert_eq!(done.load(Ordering::SeqCst), 24);
    assert!(rt.stats().peak_workers <= 2);
}

pub fn invisible_blocking_is_resolved_by_the_watchdog(make: &MakeBuilder) {
    // One eager worker takes call 1, which blocks on a channel kasync cannot
    // see; call 2, queued behind it, sends on that channel. Only the stall
    // watchdog can start the worker that runs call 2.
    let rt = make().max_workers(4).eager_workers(1).build().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    rt.schedule(move |_| rx.recv().unwrap());
    rt.schedule(move |_| tx.send(()).unwrap());
    rt.synchronize_full().wait_no_help().unwrap();
    let stats = rt.stats();
    assert!(stats.stalls >= 1, "{stats:?}");
    assert!(stats.peak_workers >= 2 && stats.peak_workers <= 4, "{stats:?}");
}

pub fn invisible_blocking_after_short_calls_wakes_an_idle_worker(make: &MakeBuilder) {
    // After short calls only `eager_workers` workers are woken at once; the
    // rest stay parked. A call that then blocks invisibly must still get its
    // partner a thread: the watchdog wakes a parked worker (it starts no new
    // one while idle workers are left).
    let rt = make()
        .max_workers(8)
        .eager_workers(1)
        .keep_alive(Duration::MAX)
        .build()
        .unwrap();
    // Four calls that meet at a barrier kasync cannot see: four workers.
    let meet = Arc::new(std::sync::Barrier::new(4));
    for _ in 0..4 {
        let meet = meet.clone();
        rt.schedule(move |_| {
            meet.wait();
        });
    }
    rt.synchronize_full().wait_no_help().unwrap();
    assert_eq!(rt.stats().spawned, 4);
    // Short calls: now only one worker is woken at a time.
    for _ in 0..1000 {
        rt.schedule(|_| {});
    }
    rt.synchronize_full().wait_no_help().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    rt.schedule(move |_| rx.recv().unwrap());
    rt.schedule(move |_| tx.send(()).unwrap());
    rt.synchronize_full().wait_no_help().unwrap();
    let stats = rt.stats();
    assert_eq!((stats.spawned, stats.workers), (4, 4), "{stats:?}");
}

pub fn huge_backlog_is_drained_by_helping_without_overflow(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = mpsc::channel();
    rt.schedule(move |_| {
        started_tx.send(()).unwrap();
        g.wait()
    });
    started_rx.recv().unwrap();
    let backlog = rt.exclusive_domain("backlog");
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..100_000 {
        let ran = ran.clone();
        backlog.schedule(move |_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
    }
    // The only worker is stuck: this thread drains the whole backlog itself.
    backlog.synchronize().wait().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 100_000);
    assert!(rt.stats().helped >= 100_000);
    gate.open();
    rt.synchronize_full().wait().unwrap();
}

pub fn cap_is_never_exceeded_and_idle_workers_shrink(make: &MakeBuilder) {
    let rt = make()
        .max_workers(3)
        .min_workers(1)
        .keep_alive(Duration::from_millis(1))
        .build()
        .unwrap();
    let gate = Gate::new();
    for _ in 0..50 {
        let g = gate.clone();
        rt.schedule(move |_| g.wait());
    }
    let mut full = rt.synchronize_full();
    gate.open();
    full.wait_no_help().unwrap();
    assert!(rt.stats().peak_workers <= 3);
    // Idle workers above min_workers exit after keep_alive. Poll (no sleep)
    // with a generous bound so a broken shrink fails instead of hanging.
    let give_up = Instant::now() + Duration::from_secs(120);
    while rt.stats().workers > 1 {
        assert!(Instant::now() < give_up, "workers did not shrink: {:?}", rt.stats());
        thread::yield_now();
    }
    assert_eq!(rt.stats().workers, 1);
}

pub fn helping_respects_help_depth(make: &MakeBuilder) {
    // A chain of 120 domains: a call in domain i schedules into domain i + 1
    // and waits for it. Each thread nests at most help_depth calls, so the
    // chain needs at least 120 / help_depth threads — and gets them.
    const LEN: usize = 120;
    const DEPTH: usize = 4;
    let rt = Arc::new(make().help_depth(DEPTH).max_workers(LEN).build().unwrap());
    let threads = Arc::new(Mutex::new(HashSet::new()));
    fn link(rt: Arc<Runtime>, threads: Arc<Mutex<HashSet<thread::ThreadId>>>, left: usize) {
        threads.lock().unwrap().insert(thread::current().id());
        if left == 0 {
            return;
        }
        let next: Domain = rt.exclusive_domain("link");
        let (rt2, t2) = (rt.clone(), threads.clone());
        next.schedule(move |_| link(rt2, t2, left - 1));
        next.synchronize().wait().unwrap();
    }
    let (rt2, t2) = (rt.clone(), threads.clone());
    rt.schedule(move |_| link(rt2, t2, LEN - 1));
    rt.synchronize_full().wait_no_help().unwrap();
    let used = threads.lock().unwrap().len();
    assert!(used >= LEN / DEPTH, "{used} threads for a chain of {LEN}");
}

pub fn wait_no_help_never_runs_calls_on_the_waiter(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let me = thread::current().id();
    let ran_here = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let ran_here = ran_here.clone();
        rt.schedule(move |_| {
            if thread::current().id() == me {
                ran_here.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    rt.synchronize_full().wait_no_help().unwrap();
    assert_eq!(ran_here.load(Ordering::SeqCst), 0);
    // The builder switch does the same for plain wait().
    let rt = make().max_workers(1).help(false).build().unwrap();
    for _ in 0..200 {
        let ran_here = ran_here.clone();
        rt.schedule(move |_| {
            if thread::current().id() == me {
                ran_here.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    rt.synchronize_full().wait().unwrap();
    assert_eq!(ran_here.load(Ordering::SeqCst), 0);
}

pub fn blocked_worker_is_compensated(make: &MakeBuilder) {
    let rt = make()
        .max_workers(4)
        .eager_workers(1)
        .no_stall_watchdog()
        .build()
        .unwrap();
    let other = rt.exclusive_domain("other");
    let gate = Gate::new();
    let (g, o) = (gate.clone(), other.clone());
    rt.schedule(move |_| {
        g.wait();
        // Cannot help (no_help): this worker blocks while `other`'s call is
        // queued and no worker is idle, so a replacement starts at once.
        o.synchronize().wait_no_help().unwrap();
    });
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    other.schedule(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    gate.open();
    rt.synchronize_full().wait_no_help().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(rt.stats().compensations >= 1, "{:?}", rt.stats());
}

/// A tiny xorshift generator: reproducible randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub fn stress_random_waits(make: &MakeBuilder) {
    // 4 threads schedule 400 calls each into 3 domains. Every call waits on a
    // random domain for cookies below its own (waits form no cycle), by a
    // random method. Everything must finish, with every call counted.
    let rt = Arc::new(make().max_workers(16).build().unwrap());
    let domains: Arc<Vec<Domain>> = Arc::new(vec![rt.domain("x"), rt.domain("y"), rt.exclusive_domain("z")]);
    let ran = Arc::new(AtomicUsize::new(0));
    let schedulers: Vec<_> = (0..4u64)
        .map(|t| {
            let (domains, ran) = (domains.clone(), ran.clone());
            thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                for _ in 0..400 {
                    let home = (rng.next() % 3) as usize;
                    let target = (rng.next() % 3) as usize;
                    let how = rng.next() % 4;
                    let (ds, ran) = (domains.clone(), ran.clone());
                    domains[home].schedule(move |cookie: Cookie| {
                        let mut barrier = ds[target].synchronize_cookie(cookie);
                        match how {
                            0 => barrier.wait().unwrap(),
                            1 => barrier.wait_no_help().unwrap(),
                            2 => futures::executor::block_on(barrier).unwrap(),
                            _ => drop(barrier),
                        }
                        ran.fetch_add(1, Ordering::SeqCst);
                    });
                }
            })
        })
        .collect();
    for s in schedulers {
        s.join().unwrap();
    }
    rt.synchronize_full().wait().unwrap();
    domains[2].synchronize().wait().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1600);
    let stats = rt.stats();
    assert_eq!(stats.completed, 1600);
    assert_eq!(stats.pending, 0);
    assert!(stats.peak_workers <= 16);
}

pub fn burst_onto_idle_workers_leaves_no_call_behind(make: &MakeBuilder) {
    // Three idle workers, four calls at once: the first three block on a
    // channel only the fourth feeds. Every call must get a thread.
    let rt = make().min_workers(3).max_workers(8).eager_workers(3).build().unwrap();
    for _ in 0..20 {
        let (tx, rx) = mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..3 {
            let rx = rx.clone();
            rt.schedule(move |_| {
                let _ = rx.lock().unwrap().recv();
            });
        }
        rt.schedule(move |_| drop(tx));
        rt.synchronize_full().wait_no_help().unwrap();
    }
}

pub fn extreme_durations_mean_forever_not_a_panic(make: &MakeBuilder) {
    let rt = make()
        .keep_alive(Duration::MAX)
        .stall_timeout(Duration::MAX)
        .build()
        .unwrap();
    for _ in 0..50 {
        rt.schedule(|_| {});
    }
    rt.synchronize_full().wait_no_help().unwrap();
    assert_eq!(rt.stats().completed, 50);
}

pub fn no_eager_workers_still_runs_calls(make: &MakeBuilder) {
    let rt = make().eager_workers(0).build().unwrap();
    let (tx, rx) = mpsc::channel();
    rt.schedule(move |_| tx.send(()).unwrap());
    rx.recv().unwrap();
    rt.synchronize_full().wait_no_help().unwrap();
}

pub fn block_policy_inside_a_call_runs_inline_instead_of_deadlocking(make: &MakeBuilder) {
    let rt = Arc::new(make().max_pending(1).overflow(kasync::Overflow::Block).build().unwrap());
    let (tx, rx) = mpsc::channel();
    let r = rt.clone();
    rt.schedule(move |_| {
        // The runtime is full with this very call: waiting for room would
        // wait for itself.
        let inner = r.schedule(|_| {});
        tx.send(inner).unwrap();
    });
    let inner = rx.recv().unwrap();
    rt.synchronize_full().wait().unwrap();
    assert!(inner.get() > 1);
}

pub fn helping_elsewhere_does_not_hide_a_stalled_worker(make: &MakeBuilder) {
    // The only running worker is stuck in call 1 until queued call 2 runs.
    // Meanwhile this thread helps an endless chain in another domain: claims
    // made for its own barrier say nothing about call 2, so the watchdog
    // must still add a worker for it.
    let rt = make().max_workers(4).eager_workers(1).build().unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    let released = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let r = released.clone();
    rt.schedule(move |_| {
        started_tx.send(()).unwrap();
        rx.recv().unwrap();
        r.store(true, Ordering::SeqCst);
    });
    started_rx.recv().unwrap();
    rt.schedule(move |_| tx.send(()).unwrap());
    let chain = rt.exclusive_domain("chain");
    fn link(domain: Domain, released: Arc<AtomicBool>) {
        let next = domain.clone();
        domain.schedule(move |_| {
            if !released.load(Ordering::SeqCst) {
                link(next, released);
            }
        });
    }
    link(chain.clone(), released.clone());
    chain.synchronize().wait().unwrap();
    assert!(released.load(Ordering::SeqCst));
    rt.synchronize_full().wait().unwrap();
}

/// A stream of short calls on one worker runs each call exactly once, in
/// cookie order.
pub fn short_calls_run_once_in_order(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    // Hold the one worker until the whole stream is queued.
    let gate = Gate::new();
    let g = gate.clone();
    rt.schedule(move |_| g.wait());
    let ran = Arc::new(Mutex::new(Vec::new()));
    let scheduled: Vec<Cookie> = (0..1000)
        .map(|_| {
            let ran = ran.clone();
            rt.schedule(move |cookie| ran.lock().unwrap().push(cookie))
        })
        .collect();
    gate.open();
    rt.synchronize_full().wait_no_help().unwrap();
    assert_eq!(*ran.lock().unwrap(), scheduled, "each call once, lowest cookie first");
}
