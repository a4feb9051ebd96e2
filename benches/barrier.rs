//! Barrier costs, in one run:
//!
//! * **wake-up latency**: how long after the last covered call finishes a
//!   blocked waiter is running again (median over many rounds), against the
//!   same hand-off through a std channel, a tokio `JoinHandle` and a
//!   `blocking` task: the price of one thread wake-up is the floor for all;
//! * **finished**: what `synchronize_cookie(..).wait()` costs when every
//!   covered call has already finished (no lock is taken), alone and from two
//!   threads at once.
//!
//! Run with `cargo bench -p kasync-benches --bench barrier`.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kasync::{Cookie, Runtime};

const ROUNDS: usize = 2000;
/// How long the call works before it ends: long enough for the waiter to
/// be blocked (this is a benchmark; tests never sleep to synchronise).
const WORK: Duration = Duration::from_micros(200);

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Rounds of: start a call that works, then records when it ends; block
/// until it has ended; the sample is the time from its end to our return.
fn latency(mut round: impl FnMut() -> (Instant, Instant)) -> Duration {
    for _ in 0..50 {
        round();
    }
    median(
        (0..ROUNDS)
            .map(|_| {
                let (ended, woke) = round();
                woke.saturating_duration_since(ended)
            })
            .collect(),
    )
}

fn kasync_wake(rt: &Runtime) -> Duration {
    let domain = rt.domain("latency");
    let (tx, rx) = mpsc::channel();
    latency(|| {
        let tx = tx.clone();
        let call = domain.schedule(move |_| {
            thread::sleep(WORK);
            tx.send(Instant::now()).unwrap();
        });
        let after = Cookie::new(call.get() + 1).unwrap();
        domain.synchronize_cookie(after).wait_no_help().unwrap();
        let woke = Instant::now();
        (rx.recv().unwrap(), woke)
    })
}

fn channel_wake() -> Duration {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<Instant>();
    thread::spawn(move || {
        while go_rx.recv().is_ok() {
            thread::sleep(WORK);
            done_tx.send(Instant::now()).unwrap();
        }
    });
    latency(|| {
        go_tx.send(()).unwrap();
        let ended = done_rx.recv().unwrap();
        (ended, Instant::now())
    })
}

fn tokio_wake(rt: &tokio::runtime::Runtime) -> Duration {
    latency(|| {
        let handle = rt.spawn_blocking(|| {
            thread::sleep(WORK);
            Instant::now()
        });
        let ended = rt.block_on(handle).unwrap();
        (ended, Instant::now())
    })
}

fn blocking_wake() -> Duration {
    latency(|| {
        let task = blocking::unblock(|| {
            thread::sleep(WORK);
            Instant::now()
        });
        let ended = futures::executor::block_on(task);
        (ended, Instant::now())
    })
}

/// ns per `synchronize_cookie(finished).wait()` on each of `threads` threads.
fn finished_barrier(rt: &Runtime, threads: usize) -> f64 {
    const WAITS: u32 = 1_000_000;
    let domain = rt.domain("finished");
    let last = domain.schedule(|_| {});
    domain.synchronize().wait().unwrap();
    let after = Cookie::new(last.get() + 1).unwrap();
    let per_thread: Vec<Duration> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let start = Instant::now();
                    for _ in 0..WAITS {
                        domain.synchronize_cookie(after).wait().unwrap();
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    per_thread.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1e9 / (WAITS as f64 * threads as f64)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing here is filtered.
    let rt = Runtime::new().unwrap();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let rows = [
        ("kasync barrier (wait_no_help)", kasync_wake(&rt)),
        ("std mpsc channel", channel_wake()),
        ("tokio spawn_blocking + block_on", tokio_wake(&tokio_rt)),
        ("blocking::unblock + block_on", blocking_wake()),
    ];
    let floor = rows[1].1;
    println!("\nwake-up latency after the last covered call ends, median of {ROUNDS} rounds");
    println!("{:<36} {:>12} {:>14}", "contender", "median µs", "x std channel");
    for (name, d) in rows {
        println!(
            "{name:<36} {:>12.1} {:>14.2}",
            d.as_secs_f64() * 1e6,
            d.as_secs_f64() / floor.as_secs_f64()
        );
    }
    println!("\nsynchronize_cookie(..).wait() on finished calls (lock-free)");
    for threads in [1, 2] {
        println!(
            "{threads} thread(s): {:>8.1} ns per wait",
            finished_barrier(&rt, threads)
        );
    }
}
