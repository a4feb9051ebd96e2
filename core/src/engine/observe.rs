//! The observation hooks: where the core tells `tracing` (feature `tracing`)
//! and the timeline recorder ([`Builder::record_timeline`](crate::Builder::record_timeline))
//! what happened.
//!
//! Every hook is cheap when nobody listens: without the `tracing` feature the
//! tracing half compiles away, and without a recorder the other half is one
//! branch on a `None`. Values that cost something to build (domain names,
//! wait labels) are computed only when a listener wants them.
//!
//! Subscribers never run under the state lock, and a panicking subscriber is
//! contained in every hook (not in entering or leaving a call's span, which
//! tracing's own subscribers do not panic in).

use std::time::Instant;

use crate::base::sync::now;
use crate::engine::context::{self};
use crate::engine::shared::Shared;
use crate::model::ids::Scope;
use crate::model::state::State;
use crate::model::timeline::StartedCall;
use crate::Cookie;

/// Whether anything wants wait labels: a recorder, or an enabled tracing
/// subscriber.
fn wants_waits(shared: &Shared) -> bool {
    // The global maximum level: one atomic load, and never stale the way a
    // per-callsite interest cache can be when subscribers come and go.
    #[cfg(feature = "tracing")]
    if tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG {
        return true;
    }
    shared.recorder.is_some()
}

/// A call was queued; `st` is locked.
pub(crate) fn queued(shared: &Shared, st: &State, domain: crate::model::ids::DomainId, cookie: Cookie) {
    if let Some(recorder) = &shared.recorder {
        recorder.queued(cookie, st.domain(domain).name.clone(), now());
    }
}

/// A queued call was cancelled (lock released).
pub(crate) fn cancelled(shared: &Shared, cookie: Cookie) {
    if let Some(recorder) = &shared.recorder {
        recorder.cancelled(cookie);
    }
}

/// A call that is running on this thread, observed until it finishes.
pub(crate) struct CallObserver {
    recorded: Option<StartedCall>,
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// A call is about to start on this thread (before its frame is pushed).
pub(crate) fn call_started(shared: &Shared, domain: crate::model::ids::DomainId, cookie: Cookie) -> CallObserver {
    let recorded = shared.recorder.as_ref().map(|recorder| {
        // On a waiting thread (not a worker, or a worker already inside a
        // call): the call is helped (*borrow the waiter's thread*).
        let helped = context::depth() > 0 || context::worker_slot(shared.id()).is_none();
        recorder.started(cookie, helped, now())
    });
    let _ = domain;
    CallObserver {
        recorded,
        #[cfg(feature = "tracing")]
        span: contained(|| {
            let span = tracing::info_span!(
                target: "kasync",
                "call",
                cookie = cookie.get(),
                domain = tracing::field::Empty,
                adapter = shared.executor.name(),
            );
            if !span.is_disabled() {
                // Copied out first: the subscriber runs with the lock released.
                let name = shared.lock().domain(domain).name.clone();
                span.record("domain", tracing::field::display(&name));
            }
            span
        })
        .unwrap_or_else(tracing::Span::none),
    }
}

/// Runs a tracing hook, containing a panicking subscriber: the bookkeeping
/// around the hook (a claimed call, the watchdog flag, a blocked count) must
/// go on regardless.
#[cfg(feature = "tracing")]
fn contained<R>(hook: impl FnOnce() -> R) -> Option<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook)).ok()
}

impl CallObserver {
    /// Enters the call's tracing span for as long as the guard lives.
    pub(crate) fn enter(&self) -> impl Drop + '_ {
        #[cfg(feature = "tracing")]
        {
            self.span.enter()
        }
        #[cfg(not(feature = "tracing"))]
        {
            NoGuard
        }
    }

    /// The call finished (or panicked).
    pub(crate) fn finished(self, shared: &Shared, panicked: bool) {
        #[cfg(feature = "tracing")]
        if panicked {
            contained(|| {
                let _entered = self.span.enter();
                tracing::warn!(target: "kasync", "call panicked");
            });
        }
        if let (Some(recorder), Some(call)) = (&shared.recorder, self.recorded) {
            recorder.finished(call, panicked, now());
        }
    }
}

#[cfg(not(feature = "tracing"))]
struct NoGuard;

#[cfg(not(feature = "tracing"))]
impl Drop for NoGuard {
    fn drop(&mut self) {}
}

/// What a wait waited for, for people: `synchronize_cookie(probes, 17)`.
/// `domain_name`, when given, is used instead of the state's (whose slot
/// may be gone once the wait is done, for handles that do not keep their
/// domain alive).
fn wait_label(st: &State, scope: Scope, below: u64, domain_name: Option<&str>) -> String {
    match scope {
        Scope::Full => String::from("synchronize_full()"),
        Scope::Domain(id) => {
            let name = match domain_name {
                Some(name) => name,
                None => st.domains.get(id.0).map_or("?", |d| &*d.name),
            };
            if below == u64::MAX {
                format!("synchronize({name})")
            } else {
                format!("synchronize_cookie({name}, {below})")
            }
        }
    }
}

/// When an observed wait began: `None` when nobody listens, so unobserved
/// waits do not even read the clock.
pub(crate) fn wait_started(shared: &Shared) -> Option<Instant> {
    wants_waits(shared).then(now)
}

/// A wait that returned, to be reported once the state lock is released
/// (a subscriber or the recorder must never run under it).
pub(crate) struct FinishedWait {
    what: String,
    started: Instant,
    at: Instant,
}

/// A wait over `scope`/`below` that began at `started` (`None`:
/// unobserved) returned; `st` is locked, for the domain's name.
pub(crate) fn wait_finished(
    st: &State,
    scope: Scope,
    below: u64,
    domain_name: Option<&str>,
    started: Option<Instant>,
) -> Option<FinishedWait> {
    let started = started?;
    Some(FinishedWait {
        what: wait_label(st, scope, below, domain_name),
        started,
        at: now(),
    })
}

impl FinishedWait {
    /// Reports the wait; call it with the state unlocked.
    pub(crate) fn report(self, shared: &Shared, helped: usize, blocking: bool) {
        #[cfg(feature = "tracing")]
        contained(|| {
            tracing::debug!(
                target: "kasync",
                what = %self.what,
                waited_us = self.at.saturating_duration_since(self.started).as_micros() as u64,
                helped,
                blocking,
                "barrier wait returned",
            )
        });
        if let Some(recorder) = &shared.recorder {
            recorder.waited(self.what, self.started, helped, blocking, self.at);
        }
    }
}

/// A worker thread started.
pub(crate) fn worker_started(shared: &Shared) {
    let _ = shared;
    #[cfg(feature = "tracing")]
    contained(|| {
        tracing::debug!(
            target: "kasync",
            worker = std::thread::current().name().unwrap_or("?"),
            adapter = shared.executor.name(),
            "worker started",
        )
    });
}

/// The executor refused to start a worker.
pub(crate) fn spawn_refused(shared: &Shared) {
    let _ = shared;
    #[cfg(feature = "tracing")]
    contained(|| {
        tracing::warn!(
            target: "kasync",
            adapter = shared.executor.name(),
            "executor refused to start a worker; carrying on with the workers running",
        )
    });
}

/// *Compensate at once* started a replacement for a worker blocking in a kasync wait.
pub(crate) fn compensated() {
    #[cfg(feature = "tracing")]
    contained(|| tracing::debug!(target: "kasync", "worker blocks in a wait: replacement started"));
}

/// *Grow by progress* found the pool stalled and adds `added` workers to `running`.
pub(crate) fn stalled(added: usize, running: usize) {
    let _ = (added, running);
    #[cfg(feature = "tracing")]
    contained(|| tracing::info!(target: "kasync", added, running, "pool stalled: adding workers"));
}
