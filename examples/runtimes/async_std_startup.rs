//! An application start-up on async-std: blocking probes run in parallel on
//! async-std's blocking pool, async probes run as async-std tasks, each
//! registers in cookie order, and the application awaits the start-up
//! domain's barrier from inside `async_std::task::block_on`.
//!
//! It also shows what a blocking `.wait()` does inside `block_on`, where it
//! would stall the executor: it returns a clear error at once.
//!
//! async-std is deprecated upstream in favour of smol (see
//! `smol_startup.rs`); the adapter is kept for applications that still run
//! on it.
//!
//! Run with `cargo run --release -p kasync-examples --example async_std_startup --features async-std`.

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
        .executor(kasync::executor::AsyncStd)
        .build()
        .expect("the async-std adapter");
    let startup = rt.domain("startup");
    let order = Arc::new(Mutex::new(Vec::new()));

    for &(name, is_async, ms) in PROBES {
        let (domain, order) = (startup.clone(), order.clone());
        if is_async {
            startup.schedule_async(move |cookie| async move {
                async_std::task::sleep(Duration::from_millis(ms)).await;
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

    async_std::task::block_on(async {
        // Blocking here would stall the executor: kasync refuses with an
        // error instead of hanging.
        match startup.synchronize().wait() {
            Err(error @ SyncError::BlockingNotAllowed { .. }) => println!("`.wait()` inside block_on: {error}"),
            other => println!("`.wait()` inside block_on returned {other:?}"),
        }
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
