//! What ran where and when: a runtime's recorded timeline, and its exports.
//!
//! Recording is off unless [`Builder::record_timeline`](crate::Builder::record_timeline)
//! turns it on; when off, the runtime keeps no recorder at all and every hook
//! is one branch on a `None`.

mod chrome;
mod svg;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::base::sync::Mutex;
use crate::Cookie;

/// A runtime's recorded calls and waits, from
/// [`Runtime::timeline`](crate::Runtime::timeline).
///
/// Export it as Chrome Trace Event JSON ([`Timeline::to_chrome_trace`], opens
/// in Perfetto or `chrome://tracing`) or as a self-contained SVG boot chart
/// ([`Timeline::to_svg`]): one row per thread, a bar per call coloured by
/// domain and labelled with its cookie, waits drawn as hatched bands.
///
/// ```
/// # use kasync_core as kasync;
/// let rt = kasync::Runtime::builder().record_timeline(true).build().unwrap();
/// let probes = rt.domain("probes");
/// for _ in 0..4 {
///     probes.schedule(|_| {});
/// }
/// rt.synchronize_full().wait().unwrap();
/// let timeline = rt.timeline().expect("recording is on");
/// assert_eq!(timeline.calls().len(), 4);
/// assert!(timeline.to_svg().starts_with("<svg"));
/// assert!(timeline.to_chrome_trace().contains("\"traceEvents\""));
/// ```
#[derive(Clone, Debug)]
pub struct Timeline {
    origin: Instant,
    threads: Vec<ThreadRecord>,
    calls: Vec<CallRecord>,
    waits: Vec<WaitRecord>,
}

/// A thread that ran calls or waited, as one row of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadRecord {
    /// The thread's index in [`Timeline::threads`], in order of first appearance.
    pub index: usize,
    /// The thread's name, or `thread-<index>` for unnamed threads.
    pub name: String,
}

/// One finished call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallRecord {
    /// The call's cookie.
    pub cookie: Cookie,
    /// The name of the call's domain.
    pub domain: Arc<str>,
    /// Index in [`Timeline::threads`] of the thread that started it.
    pub thread: usize,
    /// When it was scheduled.
    pub queued: Instant,
    /// When a thread started it.
    pub started: Instant,
    /// When it finished (for async calls: when its future completed).
    pub finished: Instant,
    /// Whether it panicked.
    pub panicked: bool,
    /// Whether it ran on a waiting thread instead of a worker (*borrow the waiter's thread*).
    pub helped: bool,
}

/// One wait on a barrier or an item.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WaitRecord {
    /// Index in [`Timeline::threads`] of the waiting thread (for `.await`:
    /// the thread that polled it to completion).
    pub thread: usize,
    /// What was waited for, e.g. `synchronize_cookie(probes, 17)`.
    pub what: String,
    /// When the wait began.
    pub started: Instant,
    /// When it returned.
    pub finished: Instant,
    /// Calls the waiting thread ran itself while waiting.
    pub helped: usize,
    /// `true` for a blocking wait, `false` for an `.await` (which holds no
    /// thread while pending).
    pub blocking: bool,
}

impl Timeline {
    /// When the runtime was built: the zero of the exported time axes.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The threads that ran calls or waited, in order of first appearance.
    pub fn threads(&self) -> &[ThreadRecord] {
        &self.threads
    }

    /// The finished calls, in cookie order.
    pub fn calls(&self) -> &[CallRecord] {
        &self.calls
    }

    /// The finished waits, in order of their start.
    pub fn waits(&self) -> &[WaitRecord] {
        &self.waits
    }

    /// Offset of `at` from [`Timeline::origin`].
    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.origin)
    }

    /// The timeline as Chrome Trace Event JSON: a complete (`"X"`) event per
    /// call (category `call`) and per wait (category `wait`), one `tid` per
    /// thread with its name, times in microseconds from [`Timeline::origin`].
    pub fn to_chrome_trace(&self) -> String {
        chrome::render(self)
    }

    /// The timeline as a self-contained SVG boot chart.
    pub fn to_svg(&self) -> String {
        svg::render(self)
    }

    /// Writes [`Timeline::to_chrome_trace`] to `path`.
    pub fn write_chrome_trace(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.to_chrome_trace())
    }

    /// Writes [`Timeline::to_svg`] to `path`.
    pub fn write_svg(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.to_svg())
    }
}

impl fmt::Display for Timeline {
    /// A text table: one line per call, in cookie order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>7} {:<12} {:<20} {:>10} {:>10}",
            "cookie", "domain", "thread", "start ms", "took ms"
        )?;
        for call in &self.calls {
            writeln!(
                f,
                "{:>7} {:<12} {:<20} {:>10.3} {:>10.3}{}",
                call.cookie.get(),
                call.domain,
                self.threads[call.thread].name,
                self.offset(call.started).as_secs_f64() * 1e3,
                call.finished.saturating_duration_since(call.started).as_secs_f64() * 1e3,
                if call.panicked { "  panicked" } else { "" },
            )?;
        }
        Ok(())
    }
}

/// Collects a runtime's timeline while it runs. Its lock is taken inside the
/// state lock (when queueing) and never the other way round.
pub(crate) struct Recorder {
    origin: Instant,
    inner: Mutex<Recording>,
}

#[derive(Default)]
struct Recording {
    threads: Vec<ThreadRecord>,
    thread_index: HashMap<ThreadId, usize>,
    /// Queued calls: when, and in which domain.
    queued: HashMap<u64, (Instant, Arc<str>)>,
    calls: Vec<CallRecord>,
    waits: Vec<WaitRecord>,
}

impl Recording {
    fn this_thread(&mut self) -> usize {
        let thread = std::thread::current();
        let next = self.threads.len();
        let index = *self.thread_index.entry(thread.id()).or_insert(next);
        if index == next {
            let name = thread.name().map_or_else(|| format!("thread-{index}"), str::to_owned);
            self.threads.push(ThreadRecord { index, name });
        }
        index
    }
}

/// A call that started on this thread, to be recorded when it finishes.
pub(crate) struct StartedCall {
    cookie: Cookie,
    thread: usize,
    started: Instant,
    helped: bool,
    queued: Option<(Instant, Arc<str>)>,
}

impl Recorder {
    pub(crate) fn new(origin: Instant) -> Recorder {
        Recorder {
            origin,
            inner: Mutex::new(Recording::default()),
        }
    }

    pub(crate) fn queued(&self, cookie: Cookie, domain: Arc<str>, at: Instant) {
        self.inner.lock().queued.insert(cookie.get(), (at, domain));
    }

    /// A queued call was cancelled: it never starts, so it leaves no record.
    pub(crate) fn cancelled(&self, cookie: Cookie) {
        self.inner.lock().queued.remove(&cookie.get());
    }

    pub(crate) fn started(&self, cookie: Cookie, helped: bool, at: Instant) -> StartedCall {
        let mut rec = self.inner.lock();
        StartedCall {
            cookie,
            thread: rec.this_thread(),
            started: at,
            helped,
            queued: rec.queued.remove(&cookie.get()),
        }
    }

    pub(crate) fn finished(&self, call: StartedCall, panicked: bool, at: Instant) {
        // A call queued before recording could see it has no queue record.
        let (queued, domain) = call.queued.unwrap_or_else(|| (call.started, Arc::from("?")));
        self.inner.lock().calls.push(CallRecord {
            cookie: call.cookie,
            domain,
            thread: call.thread,
            queued,
            started: call.started,
            finished: at,
            panicked,
            helped: call.helped,
        });
    }

    pub(crate) fn waited(&self, what: String, started: Instant, helped: usize, blocking: bool, at: Instant) {
        let mut rec = self.inner.lock();
        let thread = rec.this_thread();
        rec.waits.push(WaitRecord {
            thread,
            what,
            started,
            finished: at,
            helped,
            blocking,
        });
    }

    pub(crate) fn snapshot(&self) -> Timeline {
        let rec = self.inner.lock();
        let mut calls = rec.calls.clone();
        calls.sort_by_key(|c| c.cookie);
        let mut waits = rec.waits.clone();
        waits.sort_by_key(|w| w.started);
        Timeline {
            origin: self.origin,
            threads: rec.threads.clone(),
            calls,
            waits,
        }
    }
}
