//! The nested benchmark: 16 parents each start 4 children that block 5 ms,
//! then wait for them with a blocking wait. With a pool capped at 8 threads,
//! the 8 threads can all become parents waiting for children that never get a
//! thread: tokio's blocking pool and rayon deadlock (shown once each, with a
//! timeout). kasync with `max_workers(8)` finishes because waiting parents
//! run their own children; at default settings it is compared with the
//! `blocking` crate. Run with `cargo bench -p kasync-benches --bench nested`.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use criterion::Criterion;

mod common;
use common::Results;

const PARENTS: usize = 16;
const CHILDREN: usize = 4;
const BLOCK: Duration = Duration::from_millis(5);
/// How long a peer gets before it is declared deadlocked.
const DEADLOCK_AFTER: Duration = Duration::from_secs(2);

fn nested_kasync(rt: &kasync::Runtime) {
    let domain = rt.exclusive_domain("parents");
    for p in 0..PARENTS {
        let children = rt.exclusive_domain(&format!("children-{p}"));
        domain.schedule(move |_| {
            for _ in 0..CHILDREN {
                children.schedule(|_| thread::sleep(BLOCK));
            }
            children.synchronize().wait().unwrap();
        });
    }
    domain.synchronize().wait().unwrap();
}

fn nested_blocking() {
    let parents: Vec<_> = (0..PARENTS)
        .map(|_| {
            blocking::unblock(|| {
                let children: Vec<_> = (0..CHILDREN)
                    .map(|_| blocking::unblock(|| thread::sleep(BLOCK)))
                    .collect();
                futures::executor::block_on(futures::future::join_all(children));
            })
        })
        .collect();
    futures::executor::block_on(futures::future::join_all(parents));
}

fn nested_tokio(rt: &tokio::runtime::Runtime) {
    let handle = rt.handle().clone();
    rt.block_on(async move {
        let mut parents = tokio::task::JoinSet::new();
        for _ in 0..PARENTS {
            let handle = handle.clone();
            parents.spawn_blocking(move || {
                let children: Vec<_> = (0..CHILDREN)
                    .map(|_| handle.spawn_blocking(|| thread::sleep(BLOCK)))
                    .collect();
                for child in children {
                    handle.block_on(child).unwrap();
                }
            });
        }
        while parents.join_next().await.is_some() {}
    });
}

fn nested_rayon(pool: &rayon::ThreadPool) {
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..PARENTS {
        let done_tx = done_tx.clone();
        pool.spawn(move || {
            let (tx, rx) = mpsc::channel();
            for _ in 0..CHILDREN {
                let tx = tx.clone();
                rayon::spawn(move || {
                    thread::sleep(BLOCK);
                    tx.send(()).unwrap();
                });
            }
            for _ in 0..CHILDREN {
                rx.recv().unwrap(); // a blocking wait, as in a real parent
            }
            done_tx.send(()).unwrap();
        });
    }
    for _ in 0..PARENTS {
        done_rx.recv().unwrap();
    }
}

/// Runs `f` once on its own thread; `false` if it did not finish in time (the
/// stuck threads are leaked: the process ends soon after).
fn finishes(f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(DEADLOCK_AFTER).is_ok()
}

fn main() {
    let results = Results::default();
    let mut c = Criterion::default().configure_from_args();
    {
        let mut group = c.benchmark_group("nested_16x4x5ms");
        group.sample_size(20).warm_up_time(Duration::from_millis(300));
        let capped = kasync::Runtime::builder().max_workers(8).build().unwrap();
        group.bench_function("kasync max_workers(8)", |b| {
            b.iter_custom(|iters| results.timed("kasync max_workers(8)", iters, || nested_kasync(&capped)))
        });
        let default = kasync::Runtime::new().unwrap();
        group.bench_function("kasync default", |b| {
            b.iter_custom(|iters| results.timed("kasync default", iters, || nested_kasync(&default)))
        });
        group.bench_function("blocking::unblock default", |b| {
            b.iter_custom(|iters| results.timed("blocking::unblock default", iters, nested_blocking))
        });
        group.finish();
    }
    // The capped peers, once each, with a deadline.
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(8)
        .build()
        .unwrap();
    let tokio_ok = finishes(move || {
        nested_tokio(&tokio_rt);
        std::mem::forget(tokio_rt);
    });
    if tokio_ok {
        println!("tokio with max_blocking_threads(8) finished this time");
    } else {
        results.failed("tokio spawn_blocking, max_blocking_threads(8)");
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(8).build().unwrap();
    let rayon_ok = finishes(move || {
        pool.install(|| nested_rayon(&pool));
        std::mem::forget(pool);
    });
    if rayon_ok {
        println!("rayon with 8 threads finished this time");
    } else {
        results.failed("rayon spawn + blocking wait, 8 threads");
    }
    c.final_summary();
    results.print_ratios(
        &format!(
            "nested: {PARENTS} parents x {CHILDREN} children x {} ms",
            BLOCK.as_millis()
        ),
        BLOCK,
    );
}
