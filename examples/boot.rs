//! A simulated boot: 96 slow device probes run in parallel and register in
//! cookie order, the kernel's "probe in parallel, register in order" pattern.
//! Every fourth device then loads its firmware in a second domain, in
//! parallel with the remaining probes.
//!
//! Run it with `cargo run --release --example boot [OUTPUT_DIR]`. Besides its
//! table it writes `boot.svg` (a boot chart: one row per thread, one bar per
//! call) and `boot.trace.json` (open it in <https://ui.perfetto.dev> or
//! `chrome://tracing`) to `OUTPUT_DIR`, the current directory by default.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use kasync::{Cookie, Runtime};

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
    let out_dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    // The global runtime (`kasync::schedule`) works the same; an own runtime
    // lets us record the timeline.
    let rt = Runtime::builder()
        .record_timeline(true)
        .build()
        .expect("a runtime on native threads");
    let probes = rt.domain("probes");
    let firmware = rt.domain("firmware");
    let boot = Instant::now();
    let log = Arc::new(Mutex::new(Vec::with_capacity(PROBES)));
    for probe in 0..PROBES {
        let log = log.clone();
        let (in_order, firmware) = (probes.clone(), firmware.clone());
        probes.schedule(move |cookie| {
            let start = boot.elapsed();
            // The slow part: blocking hardware access, run in parallel.
            thread::sleep(probe_time(probe));
            let probed = boot.elapsed();
            // Register in order: wait for every probe scheduled before this one.
            in_order
                .synchronize_cookie(cookie)
                .wait()
                .expect("earlier probes finished");
            if probe % 4 == 0 {
                // Loading firmware needs no ordering: it runs in parallel.
                firmware.schedule(move |_| thread::sleep(probe_time(probe + 1) / 2));
            }
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
    rt.synchronize_full().wait().expect("every probe finished");
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
    let stats = rt.stats();
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

    let timeline = rt.timeline().expect("recording is on");
    let svg = out_dir.join("boot.svg");
    let trace = out_dir.join("boot.trace.json");
    timeline.write_svg(&svg).expect("boot.svg written");
    timeline.write_chrome_trace(&trace).expect("boot.trace.json written");
    println!("boot chart: {}", svg.display());
    println!("timeline (Perfetto / chrome://tracing): {}", trace.display());
    assert!(in_order, "registration must follow cookie order");
}
