//! Real work, not no-ops: 2,000 inputs mapped in parallel and consumed in
//! input order, at most 64 at once, in three workloads:
//!
//! * **cpu**: each input computes for about 0.68 ms (calibrated once, so
//!   every contender does the same arithmetic);
//! * **mixed**: even inputs compute as above, odd ones sleep 1 ms;
//! * **files**: the SHA-256 of every regular file under a directory (the
//!   first argument after `--`, else `$CARGO_HOME/registry/src`), read
//!   whole; the page cache is warmed first.
//!
//! Contenders: kasync's `Domain::map_ordered`, rayon's `par_iter().collect()`
//! on its default pool, `blocking::unblock` + `buffered(64)`, tokio
//! `spawn_blocking` + `buffered(64)` on a current-thread runtime, and a
//! sequential loop. Every run is a fresh process of this benchmark that
//! builds its runtime or pool inside the measured time (a cold start, as an
//! application's one batch of start-up work), in rounds of every contender
//! once each in rotating order (this machine's speed drifts). Per
//! contender: the median time and its ratio to the best peer, the
//! process's peak thread count (sampled from `/proc/self/status` every
//! millisecond; the sampler counts, as it is a thread of the process) and
//! the CPU seconds the process used in the run (`getrusage`). The cpu
//! table also shows the lower bound, sequential time over the CPUs; the
//! mixed one its CPU time over the CPUs with every sleep covered.
//!
//! Run with `cargo bench -p kasync-benches --bench workloads [-- DIR]` (a
//! relative DIR is taken from `benches/`, where cargo runs the benches);
//! `KASYNC_BENCH_ROUNDS` sets the rounds (default 5).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

mod common;
use common::threads_now;

const INPUTS: usize = 2_000;
const WINDOW: usize = 64;
/// The compute part of an input.
const COMPUTE: Duration = Duration::from_micros(680);
const SLEEP: Duration = Duration::from_millis(1);
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Set in a child process: `contender|workload|spins|dir`.
const CHILD_ENV: &str = "KASYNC_WORKLOADS_CHILD";

const CONTENDERS: [&str; 5] = [
    "kasync map_ordered",
    "rayon par_iter",
    "blocking unblock+buffered",
    "tokio spawn_blocking+buffered",
    "sequential",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Cpu,
    Mixed,
    Files,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Cpu, Workload::Mixed, Workload::Files];

    fn name(self) -> &'static str {
        match self {
            Workload::Cpu => "cpu",
            Workload::Mixed => "mixed",
            Workload::Files => "files",
        }
    }

    fn from_name(name: &str) -> Workload {
        match name {
            "cpu" => Workload::Cpu,
            "mixed" => Workload::Mixed,
            "files" => Workload::Files,
            other => panic!("no workload {other:?}"),
        }
    }
}

/// Arithmetic the optimiser cannot remove: `spins` rounds of xorshift.
fn compute(spins: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..spins {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    black_box(x)
}

/// How many rounds of [`compute`] take [`COMPUTE`] on this machine.
fn calibrate() -> u64 {
    let mut spins = 100_000u64;
    loop {
        let start = Instant::now();
        compute(spins, 7);
        let took = start.elapsed();
        if took >= Duration::from_millis(20) {
            return (spins as f64 * COMPUTE.as_secs_f64() / took.as_secs_f64()) as u64;
        }
        spins *= 2;
    }
}

/// Every regular file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

fn sha256(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    u64::from_le_bytes(digest[..8].try_into().unwrap())
}

/// One run's inputs and work.
#[derive(Clone)]
struct Job {
    workload: Workload,
    spins: u64,
    files: Arc<[PathBuf]>,
}

impl Job {
    fn inputs(&self) -> usize {
        match self.workload {
            Workload::Files => self.files.len(),
            _ => INPUTS,
        }
    }

    fn work(&self) -> impl Fn(usize) -> u64 + Clone + Send + Sync + 'static {
        let job = self.clone();
        move |i| match job.workload {
            Workload::Cpu => compute(job.spins, i as u64),
            Workload::Mixed if i % 2 == 0 => compute(job.spins, i as u64),
            Workload::Mixed => {
                thread::sleep(SLEEP);
                i as u64
            }
            Workload::Files => sha256(&job.files[i]),
        }
    }
}

fn kasync_ordered(job: &Job) -> u64 {
    let rt = kasync::Runtime::new().unwrap();
    let domain = rt.domain("work");
    domain
        .map_ordered(0..job.inputs(), WINDOW, job.work())
        .map(Result::unwrap)
        .fold(0, u64::wrapping_add)
}

fn rayon_collect(job: &Job) -> u64 {
    let work = job.work();
    let values: Vec<u64> = (0..job.inputs()).into_par_iter().map(work).collect();
    values.into_iter().fold(0, u64::wrapping_add)
}

fn blocking_buffered(job: &Job) -> u64 {
    let work = job.work();
    futures::executor::block_on(
        futures::stream::iter(0..job.inputs())
            .map(|i| {
                let work = work.clone();
                blocking::unblock(move || work(i))
            })
            .buffered(WINDOW)
            .fold(0u64, |a, v| async move { a.wrapping_add(v) }),
    )
}

fn tokio_buffered(job: &Job) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let work = job.work();
    rt.block_on(
        futures::stream::iter(0..job.inputs())
            .map(|i| {
                let work = work.clone();
                tokio::task::spawn_blocking(move || work(i))
            })
            .buffered(WINDOW)
            .fold(0u64, |a, v| async move { a.wrapping_add(v.unwrap()) }),
    )
}

fn sequential(job: &Job) -> u64 {
    let work = job.work();
    (0..job.inputs()).map(work).fold(0, u64::wrapping_add)
}

/// The CPU time this process used so far, every thread's, user and system.
fn cpu_time() -> Duration {
    // SAFETY: `getrusage` writes into the struct we pass and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// In a child process: one measured run; prints `nanos threads cpu_nanos`.
fn run_child(spec: &str) {
    let parts: Vec<&str> = spec.splitn(4, '|').collect();
    let [name, workload, spins, dir] = parts[..] else {
        panic!("bad child spec {spec:?}")
    };
    let workload = Workload::from_name(workload);
    let files: Arc<[PathBuf]> = if workload == Workload::Files {
        files_under(Path::new(dir)).into()
    } else {
        Arc::new([])
    };
    let job = Job {
        workload,
        spins: spins.parse().unwrap(),
        files,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = thread::spawn({
        let stop = stop.clone();
        move || {
            let mut peak = 0;
            while !stop.load(Relaxed) {
                peak = peak.max(threads_now());
                thread::sleep(Duration::from_millis(1));
            }
            peak.max(threads_now())
        }
    });
    let cpu_before = cpu_time();
    let start = Instant::now();
    let sum = match name {
        "kasync map_ordered" => kasync_ordered(&job),
        "rayon par_iter" => rayon_collect(&job),
        "blocking unblock+buffered" => blocking_buffered(&job),
        "tokio spawn_blocking+buffered" => tokio_buffered(&job),
        "sequential" => sequential(&job),
        other => panic!("no contender {other:?}"),
    };
    let took = start.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    stop.store(true, Relaxed);
    let peak = sampler.join().unwrap();
    black_box(sum);
    println!("{} {} {}", took.as_nanos(), peak, cpu.as_nanos());
}

#[derive(Clone, Copy)]
struct Sample {
    took: Duration,
    threads: usize,
    cpu: Duration,
}

fn child(name: &str, workload: Workload, spins: u64, dir: &Path) -> Result<Sample, String> {
    let spec = format!("{name}|{}|{spins}|{}", workload.name(), dir.display());
    match common::child_numbers(CHILD_ENV, &spec, CHILD_TIMEOUT)?[..] {
        [nanos, threads, cpu] => Ok(Sample {
            took: Duration::from_nanos(nanos),
            threads: threads as usize,
            cpu: Duration::from_nanos(cpu),
        }),
        ref other => Err(format!("unexpected output {other:?}")),
    }
}

fn median<T: Ord + Copy>(mut v: Vec<T>) -> Option<T> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn print_table(title: &str, bound: Option<(&str, Duration)>, samples: &BTreeMap<&str, Vec<Sample>>, rounds: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let med = |name: &str| median(samples.get(name)?.iter().map(|s| s.took).collect());
    let best_peer = CONTENDERS[1..4].iter().filter_map(|n| med(n)).min();
    println!("\n{title}: {rounds} interleaved rounds, a fresh process per run");
    if let Some((what, d)) = bound {
        println!("lower bound ({what}): {:.1} ms", ms(d));
    }
    println!(
        "{:<32} {:>10} {:>8} {:>11} {:>8} {:>9}",
        "contender", "median ms", "min ms", "x best peer", "threads", "CPU s"
    );
    let mut rows: Vec<&str> = CONTENDERS.to_vec();
    rows.sort_by_key(|n| med(n).unwrap_or(Duration::MAX));
    for name in rows {
        let Some(m) = med(name) else {
            println!("{name:<32} {:>10}", "failed");
            continue;
        };
        let runs = &samples[name];
        let min = runs.iter().map(|s| s.took).min().unwrap();
        let threads = median(runs.iter().map(|s| s.threads).collect()).unwrap();
        let cpu = median(runs.iter().map(|s| s.cpu).collect()).unwrap();
        println!(
            "{:<32} {:>10.1} {:>8.1} {:>11} {:>8} {:>9.3}",
            name,
            ms(m),
            ms(min),
            best_peer.map_or("-".into(), |b| format!("{:.3}", m.as_secs_f64() / b.as_secs_f64())),
            threads,
            cpu.as_secs_f64()
        );
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(&spec);
        return;
    }
    let rounds: usize = std::env::var("KASYNC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var("CARGO_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
            home.join("registry").join("src")
        });
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    let spins = calibrate();
    let files = files_under(&dir);
    // Warm the page cache.
    let warm: u64 = files.iter().map(|p| sha256(p)).fold(0, u64::wrapping_add);
    black_box(warm);
    println!(
        "workloads: {INPUTS} inputs (files: {} under {}), window {WINDOW}, {cpus} CPUs, compute {} us = {spins} spins",
        files.len(),
        dir.display(),
        COMPUTE.as_micros()
    );
    let mut samples: Vec<BTreeMap<&str, Vec<Sample>>> = vec![BTreeMap::new(); Workload::ALL.len()];
    let mut failures: Vec<String> = Vec::new();
    for round in 0..rounds {
        for (w, &workload) in Workload::ALL.iter().enumerate() {
            for k in 0..CONTENDERS.len() {
                let name = CONTENDERS[(round + k) % CONTENDERS.len()];
                match child(name, workload, spins, &dir) {
                    Ok(s) => samples[w].entry(name).or_default().push(s),
                    Err(e) => failures.push(format!("{name} on {}: {e}", workload.name())),
                }
            }
        }
    }
    let seq = |w: usize| median(samples[w].get("sequential")?.iter().map(|s| s.took).collect());
    let cpu_bound = seq(0).map(|d| ("sequential / CPUs", d / cpus as u32));
    // Mixed: the compute half over the CPUs (half of the cpu workload's
    // sequential time), with every sleep covered by a spare thread.
    let mixed_bound = seq(0).map(|d| ("compute / CPUs, sleeps covered", d / 2 / cpus as u32));
    print_table("cpu: 2,000 x 0.68 ms of arithmetic", cpu_bound, &samples[0], rounds);
    print_table(
        "mixed: even inputs compute 0.68 ms, odd ones sleep 1 ms",
        mixed_bound,
        &samples[1],
        rounds,
    );
    print_table(
        &format!("files: SHA-256 of {} files, warm cache", files.len()),
        None,
        &samples[2],
        rounds,
    );
    println!(
        "(x best peer: to the fastest of rayon, blocking and tokio; threads: the process's peak, sampler included, \
         median over rounds; CPU s: the process's user + system time in the run, median over rounds)"
    );
    for f in failures {
        println!("  failed: {f}");
    }
}
