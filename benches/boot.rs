//! The boot benchmark: 256 calls that each block 20 ms, then register in
//! cookie order. The ideal is 20 ms (every call in parallel, registration
//! free).
//!
//! A boot happens once, in a fresh process, on a cold pool, so the first
//! table is **cold**: every contender runs in a fresh process of this
//! benchmark (runtime or pool built inside the measured time), in rounds of
//! every contender once each in rotating order, next to the
//! thread-creation floor (256 threads that sleep 20 ms, nothing else). The
//! tables after it are **warm**, a second boot in the same process: the
//! criterion runs, one contender after the other, then rounds of every
//! contender in turn (fairer on a machine whose speed drifts), then where
//! kasync's own time over the ideal goes (dispatch onto workers, and the
//! registration chain after the last probe).
//!
//! Run with `cargo bench -p kasync-benches --bench boot`.

use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;

mod common;
use common::Results;

const CALLS: usize = 256;
const BLOCK: Duration = Duration::from_millis(20);

/// Peers register in order through a turnstile: call `i` waits until call
/// `i - 1` has registered. Each call has its own flag, so a registration wakes
/// exactly the next call (a shared condvar would wake all 256 every time and
/// make the peers look slower than they are).
struct Turnstile {
    done: Vec<(Mutex<bool>, Condvar)>,
}

impl Default for Turnstile {
    fn default() -> Self {
        Turnstile {
            done: (0..CALLS).map(|_| (Mutex::new(false), Condvar::new())).collect(),
        }
    }
}

impl Turnstile {
    fn register(&self, i: usize) {
        if i > 0 {
            let (flag, cv) = &self.done[i - 1];
            let mut done = flag.lock().unwrap();
            while !*done {
                done = cv.wait(done).unwrap();
            }
        }
        let (flag, cv) = &self.done[i];
        *flag.lock().unwrap() = true;
        cv.notify_one();
    }
}

fn boot_kasync(rt: &kasync::Runtime) {
    let domain = rt.default_domain().clone();
    for _ in 0..CALLS {
        let d = domain.clone();
        domain.schedule(move |cookie| {
            thread::sleep(BLOCK);
            d.synchronize_cookie(cookie).wait().unwrap();
        });
    }
    domain.synchronize().wait().unwrap();
}

/// Where kasync's time over the ideal goes, from one boot: when the last
/// call started (dispatch onto workers), and how long registration ran on
/// after the last probe's sleep ended (the cookie-order chain).
fn kasync_breakdown(rt: &kasync::Runtime) -> (Duration, Duration) {
    let domain = rt.default_domain().clone();
    let origin = Instant::now();
    let marks = Arc::new(Mutex::new(Vec::with_capacity(CALLS)));
    for _ in 0..CALLS {
        let (d, marks) = (domain.clone(), marks.clone());
        domain.schedule(move |cookie| {
            let started = origin.elapsed();
            thread::sleep(BLOCK);
            let slept = origin.elapsed();
            d.synchronize_cookie(cookie).wait().unwrap();
            marks.lock().unwrap().push((started, slept));
        });
    }
    domain.synchronize().wait().unwrap();
    let total = origin.elapsed();
    let marks = marks.lock().unwrap();
    let last_start = marks.iter().map(|m| m.0).max().unwrap_or_default();
    let last_slept = marks.iter().map(|m| m.1).max().unwrap_or_default();
    (last_start, total.saturating_sub(last_slept))
}

fn print_breakdown(rt: &kasync::Runtime) {
    const RUNS: usize = 15;
    let (mut starts, mut tails): (Vec<_>, Vec<_>) = (0..RUNS).map(|_| kasync_breakdown(rt)).unzip();
    starts.sort();
    tails.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "kasync, median of {RUNS} boots: last call started after {:.2} ms; registration ran on {:.2} ms after the last probe slept",
        ms(starts[RUNS / 2]),
        ms(tails[RUNS / 2]),
    );
}

fn boot_thread_scope() {
    let turns = Turnstile::default();
    thread::scope(|s| {
        for i in 0..CALLS {
            let turns = &turns;
            s.spawn(move || {
                thread::sleep(BLOCK);
                turns.register(i);
            });
        }
    });
}

fn boot_blocking() {
    let turns = Arc::new(Turnstile::default());
    let tasks: Vec<_> = (0..CALLS)
        .map(|i| {
            let turns = turns.clone();
            blocking::unblock(move || {
                thread::sleep(BLOCK);
                turns.register(i);
            })
        })
        .collect();
    futures::executor::block_on(futures::future::join_all(tasks));
}

fn boot_tokio(rt: &tokio::runtime::Runtime) {
    let turns = Arc::new(Turnstile::default());
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..CALLS {
            let turns = turns.clone();
            set.spawn_blocking(move || {
                thread::sleep(BLOCK);
                turns.register(i);
            });
        }
        while set.join_next().await.is_some() {}
    });
}

fn boot_rayon(pool: &rayon::ThreadPool) {
    // Registering in order inside rayon jobs deadlocks once every pool thread
    // waits for a job that has not started; register after the scope instead.
    let turns = Turnstile::default();
    pool.scope(|s| {
        for _ in 0..CALLS {
            s.spawn(|_| thread::sleep(BLOCK));
        }
    });
    for i in 0..CALLS {
        turns.register(i);
    }
}

fn bench_boot(c: &mut Criterion, results: &Results) {
    let mut group = c.benchmark_group("boot_256x20ms");
    group.sample_size(10).warm_up_time(Duration::from_millis(200));
    let rt = kasync::Runtime::new().unwrap();
    group.bench_function("kasync", |b| {
        b.iter_custom(|iters| results.timed("kasync", iters, || boot_kasync(&rt)))
    });
    group.bench_function("blocking::unblock", |b| {
        b.iter_custom(|iters| results.timed("blocking::unblock", iters, boot_blocking))
    });
    group.bench_function("std::thread::scope", |b| {
        b.iter_custom(|iters| results.timed("std::thread::scope", iters, boot_thread_scope))
    });
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    group.bench_function("tokio spawn_blocking+JoinSet", |b| {
        b.iter_custom(|iters| results.timed("tokio spawn_blocking+JoinSet", iters, || boot_tokio(&tokio_rt)))
    });
    group.finish();
    // rayon needs CALLS * BLOCK / threads per run: measure it a few times only.
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    results.timed("rayon scope (then register)", 2, || boot_rayon(&pool));
}

/// The same boots again, in rounds of every contender once each (see
/// `Results::interleaved`).
fn print_interleaved() {
    const ROUNDS: usize = 21;
    let rt = kasync::Runtime::new().unwrap();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let results = Results::default();
    results.interleaved(
        ROUNDS,
        &mut [
            ("kasync", &mut || boot_kasync(&rt)),
            ("blocking::unblock", &mut boot_blocking),
            ("std::thread::scope", &mut boot_thread_scope),
            ("tokio spawn_blocking+JoinSet", &mut || boot_tokio(&tokio_rt)),
        ],
    );
    results.print_ratios(
        &format!("boot, warm, interleaved: {ROUNDS} rounds of every contender in turn"),
        BLOCK,
    );
}

/// The cold contenders, each run in a fresh process.
const COLD: [&str; 5] = [
    "kasync",
    "blocking::unblock",
    "std::thread::scope",
    "tokio spawn_blocking+JoinSet",
    "floor: 256 threads sleep 20 ms",
];

/// Set in a child process: the cold contender it runs.
const COLD_ENV: &str = "KASYNC_BOOT_COLD";

/// In a child process: one cold boot of `name`, building what it needs
/// inside the measured time; prints the nanoseconds it took.
fn run_cold_child(name: &str) {
    let start = Instant::now();
    match name {
        "kasync" => boot_kasync(kasync::runtime()),
        "blocking::unblock" => boot_blocking(),
        "std::thread::scope" => boot_thread_scope(),
        "tokio spawn_blocking+JoinSet" => boot_tokio(&tokio::runtime::Builder::new_multi_thread().build().unwrap()),
        "floor: 256 threads sleep 20 ms" => thread::scope(|s| {
            for _ in 0..CALLS {
                s.spawn(|| thread::sleep(BLOCK));
            }
        }),
        other => panic!("no cold contender {other:?}"),
    }
    println!("{}", start.elapsed().as_nanos());
}

/// Cold boots: each contender in a fresh process, in interleaved rounds.
fn print_cold() {
    const ROUNDS: usize = 7;
    let me = std::env::current_exe().unwrap();
    let results = Results::default();
    for round in 0..ROUNDS {
        for k in 0..COLD.len() {
            let name = COLD[(round + k) % COLD.len()];
            let out = std::process::Command::new(&me).env(COLD_ENV, name).output().unwrap();
            let nanos: u64 = String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .unwrap_or_else(|| panic!("cold {name}: {}", String::from_utf8_lossy(&out.stderr)));
            results.record(name, Duration::from_nanos(nanos));
        }
    }
    results.print_ratios(
        &format!("boot, COLD (a fresh process per boot, {ROUNDS} interleaved rounds)"),
        BLOCK,
    );
}

fn main() {
    if let Ok(name) = std::env::var(COLD_ENV) {
        run_cold_child(&name);
        return;
    }
    print_cold();
    let results = Results::default();
    let mut c = Criterion::default().configure_from_args();
    bench_boot(&mut c, &results);
    c.final_summary();
    results.print_ratios(
        &format!(
            "boot, warm (a second boot in the same process): {CALLS} calls x {} ms",
            BLOCK.as_millis()
        ),
        BLOCK,
    );
    print_interleaved();
    print_breakdown(&kasync::Runtime::new().unwrap());
}
