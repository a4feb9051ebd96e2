//! Cost per call: allocations and nanoseconds for kasync's caller-owned items
//! and closures against rayon `spawn` and tokio `spawn`, in one run. Each
//! contender runs batches of trivial calls and waits for them.
//! Run with `cargo bench -p kasync-benches --bench items`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use kasync::{Cookie, Item, Work};

struct Counting;
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCH: usize = 1024;

struct Add(u64);

impl Work for Add {
    fn run(&mut self, cookie: Cookie) {
        self.0 = self.0.wrapping_add(cookie.get());
    }
}

/// One batch per contender: BATCH calls, then wait for all of them.
struct Contenders {
    kasync: kasync::Runtime,
    #[allow(clippy::vec_box)] // submit takes and wait returns boxes
    items: Vec<Box<Item<Add>>>,
    rayon: rayon::ThreadPool,
    tokio: tokio::runtime::Runtime,
}

impl Contenders {
    fn kasync_items(&mut self) {
        let domain = self.kasync.default_domain();
        let handles: Vec<_> = self.items.drain(..).map(|item| domain.submit(item)).collect();
        for mut handle in handles {
            self.items.push(handle.wait().unwrap());
        }
    }

    fn kasync_closures(&self) {
        for i in 0..BATCH as u64 {
            self.kasync.schedule(move |cookie| {
                std::hint::black_box(cookie.get() + i);
            });
        }
        self.kasync.synchronize_full().wait().unwrap();
    }

    fn rayon(&self) {
        self.rayon.scope(|s| {
            for i in 0..BATCH as u64 {
                s.spawn(move |_| {
                    std::hint::black_box(i);
                });
            }
        });
    }

    fn tokio(&self) {
        self.tokio.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..BATCH as u64 {
                set.spawn(async move {
                    std::hint::black_box(i);
                });
            }
            while set.join_next().await.is_some() {}
        });
    }
}

/// Allocations per call for one batch, after a warm-up batch.
fn allocations_per_call(mut batch: impl FnMut()) -> f64 {
    batch();
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    batch();
    (ALLOCATIONS.load(Ordering::SeqCst) - before) as f64 / BATCH as f64
}

/// Nanoseconds per call: median of several batches.
fn ns_per_call(mut batch: impl FnMut()) -> f64 {
    let mut times: Vec<Duration> = (0..30)
        .map(|_| {
            let start = Instant::now();
            batch();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_nanos() as f64 / BATCH as f64
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut k = Contenders {
        kasync: kasync::Runtime::new().unwrap(),
        items: (0..BATCH).map(|_| Item::new(Add(0))).collect(),
        rayon: rayon::ThreadPoolBuilder::new().build().unwrap(),
        tokio: tokio::runtime::Builder::new_multi_thread().build().unwrap(),
    };
    {
        let mut group = c.benchmark_group("calls_1024");
        group.sample_size(20);
        group.bench_function("kasync items", |b| b.iter(|| k.kasync_items()));
        group.bench_function("kasync closures", |b| b.iter(|| k.kasync_closures()));
        group.bench_function("rayon spawn", |b| b.iter(|| k.rayon()));
        group.bench_function("tokio spawn", |b| b.iter(|| k.tokio()));
        group.finish();
    }
    c.final_summary();
    let rows = [
        (
            "kasync items (submit + wait)",
            allocations_per_call(|| k.kasync_items()),
            ns_per_call(|| k.kasync_items()),
        ),
        (
            "kasync closures (schedule)",
            allocations_per_call(|| k.kasync_closures()),
            ns_per_call(|| k.kasync_closures()),
        ),
        (
            "rayon scope spawn",
            allocations_per_call(|| k.rayon()),
            ns_per_call(|| k.rayon()),
        ),
        (
            "tokio spawn + JoinSet",
            allocations_per_call(|| k.tokio()),
            ns_per_call(|| k.tokio()),
        ),
    ];
    println!("\nper call, batches of {BATCH} trivial calls (allocations count every thread)");
    println!("{:<32} {:>14} {:>12}", "contender", "allocs/call", "ns/call");
    for (name, allocs, ns) in rows {
        println!("{name:<32} {allocs:>14.3} {ns:>12.0}");
    }
}
