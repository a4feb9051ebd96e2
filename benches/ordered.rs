//! The ordered benchmark: 2,000 blocking inputs mapped in parallel and
//! consumed in input order, at most 64 at once, in two workloads:
//!
//! * **random**: each input sleeps a deterministic pseudo-random 0-2 ms;
//!   the ideal is `max(sum of delays / 64, longest delay)`;
//! * **slow head**: input 0 sleeps 200 ms, every other input 1 ms; the ideal
//!   is 200 ms + 1,999 ms / 64 ≈ 231 ms (a window of 64 cannot pull more than
//!   63 inputs past the head while it runs; the unbounded contenders can, so
//!   they may beat it).
//!
//! Each table also shows the **window-bound ideal**: the fastest a window of
//! 64 consumed in order can be with free scheduling and exact sleeps (input
//! `i` starts once input `i - 64` is consumed). On the random workload it is
//! well above `sum / 64`, since one slow input holds the 63 after it.
//!
//! Each input sleeps, then returns `i * 2`; the consumer asserts the order
//! and counts the results. Contenders: kasync's `Domain::map_ordered`
//! (consumed as an `Iterator`, and through `into_stream`), tokio
//! `spawn_blocking` + `buffered(64)`, `blocking::unblock` + `buffered(64)`,
//! rayon's `par_iter().collect()` on a 64-thread pool (ordered but not
//! streaming: every result buffered), and what people write by hand: 64 std
//! threads, a channel and a reorder buffer (unbounded).
//!
//! Every run is a fresh process of this benchmark that builds the
//! contender's runtime or pool, runs the random workload once unmeasured (a
//! warm pool, as in a long-lived process), then the measured run; its peak
//! thread count therefore belongs to that contender alone. The runs go in
//! rounds of every contender once each, in an order that rotates each round
//! (this machine's speed drifts). Per contender: the median time, its ratio
//! to the fastest contender that holds at most 64 results and to the ideal,
//! the process's threads before the run and at its peak (sampled from
//! `/proc/self/status` every millisecond; the sampler itself not counted),
//! and the peak of results completed but not yet consumed.
//!
//! Then what one call costs from a blocking thread: `spawn` + `wait` on
//! kasync (which runs a still-queued call on the waiting thread) and
//! `block_on(spawn)` (which hands it to a worker) against
//! `block_on(spawn_blocking)` on tokio, `block_on(unblock)` on `blocking` and
//! `std::thread::spawn` + `join`, in interleaved rounds.
//!
//! Run with `cargo bench -p kasync-benches --bench ordered`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rayon::prelude::*;

mod common;
use common::Results;

const INPUTS: usize = 2_000;
const WINDOW: usize = 64;
const ROUNDS: usize = 7;
/// Calls per run of the `spawn` + `wait` comparison.
const CALLS: usize = 10_000;
/// A child that has not finished by then is reported as failed.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// Set in a child process: `contender|workload`.
const CHILD_ENV: &str = "KASYNC_ORDERED_CHILD";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Random,
    SlowHead,
}

impl Workload {
    const ALL: [Workload; 2] = [Workload::Random, Workload::SlowHead];

    fn name(self) -> &'static str {
        match self {
            Workload::Random => "random",
            Workload::SlowHead => "slow-head",
        }
    }

    fn from_name(name: &str) -> Workload {
        match name {
            "random" => Workload::Random,
            "slow-head" => Workload::SlowHead,
            other => panic!("no workload {other:?}"),
        }
    }

    /// How long each input sleeps.
    fn delays(self) -> Vec<Duration> {
        match self {
            Workload::Random => {
                // splitmix64 from a fixed seed: the same delays every run.
                let mut state: u64 = 0x5eed;
                (0..INPUTS)
                    .map(|_| {
                        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        let mut z = state;
                        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                        Duration::from_micros((z ^ (z >> 31)) % 2_001)
                    })
                    .collect()
            }
            Workload::SlowHead => (0..INPUTS)
                .map(|i| Duration::from_millis(if i == 0 { 200 } else { 1 }))
                .collect(),
        }
    }

    fn ideal(self) -> Duration {
        let delays = self.delays();
        match self {
            Workload::Random => {
                let total: Duration = delays.iter().sum();
                (total / WINDOW as u32).max(delays.iter().copied().max().unwrap())
            }
            Workload::SlowHead => delays[0] + delays[1..].iter().sum::<Duration>() / WINDOW as u32,
        }
    }

    /// The fastest any contender that pulls at most `WINDOW` inputs past the
    /// consumer can be, with free scheduling and exact sleeps: input `i`
    /// starts once input `i - WINDOW` is consumed, and is consumed once it
    /// and every input before it finished.
    fn window_bound(self) -> Duration {
        let delays = self.delays();
        let mut consumed = Vec::with_capacity(INPUTS);
        let mut last = Duration::ZERO;
        for (i, delay) in delays.iter().enumerate() {
            let start = if i >= WINDOW {
                consumed[i - WINDOW]
            } else {
                Duration::ZERO
            };
            last = last.max(start + *delay);
            consumed.push(last);
        }
        last
    }

    fn describe(self) -> String {
        let delays = self.delays();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        match self {
            Workload::Random => format!(
                "random 0-2 ms per input (sum {:.0} ms, longest {:.2} ms); ideal max(sum / {WINDOW}, longest) = {:.1} ms",
                ms(delays.iter().sum()),
                ms(delays.iter().copied().max().unwrap()),
                ms(self.ideal())
            ),
            Workload::SlowHead => format!(
                "slow head: input 0 200 ms, the rest 1 ms; ideal 200 ms + 1,999 ms / {WINDOW} = {:.1} ms",
                ms(self.ideal())
            ),
        }
    }
}

/// Results completed but not yet consumed: the work counts one up when it
/// finishes, the consumer one down when it receives the result.
#[derive(Default)]
struct Meter {
    outstanding: AtomicUsize,
    peak: AtomicUsize,
}

impl Meter {
    fn produced(&self) {
        let now = self.outstanding.fetch_add(1, Relaxed) + 1;
        self.peak.fetch_max(now, Relaxed);
    }

    fn consumed(&self) {
        self.outstanding.fetch_sub(1, Relaxed);
    }
}

/// One run's inputs and its meter.
#[derive(Clone)]
struct Job {
    delays: Arc<[Duration]>,
    meter: Arc<Meter>,
}

impl Job {
    fn new(workload: Workload) -> Job {
        Job {
            delays: workload.delays().into(),
            meter: Arc::default(),
        }
    }

    /// The work per input: sleep, then return a value derived from it.
    fn work(&self) -> impl Fn(usize) -> usize + Clone + Send + Sync + 'static {
        let job = self.clone();
        move |i| {
            thread::sleep(job.delays[i]);
            job.meter.produced();
            i * 2
        }
    }

    fn consumer(&self) -> Consumer<'_> {
        Consumer {
            meter: &self.meter,
            next: 0,
        }
    }
}

/// Checks that results arrive in input order, and counts them.
struct Consumer<'a> {
    meter: &'a Meter,
    next: usize,
}

impl Consumer<'_> {
    fn take(&mut self, value: usize) {
        assert_eq!(value, self.next * 2, "result {} out of order", self.next);
        self.meter.consumed();
        self.next += 1;
    }

    fn finish(self) {
        assert_eq!(self.next, INPUTS, "results missing");
    }
}

fn kasync_iter(rt: &kasync::Runtime, job: &Job) {
    let domain = rt.domain("ordered");
    let mut consumer = job.consumer();
    for result in domain.map_ordered(0..INPUTS, WINDOW, job.work()) {
        consumer.take(result.unwrap());
    }
    consumer.finish();
}

fn kasync_stream(rt: &kasync::Runtime, job: &Job) {
    let domain = rt.domain("ordered");
    let mut consumer = job.consumer();
    futures::executor::block_on(async {
        let mut results = domain.map_ordered(0..INPUTS, WINDOW, job.work()).into_stream();
        while let Some(result) = results.next().await {
            consumer.take(result.unwrap());
        }
    });
    consumer.finish();
}

fn tokio_buffered(rt: &tokio::runtime::Runtime, job: &Job) {
    let work = job.work();
    let mut consumer = job.consumer();
    rt.block_on(async {
        let mut results = futures::stream::iter(0..INPUTS)
            .map(|i| {
                let work = work.clone();
                tokio::task::spawn_blocking(move || work(i))
            })
            .buffered(WINDOW);
        while let Some(result) = results.next().await {
            consumer.take(result.unwrap());
        }
    });
    consumer.finish();
}

fn blocking_buffered(job: &Job) {
    let work = job.work();
    let mut consumer = job.consumer();
    futures::executor::block_on(async {
        let mut results = futures::stream::iter(0..INPUTS)
            .map(|i| {
                let work = work.clone();
                blocking::unblock(move || work(i))
            })
            .buffered(WINDOW);
        while let Some(value) = results.next().await {
            consumer.take(value);
        }
    });
    consumer.finish();
}

fn rayon_collect(pool: &rayon::ThreadPool, job: &Job) {
    let work = job.work();
    let mut consumer = job.consumer();
    let values: Vec<usize> = pool.install(|| (0..INPUTS).into_par_iter().map(&work).collect());
    for value in values {
        consumer.take(value);
    }
    consumer.finish();
}

/// The hand-written version: 64 threads take inputs from a shared counter
/// and send `(index, value)` back; the consumer reorders them in a BTreeMap.
/// Nothing stops the workers from running ahead of the consumer.
fn std_threads(job: &Job) {
    let work = job.work();
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, usize)>();
    let mut consumer = job.consumer();
    thread::scope(|s| {
        for _ in 0..WINDOW {
            let (tx, next, work) = (tx.clone(), &next, &work);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= INPUTS || tx.send((i, work(i))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut reorder = BTreeMap::new();
        for (i, value) in rx {
            reorder.insert(i, value);
            while let Some(value) = reorder.remove(&consumer.next) {
                consumer.take(value);
            }
        }
    });
    consumer.finish();
}

/// The contenders, and whether each holds at most `WINDOW` results.
const CONTENDERS: [(&str, bool); 6] = [
    ("kasync map_ordered", true),
    ("kasync map_ordered.into_stream", true),
    ("tokio spawn_blocking+buffered", true),
    ("blocking::unblock+buffered", true),
    ("rayon par_iter.collect (64 thr)", false),
    ("std 64 threads+reorder buffer", false),
];

/// Builds contender `name`'s runtime or pool, once per process.
fn contender(name: &str) -> Box<dyn FnMut(&Job)> {
    match name {
        "kasync map_ordered" => {
            let rt = kasync::Runtime::new().unwrap();
            Box::new(move |job| kasync_iter(&rt, job))
        }
        "kasync map_ordered.into_stream" => {
            let rt = kasync::Runtime::new().unwrap();
            Box::new(move |job| kasync_stream(&rt, job))
        }
        "tokio spawn_blocking+buffered" => {
            let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
            Box::new(move |job| tokio_buffered(&rt, job))
        }
        "blocking::unblock+buffered" => Box::new(blocking_buffered),
        "rayon par_iter.collect (64 thr)" => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(WINDOW).build().unwrap();
            Box::new(move |job| rayon_collect(&pool, job))
        }
        "std 64 threads+reorder buffer" => Box::new(std_threads),
        other => panic!("no contender {other:?}"),
    }
}

use common::threads_now;

/// Samples the process's thread count every millisecond until stopped.
struct ThreadSampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<usize>,
}

impl ThreadSampler {
    fn start() -> ThreadSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = thread::spawn({
            let stop = stop.clone();
            move || {
                let mut peak = 0;
                loop {
                    peak = peak.max(threads_now());
                    if stop.load(Relaxed) {
                        return peak;
                    }
                    thread::sleep(Duration::from_millis(1));
                }
            }
        });
        ThreadSampler { stop, handle }
    }

    /// The peak thread count, not counting the sampler itself.
    fn stop(self) -> usize {
        self.stop.store(true, Relaxed);
        self.handle.join().unwrap().saturating_sub(1)
    }
}

/// One measured run.
#[derive(Clone, Copy)]
struct Sample {
    took: Duration,
    threads_before: usize,
    threads_peak: usize,
    buffered_peak: usize,
}

/// In a child process: builds the contender, warms it up with one random
/// run, then measures one run of the workload; prints the sample.
fn run_child(spec: &str) {
    let (name, workload) = spec.split_once('|').expect("contender|workload");
    let workload = Workload::from_name(workload);
    let mut run = contender(name);
    run(&Job::new(Workload::Random));
    // Let the warm-up's exiting threads (the hand-written contender's) go.
    thread::sleep(Duration::from_millis(50));
    let job = Job::new(workload);
    let threads_before = threads_now();
    let sampler = ThreadSampler::start();
    let start = Instant::now();
    run(&job);
    let took = start.elapsed();
    let threads_peak = sampler.stop();
    println!(
        "{} {} {} {}",
        took.as_nanos(),
        threads_before,
        threads_peak,
        job.meter.peak.load(Relaxed)
    );
}

/// Runs one child; `Err` with what went wrong if it failed or hung.
fn child(name: &str, workload: Workload) -> Result<Sample, String> {
    let fields = common::child_numbers(CHILD_ENV, &format!("{name}|{}", workload.name()), CHILD_TIMEOUT)?;
    match fields[..] {
        [nanos, before, peak, buffered] => Ok(Sample {
            took: Duration::from_nanos(nanos),
            threads_before: before as usize,
            threads_peak: peak as usize,
            buffered_peak: buffered as usize,
        }),
        _ => Err(format!("unexpected output {fields:?}")),
    }
}

fn median(mut times: Vec<Duration>) -> Option<Duration> {
    times.sort();
    times.get(times.len() / 2).copied()
}

fn print_table(workload: Workload, samples: &BTreeMap<&str, Vec<Sample>>, failures: &BTreeMap<&str, Vec<String>>) {
    let ideal = workload.ideal();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let medians: Vec<(&str, bool, Option<Duration>)> = CONTENDERS
        .iter()
        .map(|&(name, bounded)| {
            let times = samples
                .get(name)
                .map(|s| s.iter().map(|s| s.took).collect())
                .unwrap_or_default();
            (name, bounded, median(times))
        })
        .collect();
    let best_bounded = medians.iter().filter(|m| m.1).filter_map(|m| m.2).min();
    println!(
        "\nordered, {}; window-bound ideal {:.1} ms: {INPUTS} inputs, window {WINDOW}, {ROUNDS} interleaved rounds, \
         a fresh process per run",
        workload.describe(),
        ms(workload.window_bound())
    );
    println!(
        "{:<44} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "contender", "median ms", "min ms", "x best-b", "x ideal", "x win", "thr idle", "thr peak", "buffered"
    );
    let mut rows = medians;
    rows.sort_by_key(|r| r.2.unwrap_or(Duration::MAX));
    for (name, bounded, median) in rows {
        let runs = samples.get(name).map(Vec::as_slice).unwrap_or_default();
        let label = if bounded {
            name.to_string()
        } else {
            format!("{name} [unbounded]")
        };
        let Some(median) = median else {
            println!("{label:<44} {:>9}", "failed");
            continue;
        };
        let min = runs.iter().map(|s| s.took).min().unwrap();
        let max_of = |f: fn(&Sample) -> usize| runs.iter().map(f).max().unwrap();
        println!(
            "{:<44} {:>9.1} {:>9.1} {:>8} {:>8.2} {:>8.2} {:>8} {:>8} {:>8}",
            label,
            ms(median),
            ms(min),
            best_bounded.map_or("-".into(), |b| format!("{:.2}", median.as_secs_f64() / b.as_secs_f64())),
            median.as_secs_f64() / ideal.as_secs_f64(),
            median.as_secs_f64() / workload.window_bound().as_secs_f64(),
            max_of(|s| s.threads_before),
            max_of(|s| s.threads_peak),
            max_of(|s| s.buffered_peak),
        );
    }
    for (name, errors) in failures {
        println!("  {name}: {} run(s) failed; first: {}", errors.len(), errors[0]);
    }
}

/// Every contender on both workloads, a fresh process per run, in rounds.
fn print_ordered() {
    let mut samples: Vec<BTreeMap<&str, Vec<Sample>>> = vec![BTreeMap::new(); Workload::ALL.len()];
    let mut failures: Vec<BTreeMap<&str, Vec<String>>> = vec![BTreeMap::new(); Workload::ALL.len()];
    for round in 0..ROUNDS {
        for (w, &workload) in Workload::ALL.iter().enumerate() {
            for k in 0..CONTENDERS.len() {
                let name = CONTENDERS[(round + k) % CONTENDERS.len()].0;
                match child(name, workload) {
                    Ok(sample) => samples[w].entry(name).or_default().push(sample),
                    Err(e) => failures[w].entry(name).or_default().push(e),
                }
            }
        }
    }
    for (w, &workload) in Workload::ALL.iter().enumerate() {
        print_table(workload, &samples[w], &failures[w]);
    }
    println!(
        "(x best-b: to the fastest contender that holds at most {WINDOW} results; x win: to the window-bound ideal; \
         thr idle / thr peak: process \
         threads before the measured run, after a warm-up, and at its peak, the 1 ms sampler not counted, max over \
         rounds; buffered: peak results completed but not yet consumed, max over rounds)"
    );
}

/// What one call costs from a blocking thread, in interleaved rounds.
fn print_per_call() {
    const ROUNDS: usize = 11;
    let rt = kasync::Runtime::new().unwrap();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let results = Results::default();
    results.interleaved(
        ROUNDS,
        &mut [
            ("kasync spawn+wait", &mut || {
                for _ in 0..CALLS {
                    black_box(rt.spawn(|_| 1u64).wait().unwrap());
                }
            }),
            // `wait` runs a still-queued call on the waiting thread; awaiting
            // never does, so this one hands every call to a worker.
            ("kasync block_on(spawn)", &mut || {
                for _ in 0..CALLS {
                    black_box(futures::executor::block_on(rt.spawn(|_| 1u64)).unwrap());
                }
            }),
            ("tokio block_on(spawn_blocking)", &mut || {
                for _ in 0..CALLS {
                    black_box(tokio_rt.block_on(tokio_rt.spawn_blocking(|| 1u64)).unwrap());
                }
            }),
            ("block_on(blocking::unblock)", &mut || {
                for _ in 0..CALLS {
                    black_box(futures::executor::block_on(blocking::unblock(|| 1u64)));
                }
            }),
            ("std::thread::spawn+join", &mut || {
                for _ in 0..CALLS {
                    black_box(thread::spawn(|| 1u64).join().unwrap());
                }
            }),
        ],
    );
    results.print_per_call(
        &format!("one call from a blocking thread, {CALLS} in sequence: {ROUNDS} interleaved rounds"),
        CALLS,
        "kasync spawn+wait",
    );
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        run_child(&spec);
        return;
    }
    print_ordered();
    print_per_call();
}
