//! Errors: what a barrier reports, and why a runtime could not be built.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use crate::Cookie;

/// Why a [`Barrier`](crate::Barrier) did not simply return `Ok(())`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// At least one call covered by the barrier panicked. The calls still
    /// completed (a panic never hangs a barrier); this names the one with the
    /// lowest cookie.
    Panicked(PanicReport),
    /// The barrier covers a call that is running on the waiting thread itself
    /// (for example `synchronize_full()` from inside a scheduled call), so
    /// waiting could never finish. The kernel would hang here; kasync refuses.
    WouldDeadlock {
        /// The waiter's own call that the barrier covers: the innermost one,
        /// when the thread runs several nested calls (a call that helps runs
        /// other calls on its own stack) and the barrier covers more than one.
        waiter: Cookie,
    },
    /// [`Barrier::wait_timeout`](crate::Barrier::wait_timeout) ran out of time
    /// before the barrier's calls finished. They keep running.
    TimedOut,
    /// Blocking here would stall the async runtime the thread belongs to
    /// (for example a tokio current-thread runtime, or inside an async-std or
    /// smol task): `.await` the barrier instead. Also returned by
    /// [`Runtime::shutdown`](crate::Runtime::shutdown) on one of the
    /// runtime's own worker threads, which cannot wait for every worker
    /// (itself included) to leave.
    BlockingNotAllowed {
        /// The executor adapter that refused.
        executor: &'static str,
        /// Why blocking is not possible on this thread.
        reason: &'static str,
    },
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Panicked(report) => report.fmt(f),
            SyncError::WouldDeadlock { waiter } => write!(
                f,
                "waiting would deadlock: the barrier covers call {waiter}, which is running on this very thread"
            ),
            SyncError::TimedOut => f.write_str("timed out waiting for the barrier"),
            SyncError::BlockingNotAllowed { executor, reason } => {
                write!(f, "cannot block on this thread ({executor}: {reason})")?;
                if *reason != OWN_WORKER {
                    f.write_str("; `.await` the barrier instead")?;
                }
                Ok(())
            }
        }
    }
}

impl Error for SyncError {}

/// Why [`Task::wait`](crate::Task::wait) (or `.await`) gave no value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The call panicked. A task delivers its call's panic here, and
    /// barriers do not report it (unless the task is dropped before it took
    /// it).
    Panicked(PanicReport),
    /// The call was cancelled before it started ([`Task::cancel`](crate::Task::cancel),
    /// [`Domain::cancel`](crate::Domain::cancel)): it never ran.
    Cancelled,
    /// The task's call is running on the waiting thread itself (below it:
    /// the call, or a call it runs nested, waits for its own task), so
    /// waiting could never finish. The task stays waitable from elsewhere.
    WouldDeadlock {
        /// The task's cookie.
        waiter: Cookie,
    },
    /// [`Task::wait_timeout`](crate::Task::wait_timeout) ran out of time;
    /// the task stays waitable.
    TimedOut,
    /// Blocking here would stall the async runtime the thread belongs to:
    /// `.await` the task instead.
    BlockingNotAllowed {
        /// The executor adapter that refused.
        executor: &'static str,
        /// Why blocking is not possible on this thread.
        reason: &'static str,
    },
}

impl TaskError {
    /// The panic, if the call panicked.
    pub fn panic(&self) -> Option<&PanicReport> {
        match self {
            TaskError::Panicked(report) => Some(report),
            _ => None,
        }
    }

    /// Whether the call was cancelled before it ran.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled)
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(report) => report.fmt(f),
            TaskError::Cancelled => f.write_str("the task was cancelled before it ran"),
            TaskError::WouldDeadlock { waiter } => write!(
                f,
                "waiting would deadlock: task {waiter} is running on this very thread"
            ),
            TaskError::TimedOut => f.write_str("timed out waiting for the task"),
            TaskError::BlockingNotAllowed { executor, reason } => {
                write!(
                    f,
                    "cannot block on this thread ({executor}: {reason}); `.await` the task instead"
                )
            }
        }
    }
}

// `Panicked` displays its report, so it is not also a `source`: error
// reporters would print it twice.
impl Error for TaskError {}

/// The reason [`SyncError::BlockingNotAllowed`] gives when a runtime is shut
/// down on one of its own workers, where awaiting is no way out either.
pub(crate) const OWN_WORKER: &str =
    "this thread is one of the runtime's own workers, which cannot wait for every worker to leave";

/// A panic inside a scheduled call, as reported by a barrier that covers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PanicReport {
    cookie: Cookie,
    domain: Arc<str>,
    message: Arc<str>,
    others: usize,
}

impl PanicReport {
    pub(crate) fn new(cookie: Cookie, domain: Arc<str>, message: Arc<str>, others: usize) -> Self {
        PanicReport {
            cookie,
            domain,
            message,
            others,
        }
    }

    /// The cookie of the panicking call (the lowest one, if several panicked).
    pub fn cookie(&self) -> Cookie {
        self.cookie
    }

    /// The name of the panicking call's domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The panic message (`"<non-string panic payload>"` if it was not a string).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How many other calls covered by the same barrier panicked too.
    pub fn others(&self) -> usize {
        self.others
    }
}

impl fmt::Display for PanicReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "call {} in domain `{}` panicked: {}",
            self.cookie, self.domain, self.message
        )?;
        if self.others > 0 {
            write!(f, " (and {} more calls panicked)", self.others)?;
        }
        Ok(())
    }
}

impl Error for PanicReport {}

/// Returned by `try_schedule` when the runtime already has `max_pending`
/// unfinished calls. It hands the function back, uncalled.
pub struct Full<F>(pub F);

impl<F> Full<F> {
    /// Takes the function back.
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F> fmt::Debug for Full<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<F> fmt::Display for Full<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the kasync runtime has max_pending unfinished calls; the call was not scheduled")
    }
}

impl<F> Error for Full<F> {}

/// Why [`Builder::build`](crate::Builder::build) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// No executor adapter is enabled: turn on a cargo feature (`threads`,
    /// `tokio`, `async-std`, `smol`) or pass one to
    /// [`Builder::executor`](crate::Builder::executor).
    NoExecutor,
    /// The chosen adapter cannot run here, for example the tokio adapter
    /// outside a tokio runtime.
    Executor(String),
    /// A builder setting is out of range.
    InvalidConfig(&'static str),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::NoExecutor => f.write_str(
                "no kasync executor adapter is enabled: enable one of the cargo features \
                 `threads`, `tokio`, `async-std`, `smol`, or call Builder::executor",
            ),
            BuildError::Executor(why) => write!(f, "the executor adapter cannot run here: {why}"),
            BuildError::InvalidConfig(why) => write!(f, "invalid kasync runtime setting: {why}"),
        }
    }
}

impl Error for BuildError {}

/// So `Tokio::current()?` works where a `BuildError` is returned.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl From<kasync_tokio::NoRuntime> for BuildError {
    fn from(e: kasync_tokio::NoRuntime) -> BuildError {
        BuildError::Executor(e.to_string())
    }
}
