//! Model-based test: random sequences of kasync operations, checked against a
//! sequential reference model of DESIGN.md written here.
//!
//! Every case builds a fresh runtime (cap 1, 2 or the default; now and then
//! with a tiny `max_pending`, `help_depth(1)` or no eager workers), a default
//! domain plus three domains that are each registered or exclusive, and
//! issues up to 40 operations from the test thread: scheduling calls (which
//! may panic, may first wait `synchronize_cookie(own cookie)` to register in
//! order, and may probe that waiting on their own call is refused),
//! submitting owned or detached [`kasync::Item`]s, spawning tasks (calls
//! with a value, which may also register in order or probe), cancelling
//! tasks (`Task::cancel`) and every queued call of a domain
//! (`Domain::cancel`), dropping tasks, holding a worker (so that calls stay
//! queued and can be cancelled), cookie barriers (on issued and future
//! cookies), domain barriers, `synchronize_full` and waiting submitted
//! handles and tasks. Calls run concurrently on workers and helpers. Checked
//! against the model:
//!
//! * cookies are 1, 2, 3, ... across all domains, and each call receives its
//!   own cookie (and sees it as `current_cookie`);
//! * when a barrier returns, every call it covers has finished (per-call
//!   `done` flags set at the very end of each body) and every detached item it
//!   covers has been dropped;
//! * its `Ok` / `Err(SyncError::Panicked)` result, the reported cookie,
//!   domain, message and count of other panics follow the reporting rule of
//!   `core/src/model/state.rs` (see [`Model::check_barrier`]);
//! * submitted handles give back the same item, with its panic if it panicked;
//! * every call runs exactly once unless it was cancelled, and a cancelled
//!   call never runs: `Task::cancel` is `true` only for a call no cancel
//!   reached before and that had not started (a `false` means it runs), and
//!   each `Domain::cancel` returns how many of the calls it could reach (its
//!   domain's, issued before it, not cancelled or known started before) never
//!   ran; a cancelled call counts as finished for every barrier, never
//!   panics, comes back to its handle or task as cancelled, and is left out
//!   of the registration log;
//! * every item and every closure is dropped exactly once (run or
//!   cancelled), and the runtime's `completed`/`panicked` counters match the
//!   calls that ran;
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

use kasync::{Barrier, Cookie, Domain, Item, Runtime, Submitted, SyncError, Task, TaskError, WaitError, Work};
use proptest::prelude::*;

/// Hang guard for every blocking wait: generous, so a slow CI machine never
/// trips it; a bug fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

/// Panic messages of deliberate panics start with this; the panic hook stays
/// quiet for them.
const MARK: &str = "kasync-model-panic";

/// The default domain plus three more.
const DOMAINS: usize = 4;

/// The index of the exclusive domain of [`Op::Hold`]'s calls, which no other
/// operation uses.
const HOLD: usize = DOMAINS;

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

fn wait(mut barrier: Barrier, how: How) -> Result<(), SyncError> {
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
    /// `Domain::spawn`: like `Schedule`, with a task for its value.
    Spawn {
        dom: usize,
        panics: bool,
        ordered: Option<How>,
        probe: bool,
    },
    /// Waits one of the outstanding tasks (nothing if there is none):
    /// `Help` is `wait()`, `NoHelp` and `Timeout` are `wait_timeout(GUARD)`,
    /// `Await` is `.await`.
    WaitTask {
        pick: usize,
        how: How,
    },
    /// `Task::cancel` on one of the outstanding tasks (keeping it).
    CancelTask {
        pick: usize,
    },
    /// Drops one of the outstanding tasks: it is detached.
    DropTask {
        pick: usize,
    },
    /// `Domain::cancel`.
    CancelDomain {
        dom: usize,
    },
    /// Schedules a call into the exclusive `HOLD` domain that blocks its
    /// worker until `Release` (unless one is held already). It runs at once
    /// if it runs on the test thread (a helper may take it), and is released
    /// before every wait that does not help, so nothing waits for it.
    Hold,
    Release,
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
        1 => (dom.clone(), how()).prop_map(|(dom, how)| Op::Sync { dom, how }),
        1 => how().prop_map(|how| Op::SyncFull { how }),
        2 => any::<usize>().prop_map(|pick| Op::WaitHandle { pick }),
        3 => (dom.clone(), panics, prop::option::weighted(0.3, how()), prop::bool::weighted(0.1))
            .prop_map(|(dom, panics, ordered, probe)| Op::Spawn { dom, panics, ordered, probe }),
        2 => (any::<usize>(), how()).prop_map(|(pick, how)| Op::WaitTask { pick, how }),
        2 => any::<usize>().prop_map(|pick| Op::CancelTask { pick }),
        1 => any::<usize>().prop_map(|pick| Op::DropTask { pick }),
        1 => dom.prop_map(|dom| Op::CancelDomain { dom }),
        1 => Just(Op::Hold),
        1 => Just(Op::Release),
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
    /// Closures and tasks only: how often the closure was dropped.
    freed: AtomicU32,
    /// The `synchronize_cookie(own)` result of an ordered call.
    ordered: Mutex<Option<Result<(), SyncError>>>,
    /// Results of waits on barriers covering the call itself.
    probes: Mutex<Vec<Result<(), SyncError>>>,
}

struct Records {
    calls: Vec<CallRecord>,
    /// Per domain (and `HOLD`), cookies in the order their calls registered.
    logs: [Mutex<Vec<u64>>; DOMAINS + 1],
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

/// Captured by a closure: counts the closure's drops.
struct Freed {
    records: Arc<Records>,
    index: usize,
}

impl Drop for Freed {
    fn drop(&mut self) {
        self.records.calls[self.index].freed.fetch_add(1, Ordering::SeqCst);
    }
}

/// The body of a scheduled or spawned call (see [`Op::Schedule`]); returns
/// the call's index, a task's value.
#[allow(clippy::too_many_arguments)]
fn call_body(
    records: Arc<Records>,
    index: usize,
    dom: usize,
    panics: bool,
    ordered: Option<How>,
    probe: bool,
    domain: Domain,
    rt: Arc<Runtime>,
    full_covers_me: bool,
) -> impl FnOnce(Cookie) -> usize + Send + 'static {
    let freed = Freed {
        records: records.clone(),
        index,
    };
    move |cookie| {
        let _freed = freed;
        let record = records.entered(index, cookie);
        if probe {
            let mut probes = record.probes.lock().unwrap();
            probes.push(domain.synchronize().wait());
            if full_covers_me {
                probes.push(rt.synchronize_full().wait());
            }
        }
        drop(rt);
        if let Some(how) = ordered {
            let result = wait(domain.synchronize_cookie(cookie), how);
            *record.ordered.lock().unwrap() = Some(result);
        }
        records.register(record, dom, cookie, index, panics);
        index
    }
}

// ---- the reference model ---------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Closure,
    Owned,
    Detached,
    Task,
}

/// Whether a call runs, as far as the model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// No cancel could have reached it: it runs.
    Open,
    /// A `Domain::cancel` of its domain came while it was `Open`: it had
    /// started (and runs), or that cancel took it. Settled by the next
    /// barrier, handle or task that covers it.
    Unknown,
    /// Cancelled: it never runs.
    Cancelled,
    /// It runs (or ran).
    Runs,
}

/// One `Domain::cancel`: what it returned, and the calls it could reach.
#[derive(Debug)]
struct DomainCancel {
    dom: usize,
    count: usize,
    reachable: Vec<usize>,
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
    /// A call whose handle (item or task) is alive: its panic goes to the
    /// handle, and no barrier reports it.
    Held,
}

#[derive(Debug)]
struct ModelCall {
    dom: usize,
    kind: Kind,
    panics: bool,
    ordered: bool,
    report: Report,
    fate: Fate,
}

#[derive(Clone, Copy, Debug)]
enum Scope {
    /// Calls of `dom` with a cookie below `below`.
    Domain { dom: usize, below: u64 },
    /// Calls of every registered domain.
    Full,
}

/// The sequential reference: DESIGN.md's semantics plus the panic-reporting
/// rule of `core/src/model/state.rs`.
///
/// The reporting rule, as implemented: a call with a live handle (an owned
/// item, a task) keeps its panic for the handle, and no barrier reports it;
/// once the handle is dropped, the panic goes to the barriers as though the
/// call had panicked then. Any other panic is reported by (a) every barrier
/// waiting over the call when it panicked and (b) every barrier made while
/// it is still unreported (`add_waiter` copies it from `unreported`). Once a
/// barrier returned it, no barrier made later reports it again. The error
/// names the lowest reported cookie, with `others` = the rest.
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
    registered: [bool; DOMAINS + 1],
    names: [String; DOMAINS + 1],
    calls: Vec<ModelCall>,
    domain_cancels: Vec<DomainCancel>,
}

impl Model {
    fn cookie_of(index: usize) -> u64 {
        index as u64 + 1
    }

    fn next_cookie(&self) -> u64 {
        Self::cookie_of(self.calls.len())
    }

    /// A task's handle was dropped: a panic it held (or its call's panic to
    /// come) goes to the barriers from now on, as though it panicked now. A
    /// later ordered call of its domain may be waiting and report it at a
    /// moment the test cannot know.
    fn handle_dropped(&mut self, index: usize) {
        let dom = self.calls[index].dom;
        if self.calls[index].report != Report::Held {
            return;
        }
        let watched = self.calls[index + 1..].iter().any(|c| c.dom == dom && c.ordered);
        self.calls[index].report = if watched { Report::Contested } else { Report::Unreported };
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
        let report = match kind {
            Kind::Owned | Kind::Task => Report::Held,
            Kind::Closure | Kind::Detached => Report::Unreported,
        };
        self.calls.push(ModelCall {
            dom,
            kind,
            panics,
            ordered,
            report,
            fate: Fate::Open,
        });
        self.calls.len() - 1
    }

    /// Settles the fate of call `index` once a barrier covering it returned:
    /// it has finished, or it was cancelled and never ran.
    fn settle(&mut self, index: usize, records: &Records, what: &dyn std::fmt::Debug) -> Result<(), TestCaseError> {
        let record = &records.calls[index];
        let (done, runs) = (record.done.load(Ordering::SeqCst), record.runs.load(Ordering::SeqCst));
        let cookie = Self::cookie_of(index);
        let call = &mut self.calls[index];
        match call.fate {
            Fate::Open | Fate::Runs => {
                prop_assert!(
                    done,
                    "{what:?} returned before call {cookie} finished ({:?})",
                    call.fate
                );
                call.fate = Fate::Runs;
            }
            Fate::Cancelled => prop_assert!(
                !done && runs == 0,
                "cancelled call {cookie} ran (done {done}, runs {runs}); seen by {what:?}"
            ),
            Fate::Unknown if done => call.fate = Fate::Runs,
            Fate::Unknown => {
                prop_assert_eq!(
                    runs,
                    0,
                    "{:?} returned while call {} ran (not cancelled, not finished)",
                    what,
                    cookie
                );
                call.fate = Fate::Cancelled;
            }
        }
        Ok(())
    }

    /// A call came back as cancelled (to its handle or task).
    fn came_back_cancelled(&mut self, index: usize, records: &Records) -> Result<(), TestCaseError> {
        let cookie = Self::cookie_of(index);
        let call = &mut self.calls[index];
        prop_assert!(
            matches!(call.fate, Fate::Cancelled | Fate::Unknown),
            "call {} came back cancelled, but no cancel could reach it ({:?})",
            cookie,
            call.fate
        );
        call.fate = Fate::Cancelled;
        prop_assert_eq!(
            records.calls[index].runs.load(Ordering::SeqCst),
            0,
            "cancelled call {} ran",
            cookie
        );
        Ok(())
    }

    /// Checks what `Task::cancel` returned for call `index`.
    fn check_task_cancel(&mut self, index: usize, cancelled: bool, records: &Records) -> Result<(), TestCaseError> {
        let cookie = Self::cookie_of(index);
        let call = &mut self.calls[index];
        match (call.fate, cancelled) {
            (Fate::Open, true) => {
                call.fate = Fate::Cancelled;
                prop_assert_eq!(
                    records.calls[index].runs.load(Ordering::SeqCst),
                    0,
                    "cancelled call {} ran",
                    cookie
                );
            }
            (Fate::Open, false) => call.fate = Fate::Runs,
            (fate, true) => prop_assert!(
                false,
                "Task::cancel of call {cookie} returned true, but it was {fate:?}"
            ),
            (_, false) => {}
        }
        Ok(())
    }

    /// Records what `Domain::cancel` of `dom` returned: it could reach every
    /// `Open` call of `dom`.
    fn domain_cancelled(&mut self, dom: usize, count: usize) -> Result<(), TestCaseError> {
        let mut reachable = Vec::new();
        for (i, call) in self.calls.iter_mut().enumerate() {
            if call.dom == dom && call.fate == Fate::Open {
                call.fate = Fate::Unknown;
                reachable.push(i);
            }
        }
        prop_assert!(
            count <= reachable.len(),
            "Domain::cancel of {} returned {}, but only {} calls were reachable",
            dom,
            count,
            reachable.len()
        );
        self.domain_cancels.push(DomainCancel { dom, count, reachable });
        Ok(())
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
            self.settle(i, records, &scope)?;
            let record = &records.calls[i];
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
                .filter(|&&i| self.calls[i].panics && self.calls[i].fate == Fate::Runs && self.calls[i].report == want)
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
            if self.calls[i].panics && self.calls[i].report != Report::Held {
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
        if let Err(WaitError::Cancelled { item }) = result {
            self.came_back_cancelled(index, records)?;
            prop_assert_eq!(item.index, index);
            prop_assert_eq!(item.runs, 0);
            prop_assert_eq!(item.cookie, None);
            prop_assert_eq!(
                record.drops.load(Ordering::SeqCst),
                0,
                "cancelled item {} dropped early",
                cookie
            );
            drop(item);
            prop_assert_eq!(record.drops.load(Ordering::SeqCst), 1);
            return Ok(());
        }
        self.settle(index, records, &format!("handle {cookie}"))?;
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

    /// Checks what waiting the task of call `index` gave.
    fn check_task(
        &mut self,
        index: usize,
        result: Result<usize, TaskError>,
        records: &Records,
    ) -> Result<(), TestCaseError> {
        let cookie = Self::cookie_of(index);
        if result == Err(TaskError::Cancelled) {
            return self.came_back_cancelled(index, records);
        }
        self.settle(index, records, &format!("task {cookie}"))?;
        match result {
            Ok(value) => {
                prop_assert!(!self.calls[index].panics, "task {cookie}: panic not returned");
                prop_assert_eq!(value, index, "task {} gave another call's value", cookie);
            }
            Err(TaskError::Panicked(report)) => {
                prop_assert!(self.calls[index].panics, "task {cookie}: unexpected panic {report:?}");
                prop_assert_eq!(report.cookie().get(), cookie);
                prop_assert_eq!(report.others(), 0);
                let message = panic_message(index);
                prop_assert_eq!(report.message(), message.as_str());
                prop_assert_eq!(report.domain(), self.names[self.calls[index].dom].as_str());
                // Delivered to its task: no later barrier reports it.
                self.calls[index].report = Report::Reported;
            }
            Err(other) => prop_assert!(false, "task {cookie}: {other:?}"),
        }
        Ok(())
    }
}

/// Opens the hold gate (if a call is held) when released or dropped: a
/// failing case releases its held worker before the runtime is dropped.
struct HoldSlot(Option<Gate>);

impl HoldSlot {
    fn release(&mut self) {
        if let Some(gate) = self.0.take() {
            gate.open();
        }
    }
}

impl Drop for HoldSlot {
    fn drop(&mut self) {
        self.release();
    }
}

/// A one-shot gate.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }
}

fn wait_task(mut task: Task<usize>, how: How) -> Result<usize, TaskError> {
    match how {
        How::Help => task.wait(),
        How::NoHelp | How::Timeout => {
            let mut task = task;
            task.wait_timeout(GUARD)
        }
        How::Await => futures::executor::block_on(task),
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
    // Declared after `rt`: a failing case releases the held worker first.
    let mut hold = HoldSlot(None);
    let test_thread = thread::current().id();
    let mut registered = [true; DOMAINS + 1];
    registered[1..DOMAINS].copy_from_slice(&case.registered);
    registered[HOLD] = false;
    let names: [String; DOMAINS + 1] = std::array::from_fn(|d| match d {
        0 => String::from("default"),
        HOLD => String::from("hold"),
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
    let hold_domain = rt.exclusive_domain(&names[HOLD]);
    let mut model = Model {
        registered,
        names,
        calls: Vec::new(),
        domain_cancels: Vec::new(),
    };
    let mut handles: Vec<(usize, Submitted<Probe>)> = Vec::new();
    let mut tasks: Vec<(usize, Task<usize>)> = Vec::new();
    // Tasks whose ordered wait does not help: a wait for such a task runs
    // only that call, which then needs a thread for the calls before it.
    let mut waits_without_help: HashSet<usize> = HashSet::new();

    for op in &case.ops {
        match *op {
            Op::Schedule {
                dom,
                panics,
                ordered,
                probe,
            } => {
                let index = model.add(dom, Kind::Closure, panics, ordered.is_some());
                let body = call_body(
                    records.clone(),
                    index,
                    dom,
                    panics,
                    ordered,
                    probe,
                    domains[dom].clone(),
                    rt.clone(),
                    registered[dom],
                );
                let cookie = domains[dom].schedule(move |cookie| {
                    body(cookie);
                });
                prop_assert_eq!(cookie.get(), Model::cookie_of(index), "cookies are 1, 2, 3, ...");
            }
            Op::Spawn {
                dom,
                panics,
                ordered,
                probe,
            } => {
                let index = model.add(dom, Kind::Task, panics, ordered.is_some());
                let body = call_body(
                    records.clone(),
                    index,
                    dom,
                    panics,
                    ordered,
                    probe,
                    domains[dom].clone(),
                    rt.clone(),
                    registered[dom],
                );
                if ordered.is_some_and(|how| !matches!(how, How::Help)) {
                    waits_without_help.insert(index);
                }
                let task = domains[dom].spawn(body);
                prop_assert_eq!(task.cookie().get(), Model::cookie_of(index), "cookies are 1, 2, 3, ...");
                tasks.push((index, task));
            }
            Op::WaitTask { pick, how } => {
                if !tasks.is_empty() {
                    let (index, task) = tasks.remove(pick % tasks.len());
                    // A helping task wait runs that task only (not the calls
                    // queued before it): if its call then waits without
                    // helping, the held worker must be free.
                    if !matches!(how, How::Help) || waits_without_help.contains(&index) {
                        hold.release();
                    }
                    model.check_task(index, wait_task(task, how), &records)?;
                }
            }
            Op::CancelTask { pick } => {
                if !tasks.is_empty() {
                    let (index, task) = &tasks[pick % tasks.len()];
                    model.check_task_cancel(*index, task.cancel(), &records)?;
                }
            }
            Op::DropTask { pick } => {
                if !tasks.is_empty() {
                    let (index, task) = tasks.remove(pick % tasks.len());
                    drop(task);
                    model.handle_dropped(index);
                }
            }
            Op::CancelDomain { dom } => {
                let count = domains[dom].cancel();
                model.domain_cancelled(dom, count)?;
            }
            Op::Hold => {
                if hold.0.is_none() {
                    let index = model.add(HOLD, Kind::Closure, false, false);
                    let gate = Gate::default();
                    let (g, records, freed) = (
                        gate.clone(),
                        records.clone(),
                        Freed {
                            records: records.clone(),
                            index,
                        },
                    );
                    let cookie = hold_domain.schedule(move |cookie| {
                        let _freed = freed;
                        let record = records.entered(index, cookie);
                        // A helper on the test thread may take it: it must
                        // not block there.
                        if thread::current().id() != test_thread {
                            g.wait();
                        }
                        records.register(record, HOLD, cookie, index, false);
                    });
                    prop_assert_eq!(cookie.get(), Model::cookie_of(index), "cookies are 1, 2, 3, ...");
                    hold.0 = Some(gate);
                }
            }
            Op::Release => hold.release(),
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
                if !matches!(how, How::Help) {
                    hold.release();
                }
                let result = wait(domains[dom].synchronize_cookie(cookie), how);
                model.check_barrier(Scope::Domain { dom, below }, result, &records)?;
            }
            Op::Sync { dom, how } => {
                if !matches!(how, How::Help) {
                    hold.release();
                }
                let result = wait(domains[dom].synchronize(), how);
                model.check_barrier(Scope::Domain { dom, below: u64::MAX }, result, &records)?;
            }
            Op::SyncFull { how } => {
                if !matches!(how, How::Help) {
                    hold.release();
                }
                let result = wait(rt.synchronize_full(), how);
                model.check_barrier(Scope::Full, result, &records)?;
            }
            Op::WaitHandle { pick } => {
                if !handles.is_empty() {
                    let (index, mut submitted) = handles.remove(pick % handles.len());
                    model.check_handle(index, submitted.wait(), &records)?;
                }
            }
        }
    }

    // Drain everything, still checking each result against the model.
    hold.release();
    let wait_handles =
        |model: &mut Model, handles: &mut Vec<(usize, Submitted<Probe>)>, tasks: &mut Vec<(usize, Task<usize>)>| {
            for (index, mut submitted) in handles.drain(..) {
                model.check_handle(index, submitted.wait(), &records)?;
            }
            for (index, mut task) in tasks.drain(..) {
                model.check_task(index, task.wait(), &records)?;
            }
            Ok::<(), TestCaseError>(())
        };
    if case.handles_first {
        wait_handles(&mut model, &mut handles, &mut tasks)?;
    }
    let result = rt.synchronize_full().wait();
    model.check_barrier(Scope::Full, result, &records)?;
    for (dom, domain) in domains.iter().enumerate() {
        let result = domain.synchronize().wait();
        model.check_barrier(Scope::Domain { dom, below: u64::MAX }, result, &records)?;
    }
    wait_handles(&mut model, &mut handles, &mut tasks)?;
    prop_assert_eq!(hold_domain.synchronize().wait_timeout(GUARD), Ok(()));
    for index in 0..model.calls.len() {
        if model.calls[index].dom == HOLD {
            model.settle(index, &records, &"the hold domain's barrier")?;
        }
    }

    check_records(&model, &records)?;
    let stats = rt.stats();
    let ran = || model.calls.iter().filter(|c| c.fate == Fate::Runs);
    prop_assert_eq!(stats.completed, ran().count() as u64, "{:?}", stats);
    prop_assert_eq!(stats.panicked, ran().filter(|c| c.panics).count() as u64, "{:?}", stats);
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
        let drops = record.drops.load(Ordering::SeqCst);
        let item = matches!(call.kind, Kind::Owned | Kind::Detached);
        prop_assert_eq!(drops, u32::from(item), "item {} drops", cookie);
        let freed = record.freed.load(Ordering::SeqCst);
        prop_assert_eq!(freed, u32::from(!item), "closure {} drops", cookie);
        match call.fate {
            Fate::Runs => {}
            Fate::Cancelled => {
                prop_assert_eq!(record.runs.load(Ordering::SeqCst), 0, "cancelled call {} ran", cookie);
                prop_assert!(!record.done.load(Ordering::SeqCst));
                prop_assert!(record.probes.lock().unwrap().is_empty());
                prop_assert!(record.ordered.lock().unwrap().is_none());
                continue;
            }
            fate => prop_assert!(false, "call {cookie} still {fate:?} after every barrier"),
        }
        prop_assert_eq!(record.runs.load(Ordering::SeqCst), 1, "call {} ran once", cookie);
        prop_assert_eq!(record.cookie.load(Ordering::SeqCst), cookie, "call got its own cookie");
        prop_assert!(record.context_ok.load(Ordering::SeqCst), "context inside call {cookie}");
        prop_assert!(record.done.load(Ordering::SeqCst));
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
            .filter(|&i| model.calls[i].dom == dom && model.calls[i].fate == Fate::Runs)
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
    // Each `Domain::cancel` took exactly as many calls as it said, among
    // those it could reach.
    for cancel in &model.domain_cancels {
        let took = cancel
            .reachable
            .iter()
            .filter(|&&i| model.calls[i].fate == Fate::Cancelled)
            .count();
        prop_assert_eq!(
            cancel.count,
            took,
            "Domain::cancel of {} returned {} but {} of {:?} never ran",
            cancel.dom,
            cancel.count,
            took,
            cancel
                .reachable
                .iter()
                .map(|&i| Model::cookie_of(i))
                .collect::<Vec<_>>()
        );
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

/// A fixed case with the only worker held: calls stay queued, so the
/// cancels take them deterministically (`Task::cancel` the spawned call,
/// `Domain::cancel` the rest of domain 1, an ordered call of domain 2 goes
/// on past a cancelled one), and helping barriers run the rest.
#[test]
fn cancel_smoke() {
    let schedule = |dom, ordered| Op::Schedule {
        dom,
        panics: false,
        ordered,
        probe: false,
    };
    let spawn = |dom, panics, ordered| Op::Spawn {
        dom,
        panics,
        ordered,
        probe: false,
    };
    let case = Case {
        max_workers: Some(1),
        registered: [true, false, true],
        ops: vec![
            Op::Hold,
            // Domain 1: a task, a closure, an owned and a detached item.
            spawn(1, true, None),
            schedule(1, None),
            Op::Submit {
                dom: 1,
                panics: true,
                detached: false,
            },
            Op::Submit {
                dom: 1,
                panics: false,
                detached: true,
            },
            // Domain 2: a chain registering in order; its middle task is cancelled.
            spawn(2, false, Some(How::Help)),
            spawn(2, false, Some(How::NoHelp)),
            spawn(2, true, Some(How::Timeout)),
            Op::CancelTask { pick: 2 },
            Op::CancelDomain { dom: 1 },
            Op::CancelTask { pick: 0 },
            Op::WaitHandle { pick: 0 },
            Op::Sync { dom: 1, how: How::Help },
            Op::SyncFull { how: How::Help },
            Op::WaitTask {
                pick: 2,
                how: How::Help,
            },
            Op::Release,
            Op::WaitTask {
                pick: 0,
                how: How::Await,
            },
            Op::CancelDomain { dom: 2 },
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
