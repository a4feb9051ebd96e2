//! Conformance: growth by progress. The watchdog tells a worker that
//! computes (on a CPU, or runnable and preempted) from one blocked in
//! something kasync cannot see, and grows the pool only for the latter; the
//! time rule (`ProgressSignal::Time`, and every platform but Linux) adds
//! workers for both. None of these tests sleeps or asserts a duration: the
//! work is counted arithmetic, and blocking is a rendezvous only enough
//! workers can reach.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use kasync::ProgressSignal;

use super::gate::HANG;
use super::MakeBuilder;

/// About 1 ms of arithmetic (10 in a debug build); what matters
/// is that it computes for many watchdog ticks without blocking.
fn compute(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..400_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    std::hint::black_box(x)
}

/// Threads that spin until dropped: other work that preempts the workers.
struct Hogs(Arc<AtomicBool>, Vec<thread::JoinHandle<()>>);

impl Hogs {
    fn start(n: usize) -> Hogs {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                    }
                })
            })
            .collect();
        Hogs(stop, threads)
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// Runs 12 CPU-bound calls, 6 at once, and returns the most workers alive.
fn peak_workers_for_computing_calls(make: &MakeBuilder, signal: ProgressSignal) -> usize {
    let rt = make()
        .max_workers(32)
        .eager_workers(2)
        .progress_signal(signal)
        .build()
        .unwrap();
    let sum: u64 = rt
        .default_domain()
        .map_ordered(0..12u64, 6, compute)
        .map(Result::unwrap)
        .fold(0, u64::wrapping_add);
    std::hint::black_box(sum);
    rt.stats().peak_workers
}

/// Workers that compute are making progress: the pool stays at the CPUs'
/// worth of workers (`eager_workers`), even while other threads of the
/// process preempt them (runnable, not blocked). The time rule would add
/// a worker every tick. Linux only: elsewhere the watchdog judges by time.
pub fn computing_workers_get_no_company_even_beside_hogs(make: &MakeBuilder) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let hogs = Hogs::start(2);
    let peak = peak_workers_for_computing_calls(make, ProgressSignal::Auto);
    drop(hogs);
    // Two eager workers; one more is allowed for a look that caught a
    // worker off the CPUs for a moment (a page fault's I/O).
    assert!(peak <= 3, "computing calls grew the pool to {peak} workers");
}

/// The fallback, judged by time: a worker in one call for a whole tick
/// counts as blocked, computing or not, so calls that only compute grow the
/// pool: here each computes until a third worker exists (under the time
/// rule that must happen; by looking it never would).
pub fn judged_by_time_computing_workers_grow_the_pool(make: &MakeBuilder) {
    let rt = Arc::new(
        make()
            .max_workers(8)
            .eager_workers(2)
            .progress_signal(ProgressSignal::Time)
            .build()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + HANG;
    for _ in 0..3 {
        let rt2 = rt.clone();
        rt.schedule(move |_| {
            let mut seed = 1;
            while rt2.stats().workers < 3 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the time rule never grew the pool"
                );
                seed = compute(seed);
            }
        });
    }
    rt.synchronize_full().wait_no_help().unwrap();
    assert!(rt.stats().peak_workers >= 3);
}

/// Calls that block where kasync cannot see it (a rendezvous of 12 that
/// only 12 workers running at once can reach) get a thread each, found
/// blocked by the watchdog: by looking, and by time.
pub fn a_burst_of_blocked_calls_gets_a_thread_each(make: &MakeBuilder) {
    for signal in [ProgressSignal::Auto, ProgressSignal::Time] {
        let rt = make()
            .max_workers(16)
            .eager_workers(1)
            .progress_signal(signal)
            .build()
            .unwrap();
        let meet = Arc::new(std::sync::Barrier::new(12));
        for _ in 0..12 {
            let meet = meet.clone();
            rt.schedule(move |_| {
                meet.wait();
            });
        }
        rt.synchronize_full().wait_no_help().unwrap();
        let stats = rt.stats();
        assert!(
            stats.peak_workers >= 12 && stats.peak_workers <= 16,
            "{signal:?}: {stats:?}"
        );
    }
}

/// A call blocked on a channel the next queued call feeds gets that call a
/// thread, judged by time as by looking (the invisible-blocking guarantee
/// on both paths).
pub fn invisible_blocking_is_found_judged_by_time(make: &MakeBuilder) {
    let rt = make()
        .max_workers(4)
        .eager_workers(1)
        .progress_signal(ProgressSignal::Time)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    rt.schedule(move |_| rx.recv().unwrap());
    rt.schedule(move |_| tx.send(()).unwrap());
    rt.synchronize_full().wait_no_help().unwrap();
    let stats = rt.stats();
    assert!(stats.stalls >= 1 && stats.peak_workers >= 2, "{stats:?}");
}

/// A mixed stream (half the calls compute, half block at a rendezvous of
/// two) finishes, and the pool grows for the blocked half only: never to
/// one worker per call.
pub fn a_mixed_stream_grows_for_its_blocked_calls(make: &MakeBuilder) {
    let rt = make().max_workers(32).eager_workers(2).build().unwrap();
    let pairs = 6;
    let meets: Vec<_> = (0..pairs).map(|_| Arc::new(std::sync::Barrier::new(2))).collect();
    let domain = rt.default_domain();
    for (i, meet) in meets.iter().enumerate() {
        let (a, b) = (meet.clone(), meet.clone());
        domain.schedule(move |_| {
            a.wait();
        });
        domain.schedule(move |_| {
            std::hint::black_box(compute(i as u64));
        });
        domain.schedule(move |_| {
            b.wait();
        });
    }
    domain.synchronize().wait_no_help().unwrap();
    let stats = rt.stats();
    assert!(stats.peak_workers >= 3, "a blocked call got no thread: {stats:?}");
    assert_eq!(stats.completed, 3 * pairs as u64);
}
