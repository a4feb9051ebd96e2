//! The tiny benchmark: 100,000 calls that do nothing, then one barrier for
//! all of them. It measures what scheduling itself costs: kasync's closures
//! and caller-owned items against rayon, tokio (`spawn` + `TaskTracker`,
//! `spawn_blocking` + `JoinSet`), the `blocking` crate and a plain loop, in
//! one run, printing nanoseconds per call and the ratio to rayon; then the
//! close contenders again in interleaved rounds (fairer on a machine whose
//! speed drifts). "kasync, 256 idle workers" schedules on a runtime that a
//! boot of 256 sleeping calls grew first: what short calls cost once the pool
//! is large.
//!
//! Run with `cargo bench -p kasync-benches --bench tiny`.

use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;
use kasync::{Cookie, Item, Work};

mod common;
use common::Results;

const CALLS: usize = 100_000;

struct Noop;

impl Work for Noop {
    fn run(&mut self, cookie: Cookie) {
        black_box(cookie);
    }
}

fn kasync_closures(rt: &kasync::Runtime) {
    for i in 0..CALLS {
        rt.schedule(move |_| {
            black_box(i);
        });
    }
    rt.synchronize_full().wait().unwrap();
}

fn kasync_items(rt: &kasync::Runtime, items: &mut [Item<Noop>]) {
    // Borrowed items: no allocation per call; the scope is the barrier.
    rt.default_domain().scope(|scope| {
        for item in items.iter_mut() {
            scope.submit(item);
        }
    });
}

fn rayon_scope(pool: &rayon::ThreadPool) {
    pool.scope(|s| {
        for i in 0..CALLS {
            s.spawn(move |_| {
                black_box(i);
            });
        }
    });
}

fn tokio_spawn(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let tracker = tokio_util::task::TaskTracker::new();
        for i in 0..CALLS {
            tracker.spawn(async move {
                black_box(i);
            });
        }
        tracker.close();
        tracker.wait().await;
    });
}

fn tokio_spawn_blocking(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..CALLS {
            set.spawn_blocking(move || {
                black_box(i);
            });
        }
        while set.join_next().await.is_some() {}
    });
}

fn blocking_unblock() {
    let tasks: Vec<_> = (0..CALLS)
        .map(|i| {
            blocking::unblock(move || {
                black_box(i);
            })
        })
        .collect();
    futures::executor::block_on(futures::future::join_all(tasks));
}

fn sequential() {
    for i in 0..CALLS {
        black_box(i);
    }
}

/// A runtime whose pool a boot of 256 sleeping calls grew, and which keeps
/// its idle workers.
fn grown_runtime() -> kasync::Runtime {
    let rt = kasync::Runtime::builder().keep_alive(Duration::MAX).build().unwrap();
    for _ in 0..256 {
        rt.schedule(|_| std::thread::sleep(Duration::from_millis(20)));
    }
    rt.synchronize_full().wait().unwrap();
    rt
}

fn main() {
    let results = Results::default();
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("tiny_100k");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let rt = kasync::Runtime::new().unwrap();
    let grown = grown_runtime();
    let mut items: Vec<Item<Noop>> = (0..CALLS).map(|_| Item::local(Noop)).collect();
    let pool = rayon::ThreadPoolBuilder::new().build().unwrap();
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    let mut bench = |name: &str, f: &mut dyn FnMut()| {
        group.bench_function(name, |b| b.iter_custom(|iters| results.timed(name, iters, &mut *f)));
    };
    bench("kasync schedule", &mut || kasync_closures(&rt));
    bench("kasync items (scope)", &mut || kasync_items(&rt, &mut items));
    bench("kasync, 256 idle workers", &mut || kasync_closures(&grown));
    bench("rayon scope+spawn", &mut || rayon_scope(&pool));
    bench("tokio spawn+TaskTracker", &mut || tokio_spawn(&tokio_rt));
    bench("tokio spawn_blocking+JoinSet", &mut || tokio_spawn_blocking(&tokio_rt));
    bench("blocking::unblock", &mut blocking_unblock);
    bench("sequential loop", &mut sequential);
    group.finish();
    c.final_summary();
    results.print_per_call(
        &format!("tiny: {CALLS} no-op calls, then one barrier"),
        CALLS,
        "rayon scope+spawn",
    );
    // The close contenders again, in rounds of each once (see
    // `Results::interleaved`): the fair comparison on a drifting machine.
    const ROUNDS: usize = 21;
    let rounds = Results::default();
    rounds.interleaved(
        ROUNDS,
        &mut [
            ("kasync schedule", &mut || kasync_closures(&rt)),
            ("kasync items (scope)", &mut || kasync_items(&rt, &mut items)),
            ("kasync, 256 idle workers", &mut || kasync_closures(&grown)),
            ("rayon scope+spawn", &mut || rayon_scope(&pool)),
            ("tokio spawn+TaskTracker", &mut || tokio_spawn(&tokio_rt)),
        ],
    );
    rounds.print_per_call(
        &format!("tiny, interleaved: {ROUNDS} rounds of each contender in turn"),
        CALLS,
        "rayon scope+spawn",
    );
}
