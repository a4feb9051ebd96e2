//! Model-based test: random sequences of kasync operations, checked against a
//! sequential reference model of DESIGN.md written here.
//!
//! Every case builds a fresh runtime (cap 1, 2 or the default; now and then
//! with a tiny `max_pending`, `help_depth(1)` or no eager workers), a default
//! domain plus three domains that are each registered or exclusive, and
//! issues up to 40 operations from the test thread: scheduling calls (which
//! may panic, may first wait `synchronize_cookie(own cookie)` to register in
//! order, and may probe that waiting on their own call is refused),
//! submitting owned or detached [`kasync::Item`]s, cookie barriers (on issued
//! and future cookies), domain barriers, `synchronize_full` and waiting
//! submitted handles. Calls run concurrently on workers and helpers. Checked
//! against the model:
//!
//! * cookies are 1, 2, 3, ... across all domains, and each call receives its
//!   own cookie (and sees it as `current_cookie`);
//! * when a barrier returns, every call it covers has finished (per-call
//!   `done` flags set at the very end of each body) and every detached item it
//!   covers has been dropped;
//! * its `Ok` / `Err(SyncError::Panicked)` result, the reported cookie,
//!   domain, message and count of other panics follow the reporting rule of
//!   `core/src/state.rs` (see [`Model::check_barrier`]);
//! * submitted handles give back the same item, with its panic if it panicked;
//! * every call runs exactly once, every item is dropped exactly once, and the
//!   runtime's `completed`/`panicked` counters match;
//! * calls that waited on their own cookie appear after every earlier call of
//!   their domain in the domain's registration log.
//!
//! 256 cases by default; `PROPTEST_CASES` sets another number.

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread;
use std::time::Duration;

use kasync::{Barrier, Cookie, Domain, Item, Runtime, Submitted, SyncError, WaitError, Work};
use proptest::prelude::*;

/// Hang guard for every blocking wait: generous, so a slow CI machine never
/// trips it; a bug fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

/// Panic messages of deliberate panics start with this; the panic hook stays
/// quiet for them.
const MARK: &str = "kasync-model-panic";

/// The default domain plus three more.
const DOMAINS: usize = 4;

fn quiet_deliberate_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied());
            if !message.is_some_and(|m| m.starts_with(MARK)) {
                previous(info);
            }
        }));
    });
}

fn panic_message(index: usize) -> String {
    format!("{MARK} {index}")
}

// ---- operations ------------------------------------------------------------

/// How a barrier is waited for.
#[derive(Clone, Copy, Debug)]
enum How {
    /// `wait()`: runs covered calls on this thread meanwhile.
    Help,
    /// `wait_no_help()`.
    NoHelp,
    /// `wait_timeout(GUARD)`: never helps either.
    Timeout,
    /// `.await` through `futures::executor::block_on`.
    Await,
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![Just(How::Help), Just(How::NoHelp), Just(How::Timeout), Just(How::Await)]
}

fn wait(barrier: Barrier, how: How) -> Result<(), SyncError> {
    match how {
        How::Help => barrier.wait(),
        How::NoHelp => barrier.wait_no_help(),
        How::Timeout => barrier.wait_timeout(GUARD),
        How::Await => futures::executor::block_on(barrier),
    }
}

/// The bound of a cookie barrier.
#[derive(Clone, Debug)]
enum Target {
    /// The cookie of a call issued earlier (the first one if none was).
    Issued(usize),
    /// A cookie not issued yet: the next one plus this.
    Ahead(u8),
}

#[derive(Clone, Debug)]
enum Op {
    /// `Domain::schedule`. `ordered`: first wait `synchronize_cookie(own)`
    /// (the kernel's "register in order"); `probe`: check that waiting on
    /// its own domain (and on `synchronize_full` if registered) is refused.
    Schedule {
        dom: usize,
        panics: bool,
        ordered: Option<How>,
        probe: bool,
    },
    /// `Domain::submit` (keeping the handle) or `Domain::submit_detached`.
    Submit {
        dom: usize,
        panics: bool,
        detached: bool,
    },
    SyncCookie {
        dom: usize,
        target: Target,
        how: How,
    },
    Sync {
        dom: usize,
        how: How,
    },
    SyncFull {
        how: How,
    },
    /// Waits one of the outstanding handles (nothing if there is none).
    WaitHandle {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let dom = 0..DOMAINS;
    let panics = prop::bool::weighted(0.3);
    prop_oneof![
        5 => (dom.clone(), panics, prop::option::weighted(0.4, how()), prop::bool::weighted(0.15))
            .prop_map(|(dom, panics, ordered, probe)| Op::Schedule { dom, panics, ordered, probe }),
        3 => (dom.clone(), panics, any::<bool>())
            .prop_map(|(dom, panics, detached)| Op::Submit { dom, panics, detached }),
        2 => (
            dom.clone(),
            prop_oneof![3 => any::<usize>().prop_map(Target::Issued), 1 => (0..3u8).prop_map(Target::Ahead)],
            how()
        )
            .prop_map(|(dom, target, how)| Op::SyncCookie { dom, target, how }),
        1 => (dom, how()).prop_map(|(dom, how)| Op::Sync { dom, how }),
        1 => how().prop_map(|how| Op::SyncFull { how }),
        2 => any::<usize>().prop_map(|pick| Op::WaitHandle { pick }),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    /// `None`: the default cap.
    max_workers: Option<usize>,
    /// Whether domains 1..=3 are registered (domain 0, the default, is).
    registered: [bool; DOMAINS - 1],
    ops: Vec<Op>,
    /// At the end: wait the outstanding handles before the final barriers.
    handles_first: bool,
    /// Unusual settings, each `None` (the default) most of the time.
    tuning: Tuning,
}

/// Settings that change who runs calls, not what the model expects.
#[derive(Clone, Debug)]
struct Tuning {
    /// A tiny `max_pending`: `schedule` from the test thread blocks and runs
    /// queued calls itself (`Overflow::Block`).
    max_pending: Option<usize>,
    /// Helping nests at most this deep.
    help_depth: Option<usize>,
    /// No eager workers: only the stall watchdog and compensation start them.
    eager_workers: Option<usize>,
}

fn tuning() -> impl Strategy<Value = Tuning> {
    let rarely = |v: usize| prop::option::weighted(0.2, Just(v));
    (rarely(3), rarely(1), rarely(0)).prop_map(|(max_pending, help_depth, eager_workers)| Tuning {
        max_pending,
        help_depth,
        eager_workers,
    })
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(Some(1)), Just(Some(2)), Just(None)],
        any::<[bool; DOMAINS - 1]>(),
        prop::collection::vec(op(), 0..=40),
        any::<bool>(),
        tuning(),
    )
        .prop_map(|(max_workers, registered, ops, handles_first, tuning)| Case {
            max_workers,
            registered,
            ops,
            handles_first,
            tuning,
        })
}

// ---- what calls record -----------------------------------------------------

/// What one call recorded about itself while it ran.
#[derive(Default)]
struct CallRecord {
    runs: AtomicU32,
    cookie: AtomicU64,
    /// `current_cookie()` and `current_is_async()` were right inside the call.
    context_ok: AtomicBool,
    /// Set at the very end of the call's body (just before it panics).
    done: AtomicBool,
    /// Items only: how often the item was dropped.
    drops: AtomicU32,
    /// The `synchronize_cookie(own)` result of an ordered call.
    ordered: Mutex<Option<Result<(), SyncError>>>,
    /// Results of waits on barriers covering the call itself.
    probes: Mutex<Vec<Result<(), SyncError>>>,
}

struct Records {
    calls: Vec<CallRecord>,
    /// Per domain, cookies in the order their calls registered.
    logs: [Mutex<Vec<u64>>; DOMAINS],
}

impl Records {
    fn entered(&self, index: usize, cookie: Cookie) -> &CallRecord {
        let record = &self.calls[index];
        record.runs.fetch_add(1, Ordering::SeqCst);
        record.cookie.store(cookie.get(), Ordering::SeqCst);
        let context_ok = kasync::current_cookie() == Some(cookie) && kasync::current_is_async();
        record.context_ok.store(context_ok, Ordering::SeqCst);
        record
    }

    fn register(&self, record: &CallRecord, dom: usize, cookie: Cookie, index: usize, panics: bool) {
        self.logs[dom].lock().unwrap().push(cookie.get());
        record.done.store(true, Ordering::SeqCst);
        if panics {
            std::panic::panic_any(panic_message(index));
        }
    }
}

/// An item: records like a closure call, and counts its drops.
struct Probe {
    records: Arc<Records>,
    index: usize,
    dom: usize,
    panics: bool,
    runs: u32,
    cookie: Option<Cookie>,
}

impl Work for Probe {
    fn run(&mut self, cookie: Cookie) {
        self.runs += 1;
        self.cookie = Some(cookie);
        let record = self.records.entered(self.index, cookie);
        self.records.register(record, self.dom, cookie, self.index, self.panics);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.records.calls[self.index].drops.fetch_add(1, Ordering::SeqCst);
    }
}

// ---- the reference model ---------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Closure,
    Owned,
    Detached,
}

/// Where a panic stands with respect to being reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Report {
    /// No barrier has reported it: the next barrier covering it must.
    Unreported,
    /// Unreported by the test thread's barriers, but an ordered call's own
    /// `synchronize_cookie` barrier covers it and may have reported it
    /// already, concurrently: the next barrier may or may not report it.
    Contested,
    /// Reported (by a barrier or by its item's handle): never again.
    Reported,
}

#[derive(Debug)]
struct ModelCall {
    dom: usize,
    kind: Kind,
    panics: bool,
    ordered: bool,
    report: Report,
}

#[derive(Clone, Copy, Debug)]
enum Scope {
    /// Calls of `dom` with a cookie below `below`.
    Domain { dom: usize, below: u64 },
    /// Calls of every registered domain.
    Full,
}

/// The sequential reference: DESIGN.md's semantics plus the panic-reporting
/// rule of `core/src/state.rs`.
///
/// The reporting rule, as implemented: a barrier made at time T reports (a)
/// every panic in its range still unreported at T (`add_waiter` copies them
/// from `unreported`) and (b) every panic in its range that happens while it
/// waits (`finish` appends them). When it returns (`take_result`) all of them
/// count as reported, and no barrier made later reports them again. A handle
/// that returns its item's panic also marks it reported (`mark_reported`).
/// The error names the lowest reported cookie, with `others` = the rest.
///
/// The test thread's own barriers are sequential, so this is deterministic
/// for them, with one exception: an ordered call's in-call barrier
/// (`synchronize_cookie(own)`) covers earlier panics of its domain and
/// reports them at a moment the test cannot know. Such panics are
/// `Contested`: the model accepts a barrier reporting them or not (and then
/// checks the cookie and count within bounds), while still requiring every
/// definitely unreported panic. Cases with no contested panic in range are
/// checked exactly.
struct Model {
    registered: [bool; DOMAINS],
    names: [String; DOMAINS],
    calls: Vec<ModelCall>,
}

impl Model {
    fn cookie_of(index: usize) -> u64 {
        index as u64 + 1
    }

    fn next_cookie(&self) -> u64 {
        Self::cookie_of(self.calls.len())
    }

    fn add(&mut self, dom: usize, kind: Kind, panics: bool, ordered: bool) -> usize {
        if ordered {
            // Its in-call barrier covers every earlier panic of its domain.
            for call in self.calls.iter_mut().filter(|c| c.dom == dom && c.panics) {
                if call.report == Report::Unreported {
                    call.report = Report::Contested;
                }
            }
        }
        self.calls.push(ModelCall {
            dom,
            kind,
            panics,
            ordered,
            report: Report::Unreported,
        });
        self.calls.len() - 1
    }

    fn covers(&self, scope: Scope, index: usize) -> bool {
        let call = &self.calls[index];
        match scope {
            Scope::Domain { dom, below } => call.dom == dom && Self::cookie_of(index) < below,
            Scope::Full => self.registered[call.dom],
        }
    }

    /// Checks what a barrier over `scope` returned, and updates the model.
    fn check_barrier(
        &mut self,
        scope: Scope,
        result: Result<(), SyncError>,
        records: &Records,
    ) -> Result<(), TestCaseError> {
        let covered: Vec<usize> = (0..self.calls.len()).filter(|&i| self.covers(scope, i)).collect();
        for &i in &covered {
            let record = &records.calls[i];
            prop_assert!(
                record.done.load(Ordering::SeqCst),
                "barrier {scope:?} returned before call {} finished",
                Self::cookie_of(i)
            );
            if self.calls[i].kind == Kind::Detached {
                prop_assert_eq!(
                    record.drops.load(Ordering::SeqCst),
                    1,
                    "barrier {:?} returned before detached item {} was freed",
                    scope,
                    Self::cookie_of(i)
                );
            }
        }
        let panicked = |want: Report| -> Vec<u64> {
            covered
                .iter()
                .filter(|&&i| self.calls[i].panics && self.calls[i].report == want)
                .map(|&i| Self::cookie_of(i))
                .collect()
        };
        let must = panicked(Report::Unreported);
        let may = panicked(Report::Contested);
        match &result {
            Ok(()) => prop_assert!(
                must.is_empty(),
                "barrier {scope:?} returned Ok but must report panics {must:?}"
            ),
            Err(SyncError::Panicked(report)) => {
                let cookie = report.cookie().get();
                prop_assert!(
                    must.contains(&cookie) || may.contains(&cookie),
                    "barrier {scope:?} reported cookie {cookie}, not an unreported panic in range \
                     (must {must:?}, may {may:?})"
                );
                if let Some(&lowest) = must.first() {
                    prop_assert!(
                        cookie <= lowest,
                        "reported {cookie}, but {lowest} is lower (must {must:?})"
                    );
                }
                let index = (cookie - 1) as usize;
                prop_assert_eq!(report.domain(), self.names[self.calls[index].dom].as_str());
                let message = panic_message(index);
                prop_assert_eq!(report.message(), message.as_str());
                // Reported: `cookie` plus `others` more, all at or above it.
                let at_least = must.iter().filter(|&&c| c != cookie).count();
                let at_most = must.iter().chain(&may).filter(|&&c| c > cookie).count();
                prop_assert!(
                    (at_least..=at_most).contains(&report.others()),
                    "barrier {scope:?} reported {cookie} and {} others; expected {at_least}..={at_most} \
                     (must {must:?}, may {may:?})",
                    report.others()
                );
            }
            Err(other) => prop_assert!(false, "barrier {scope:?} failed: {other:?}"),
        }
        for &i in &covered {
            if self.calls[i].panics {
                self.calls[i].report = Report::Reported;
            }
        }
        Ok(())
    }

    /// Checks what waiting the handle of call `index` gave back.
    fn check_handle(
        &mut self,
        index: usize,
        result: Result<Box<Item<Probe>>, WaitError<Probe>>,
        records: &Records,
    ) -> Result<(), TestCaseError> {
        let cookie = Self::cookie_of(index);
        let record = &records.calls[index];
        prop_assert!(record.done.load(Ordering::SeqCst), "handle {cookie} returned early");
        let item = match result {
            Ok(item) => {
                prop_assert!(!self.calls[index].panics, "handle {cookie}: panic not returned");
                item
            }
            Err(WaitError::Panicked { item, report }) => {
                prop_assert!(self.calls[index].panics, "handle {cookie}: unexpected panic {report:?}");
                prop_assert_eq!(report.cookie().get(), cookie);
                prop_assert_eq!(report.others(), 0);
                let message = panic_message(index);
                prop_assert_eq!(report.message(), message.as_str());
                prop_assert_eq!(report.domain(), self.names[self.calls[index].dom].as_str());
                // Delivered with the item: no later barrier reports it.
                self.calls[index].report = Report::Reported;
                item
            }
            Err(other) => return Err(TestCaseError::fail(format!("handle {cookie}: {other:?}"))),
        };
        // The very item that was submitted, having run once.
        prop_assert_eq!(item.index, index);
        prop_assert_eq!(item.runs, 1);
        prop_assert_eq!(item.cookie.map(Cookie::get), Some(cookie));
        prop_assert_eq!(
            record.drops.load(Ordering::SeqCst),
            0,
            "owned item {} dropped early",
            cookie
        );
        drop(item);
        prop_assert_eq!(record.drops.load(Ordering::SeqCst), 1);
        Ok(())
    }
}

// ---- running a case --------------------------------------------------------

/// Aborts the process (after printing what hung) if a case takes longer
/// than the guard: a hang must fail the run, and proptest must not go on
/// shrinking through cases that each hang.
struct HangGuard {
    state: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl HangGuard {
    fn new(what: String) -> HangGuard {
        let state = Arc::new((Mutex::new(false), Condvar::new()));
        let s = state.clone();
        let thread = thread::spawn(move || {
            let (finished, cv) = &*s;
            let guard = finished.lock().unwrap();
            let (finished, timeout) = cv.wait_timeout_while(guard, GUARD * 2, |f| !*f).unwrap();
            if timeout.timed_out() && !*finished {
                // Straight to stderr: the test harness's capture dies with the abort.
                let _ = writeln!(
                    std::io::stderr(),
                    "reference_model: a case hung; aborting. The case:\n{what}"
                );
                std::process::abort();
            }
        });
        HangGuard {
            state,
            thread: Some(thread),
        }
    }
}

impl Drop for HangGuard {
    fn drop(&mut self) {
        *self.state.0.lock().unwrap() = true;
        self.state.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    quiet_deliberate_panics();
    let _guard = HangGuard::new(format!("{case:#?}"));
    let mut builder = Runtime::builder();
    if let Some(n) = case.max_workers {
        builder = builder.max_workers(n);
    }
    if let Some(n) = case.tuning.max_pending {
        builder = builder.max_pending(n);
    }
    if let Some(n) = case.tuning.help_depth {
        builder = builder.help_depth(n);
    }
    if let Some(n) = case.tuning.eager_workers {
        builder = builder.eager_workers(n);
    }
    let rt = Arc::new(builder.build().expect("runtime builds"));
    let mut registered = [true; DOMAINS];
    registered[1..].copy_from_slice(&case.registered);
    let names: [String; DOMAINS] = std::array::from_fn(|d| match d {
        0 => String::from("default"),
        d => format!("d{d}-{}", if registered[d] { "registered" } else { "exclusive" }),
    });
    let domains: Vec<Domain> = (0..DOMAINS)
        .map(|d| match d {
            0 => rt.default_domain().clone(),
            d if registered[d] => rt.domain(&names[d]),
            d => rt.exclusive_domain(&names[d]),
        })
        .collect();
    let records = Arc::new(Records {
        calls: (0..case.ops.len()).map(|_| CallRecord::default()).collect(),
        logs: std::array::from_fn(|_| Mutex::new(Vec::new())),
    });
    let mut model = Model {
        registered,
        names,
        calls: Vec::new(),
    };
    let mut handles: Vec<(usize, Submitted<Probe>)> = Vec::new();

    for op in &case.ops {
        match *op {
            Op::Schedule {
                dom,
                panics,
                ordered,
                probe,
            } => {
                let index = model.add(dom, Kind::Closure, panics, ordered.is_some());
                let (records, domain, rt2) = (records.clone(), domains[dom].clone(), rt.clone());
                let full_covers_me = registered[dom];
                let cookie = domains[dom].schedule(move |cookie| {
                    let record = records.entered(index, cookie);
                    if probe {
                        let mut probes = record.probes.lock().unwrap();
                        probes.push(domain.synchronize().wait());
                        if full_covers_me {
                            probes.push(rt2.synchronize_full().wait());
                        }
                    }
                    drop(rt2);
                    if let Some(how) = ordered {
                        let result = wait(domain.synchronize_cookie(cookie), how);
                        *record.ordered.lock().unwrap() = Some(result);
                    }
                    records.register(record, dom, cookie, index, panics);
                });
                prop_assert_eq!(cookie.get(), Model::cookie_of(index), "cookies are 1, 2, 3, ...");
            }
            Op::Submit { dom, panics, detached } => {
                let kind = if detached { Kind::Detached } else { Kind::Owned };
                let index = model.add(dom, kind, panics, false);
                let item = Item::new(Probe {
                    records: records.clone(),
                    index,
                    dom,
                    panics,
                    runs: 0,
                    cookie: None,
                });
                let cookie = if detached {
                    domains[dom].submit_detached(item)
                } else {
                    let submitted = domains[dom].submit(item);
                    let cookie = submitted.cookie();
                    handles.push((index, submitted));
                    cookie
                };
                prop_assert_eq!(cookie.get(), Model::cookie_of(index), "cookies are 1, 2, 3, ...");
            }
            Op::SyncCookie { dom, ref target, how } => {
                let below = match target {
                    Target::Issued(pick) if !model.calls.is_empty() => Model::cookie_of(pick % model.calls.len()),
                    Target::Issued(_) => 1,
                    Target::Ahead(k) => model.next_cookie() + u64::from(*k),
                };
                let cookie = Cookie::new(below).expect("cookies are non-zero");
                let result = wait(domains[dom].synchronize_cookie(cookie), how);
                model.check_barrier(Scope::Domain { dom, below }, result, &records)?;
            }
            Op::Sync { dom, how } => {
                let result = wait(domains[dom].synchronize(), how);
                model.check_barrier(Scope::Domain { dom, below: u64::MAX }, result, &records)?;
            }
            Op::SyncFull { how } => {
                let result = wait(rt.synchronize_full(), how);
                model.check_barrier(Scope::Full, result, &records)?;
            }
            Op::WaitHandle { pick } => {
                if !handles.is_empty() {
                    let (index, submitted) = handles.remove(pick % handles.len());
                    model.check_handle(index, submitted.wait(), &records)?;
                }
            }
        }
    }

    // Drain everything, still checking each result against the model.
    let wait_handles = |model: &mut Model, handles: &mut Vec<(usize, Submitted<Probe>)>| {
        for (index, submitted) in handles.drain(..) {
            model.check_handle(index, submitted.wait(), &records)?;
        }
        Ok::<(), TestCaseError>(())
    };
    if case.handles_first {
        wait_handles(&mut model, &mut handles)?;
    }
    let result = rt.synchronize_full().wait();
    model.check_barrier(Scope::Full, result, &records)?;
    for (dom, domain) in domains.iter().enumerate() {
        let result = domain.synchronize().wait();
        model.check_barrier(Scope::Domain { dom, below: u64::MAX }, result, &records)?;
    }
    wait_handles(&mut model, &mut handles)?;

    check_records(&model, &records)?;
    let stats = rt.stats();
    prop_assert_eq!(stats.completed, model.calls.len() as u64, "{:?}", stats);
    prop_assert_eq!(
        stats.panicked,
        model.calls.iter().filter(|c| c.panics).count() as u64,
        "{:?}",
        stats
    );
    prop_assert_eq!((stats.pending, stats.queued), (0, 0), "{:?}", stats);
    if let Some(cap) = case.max_workers {
        prop_assert!(stats.peak_workers <= cap, "{:?}", stats);
    }
    Ok(())
}

/// What every call recorded, once everything finished.
fn check_records(model: &Model, records: &Records) -> Result<(), TestCaseError> {
    for (index, call) in model.calls.iter().enumerate() {
        let cookie = Model::cookie_of(index);
        let record = &records.calls[index];
        prop_assert_eq!(record.runs.load(Ordering::SeqCst), 1, "call {} ran once", cookie);
        prop_assert_eq!(record.cookie.load(Ordering::SeqCst), cookie, "call got its own cookie");
        prop_assert!(record.context_ok.load(Ordering::SeqCst), "context inside call {cookie}");
        prop_assert!(record.done.load(Ordering::SeqCst));
        let drops = record.drops.load(Ordering::SeqCst);
        prop_assert_eq!(drops, u32::from(call.kind != Kind::Closure), "item {} drops", cookie);
        for probe in record.probes.lock().unwrap().iter() {
            prop_assert_eq!(
                probe,
                &Err(SyncError::WouldDeadlock {
                    waiter: Cookie::new(cookie).unwrap()
                }),
                "call {} waiting on itself",
                cookie
            );
        }
        if call.ordered {
            // Whatever it reports must be an earlier panic of its domain;
            // whether it reports one depends on timing (see `Model`).
            match record.ordered.lock().unwrap().as_ref() {
                Some(Ok(())) => {}
                Some(Err(SyncError::Panicked(report))) => {
                    let reported = report.cookie().get();
                    let index = (reported - 1) as usize;
                    prop_assert!(
                        reported < cookie && model.calls[index].dom == call.dom && model.calls[index].panics,
                        "ordered call {cookie} reported {report:?}"
                    );
                }
                other => prop_assert!(false, "ordered call {cookie}: {other:?}"),
            }
        }
    }
    for (dom, log) in records.logs.iter().enumerate() {
        let log = log.lock().unwrap();
        let mine: Vec<u64> = (0..model.calls.len())
            .filter(|&i| model.calls[i].dom == dom)
            .map(Model::cookie_of)
            .collect();
        let mut sorted = log.clone();
        sorted.sort_unstable();
        prop_assert_eq!(&sorted, &mine, "domain {} registered each of its calls once", dom);
        let mut seen = HashSet::new();
        for &cookie in log.iter() {
            if model.calls[(cookie - 1) as usize].ordered {
                let missing: Vec<u64> = mine
                    .iter()
                    .copied()
                    .filter(|&c| c < cookie && !seen.contains(&c))
                    .collect();
                prop_assert!(
                    missing.is_empty(),
                    "ordered call {cookie} registered before {missing:?} in domain {dom}: {log:?}"
                );
            }
            seen.insert(cookie);
        }
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_operations_follow_the_reference_model(case in case()) {
        let t0 = std::time::Instant::now();
        run_case(&case)?;
        if t0.elapsed() > Duration::from_millis(500) { let _ = writeln!(std::io::stderr(), "SLOW {:?}: {case:?}", t0.elapsed()); }
    }
}

/// A fixed case that exercises the exact reporting rule without any
/// contested panic: reported once, by the first barrier that covers it.
#[test]
fn reporting_rule_smoke() {
    let case = Case {
        max_workers: Some(1),
        registered: [true, false, true],
        ops: vec![
            Op::Schedule {
                dom: 1,
                panics: true,
                ordered: None,
                probe: true,
            },
            Op::Submit {
                dom: 2,
                panics: true,
                detached: false,
            },
            Op::Schedule {
                dom: 0,
                panics: true,
                ordered: None,
                probe: false,
            },
            Op::SyncFull { how: How::Help },
            Op::Sync {
                dom: 1,
                how: How::NoHelp,
            },
            Op::WaitHandle { pick: 0 },
            Op::Sync {
                dom: 1,
                how: How::Await,
            },
        ],
        handles_first: false,
        tuning: Tuning {
            max_pending: None,
            help_depth: None,
            eager_workers: None,
        },
    };
    run_case(&case).unwrap();
}
