//! Contention: one and two threads scheduling no-op calls at once, into one
//! shared domain and into a domain each, then one barrier. Prints ns per
//! call and the scaling from one thread to two (2.0 would be perfect; the
//! runtime's one lock, like the kernel's `async_lock`, keeps it near 1),
//! next to rayon doing the same from inside a scope.
//!
//! Run with `cargo bench -p kasync-benches --bench contention`.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use kasync::Runtime;

const PER_THREAD: usize = 50_000;
const RUNS: usize = 15;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median wall time of `RUNS` runs of `threads` threads scheduling at once.
fn kasync_run(rt: &Runtime, threads: usize, shared_domain: bool) -> Duration {
    let shared = rt.domain("shared");
    let own: Vec<_> = (0..threads).map(|n| rt.domain(&format!("own-{n}"))).collect();
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                thread::scope(|s| {
                    for domain in own.iter() {
                        let domain = if shared_domain { &shared } else { domain };
                        s.spawn(move || {
                            for i in 0..PER_THREAD {
                                domain.schedule(move |_| {
                                    black_box(i);
                                });
                            }
                        });
                    }
                });
                rt.synchronize_full().wait().unwrap();
                start.elapsed()
            })
            .collect(),
    )
}

fn rayon_run(pool: &rayon::ThreadPool, threads: usize) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                pool.scope(|s| {
                    thread::scope(|t| {
                        for _ in 0..threads {
                            t.spawn(|| {
                                for i in 0..PER_THREAD {
                                    s.spawn(move |_| {
                                        black_box(i);
                                    });
                                }
                            });
                        }
                    });
                });
                start.elapsed()
            })
            .collect(),
    )
}

fn ns_per_call(d: Duration, threads: usize) -> f64 {
    d.as_secs_f64() * 1e9 / (PER_THREAD * threads) as f64
}

fn main() {
    let rt = Runtime::new().unwrap();
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    println!("\n{PER_THREAD} no-op calls per scheduling thread, median of {RUNS} runs");
    println!(
        "{:<34} {:>14} {:>14} {:>10}",
        "contender", "1 thread ns", "2 threads ns", "scaling"
    );
    let rows = [
        (
            "kasync, one shared domain",
            kasync_run(&rt, 1, true),
            kasync_run(&rt, 2, true),
        ),
        (
            "kasync, a domain per thread",
            kasync_run(&rt, 1, false),
            kasync_run(&rt, 2, false),
        ),
        ("rayon scope spawn", rayon_run(&pool, 1), rayon_run(&pool, 2)),
    ];
    for (name, one, two) in rows {
        let (one, two) = (ns_per_call(one, 1), ns_per_call(two, 2));
        // Calls per second with two threads over calls per second with one.
        println!("{name:<34} {one:>14.0} {two:>14.0} {:>10.2}", one / two);
    }
}
