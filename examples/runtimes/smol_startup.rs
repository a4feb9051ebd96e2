//! An application start-up on smol: blocking probes run in parallel on
//! kasync's worker threads, async probes run as tasks on smol's executor,
//! each registers in cookie order, and the application awaits the start-up
//! domain's barrier from inside `smol::block_on`.
//!
//! It also shows what a blocking `.wait()` does where it would stall smol's
//! executor (inside an async call): it returns a clear error at once.
//!
//! Run with `cargo run --release -p kasync-examples --example smol_startup --features smol`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kasync::{Runtime, SyncError};

/// A probe: its name, whether it is async, and how long it takes.
const PROBES: &[(&str, bool, u64)] = &[
    ("usb", false, 30),
    ("network", true, 25),
    ("disks", false, 40),
    ("sensors", true, 10),
    ("audio", false, 20),
    ("bluetooth", true, 35),
];

fn main() {
    let start = Instant::now();
    let rt = Runtime::builder()
        .executor(kasync::executor::Smol)
        .build()
        .expect("the smol adapter");
    let startup = rt.domain("startup");
    let order = Arc::new(Mutex::new(Vec::new()));

    for &(name, is_async, ms) in PROBES {
        let (domain, order) = (startup.clone(), order.clone());
        if is_async {
            startup.schedule_async(move |cookie| async move {
                smol::Timer::after(Duration::from_millis(ms)).await;
                // Awaiting holds no thread.
                domain.synchronize_cookie(cookie).await.expect("earlier probes");
                order.lock().unwrap().push((name, cookie, start.elapsed()));
            });
        } else {
            startup.schedule(move |cookie| {
                std::thread::sleep(Duration::from_millis(ms)); // a blocking driver call
                domain.synchronize_cookie(cookie).wait().expect("earlier probes");
                order.lock().unwrap().push((name, cookie, start.elapsed()));
            });
        }
    }

    // Blocking inside an async call would stall smol's executor: kasync
    // refuses with an error instead of hanging.
    let (tx, rx) = std::sync::mpsc::channel();
    let d = startup.clone();
    rt.exclusive_domain("misuse").schedule_async(move |_| async move {
        tx.send(d.synchronize().wait()).unwrap();
    });
    match rx.recv().unwrap() {
        Err(error @ SyncError::BlockingNotAllowed { .. }) => println!("`.wait()` inside an async call: {error}"),
        other => println!("`.wait()` inside an async call returned {other:?}"),
    }

    smol::block_on(async {
        startup.synchronize().await.expect("start-up finished");
    });
    println!("\n{:<10} {:>6} {:>14}", "probe", "cookie", "registered ms");
    for (name, cookie, at) in order.lock().unwrap().iter() {
        println!("{name:<10} {:>6} {:>14.1}", cookie.to_string(), at.as_secs_f64() * 1e3);
    }
    let sequential: u64 = PROBES.iter().map(|p| p.2).sum();
    println!(
        "\nstarted in {:.1} ms on the {} adapter (sequential: {sequential} ms)",
        start.elapsed().as_secs_f64() * 1e3,
        rt.executor_name()
    );
}
