//! The runtime's state machine, guarded by one lock: the cookie counter, the
//! domains with their pending calls, the barriers' waiters and unreported
//! panics. Like the kernel's `async_lock`, one lock keeps the invariants simple
//! to state: cookie assignment and enqueueing happen under it together, so the
//! calls started in a domain are always a prefix of its cookie order.
//!
//! Nothing here blocks, spawns or runs user code; callers collect [`Wakeups`]
//! and act on them after unlocking. That is what the loom model exercises.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

use slab::Slab;

use crate::base::error::{PanicReport, SyncError};
use crate::base::sync::{AtomicBool, Condvar};
use crate::model::awaiting::{Awaited, Awaiting};
use crate::model::call::{Body, Claimed, Outcome};
use crate::model::domain::{DomainHint, DomainState};
use crate::model::growth::PoolState;
use crate::model::ids::{DomainId, Scope, WaiterId};
use crate::model::item::{Header, ItemCall};
use crate::Cookie;

/// A blocking domain wait spins before parking (and is woken early by the
/// call before it) when it waits for at most this many unfinished calls.
pub(crate) const NEAR_CALLS: usize = 1;

/// How to wake a waiter.
pub(crate) enum Wake {
    Nobody,
    Thread(Arc<Condvar>),
    Task(Waker),
}

/// One barrier's registration.
pub(crate) struct WaiterState {
    scope: Scope,
    below: u64,
    done: bool,
    /// Panics in this barrier's range it will report: those unreported
    /// when it was made, and those published while it waits.
    panics: Vec<Arc<PanicRecord>>,
    wake: Wake,
    /// A blocked thread that will run newly queued calls it covers.
    helper: bool,
}

/// How to reach those who wait for a pending async call once a call it
/// awaits is queued: its future's waker (its poller, on an executor that
/// polls futures on the caller, then runs the queued call itself) and its
/// item's waiter (a thread in its task's wait).
pub(crate) struct Nudge {
    /// Shared, so a nudge clones it under the lock without running the
    /// waker's own clone (foreign code), and wakes it after unlocking.
    pub(crate) future: Arc<Waker>,
    /// The header of the async call's item, if it has one (`spawn_async`).
    pub(crate) item: Option<NonNull<Header>>,
}

/// An async call's item header, as a nudge reaches it.
type ItemHeader = NonNull<Header>;

// SAFETY: the header pointer is only dereferenced under the state lock,
// while its call is pending: the call takes its registry entry away (under
// the lock) before it ends, and its item lives until it ended.
unsafe impl Send for Nudge {}

/// A panic of one call. A call with a handle (a task, an item, a scope)
/// keeps its record there, and the handle delivers it; otherwise the
/// record is *published*: given to the barriers waiting over the call and
/// kept in `unreported` until a barrier reports it.
pub(crate) struct PanicRecord {
    /// Its domain's lock-free summary, which counts it while unreported.
    hint: Arc<DomainHint>,
    domain: DomainId,
    /// The domain's unique id: slab indexes are reused once a domain is gone.
    domain_uid: u64,
    registered: bool,
    cookie: Cookie,
    domain_name: Arc<str>,
    message: Arc<str>,
    /// Set (under the state lock) once a barrier returned it.
    reported: AtomicBool,
}

impl PanicRecord {
    /// What a handle that takes this panic returns.
    pub(crate) fn report(&self) -> PanicReport {
        PanicReport::new(self.cookie, self.domain_name.clone(), self.message.clone(), 0)
    }
}

/// Counters reported by `Runtime::stats`.
#[derive(Default, Clone, Copy)]
pub(crate) struct Counters {
    /// Calls claimed lowest-first (by workers, draining or room-making
    /// threads): the watchdog's measure of progress. Claims a waiter makes
    /// for its own barrier do not count: they may be an endless chain in one
    /// domain while the runtime's lowest queued call waits for a thread.
    pub(crate) started: u64,
    pub(crate) completed: u64,
    pub(crate) panicked: u64,
    pub(crate) helped: u64,
    pub(crate) spawned: u64,
    pub(crate) spawn_failures: u64,
    pub(crate) compensations: u64,
    pub(crate) stalls: u64,
    /// Queued calls cancelled before they started.
    pub(crate) cancelled: u64,
}

/// Who to wake once the lock is released: task wakers (foreign code) and
/// blocked threads. A thread is notified after the unlock too: notified
/// under the lock, it would only be queued behind the lock (parking_lot
/// requeues it), and the next thread to unlock would pay for its wake-up.
/// In a chain of calls that each wait for the one before (register in
/// cookie order), that next thread is the one the chain waits for.
#[derive(Default)]
pub(crate) struct Wakeups {
    wakers: Vec<Waker>,
    /// Wakers the state keeps (a nudge's), woken by reference.
    shared_wakers: Vec<Arc<Waker>>,
    /// The first thread to notify, kept inline: waking one thread is the
    /// common case and must not allocate (an item's submit/wait cycle).
    thread: Option<Arc<Condvar>>,
    more_threads: Vec<Arc<Condvar>>,
}

impl Wakeups {
    pub(crate) fn is_empty(&self) -> bool {
        self.wakers.is_empty() && self.shared_wakers.is_empty() && self.thread.is_none()
    }

    fn push_thread(&mut self, cv: Arc<Condvar>) {
        if self.thread.is_none() {
            self.thread = Some(cv);
        } else {
            self.more_threads.push(cv);
        }
    }

    /// Runs the wake-ups. Wakers are foreign code running on a kasync
    /// thread after the call already finished: a panic there has no call to
    /// be reported against, so it is contained here rather than unwinding
    /// through a worker.
    pub(crate) fn wake_all(self) {
        // In the order they were satisfied.
        for cv in self.thread.into_iter().chain(self.more_threads) {
            cv.notify_one();
        }
        for waker in self.wakers {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
        }
        for waker in self.shared_wakers {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake_by_ref()));
        }
    }
}

// Aligned to 128 bytes (two cache lines, for the adjacent-line prefetcher)
// so that, inside `Mutex<State>`, the lock word sits on lines of its own:
// threads spinning on the lock then do not steal the lines the holder is
// writing (the measurement is in CHANGELOG.md).
#[repr(align(128))]
pub(crate) struct State {
    next_cookie: u64,
    next_domain_uid: u64,
    pub(crate) domains: Slab<DomainState>,
    /// Domains that have queued (not yet started) calls.
    ready: Vec<DomainId>,
    pub(crate) queued: usize,
    pub(crate) pending: usize,
    registered_pending: usize,
    waiters: Slab<WaiterState>,
    full_waiters: Vec<WaiterId>,
    unreported: Vec<Arc<PanicRecord>>,
    /// Pending async calls and the kasync waits they await.
    awaiting: Awaiting<Nudge>,
    pub(crate) pool: PoolState<Arc<Condvar>>,
    pub(crate) counters: Counters,
    pub(crate) shutdown: bool,
    /// Threads blocked in `schedule` under `Overflow::Block`.
    pub(crate) space_waiters: usize,
    /// Threads in [`Runtime::shutdown`](crate::Runtime::shutdown) or a
    /// runtime's drop, waiting for the runtime to drain and its workers to
    /// leave.
    pub(crate) drain_waiters: usize,
    /// Those of them that run queued calls: only they are woken for one.
    pub(crate) drain_runners: usize,
}

fn covers(scope: Scope, below: u64, domain: DomainId, registered: bool, cookie: Cookie) -> bool {
    match scope {
        Scope::Domain(d) => d == domain && cookie.get() < below,
        Scope::Full => registered,
    }
}

fn wake(waiter: &mut WaiterState, wakeups: &mut Wakeups) {
    waiter.wake.fire(wakeups);
}

/// The front of domain `d` (its lowest unfinished cookie) moved: publishes
/// it and wakes the waiters it satisfied.
fn front_moved(d: &mut DomainState, waiters: &mut Slab<WaiterState>, wakeups: &mut Wakeups) {
    // Published after the panic count: see `DomainHint`.
    d.publish_lowest();
    // Only the prefix of waiters whose bound the front has reached.
    let lowest = d.lowest_pending();
    let satisfied = d.waiters.partition_point(|&(below, _)| below <= lowest);
    for (_, w) in d.waiters.drain(..satisfied) {
        let waiter = &mut waiters[w];
        waiter.done = true;
        wake(waiter, wakeups);
    }
    // Wake the first waiter left early if it now waits for the front alone
    // (a blocking waiter only; an async one ahead of it stops the check). It
    // spins instead of parking again, so a chain of calls each waiting for
    // the one before (register in cookie order) pays a wake-up per two links
    // instead of one per link.
    if let Some(&(below, w)) = d.waiters.first() {
        let waiter = &mut waiters[w];
        if matches!(waiter.wake, Wake::Thread(_)) && d.waits_for_few(below, NEAR_CALLS) {
            wake(waiter, wakeups);
        }
    }
}

impl Wake {
    /// Wakes whoever is registered, once the lock is released (see
    /// [`Wakeups`]), and clears the registration.
    pub(crate) fn fire(&mut self, wakeups: &mut Wakeups) {
        match std::mem::replace(self, Wake::Nobody) {
            Wake::Nobody => {}
            Wake::Thread(cv) => wakeups.push_thread(cv),
            Wake::Task(waker) => wakeups.wakers.push(waker),
        }
    }
}

impl State {
    pub(crate) fn new() -> State {
        State {
            next_cookie: 1,
            next_domain_uid: 0,
            domains: Slab::new(),
            ready: Vec::new(),
            queued: 0,
            pending: 0,
            registered_pending: 0,
            waiters: Slab::new(),
            full_waiters: Vec::new(),
            unreported: Vec::new(),
            awaiting: Awaiting::default(),
            pool: PoolState::default(),
            counters: Counters::default(),
            shutdown: false,
            space_waiters: 0,
            drain_waiters: 0,
            drain_runners: 0,
        }
    }

    // ---- domains ----------------------------------------------------------

    pub(crate) fn add_domain(&mut self, name: Arc<str>, registered: bool) -> DomainId {
        self.next_domain_uid += 1;
        DomainId(
            self.domains
                .insert(DomainState::new(name, registered, self.next_domain_uid)),
        )
    }

    pub(crate) fn domain(&self, id: DomainId) -> &DomainState {
        &self.domains[id.0]
    }

    /// The last handle to a domain is gone: free it once its calls finished.
    pub(crate) fn release_domain(&mut self, id: DomainId) {
        self.domains[id.0].orphaned = true;
        self.remove_domain_if_unused(id);
    }

    fn remove_domain_if_unused(&mut self, id: DomainId) {
        let d = &self.domains[id.0];
        if d.orphaned && d.is_idle() && d.waiters.is_empty() {
            let gone = self.domains.remove(id.0);
            // An exclusive domain's unreported panics can never be reported
            // now: no barrier can name the domain any more.
            if !gone.registered {
                self.forget_reported(|r| r.domain_uid == gone.uid);
            }
        }
    }

    /// Takes a domain out of `synchronize_full`'s reach.
    pub(crate) fn unregister(&mut self, id: DomainId, wakeups: &mut Wakeups) {
        let d = &mut self.domains[id.0];
        if !d.registered {
            return;
        }
        d.registered = false;
        self.registered_pending -= d.unfinished();
        self.wake_full_if_drained(wakeups);
    }

    // ---- calls ------------------------------------------------------------

    /// Assigns the next cookie and queues the call, in one step.
    pub(crate) fn enqueue(&mut self, domain: DomainId, body: Body) -> Cookie {
        let cookie = Cookie::from_counter(self.next_cookie);
        self.next_cookie += 1;
        let d = &mut self.domains[domain.0];
        if !d.has_queued() {
            self.ready.push(domain);
        }
        d.push(cookie, body);
        self.queued += 1;
        self.pending += 1;
        if d.registered {
            self.registered_pending += 1;
        }
        cookie
    }

    fn claim_from(&mut self, domain: DomainId) -> Option<Claimed> {
        let (cookie, body) = self.domains[domain.0].claim()?;
        self.left_queue(domain, 1);
        Some(Claimed {
            domain,
            cookie,
            body,
            cancelled: false,
        })
    }

    /// A wait for the one call `cookie` of `domain` (a task, an item): takes
    /// it if it is still queued, ahead of the domain's earlier queued calls,
    /// which the waiter does not depend on.
    /// If it was cancelled and is not settled yet, the waiter settles it
    /// (a cancelled call whose drop waits for a later call of the same
    /// cancellation must not wait for the cancelling thread to get there).
    pub(crate) fn claim_call(&mut self, domain: DomainId, cookie: Cookie) -> Option<Claimed> {
        let d = self.domains.get_mut(domain.0)?;
        let (body, cancelled) = d.claim_call(cookie)?;
        if !cancelled {
            self.left_queue(domain, 1);
        }
        Some(Claimed {
            domain,
            cookie,
            body,
            cancelled,
        })
    }

    /// Whether [`State::claim_call`] would take call `cookie` of `domain`.
    pub(crate) fn is_claimable(&self, domain: DomainId, cookie: Cookie) -> bool {
        self.domains.get(domain.0).is_some_and(|d| d.is_claimable(cookie))
    }

    /// What an async call awaits when its poll finds the barrier over
    /// `scope`/`below` pending.
    pub(crate) fn awaited_range(&self, scope: Scope, below: u64) -> Awaited {
        let domain_uid = match scope {
            Scope::Domain(id) => self.domains.get(id.0).map_or(0, |d| d.uid),
            Scope::Full => 0,
        };
        Awaited::Range {
            scope,
            below,
            domain_uid,
        }
    }

    /// A queued call `awaited` covers, lowest first.
    pub(crate) fn claim_awaited_call(&mut self, awaited: Awaited) -> Option<Claimed> {
        match awaited {
            Awaited::Range {
                scope,
                below,
                domain_uid,
            } => {
                if let Scope::Domain(id) = scope {
                    // Its domain may be gone, and its slot reused.
                    self.domains.get(id.0).filter(|d| d.uid == domain_uid)?;
                }
                self.claim_for(scope, below)
            }
            Awaited::Call { domain, cookie } => self.claim_call(domain, cookie),
        }
    }

    /// What a barrier over `scope`/`below` may run: the lowest queued call
    /// it covers, or else (*borrow the waiter's thread* through an async call) a queued call that
    /// a pending async call it covers awaits.
    pub(crate) fn claim_for_barrier(&mut self, scope: Scope, below: u64) -> Option<Claimed> {
        if let Some(claimed) = self.claim_for(scope, below) {
            return Some(claimed);
        }
        if self.awaiting.is_empty() {
            return None;
        }
        let domains = &self.domains;
        let awaited = self.awaiting.awaited_by(|domain, cookie| {
            let registered = domains.get(domain.0).is_some_and(|d| d.registered);
            covers(scope, below, domain, registered, cookie)
        });
        awaited.into_iter().find_map(|a| self.claim_awaited_call(a))
    }

    /// What a wait for the one call `cookie` of `domain` may run: that call
    /// if it is queued, or else, if it is a pending async call, a queued
    /// call it awaits.
    pub(crate) fn claim_for_call(&mut self, domain: DomainId, cookie: Cookie) -> Option<Claimed> {
        if let Some(claimed) = self.claim_call(domain, cookie) {
            return Some(claimed);
        }
        if self.awaiting.is_empty() {
            return None;
        }
        let awaited = self.awaiting.awaited_by(|d, c| d == domain && c == cookie);
        awaited.into_iter().find_map(|a| self.claim_awaited_call(a))
    }

    /// Async call `cookie` of `domain` is pending and awaits `awaits` (none:
    /// it no longer awaits a kasync wait); `nudge` reaches those who wait for
    /// it. Returns whether it now awaits something, in which case the caller
    /// wakes the threads waiting for it ([`State::wake_helper_for`], its
    /// item's waiter), to help.
    pub(crate) fn set_awaiting(
        &mut self,
        domain: DomainId,
        cookie: Cookie,
        awaits: Vec<Awaited>,
        nudge: Nudge,
    ) -> (bool, Option<Nudge>) {
        let awaiting = !awaits.is_empty();
        let unkept = self.awaiting.set(domain, cookie, awaits, nudge);
        (awaiting, unkept)
    }

    /// Call `cookie` of `domain` was just queued: whoever waits for a
    /// pending async call that awaits it is nudged (the call's poller, its
    /// task's waiter, a barrier's helper), so that one of them runs it
    /// instead of waiting for a worker that may never come.
    pub(crate) fn nudge_awaiting(&mut self, domain: DomainId, cookie: Cookie, wakeups: &mut Wakeups) {
        if self.awaiting.is_empty() {
            return;
        }
        let d = &self.domains[domain.0];
        let (registered, uid) = (d.registered, d.uid);
        let nudged: Vec<(DomainId, Cookie, Arc<Waker>, Option<ItemHeader>)> = self
            .awaiting
            .awaiting(|a| match *a {
                Awaited::Range {
                    scope: Scope::Domain(d),
                    below,
                    domain_uid,
                } => d == domain && domain_uid == uid && cookie.get() < below,
                Awaited::Range { scope: Scope::Full, .. } => registered,
                Awaited::Call { .. } => false,
            })
            .map(|(d, c, n)| (d, c, n.future.clone(), n.item))
            .collect();
        for (d, c, future, item) in nudged {
            if self.domains.contains(d.0) {
                self.wake_helper_for(d, c);
            }
            wakeups.shared_wakers.push(future);
            if let Some(header) = item {
                // SAFETY: see `Nudge`: the entry goes before its call ends.
                unsafe { header.as_ref() }.with(self, |slot| slot.wake.fire(wakeups));
            }
        }
    }

    /// The ready domain whose next queued call has the lowest cookie, among
    /// those `eligible` accepts.
    fn lowest_ready(&self, eligible: impl Fn(&DomainState) -> bool) -> Option<DomainId> {
        self.ready
            .iter()
            .copied()
            .filter(|id| eligible(&self.domains[id.0]))
            .min_by_key(|id| self.domains[id.0].next_queued())
    }

    /// *Lowest cookie first*: the lowest queued cookie of the whole runtime.
    pub(crate) fn claim_lowest(&mut self) -> Option<Claimed> {
        let id = self.lowest_ready(|_| true)?;
        let claimed = self.claim_from(id)?;
        self.counters.started += 1;
        Some(claimed)
    }

    /// *Borrow the waiter's thread*: the lowest queued call a barrier over `scope`/`below` covers.
    pub(crate) fn claim_for(&mut self, scope: Scope, below: u64) -> Option<Claimed> {
        match scope {
            Scope::Domain(id) => {
                let next = self.domains.get(id.0)?.next_queued()?;
                if next.get() < below {
                    self.claim_from(id)
                } else {
                    None
                }
            }
            Scope::Full => {
                let id = self.lowest_ready(|d| d.registered)?;
                self.claim_from(id)
            }
        }
    }

    /// Records that a call that ran has finished and wakes the barriers it
    /// satisfied. `item` is the item that learns of its end; a panic goes to
    /// the item's handle if it has one, else to the barriers.
    pub(crate) fn finish(
        &mut self,
        domain: DomainId,
        cookie: Cookie,
        outcome: Outcome,
        item: Option<ItemCall>,
        wakeups: &mut Wakeups,
    ) {
        self.counters.completed += 1;
        let record = self.panic_record(domain, cookie, outcome);
        let published = match item {
            Some(item) => item.complete(self, record, wakeups),
            None => record,
        };
        self.end_call(domain, cookie, published, wakeups);
    }

    /// Ends a cancelled call (see [`State::cancel`]): it counts as finished
    /// for every barrier from now on, without having run. A panic while
    /// dropping what it held (`outcome`) is the call's panic, for barriers:
    /// its handle, if any, learnt that it was cancelled.
    pub(crate) fn finish_cancelled(
        &mut self,
        domain: DomainId,
        cookie: Cookie,
        outcome: Outcome,
        wakeups: &mut Wakeups,
    ) {
        let record = self.panic_record(domain, cookie, outcome);
        self.end_call(domain, cookie, record, wakeups);
    }

    /// The record of a call's panic, if it panicked.
    fn panic_record(&mut self, domain: DomainId, cookie: Cookie, outcome: Outcome) -> Option<Arc<PanicRecord>> {
        let message = outcome.err()?;
        self.counters.panicked += 1;
        let d = &self.domains[domain.0];
        Some(Arc::new(PanicRecord {
            hint: d.hint.clone(),
            domain,
            domain_uid: d.uid,
            registered: d.registered,
            cookie,
            domain_name: d.name.clone(),
            message,
            reported: AtomicBool::new(false),
        }))
    }

    /// What every call's end shares, run or cancelled: it stops counting as
    /// pending, its panic (one no handle took) is published, and the
    /// barriers it satisfied wake.
    fn end_call(&mut self, domain: DomainId, cookie: Cookie, panic: Option<Arc<PanicRecord>>, wakeups: &mut Wakeups) {
        let d = &mut self.domains[domain.0];
        let advanced = d.finish(cookie);
        let registered = d.registered;
        self.pending -= 1;
        if registered {
            self.registered_pending -= 1;
        }
        // Published before the front moves: see `DomainHint`.
        if let Some(record) = panic {
            self.publish_panic(record);
        }
        if advanced {
            front_moved(&mut self.domains[domain.0], &mut self.waiters, wakeups);
        }
        if registered {
            self.wake_full_if_drained(wakeups);
        }
        self.remove_domain_if_unused(domain);
    }

    /// Gives a panic no handle takes to the barriers: every barrier waiting
    /// over its call now reports it, and it stays unreported for barriers
    /// made later until one reports it.
    fn publish_panic(&mut self, record: Arc<PanicRecord>) {
        let State {
            domains,
            waiters,
            full_waiters,
            unreported,
            ..
        } = self;
        let domain = domains.get(record.domain.0).filter(|d| d.uid == record.domain_uid);
        if domain.is_none() && !record.registered {
            // An exclusive domain that is gone: no barrier can name it.
            return;
        }
        let below_it = |d: &DomainState| {
            let first = d.waiters.partition_point(|&(below, _)| below <= record.cookie.get());
            d.waiters[first..].iter().map(|&(_, w)| w).collect::<Vec<_>>()
        };
        let domain_waiters = domain.map(below_it).unwrap_or_default();
        let full = if record.registered { &full_waiters[..] } else { &[] };
        for w in domain_waiters.into_iter().chain(full.iter().copied()) {
            let waiter = &mut waiters[w];
            if !waiter.done {
                waiter.panics.push(record.clone());
            }
        }
        record.hint.unreported.fetch_add(1, Ordering::Release);
        unreported.push(record);
    }

    /// A handle was dropped without taking its call's panic: the barriers
    /// get it, as though the call had panicked now.
    pub(crate) fn release_panic(&mut self, record: Arc<PanicRecord>) {
        self.publish_panic(record);
    }

    /// Cancels the queued, unstarted call `cookie` of `domain`: it leaves
    /// the queue and never runs, but stays pending, its body in place, until
    /// it is settled ([`State::take_cancelled`]: its body dropped with the
    /// lock released, then [`State::finish_cancelled`]), so no barrier over
    /// it returns before what it held is gone. `false` if it is not queued
    /// (started, finished, cancelled before, or a scoped item).
    pub(crate) fn cancel(&mut self, domain: DomainId, cookie: Cookie) -> bool {
        let cancelled = self.domains.get_mut(domain.0).is_some_and(|d| d.cancel(cookie));
        if cancelled {
            self.left_queue(domain, 1);
            self.counters.cancelled += 1;
        }
        cancelled
    }

    /// Cancels every queued, unstarted call of `domain` but scoped items
    /// (see [`State::cancel`]); their cookies go to `out`, in order.
    pub(crate) fn cancel_domain(&mut self, domain: DomainId, out: &mut Vec<Cookie>) {
        let before = out.len();
        self.domains[domain.0].cancel_queued(out);
        let n = out.len() - before;
        self.left_queue(domain, n);
        self.counters.cancelled += n as u64;
    }

    /// The cancelled call `cookie` of `domain`, to settle, unless a thread
    /// waiting for it took it first (it settles it then).
    pub(crate) fn take_cancelled(&mut self, domain: DomainId, cookie: Cookie) -> Option<Claimed> {
        let body = self.domains.get_mut(domain.0)?.take_cancelled(cookie)?;
        Some(Claimed {
            domain,
            cookie,
            body,
            cancelled: true,
        })
    }

    /// `n` queued calls of `domain` left the queue (claimed or cancelled).
    fn left_queue(&mut self, domain: DomainId, n: usize) {
        if !self.domains[domain.0].has_queued() {
            if let Some(at) = self.ready.iter().position(|&r| r == domain) {
                self.ready.swap_remove(at);
            }
        }
        self.queued -= n;
    }

    fn wake_full_if_drained(&mut self, wakeups: &mut Wakeups) {
        if self.registered_pending != 0 {
            return;
        }
        for w in self.full_waiters.drain(..) {
            let waiter = &mut self.waiters[w];
            waiter.done = true;
            wake(waiter, wakeups);
        }
    }

    // ---- waiters ----------------------------------------------------------

    fn satisfied(&self, scope: Scope, below: u64) -> bool {
        match scope {
            Scope::Domain(id) => self.domains[id.0].lowest_pending() >= below,
            Scope::Full => self.registered_pending == 0,
        }
    }

    fn record_in_range(&self, scope: Scope, below: u64, record: &PanicRecord) -> bool {
        match scope {
            Scope::Domain(d) => self.domains[d.0].uid == record.domain_uid && record.cookie.get() < below,
            Scope::Full => record.registered,
        }
    }

    /// Registers a barrier. It will report the unreported panics in its
    /// range, and those published while it waits. `None` when the barrier
    /// is already satisfied with nothing to report: then there is nothing to
    /// register.
    pub(crate) fn add_waiter(&mut self, scope: Scope, below: u64) -> Option<WaiterId> {
        let panics: Vec<_> = self
            .unreported
            .iter()
            .filter(|r| self.record_in_range(scope, below, r))
            .cloned()
            .collect();
        let done = self.satisfied(scope, below);
        if done && panics.is_empty() {
            return None;
        }
        let id = self.waiters.insert(WaiterState {
            scope,
            below,
            done,
            panics,
            wake: Wake::Nobody,
            helper: false,
        });
        if !done {
            match scope {
                Scope::Domain(d) => {
                    let list = &mut self.domains[d.0].waiters;
                    let at = list.partition_point(|&(b, _)| b <= below);
                    list.insert(at, (below, id));
                }
                Scope::Full => self.full_waiters.push(id),
            }
        }
        Some(id)
    }

    pub(crate) fn waiter_done(&self, id: WaiterId) -> bool {
        self.waiters[id].done
    }

    pub(crate) fn waiter_scope(&self, id: WaiterId) -> (Scope, u64) {
        let w = &self.waiters[id];
        (w.scope, w.below)
    }

    /// Arms the waiter's wake-up; `helper` says it will run calls it covers.
    /// Returns the previous registration, to be dropped after unlocking (a
    /// waker's drop is foreign code).
    pub(crate) fn set_wake(&mut self, id: WaiterId, wake: Wake, helper: bool) -> Wake {
        let w = &mut self.waiters[id];
        w.helper = helper;
        std::mem::replace(&mut w.wake, wake)
    }

    fn unlink(&mut self, id: WaiterId) {
        let w = &self.waiters[id];
        if w.done {
            return;
        }
        match w.scope {
            Scope::Domain(d) => {
                let below = w.below;
                let list = &mut self.domains[d.0].waiters;
                let from = list.partition_point(|&(b, _)| b < below);
                if let Some(at) = list[from..].iter().position(|&(_, x)| x == id) {
                    list.remove(from + at);
                }
            }
            Scope::Full => {
                if let Some(at) = self.full_waiters.iter().position(|&x| x == id) {
                    self.full_waiters.swap_remove(at);
                }
            }
        }
    }

    /// Removes a satisfied waiter and returns what its barrier reports. The
    /// panics it reports count as reported from now on: barriers made later
    /// do not report them again.
    pub(crate) fn take_result(&mut self, id: WaiterId) -> Result<(), SyncError> {
        self.unlink(id);
        let waiter = self.waiters.remove(id);
        let mut panics = waiter.panics;
        if panics.is_empty() {
            return Ok(());
        }
        panics.sort_by_key(|r| r.cookie);
        panics.dedup_by(|a, b| Arc::ptr_eq(a, b));
        for r in &panics {
            r.reported.store(true, Ordering::Relaxed);
        }
        self.forget_reported(|r| r.reported.load(Ordering::Relaxed));
        let first = &panics[0];
        Err(SyncError::Panicked(PanicReport::new(
            first.cookie,
            first.domain_name.clone(),
            first.message.clone(),
            panics.len() - 1,
        )))
    }

    /// Drops the records `gone` picks from `unreported`, keeping each
    /// domain's count of unreported panics true.
    fn forget_reported(&mut self, mut gone: impl FnMut(&PanicRecord) -> bool) {
        self.unreported.retain(|r| {
            let forget = gone(r);
            if forget {
                r.hint.unreported.fetch_sub(1, Ordering::Release);
            }
            !forget
        });
    }

    /// Removes a waiter whose barrier was dropped (or timed out) before
    /// reporting; its panics stay for the next barrier.
    /// Returns its wake registration, to be dropped after unlocking.
    pub(crate) fn remove_waiter(&mut self, id: WaiterId) -> Wake {
        self.unlink(id);
        self.waiters.remove(id).wake
    }

    /// *Borrow the waiter's thread* for calls queued while a barrier waits: wakes one blocked,
    /// helping waiter that covers the new call. Returns whether one was woken.
    pub(crate) fn wake_helper_for(&mut self, domain: DomainId, cookie: Cookie) -> bool {
        let d = &self.domains[domain.0];
        let registered = d.registered;
        let first = d.waiters.partition_point(|&(below, _)| below <= cookie.get());
        let domain_waiters = d.waiters[first..].iter().map(|&(_, w)| w);
        let full = if registered { &self.full_waiters[..] } else { &[] };
        for w in domain_waiters.chain(full.iter().copied()) {
            let waiter = &mut self.waiters[w];
            if waiter.helper {
                if let Wake::Thread(cv) = &waiter.wake {
                    cv.notify_one();
                    waiter.helper = false;
                    return true;
                }
            }
        }
        false
    }

    /// Whether a barrier over `scope`/`below` covers a call on this thread's
    /// stack (`frame_domain`, `frame_cookie`).
    pub(crate) fn covers_call(&self, scope: Scope, below: u64, domain: DomainId, cookie: Cookie) -> bool {
        let registered = self.domains.get(domain.0).is_some_and(|d| d.registered);
        covers(scope, below, domain, registered, cookie)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! The state machine alone, without threads. Named `miri_*` so CI runs
    //! them under miri as well.

    use super::*;

    fn blocking() -> Body {
        Body::Blocking(crate::base::inline_fn::BlockingFn::new(|_| {}))
    }

    fn state_with_domain(registered: bool) -> (State, DomainId) {
        let mut st = State::new();
        let d = st.add_domain(Arc::from("d"), registered);
        (st, d)
    }

    #[test]
    fn miri_cookies_increase_and_claims_are_lowest_first() {
        let mut st = State::new();
        let a = st.add_domain(Arc::from("a"), true);
        let b = st.add_domain(Arc::from("b"), false);
        let c1 = st.enqueue(b, blocking());
        let c2 = st.enqueue(a, blocking());
        let c3 = st.enqueue(b, blocking());
        assert!(c1 < c2 && c2 < c3);
        assert_eq!(st.queued, 3);
        assert_eq!(st.claim_lowest().map(|c| c.cookie), Some(c1));
        // Helping a full barrier only takes registered domains' calls.
        assert_eq!(st.claim_for(Scope::Full, u64::MAX).map(|c| c.cookie), Some(c2));
        // A cookie barrier only takes calls below its bound.
        assert!(st.claim_for(Scope::Domain(b), c3.get()).is_none());
        assert_eq!(st.claim_for(Scope::Domain(b), u64::MAX).map(|c| c.cookie), Some(c3));
        assert!(st.claim_lowest().is_none());
        assert_eq!((st.queued, st.pending), (0, 3));
    }

    #[test]
    fn miri_waiters_are_satisfied_in_order_of_their_bound() {
        let (mut st, d) = state_with_domain(true);
        let c1 = st.enqueue(d, blocking());
        let c2 = st.enqueue(d, blocking());
        let early = st.add_waiter(Scope::Domain(d), c2.get()).unwrap();
        let late = st.add_waiter(Scope::Domain(d), u64::MAX).unwrap();
        let full = st.add_waiter(Scope::Full, u64::MAX).unwrap();
        st.claim_lowest();
        st.claim_lowest();
        let mut wakeups = Wakeups::default();
        st.finish(d, c2, Ok(()), None, &mut wakeups);
        assert!(!st.waiter_done(early) && !st.waiter_done(late) && !st.waiter_done(full));
        st.finish(d, c1, Ok(()), None, &mut wakeups);
        assert!(st.waiter_done(early) && st.waiter_done(late) && st.waiter_done(full));
        for w in [early, late, full] {
            assert_eq!(st.take_result(w), Ok(()));
        }
        // Satisfied with nothing to report: nothing is registered.
        assert!(st.add_waiter(Scope::Domain(d), u64::MAX).is_none());
    }

    #[test]
    fn miri_panics_go_to_waiting_barriers_and_then_to_the_next_one() {
        let (mut st, d) = state_with_domain(true);
        let c1 = st.enqueue(d, blocking());
        let waiting = st.add_waiter(Scope::Domain(d), u64::MAX).unwrap();
        st.claim_lowest();
        let mut wakeups = Wakeups::default();
        st.finish(d, c1, Err(Arc::from("boom")), None, &mut wakeups);
        // A barrier made now, before anyone reported it, reports it too.
        let later = st.add_waiter(Scope::Full, u64::MAX).unwrap();
        let report = |r: Result<(), SyncError>| match r {
            Err(SyncError::Panicked(p)) => (p.cookie(), p.message().to_string()),
            other => panic!("{other:?}"),
        };
        assert_eq!(report(st.take_result(waiting)), (c1, "boom".to_string()));
        assert_eq!(report(st.take_result(later)), (c1, "boom".to_string()));
        // Reported: the next barrier is clean.
        assert!(st.add_waiter(Scope::Full, u64::MAX).is_none());
    }

    #[test]
    fn miri_dropped_barrier_leaves_its_panic_for_the_next() {
        let (mut st, d) = state_with_domain(false);
        let c1 = st.enqueue(d, blocking());
        st.claim_lowest();
        let mut wakeups = Wakeups::default();
        st.finish(d, c1, Err(Arc::from("kept")), None, &mut wakeups);
        let dropped = st.add_waiter(Scope::Domain(d), u64::MAX).unwrap();
        st.remove_waiter(dropped);
        // Exclusive domain: a full barrier does not cover it.
        assert!(st.add_waiter(Scope::Full, u64::MAX).is_none());
        let next = st.add_waiter(Scope::Domain(d), u64::MAX).unwrap();
        assert!(matches!(st.take_result(next), Err(SyncError::Panicked(_))));
    }

    #[test]
    fn miri_unregister_releases_full_waiters_and_orphans_are_freed() {
        let (mut st, d) = state_with_domain(true);
        let c1 = st.enqueue(d, blocking());
        let full = st.add_waiter(Scope::Full, u64::MAX).unwrap();
        let mut wakeups = Wakeups::default();
        st.unregister(d, &mut wakeups);
        assert!(st.waiter_done(full));
        assert_eq!(st.take_result(full), Ok(()));
        st.release_domain(d);
        assert!(st.domains.contains(d.0), "still has a pending call");
        st.claim_lowest();
        st.finish(d, c1, Ok(()), None, &mut wakeups);
        assert!(!st.domains.contains(d.0), "freed after its last call");
    }
}
