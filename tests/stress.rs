//! Stress, sized for CI: a million calls (by default) from several scheduling
//! threads into random registered and exclusive domains, with random nested
//! waits, random panics and caller-owned items, checked by exact counts.
//!
//! Calls are closures and [`kasync::Item`]s (`submit` with the handle waited
//! later or dropped, and `submit_detached`). About one call in eight first
//! waits `synchronize_cookie(own cookie)` on its own or another domain (all
//! waits point at lower cookies, so they form no cycle), by `wait`,
//! `wait_no_help` or `.await`; the schedulers now and then wait a cookie
//! barrier themselves. Checked at the end:
//!
//! * every cookie `1..=N` ran exactly once (a counter per cookie), so no call
//!   was lost, duplicated, or given a cookie outside the range;
//! * every barrier returned, with `Ok` or `SyncError::Panicked` only;
//! * `stats().completed` is `N` and `stats().panicked` is exactly the number
//!   of calls told to panic;
//! * every item was dropped exactly once, and waited handles gave back the
//!   item that ran, with its panic if it panicked.
//!
//! `KASYNC_STRESS_CALLS` sets the number of calls, `KASYNC_STRESS_SEED`
//! replays a seed (printed on every run; it fixes the operations and the
//! runtime's settings, not the threads' interleaving).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kasync::{Barrier, Cookie, Domain, Item, Runtime, Submitted, SyncError, WaitError, Work};

const DEFAULT_CALLS: u64 = 1_000_000;
const SCHEDULERS: u64 = 3;
const REGISTERED: usize = 3;
const EXCLUSIVE: usize = 4;
/// The payload of deliberate panics; the panic hook stays quiet for them.
const MARK: &str = "kasync-stress-panic";
/// A hang guard only: the test aborts, printing the seed, instead of hanging
/// CI if it runs longer than this plus [`HANG_GUARD_PER_CALL`] per call
/// (about 20 times what a million calls take in a debug build on 2 cores).
const HANG_GUARD: Duration = Duration::from_secs(120);
const HANG_GUARD_PER_CALL: Duration = Duration::from_micros(200);

/// xorshift64*, seeded through splitmix64.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(v) => Some(v),
        Err(e) => panic!("{name}={value:?}: {e}"),
    }
}

fn quiet_deliberate_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&MARK) {
            previous(info);
        }
    }));
}

/// How a call waits on its barrier.
#[derive(Clone, Copy)]
enum How {
    Help,
    NoHelp,
    Await,
}

/// What the calls share.
struct Shared {
    domains: Vec<Domain>,
    /// Per cookie: how often a call with that cookie ran.
    runs: Vec<AtomicU8>,
    /// Barriers entered and returned (by calls and schedulers).
    barriers_started: AtomicU64,
    barriers_returned: AtomicU64,
    /// Anything that should never happen, counted so one failure does not
    /// turn into a panic that skews the panic count.
    anomalies: AtomicU64,
    first_anomaly: Mutex<Option<String>>,
    /// Item drops, under a lock so the end can wait for late frees.
    drops: Mutex<u64>,
    dropped: Condvar,
}

impl Shared {
    fn anomaly(&self, what: String) {
        self.anomalies.fetch_add(1, Ordering::SeqCst);
        self.first_anomaly.lock().unwrap().get_or_insert(what);
    }

    fn ran(&self, cookie: Cookie) {
        match self.runs.get(cookie.get() as usize) {
            Some(count) => {
                count.fetch_add(1, Ordering::Relaxed);
            }
            None => self.anomaly(format!("cookie {cookie} is beyond the number of calls")),
        }
    }

    /// Waits a barrier; a panic it reports must be a deliberate one, in
    /// `domain` (if given) and below `below`.
    fn wait(&self, mut barrier: Barrier, how: How, what: &str, domain: Option<&str>, below: Option<Cookie>) {
        self.barriers_started.fetch_add(1, Ordering::Relaxed);
        let result = match how {
            How::Help => barrier.wait(),
            How::NoHelp => barrier.wait_no_help(),
            How::Await => futures::executor::block_on(barrier),
        };
        self.barriers_returned.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {}
            Err(SyncError::Panicked(report))
                if report.message() == MARK
                    && domain.is_none_or(|d| d == report.domain())
                    && below.is_none_or(|b| report.cookie() < b) => {}
            Err(other) => self.anomaly(format!("{what}: {other:?}")),
        }
    }
}

/// An item whose drop is counted.
struct Probe {
    shared: Arc<Shared>,
    panics: bool,
    runs: u32,
    cookie: Option<Cookie>,
}

impl Work for Probe {
    fn run(&mut self, cookie: Cookie) {
        self.runs += 1;
        self.cookie = Some(cookie);
        self.shared.ran(cookie);
        if self.panics {
            std::panic::panic_any(MARK);
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        *self.shared.drops.lock().unwrap() += 1;
        self.shared.dropped.notify_all();
    }
}

/// What one scheduling thread did.
#[derive(Default)]
struct Tally {
    panics: u64,
    items: u64,
}

fn check_handle(shared: &Shared, mut submitted: Submitted<Probe>, panics: bool) {
    let cookie = submitted.cookie();
    let item = match submitted.wait() {
        Ok(item) if !panics => item,
        Err(WaitError::Panicked { item, report }) if panics && report.cookie() == cookie => item,
        Ok(_) => return shared.anomaly(format!("item {cookie}: its panic was not returned")),
        Err(e) => return shared.anomaly(format!("item {cookie}: {e:?}")),
    };
    if item.runs != 1 || item.cookie != Some(cookie) {
        shared.anomaly(format!(
            "item {cookie} came back with runs {} cookie {:?}",
            item.runs, item.cookie
        ));
    }
}

fn schedule_some(shared: &Arc<Shared>, seed: u64, count: u64) -> Tally {
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    let mut handles: VecDeque<(Submitted<Probe>, bool)> = VecDeque::new();
    let n_domains = shared.domains.len() as u64;
    let mut last = None;
    for i in 0..count {
        let domain = &shared.domains[rng.below(n_domains) as usize];
        let panics = rng.one_in(64);
        tally.panics += u64::from(panics);
        let kind = rng.below(100);
        let cookie = if kind < 12 {
            // An item: detached, kept and waited later, or its handle dropped.
            tally.items += 1;
            let item = Item::new(Probe {
                shared: shared.clone(),
                panics,
                runs: 0,
                cookie: None,
            });
            match kind {
                0..=5 => domain.submit_detached(item),
                6..=9 => {
                    let submitted = domain.submit(item);
                    let cookie = submitted.cookie();
                    handles.push_back((submitted, panics));
                    if handles.len() > 32 {
                        let (submitted, panics) = handles.pop_front().unwrap();
                        check_handle(shared, submitted, panics);
                    }
                    cookie
                }
                _ => {
                    let submitted = domain.submit(item);
                    submitted.cookie()
                }
            }
        } else {
            // A closure, which may first wait for the calls before it in a
            // random domain (its own or another).
            let wait = rng.one_in(8).then(|| {
                let target = rng.below(n_domains) as usize;
                let how = match rng.below(3) {
                    0 => How::Help,
                    1 => How::NoHelp,
                    _ => How::Await,
                };
                (target, how)
            });
            let s = shared.clone();
            domain.schedule(move |cookie| {
                if let Some((target, how)) = wait {
                    let target = &s.domains[target];
                    let barrier = target.synchronize_cookie(cookie);
                    s.wait(barrier, how, "nested wait", Some(target.name()), Some(cookie));
                }
                s.ran(cookie);
                if panics {
                    std::panic::panic_any(MARK);
                }
            })
        };
        if let Some(previous) = last {
            if cookie <= previous {
                shared.anomaly(format!("cookie {cookie} after {previous} on one thread"));
            }
        }
        last = Some(cookie);
        if i % 4096 == 4095 {
            // The scheduler waits for a random domain's calls before its last.
            let target = &shared.domains[rng.below(n_domains) as usize];
            let barrier = target.synchronize_cookie(cookie);
            shared.wait(barrier, How::Help, "scheduler wait", Some(target.name()), Some(cookie));
        }
    }
    for (submitted, panics) in handles {
        check_handle(shared, submitted, panics);
    }
    tally
}

/// Aborts the process, printing the seed, if the test hangs.
fn hang_guard(seed: u64, calls: u64, rt: Arc<Runtime>) -> (Arc<(Mutex<bool>, Condvar)>, thread::JoinHandle<()>) {
    let limit = HANG_GUARD + HANG_GUARD_PER_CALL * u32::try_from(calls).unwrap_or(u32::MAX);
    let state = Arc::new((Mutex::new(false), Condvar::new()));
    let s = state.clone();
    let guard = thread::spawn(move || {
        let (finished, cv) = &*s;
        let (finished, _) = cv.wait_timeout_while(finished.lock().unwrap(), limit, |f| !*f).unwrap();
        if !*finished {
            // Straight to stderr: the test harness's capture dies with the abort.
            let _ = writeln!(
                std::io::stderr(),
                "stress: no progress within {limit:?}; KASYNC_STRESS_SEED={seed} KASYNC_STRESS_CALLS={calls}"
            );
            // The stats too, unless the hang holds the runtime's lock.
            let (tx, rx) = std::sync::mpsc::channel();
            thread::spawn(move || tx.send(rt.stats()));
            if let Ok(stats) = rx.recv_timeout(Duration::from_secs(5)) {
                let _ = writeln!(std::io::stderr(), "stress: {stats:?}");
            }
            std::process::abort();
        }
    });
    (state, guard)
}

#[test]
fn a_million_calls_with_nested_waits_panics_and_items() {
    let calls = env_u64("KASYNC_STRESS_CALLS").unwrap_or(DEFAULT_CALLS);
    let seed = env_u64("KASYNC_STRESS_SEED").unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        now.as_secs() ^ u64::from(now.subsec_nanos())
    });
    let mut rng = Rng::new(seed);
    let max_workers = [1, 2, 8, 512][rng.below(4) as usize];
    println!("stress: KASYNC_STRESS_SEED={seed} KASYNC_STRESS_CALLS={calls} max_workers={max_workers}");
    quiet_deliberate_panics();

    let rt = Arc::new(Runtime::builder().max_workers(max_workers).build().unwrap());
    let mut domains = vec![rt.default_domain().clone()];
    domains.extend((0..REGISTERED).map(|i| rt.domain(&format!("registered-{i}"))));
    domains.extend((0..EXCLUSIVE).map(|i| rt.exclusive_domain(&format!("exclusive-{i}"))));
    let shared = Arc::new(Shared {
        domains,
        runs: (0..=calls).map(|_| AtomicU8::new(0)).collect(),
        barriers_started: AtomicU64::new(0),
        barriers_returned: AtomicU64::new(0),
        anomalies: AtomicU64::new(0),
        first_anomaly: Mutex::new(None),
        drops: Mutex::new(0),
        dropped: Condvar::new(),
    });
    let (guard_state, guard) = hang_guard(seed, calls, rt.clone());

    let schedulers: Vec<_> = (0..SCHEDULERS)
        .map(|t| {
            let shared = shared.clone();
            let count = calls / SCHEDULERS + u64::from(t < calls % SCHEDULERS);
            let seed = rng.next();
            thread::spawn(move || schedule_some(&shared, seed, count))
        })
        .collect();
    let mut expected = Tally::default();
    for s in schedulers {
        let tally = s.join().expect("a scheduling thread panicked");
        expected.panics += tally.panics;
        expected.items += tally.items;
    }
    shared.wait(rt.synchronize_full(), How::Help, "final synchronize_full", None, None);
    for domain in &shared.domains[1 + REGISTERED..] {
        shared.wait(
            domain.synchronize(),
            How::Help,
            "final synchronize",
            Some(domain.name()),
            None,
        );
    }

    // Items whose handle was dropped may be freed just after their call
    // counts as finished: wait for the last drops (bounded by the guard).
    let drops = {
        let drops = shared.drops.lock().unwrap();
        let (drops, _) = shared
            .dropped
            .wait_timeout_while(drops, Duration::from_secs(60), |d| *d < expected.items)
            .unwrap();
        *drops
    };
    *guard_state.0.lock().unwrap() = true;
    guard_state.1.notify_all();
    guard.join().unwrap();

    assert_eq!(
        shared.anomalies.load(Ordering::SeqCst),
        0,
        "first anomaly: {:?}",
        shared.first_anomaly.lock().unwrap()
    );
    let wrong: Vec<(usize, u8)> = shared
        .runs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(cookie, runs)| (cookie, runs.load(Ordering::SeqCst)))
        .filter(|&(_, runs)| runs != 1)
        .take(10)
        .collect();
    assert!(wrong.is_empty(), "(cookie, runs) not run exactly once: {wrong:?}");
    assert_eq!(
        shared.barriers_started.load(Ordering::SeqCst),
        shared.barriers_returned.load(Ordering::SeqCst)
    );
    let stats = rt.stats();
    assert_eq!(stats.completed, calls, "{stats:?}");
    assert_eq!(stats.panicked, expected.panics, "{stats:?}");
    assert_eq!((stats.pending, stats.queued), (0, 0), "{stats:?}");
    assert!(stats.peak_workers <= max_workers, "{stats:?}");
    assert_eq!(drops, expected.items, "every item dropped exactly once");
    println!(
        "stress: {calls} calls, {} panics, {} items, {} barriers; {stats:?}",
        expected.panics,
        expected.items,
        shared.barriers_returned.load(Ordering::SeqCst)
    );
}
