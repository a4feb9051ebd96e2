//! The watchdog's eyes: whether a worker that sat in one call since the
//! last tick is on a CPU (computing, or preempted by other work) or off the
//! CPUs (blocked in something kasync cannot see). The growth rule
//! (`model/growth.rs`) decides with these facts; this file only looks.

use std::collections::HashMap;
use std::time::Duration;

use crate::base::os_thread::{OsThread, View};
use crate::model::growth::{Fact, Progress, Stuck};

/// How long a worker found off the CPUs is watched before it is judged
/// blocked: a thread that only waits a moment (for a lock, a page) shows
/// itself runnable or busy again within it. At most a quarter of the tick.
const SECOND_LOOK: Duration = Duration::from_micros(20);

/// Ticks a worker judged blocked stays so, in the same call, before it is
/// looked at again (a call that slept may compute next).
const RECHECK: u32 = 16;

/// The most workers the watchdog looks at in one tick: a look costs a few
/// microseconds (about ten the first time, when the file is opened), and in
/// a burst of new workers the ones it sees decide the tick. Workers in a
/// call not looked at yet go first, the rest in turn; one not looked at in
/// a tick counts as on a CPU.
const LOOKS_PER_TICK: usize = 8;

/// What the watchdog remembers of a worker running a call.
struct Watched {
    thread: OsThread,
    /// The call it is in (its count of calls entered).
    runs: u64,
    /// Whether it was looked at in this call.
    looked: bool,
    /// Its open `stat` file, while it is looked at.
    view: Option<View>,
    /// The tick it was judged blocked in this call.
    blocked_since: Option<u32>,
}

/// The watchdog's looks, kept for the watchdog thread's life.
pub(crate) struct Sampler {
    watched: HashMap<usize, Watched>,
    ticks: u32,
}

impl Sampler {
    pub(crate) fn new() -> Sampler {
        Sampler {
            watched: HashMap::new(),
            ticks: 0,
        }
    }

    /// Looks at the workers running calls and says what it saw: runnable
    /// now is on a CPU (computing, or preempted by other work); off the
    /// CPUs now and still a moment later is blocked.
    pub(crate) fn judge(&mut self, running: &[Stuck], tick: Duration) -> Vec<Fact> {
        self.ticks = self.ticks.wrapping_add(1);
        // Forget the workers that stopped running calls: their files close.
        self.watched.retain(|slot, _| running.iter().any(|s| s.slot == *slot));
        let mut facts = Vec::with_capacity(running.len());
        let mut to_look = Vec::new();
        for s in running {
            let Some(thread) = s.thread.clone() else { continue };
            let w = self.watched.entry(s.slot).or_insert_with(|| Watched {
                thread: thread.clone(),
                runs: s.runs,
                looked: false,
                view: None,
                blocked_since: None,
            });
            if w.thread != thread {
                w.view = None;
            }
            if w.thread != thread || w.runs != s.runs {
                (w.thread, w.runs, w.looked, w.blocked_since) = (thread.clone(), s.runs, false, None);
            }
            if let Some(since) = w.blocked_since {
                if self.ticks.wrapping_sub(since) < RECHECK {
                    facts.push(fact(s, Progress::OffCpu));
                    continue;
                }
                w.blocked_since = None;
            }
            to_look.push((w.looked, s.clone()));
        }
        // Calls not looked at yet first; the rest in turn, from where the
        // last tick's looks ended.
        let turn = self.ticks as usize % to_look.len().max(1);
        to_look.rotate_left(turn);
        to_look.sort_by_key(|&(looked, _)| looked);
        let mut off = Vec::new();
        for (_, s) in to_look.into_iter().take(LOOKS_PER_TICK) {
            let Some(w) = self.watched.get_mut(&s.slot) else {
                continue;
            };
            w.looked = true;
            if w.view.is_none() {
                w.view = w.thread.view();
            }
            // Off the CPUs in kasync's own code (the runtime's lock between
            // two calls) is no block.
            match w.view.as_ref().and_then(View::runnable) {
                Some(false) if w.thread.in_call() => off.push(s),
                Some(_) => facts.push(fact(&s, Progress::OnCpu)),
                None => {}
            }
        }
        if off.is_empty() {
            return facts;
        }
        // A thread that only waits a moment (for a lock, a page) is
        // runnable again by the second look.
        std::thread::sleep(SECOND_LOOK.min(tick / 4));
        for s in off {
            let Some(w) = self.watched.get_mut(&s.slot) else {
                continue;
            };
            match w.view.as_ref().and_then(View::runnable) {
                Some(false) if w.thread.in_call() => {
                    // Blocked: its file closes until it is looked at again.
                    (w.view, w.blocked_since) = (None, Some(self.ticks));
                    facts.push(fact(&s, Progress::OffCpu));
                }
                Some(_) => facts.push(fact(&s, Progress::OnCpu)),
                None => {}
            }
        }
        facts
    }
}

fn fact(s: &Stuck, progress: Progress) -> Fact {
    Fact {
        slot: s.slot,
        runs: s.runs,
        progress,
    }
}
