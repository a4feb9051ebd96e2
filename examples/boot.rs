//! A simulated boot: 96 slow device probes run in parallel and register in
//! cookie order, the kernel's "probe in parallel, register in order" pattern.
//!
//! Run it with `cargo run --release --example boot`.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kasync::Cookie;

const PROBES: usize = 96;

/// One row of the boot log.
struct Entry {
    probe: usize,
    cookie: Cookie,
    thread: String,
    start: Duration,
    probed: Duration,
    registered: Duration,
}

/// How long probe `n` blocks: 2 to 40 ms, spread deterministically.
fn probe_time(n: usize) -> Duration {
    Duration::from_millis(2 + (n as u64 * 37 % 39))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let boot = Instant::now();
    let log = Arc::new(Mutex::new(Vec::with_capacity(PROBES)));
    for probe in 0..PROBES {
        let log = log.clone();
        kasync::schedule(move |cookie| {
            let start = boot.elapsed();
            // The slow part: blocking hardware access, run in parallel.
            thread::sleep(probe_time(probe));
            let probed = boot.elapsed();
            // Register in order: wait for every probe scheduled before this one.
            kasync::synchronize_cookie(cookie)
                .wait()
                .expect("earlier probes finished");
            log.lock().unwrap().push(Entry {
                probe,
                cookie,
                thread: thread::current().name().unwrap_or("?").to_string(),
                start,
                probed,
                registered: boot.elapsed(),
            });
        });
    }
    kasync::synchronize_full().wait().expect("every probe finished");
    let total = boot.elapsed();

    let log = log.lock().unwrap();
    println!(
        "{:>5}  {:>6}  {:<18} {:>9} {:>9} {:>11}",
        "probe", "cookie", "thread", "start ms", "probed ms", "registered"
    );
    for e in log.iter() {
        println!(
            "{:>5}  {:>6}  {:<18} {:>9.2} {:>9.2} {:>11.2}",
            e.probe,
            e.cookie.to_string(),
            e.thread,
            ms(e.start),
            ms(e.probed),
            ms(e.registered)
        );
    }
    let in_order = log.windows(2).all(|w| w[0].cookie < w[1].cookie);
    let sequential: Duration = (0..PROBES).map(probe_time).sum();
    let longest = (0..PROBES).map(probe_time).max().unwrap_or_default();
    let stats = kasync::runtime().stats();
    println!();
    println!(
        "probes registered in cookie order: {}",
        if in_order { "yes" } else { "NO" }
    );
    println!(
        "boot took {:.1} ms; sequential would take {:.1} ms ({:.1}x faster); the longest probe alone is {:.1} ms",
        ms(total),
        ms(sequential),
        sequential.as_secs_f64() / total.as_secs_f64(),
        ms(longest)
    );
    println!(
        "workers: peak {}, spawned {}; stalls detected {}; calls run by helping waiters {}; compensations {}",
        stats.peak_workers, stats.spawned, stats.stalls, stats.helped, stats.compensations
    );
    assert!(in_order, "registration must follow cookie order");
}
