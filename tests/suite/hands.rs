//! Conformance: what Rust users reach for first. Scoped calls that borrow,
//! a set joined in completion order, `map_unordered`, errors that `?` into
//! `Box<dyn Error>`, and handles whose refused or timed-out waits consume
//! nothing. No sleeps order anything: gates and channels do.

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use futures::future::FusedFuture;
use futures::StreamExt;
use kasync::{Cookie, Item, SyncError, TaskError, WaitError, Work};

use super::gate::{hold_a_worker, leak_and_fail, panic_text, Gate, OpenOnDrop, Pulled, HANG};
use super::MakeBuilder;

// ---- scoped calls ------------------------------------------------------------

pub fn scoped_calls_borrow_shared_and_disjoint_mut(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("scoped");
    let text = String::from("alpha beta gamma delta");
    let words: Vec<&str> = text.split(' ').collect();
    let mut lengths = vec![0usize; words.len()];
    let total = Mutex::new(0usize);
    let sum = domain.scope(|s| {
        // Shared borrows, and one `&mut` each into the same vector.
        for (slot, word) in lengths.iter_mut().zip(&words) {
            let total = &total;
            s.spawn(move |_| {
                *slot = word.len();
                *total.lock().unwrap() += word.len();
            });
        }
        // A value back through the handle, borrowing too.
        let mut longest = s.spawn(|_| words.iter().map(|w| w.len()).max().unwrap());
        longest.wait().unwrap()
    });
    assert_eq!(lengths, [5, 4, 5, 5]);
    assert_eq!(*total.lock().unwrap(), 19);
    assert_eq!(sum, 5);
}

pub fn a_scope_returns_after_every_call_ended_waited_or_not(make: &MakeBuilder) {
    let rt = make().max_workers(2).build().unwrap();
    let domain = rt.domain("scoped");
    let ended = AtomicUsize::new(0);
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let opener = {
        let gate = gate.clone();
        thread::spawn(move || gate.open())
    };
    domain.scope(|s| {
        for _ in 0..8 {
            let (ended, gate) = (&ended, &gate);
            s.spawn(move |_| {
                gate.wait();
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
        // Not one handle is waited for.
    });
    assert_eq!(ended.load(Ordering::SeqCst), 8);
    opener.join().unwrap();
}

pub fn a_scope_runs_its_queued_calls_on_the_waiting_thread(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let _held = hold_a_worker(&rt);
    let domain = rt.domain("scoped");
    let me = thread::current().id();
    let ran_here = AtomicUsize::new(0);
    domain.scope(|s| {
        for _ in 0..4 {
            let ran_here = &ran_here;
            s.spawn(move |_| {
                if thread::current().id() == me {
                    ran_here.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(ran_here.load(Ordering::SeqCst), 4, "the only worker was held");
}

pub fn an_unwaited_scoped_panic_is_reraised_after_every_call_ended(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("scoped");
    let ended = AtomicUsize::new(0);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        domain.scope(|s| {
            s.spawn(|_| panic!("nobody waits for me"));
            for _ in 0..4 {
                let ended = &ended;
                s.spawn(move |_| {
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        })
    }));
    let payload = result.expect_err("an unwaited panic is re-raised");
    assert!(panic_text(&*payload).contains("nobody waits for me"));
    assert_eq!(
        ended.load(Ordering::SeqCst),
        4,
        "re-raised before the other calls ended"
    );
    // Taken by the scope: barriers do not report it again.
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn a_waited_scoped_panic_is_the_handles_only(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("scoped");
    let returned = domain.scope(|s| {
        let mut boom = s.spawn(|_| -> u8 { panic!("taken by the handle") });
        match boom.wait() {
            Err(TaskError::Panicked(report)) => report.message().to_owned(),
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(returned, "taken by the handle");
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn items_and_calls_mix_in_one_scope_and_are_never_cancelled(make: &MakeBuilder) {
    struct Double(u64);
    impl Work for Double {
        fn run(&mut self, _: Cookie) {
            self.0 *= 2;
        }
    }
    let rt = make().max_workers(1).build().unwrap();
    let held = hold_a_worker(&rt);
    let domain = rt.domain("mixed");
    let mut item = Item::local(Double(21));
    let mut seen = 0;
    domain.scope(|s| {
        s.submit(&mut item);
        let mut call = s.spawn(|_| 7);
        // Queued behind the held worker, and still never cancelled.
        assert_eq!(domain.cancel(), 0);
        drop(held);
        seen = call.wait().unwrap();
    });
    assert_eq!((item.0, seen), (42, 7));
}

// ---- a set joined in completion order ------------------------------------------------

pub fn a_task_set_joins_in_completion_order(make: &MakeBuilder) {
    let rt = make().max_workers(4).build().unwrap();
    let domain = rt.domain("set");
    let mut set = domain.task_set();
    let slow_gate = Gate::new();
    let _release = OpenOnDrop(slow_gate.clone());
    let (started_tx, started_rx) = mpsc::channel();
    let g = slow_gate.clone();
    set.spawn(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
        "slow"
    });
    for _ in 0..3 {
        set.spawn(|_| "quick");
    }
    assert_eq!(set.len(), 4);
    // Joined before it started, the held call could run on this thread,
    // which would then wait for its own gate: wait until a worker has it.
    started_rx.recv_timeout(HANG).expect("the held call started");
    // The held call ends last, though it was spawned first.
    for _ in 0..3 {
        assert_eq!(set.join_next().wait(), Some(Ok("quick")));
    }
    slow_gate.open();
    assert_eq!(set.join_next().wait(), Some(Ok("slow")));
    assert_eq!(set.join_next().wait(), None);
    assert!(set.is_empty());
}

/// With no worker free, the joining thread runs a queued member itself:
/// a set never waits for a worker that is not coming.
pub fn a_task_set_joiner_runs_a_member_when_none_runs(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let _held = hold_a_worker(&rt);
    let domain = rt.domain("set");
    let mut set = domain.task_set();
    set.spawn(|_| thread::current().id());
    assert_eq!(set.join_next().wait(), Some(Ok(thread::current().id())));
}

/// While one member runs, the joining thread leaves the queued ones to the
/// workers: were it to run one, a slow one would hold up the join of a
/// member that ended meanwhile.
pub fn a_task_set_joiner_leaves_queued_members_to_workers_while_one_runs(make: &MakeBuilder) {
    let rt = make().max_workers(2).build().unwrap();
    let domain = rt.domain("set");
    let mut set = domain.task_set();
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    set.spawn(move |_| {
        started_tx.send(()).unwrap();
        g.wait();
        None
    });
    started_rx.recv_timeout(HANG).expect("the first member started");
    set.spawn(|_| Some(thread::current().id()));
    let ran_on = set.join_next().wait().unwrap().unwrap();
    assert!(ran_on.is_some(), "the held member ended first");
    assert_ne!(
        ran_on,
        Some(thread::current().id()),
        "the joiner ran a member while one was running"
    );
    gate.open();
    assert_eq!(set.join_next().wait(), Some(Ok(None)));
}

/// A member that joins its own set, where nothing else can end, gets
/// `WouldDeadlock` (a wait for itself) instead of hanging.
pub fn a_member_joining_its_own_set_is_refused(make: &MakeBuilder) {
    let rt = make().max_workers(2).build().unwrap();
    let domain = rt.domain("set");
    let set = Arc::new(Mutex::new(domain.task_set::<Option<String>>()));
    let (tx, rx) = mpsc::channel();
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let (me, g) = (set.clone(), gate.clone());
    let cookie = set.lock().unwrap().spawn(move |_| {
        g.wait(); // until its cookie is known
        let joined = me.lock().unwrap().join_next().wait();
        tx.send(joined.map(|r| r.map(|_| ()))).unwrap();
        None
    });
    gate.open();
    match rx.recv_timeout(HANG) {
        Ok(joined) => assert_eq!(joined, Some(Err(TaskError::WouldDeadlock { waiter: cookie }))),
        Err(_) => {
            std::mem::forget(set);
            leak_and_fail(rt, "a member joining its own set hung".into());
        }
    }
}

/// An async call awaiting a set of its own domain finishes with one
/// worker: the set's queued member is noted as awaited, and whoever waits
/// for the async call runs it.
pub fn an_async_call_awaiting_a_set_finishes_with_one_worker(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let domain = rt.domain("set");
    let d = domain.clone();
    let task = domain.spawn_async(move |_| async move {
        let mut set = d.task_set();
        set.spawn(|_| 7u32);
        set.join_next().await
    });
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut task = task;
        let _ = tx.send(task.wait());
    });
    match rx.recv_timeout(HANG) {
        Ok(joined) => assert_eq!(joined, Ok(Some(Ok(7)))),
        Err(_) => leak_and_fail(rt, "an async call awaiting its set with one worker hung".into()),
    }
}

pub fn a_task_set_cancels_and_still_joins(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let held = hold_a_worker(&rt);
    let domain = rt.domain("set");
    let mut set = domain.task_set::<u32>();
    for n in 0..5 {
        set.spawn(move |_| n);
    }
    assert_eq!(set.cancel_all(), 5);
    drop(held);
    let mut cancelled = 0;
    while let Some(result) = set.join_next().wait() {
        assert_eq!(result, Err(TaskError::Cancelled));
        cancelled += 1;
    }
    assert_eq!(cancelled, 5);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

pub fn a_task_set_delivers_a_panic_once(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("set");
    let mut set = domain.task_set::<u8>();
    set.spawn(|_| panic!("joined"));
    match set.join_next().wait() {
        Some(Err(TaskError::Panicked(report))) => assert_eq!(report.message(), "joined"),
        other => panic!("{other:?}"),
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()), "reported again");
}

pub fn a_task_set_is_awaited_in_completion_order(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("set");
    let mut set = domain.task_set();
    for n in 1..=4u64 {
        set.spawn(move |_| n);
    }
    let sum = futures::executor::block_on(async {
        let mut sum = 0;
        while let Some(result) = set.join_next().await {
            sum += result.unwrap();
        }
        sum
    });
    assert_eq!(sum, 10);
}

pub fn dropping_a_task_set_cancels_its_queued_calls(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let held = hold_a_worker(&rt);
    let domain = rt.domain("set");
    let ran = Arc::new(AtomicUsize::new(0));
    let mut set = domain.task_set();
    for _ in 0..3 {
        let ran = ran.clone();
        set.spawn(move |_| {
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    drop(set);
    drop(held);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(rt.stats().cancelled, 3);
}

// ---- map_unordered --------------------------------------------------------------------

/// In completion order: the first input, held, comes after the others of
/// its window. Streamed, so the consumer never runs a call itself.
pub fn map_unordered_yields_in_completion_order_within_its_window(make: &MakeBuilder) {
    let rt = make().max_workers(4).build().unwrap();
    let domain = rt.domain("unordered");
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let stream = domain
        .map_unordered(0..20usize, 3, move |i| {
            if i == 0 {
                g.wait(); // the first input ends last of its window
            }
            i
        })
        .into_stream();
    let mut results = futures::executor::block_on(
        stream
            .map(Result::unwrap)
            .enumerate()
            .map(|(yielded, value)| {
                // Two others ended while input 0 was held: let it go.
                if yielded == 1 {
                    gate.open();
                }
                value
            })
            .collect::<Vec<_>>(),
    );
    assert!(
        results[..2].iter().all(|&v| v != 0),
        "input 0 came before others ended: {results:?}"
    );
    results.sort_unstable();
    assert_eq!(results, (0..20).collect::<Vec<_>>());
}

/// The blocking iterator keeps its window: never more inputs pulled and
/// not yielded, nor more calls running, than the window.
pub fn map_unordered_next_keeps_its_window(make: &MakeBuilder) {
    let rt = make().max_workers(4).build().unwrap();
    let domain = rt.domain("unordered");
    let pulled = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let inputs = Pulled {
        inner: 0..40usize,
        pulled: pulled.clone(),
    };
    let map = domain.map_unordered(inputs, 3, move |i| {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        p.fetch_max(now, Ordering::SeqCst);
        r.fetch_sub(1, Ordering::SeqCst);
        i
    });
    let mut yielded = 0;
    let mut results = Vec::new();
    for result in map {
        yielded += 1;
        results.push(result.unwrap());
        assert!(pulled.load(Ordering::SeqCst) - yielded <= 3, "pulled past the window");
    }
    results.sort_unstable();
    assert_eq!(results, (0..40).collect::<Vec<_>>());
    assert!(peak.load(Ordering::SeqCst) <= 3);
}

pub fn map_unordered_stream_and_errors(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("unordered");
    let results: Vec<Result<u32, TaskError>> = futures::executor::block_on(
        domain
            .map_unordered(0..10u32, 4, |n| {
                if n == 5 {
                    panic!("five");
                }
                n
            })
            .into_stream()
            .collect(),
    );
    assert_eq!(results.len(), 10);
    let panics: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(panics.len(), 1);
    assert_eq!(panics[0].panic().map(|p| p.message()), Some("five"));
    assert!(!panics[0].is_cancelled());
}

// ---- errors and handles ----------------------------------------------------------------

/// Every result kasync returns goes through `?` into `Box<dyn Error>`.
fn question_marks(rt: &kasync::Runtime) -> Result<u64, Box<dyn Error + Send + Sync>> {
    let domain = rt.domain("errors");
    let mut task = domain.spawn(|_| 20u64);
    let value = task.wait()?;
    domain.synchronize().wait()?;
    let mut submitted = domain.submit(Item::new(Nop));
    drop(submitted.wait()?);
    let sum: u64 = domain
        .map_ordered(0..3u64, 2, |n| n)
        .map(|r| r.map_err(Box::from))
        .sum::<Result<u64, Box<dyn Error + Send + Sync>>>()?;
    let mut set = domain.task_set();
    set.spawn(|_| 1u64);
    let one = set.join_next().wait().unwrap()?;
    let panicked: Result<(), kasync::PanicReport> = Ok(());
    panicked?;
    Ok(value + sum + one)
}

struct Nop;

impl Work for Nop {
    fn run(&mut self, _: Cookie) {}
}

pub fn every_result_goes_through_question_mark(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    assert_eq!(question_marks(&rt).unwrap(), 24);
    // And a panic comes through as an error that says so.
    let mut task = rt.spawn(|_| -> u8 { panic!("through ?") });
    let error: Box<dyn Error + Send + Sync> = task.wait().unwrap_err().into();
    assert!(error.to_string().contains("through ?"), "{error}");
}

pub fn a_timed_out_wait_consumes_nothing_on_every_handle(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let held = hold_a_worker(&rt);
    let domain = rt.domain("handles");
    let mut task = domain.spawn(|_| 5u8);
    let mut submitted = domain.submit(Item::new(Nop));
    let mut barrier = domain.synchronize();
    let short = std::time::Duration::from_millis(1);
    assert_eq!(task.wait_timeout(short), Err(TaskError::TimedOut));
    assert!(matches!(submitted.wait_timeout(short), Err(WaitError::TimedOut)));
    assert_eq!(barrier.wait_timeout(short), Err(SyncError::TimedOut));
    assert!(!task.is_finished() && !submitted.is_finished() && !barrier.is_finished());
    assert!(!task.is_terminated() && !submitted.is_terminated() && !barrier.is_terminated());
    drop(held);
    // Still waitable, value kept.
    assert_eq!(task.wait(), Ok(5));
    assert!(submitted.wait().is_ok());
    assert_eq!(barrier.wait(), Ok(()));
    assert!(task.is_finished() && submitted.is_finished() && barrier.is_finished());
    // After `Ok`, a barrier gives the same result again.
    assert_eq!(barrier.wait(), Ok(()));
}

pub fn a_refused_wait_keeps_the_value(make: &MakeBuilder) {
    // A wait inside an async call on an adapter that refuses blocking there
    // (smol, async-std) consumes nothing; elsewhere it simply returns.
    let rt = make().build().unwrap();
    let domain = rt.domain("refused");
    let (tx, rx) = mpsc::channel();
    let mut task = domain.spawn(|_| 9u8);
    let d = domain.clone();
    domain.schedule_async(move |_| async move {
        let first = task.wait();
        let value = match first {
            Err(TaskError::BlockingNotAllowed { .. }) => (&mut task).await,
            other => other,
        };
        let _ = d;
        tx.send(value).unwrap();
    });
    match rx.recv_timeout(HANG) {
        Ok(value) => assert_eq!(value, Ok(9)),
        Err(_) => leak_and_fail(rt, "the async call never sent its value".into()),
    }
}
