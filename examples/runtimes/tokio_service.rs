//! A service start-up on tokio: subsystems initialise in parallel — some with
//! async I/O, some with blocking calls — register in cookie order, and the
//! service awaits the start-up domain's barrier before it serves.
//!
//! Run with `cargo run --release -p kasync-examples --example tokio_service --features tokio`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kasync::{Cookie, Domain, Runtime};

/// A subsystem: its name, whether its init is async, and how long it takes.
const SUBSYSTEMS: &[(&str, bool, u64)] = &[
    ("config", true, 15),
    ("tls-certificates", false, 30),
    ("database-pool", false, 45),
    ("cache-warmup", true, 40),
    ("search-index", false, 35),
    ("metrics", true, 10),
    ("feature-flags", true, 20),
    ("geoip-db", false, 25),
];

struct Registered {
    name: &'static str,
    cookie: Cookie,
    kind: &'static str,
    ready: Duration,
    registered: Duration,
}

type Registry = Arc<Mutex<Vec<Registered>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let start = Instant::now();
    // Built inside the tokio runtime, kasync attaches to it: blocking inits
    // run on tokio's blocking pool, async inits are tokio tasks.
    let rt = Runtime::new().expect("inside a tokio runtime");
    let startup: Domain = rt.domain("startup");
    let registry: Registry = Arc::default();

    for &(name, is_async, ms) in SUBSYSTEMS {
        let (domain, registry) = (startup.clone(), registry.clone());
        if is_async {
            startup.schedule_async(move |cookie| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await; // async I/O
                let ready = start.elapsed();
                // Awaiting a barrier holds no thread.
                domain.synchronize_cookie(cookie).await.expect("earlier subsystems");
                register(&registry, name, cookie, "async", ready, start);
            });
        } else {
            startup.schedule(move |cookie| {
                std::thread::sleep(Duration::from_millis(ms)); // blocking library call
                let ready = start.elapsed();
                domain.synchronize_cookie(cookie).wait().expect("earlier subsystems");
                register(&registry, name, cookie, "blocking", ready, start);
            });
        }
    }

    // Serve only once every subsystem has registered.
    startup.synchronize().await.expect("start-up finished");
    let up = start.elapsed();

    println!(
        "{:<18} {:>6} {:<9} {:>9} {:>13}",
        "subsystem", "cookie", "kind", "ready ms", "registered ms"
    );
    for r in registry.lock().unwrap().iter() {
        println!(
            "{:<18} {:>6} {:<9} {:>9.1} {:>13.1}",
            r.name,
            r.cookie.to_string(),
            r.kind,
            r.ready.as_secs_f64() * 1e3,
            r.registered.as_secs_f64() * 1e3
        );
    }
    let sequential: u64 = SUBSYSTEMS.iter().map(|s| s.2).sum();
    println!(
        "\nserving after {:.1} ms on the {} adapter (sequential start-up: {} ms)",
        up.as_secs_f64() * 1e3,
        rt.executor_name(),
        sequential
    );
}

fn register(
    registry: &Registry,
    name: &'static str,
    cookie: Cookie,
    kind: &'static str,
    ready: Duration,
    start: Instant,
) {
    registry.lock().unwrap().push(Registered {
        name,
        cookie,
        kind,
        ready,
        registered: start.elapsed(),
    });
}
