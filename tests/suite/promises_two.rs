//! Conformance: regression tests for the second review's bugs in tasks,
//! cancellation and helping. Each test names the bug it guards and failed
//! before its fix. None sleeps or asserts a duration: a would-be hang fails
//! on a generous timeout instead, and a runtime that can no longer be
//! dropped is leaked so the failure is reported instead of hanging.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use kasync::{Cookie, Domain, Item, Runtime, SyncError, Task, TaskError, WaitError, Work};

use super::gate::{hold_a_worker, leak_and_fail, Gate, OpenOnDrop, HANG};
use super::MakeBuilder;

/// A runtime with one worker, held (in a call of an exclusive domain of its
/// own) until the guard is opened or dropped, so queued calls stay queued
/// until the test acts.
fn held_runtime(make: &MakeBuilder) -> (Runtime, OpenOnDrop) {
    let rt = make().max_workers(1).build().unwrap();
    let hold = hold_a_worker(&rt);
    (rt, hold)
}

/// Runs `f` on a thread of its own and gives its result, or `None` if it
/// did not return within [`HANG`].
fn returns_within_hang<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG).ok()
}

// ---- bug 1: a cancellation whose drops call kasync -----------------------

/// Owns the last handle to a runtime and drops it when dropped.
struct OwnsRuntime(Option<Arc<Runtime>>);

impl Drop for OwnsRuntime {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// Bug: a cancelled call's closure was dropped outside any call frame while
/// the call still counted as pending. A closure that owned the last
/// `Runtime` then ran the runtime's shutdown, which waited for every pending
/// call, the cancelled one included: `Task::cancel` never returned.
pub fn task_cancel_dropping_the_last_runtime_does_not_hang(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let rt = Arc::new(rt);
    let owner = OwnsRuntime(Some(rt.clone()));
    let mut task = rt.spawn(move |_| drop(owner));
    drop(rt); // the closure now owns the last handle
    let cancelled = returns_within_hang(move || {
        let cancelled = task.cancel();
        (cancelled, task.wait())
    });
    hold.0.open();
    match cancelled {
        Some((cancelled, result)) => {
            assert!(cancelled, "the task was queued behind the held worker");
            assert_eq!(result, Err(TaskError::Cancelled));
        }
        None => panic!("Task::cancel hung dropping the last runtime inside the cancelled closure"),
    }
}

/// Bug 1 through `Domain::cancel`.
pub fn domain_cancel_dropping_the_last_runtime_does_not_hang(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let rt = Arc::new(rt);
    let domain = rt.domain("owned");
    let owner = OwnsRuntime(Some(rt.clone()));
    domain.schedule(move |_| drop(owner));
    domain.schedule(|_| {});
    drop(rt);
    let d = domain.clone();
    let cancelled = returns_within_hang(move || d.cancel());
    hold.0.open();
    assert_eq!(
        cancelled,
        Some(2),
        "Domain::cancel hung dropping the last runtime inside a cancelled closure"
    );
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

/// A detached item whose `Drop` drops the last runtime.
struct DropsRuntime(OwnsRuntime);

impl Work for DropsRuntime {
    fn run(&mut self, _: Cookie) {}
}

/// Bug 1 through a cancelled detached item, freed by the cancelling thread.
pub fn a_cancelled_detached_item_dropping_the_last_runtime_does_not_hang(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let rt = Arc::new(rt);
    let domain = rt.domain("items");
    domain.submit_detached(Item::new(DropsRuntime(OwnsRuntime(Some(rt.clone())))));
    drop(rt);
    let d = domain.clone();
    let cancelled = returns_within_hang(move || d.cancel());
    hold.0.open();
    assert_eq!(cancelled, Some(1), "freeing the cancelled item hung");
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

/// Waits on its domain when dropped and sends what the wait returned.
struct WaitsWhenDropped {
    domain: Domain,
    result: mpsc::Sender<(Option<Cookie>, Result<(), SyncError>)>,
}

impl Drop for WaitsWhenDropped {
    fn drop(&mut self) {
        let result = self.domain.synchronize().wait();
        let _ = self.result.send((kasync::current_cookie(), result));
    }
}

/// Bug 1: a cancelled closure whose drop waits on its own domain waited for
/// its own call, which ends only after the drop: a hang. Dropped inside its
/// call's frame, the wait is refused as a self-wait, as it is for a call
/// that ran.
pub fn a_cancelled_closure_waiting_on_its_domain_in_drop_is_refused(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let domain = rt.domain("self");
    let (tx, rx) = mpsc::channel();
    let guard = WaitsWhenDropped {
        domain: domain.clone(),
        result: tx,
    };
    let task = domain.spawn(move |_| drop(guard));
    let cookie = task.cookie();
    let cancelled = returns_within_hang(move || task.cancel());
    assert_eq!(
        cancelled,
        Some(true),
        "the cancelled closure's drop hung on its own domain"
    );
    let (seen, result) = rx.recv_timeout(HANG).expect("the closure was dropped");
    assert_eq!(seen, Some(cookie), "the drop ran inside its call's frame");
    assert_eq!(result, Err(SyncError::WouldDeadlock { waiter: cookie }));
    hold.0.open();
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

/// Panics when dropped.
struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("dropped a cancelled closure");
    }
}

/// Suspect, confirmed: a panic in a cancelled closure's drop was swallowed
/// and reported nowhere. It is the call's panic: barriers report it, while
/// the task itself was cancelled.
pub fn a_panic_dropping_a_cancelled_closure_is_reported(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let domain = rt.domain("drop-panics");
    let bomb = PanicsWhenDropped;
    let mut task = domain.spawn(move |_| drop(bomb));
    let cookie = task.cookie();
    assert!(task.cancel());
    assert_eq!(task.wait(), Err(TaskError::Cancelled));
    match domain.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => {
            assert_eq!(report.cookie(), cookie);
            assert_eq!(report.message(), "dropped a cancelled closure");
        }
        other => panic!("the drop's panic was lost: {other:?}"),
    }
    assert_eq!(rt.stats().panicked, 1);
    hold.0.open();
}

// ---- bug 2: a task or item wait helps with calls it does not wait for ----

/// Parents 1..n are queued; each spawns a child and waits on that child's
/// task. Returns whether all of them finished with one worker.
fn parents_wait_on_their_children(make: &MakeBuilder, parents: usize, depth: Option<usize>) {
    let mut builder = make().max_workers(1);
    if let Some(depth) = depth {
        builder = builder.help_depth(depth);
    }
    let rt = builder.build().unwrap();
    let domain = rt.domain("family");
    let done = Arc::new(AtomicUsize::new(0));
    for p in 0..parents {
        let (d, done) = (domain.clone(), done.clone());
        domain.schedule(move |_| {
            let mut child: Task<usize> = d.spawn(move |_| p);
            assert_eq!(child.wait(), Ok(p));
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    // Never helps: the one worker must do all of it.
    if domain.synchronize().wait_timeout(HANG).is_err() {
        leak_and_fail(
            rt,
            format!(
                "{parents} parents waiting on their own children hung with one worker at help_depth {depth:?} \
                 ({} finished)",
                done.load(Ordering::SeqCst)
            ),
        );
    }
    assert_eq!(done.load(Ordering::SeqCst), parents);
}

/// Bug 2: a task wait helped with any queued call of the domain below the
/// task, lowest first, so parent 1 ran parent 2, which ran parent 3...: the
/// nesting grew with the queued siblings, not with the chain of waits, and
/// hung at the cap once it reached `help_depth`.
pub fn parents_waiting_on_their_children_finish_with_one_worker(make: &MakeBuilder) {
    parents_wait_on_their_children(make, 3, Some(2));
    parents_wait_on_their_children(make, 3, Some(3));
    parents_wait_on_their_children(make, 20, None);
}

/// The same through items: a wait for one `Submitted` runs that item's call
/// and nothing else.
pub fn parents_waiting_on_their_items_finish_with_one_worker(make: &MakeBuilder) {
    struct Child(u64);
    impl Work for Child {
        fn run(&mut self, cookie: Cookie) {
            self.0 = cookie.get();
        }
    }
    let rt = make().max_workers(1).help_depth(2).build().unwrap();
    let domain = rt.domain("items");
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let (d, done) = (domain.clone(), done.clone());
        domain.schedule(move |_| {
            let mut submitted = d.submit(Item::new(Child(0)));
            let cookie = submitted.cookie();
            let child = submitted.wait().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(child.0, cookie.get());
            done.fetch_add(1, Ordering::SeqCst);
        });
    }
    if domain.synchronize().wait_timeout(HANG).is_err() {
        leak_and_fail(rt, "parents waiting on their own items hung with one worker".into());
    }
    assert_eq!(done.load(Ordering::SeqCst), 5);
}

/// Bug 2: a call consuming a `map_ordered` of its own domain hung with one
/// worker, its front task's wait running the map's later inputs nested.
pub fn a_nested_map_ordered_on_its_own_domain_finishes_with_one_worker(make: &MakeBuilder) {
    let rt = make().max_workers(1).help_depth(3).build().unwrap();
    let domain = rt.domain("maps");
    let d = domain.clone();
    let outer = domain.spawn(move |_| {
        let d2 = d.clone();
        d.map_ordered(0..6u64, 3, move |n| {
            d2.map_ordered(0..4u64, 2, move |m| n * 10 + m)
                .map(|r| r.unwrap())
                .sum::<u64>()
        })
        .map(|r| r.unwrap())
        .collect::<Vec<u64>>()
    });
    let mut outer = outer;
    match outer.wait_timeout(HANG) {
        Ok(sums) => assert_eq!(sums, (0..6u64).map(|n| 40 * n + 6).collect::<Vec<_>>()),
        Err(TaskError::TimedOut) => leak_and_fail(rt, "a nested map_ordered hung with one worker".into()),
        Err(other) => panic!("{other}"),
    }
}

/// Bug 2, the false `WouldDeadlock`: the test thread's barrier helps X,
/// which waits on its task Y. The task wait ran W, queued between them,
/// on top of X, and W's `synchronize_cookie(own)` then covered X lower on
/// the same stack: refused as a self-wait though no wait cycle exists (W
/// waits on X, X on Y, Y on nothing).
pub fn a_task_wait_does_not_stack_unrelated_calls(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let domain = rt.domain("stack");
    let d = domain.clone();
    domain.schedule(move |_| {
        let mut y = d.spawn(|_| ());
        y.wait().unwrap();
    });
    let (w_tx, w_rx) = mpsc::channel();
    let d = domain.clone();
    domain.schedule(move |me| {
        w_tx.send(d.synchronize_cookie(me).wait()).unwrap();
    });
    // Helps X, then W, on this thread (the worker is held).
    let all = domain.synchronize().wait();
    let w = w_rx.recv_timeout(HANG).expect("W ran");
    hold.0.open();
    assert_eq!(w, Ok(()), "W's wait on earlier calls was refused as a cycle");
    assert_eq!(all, Ok(()));
}

// ---- bug 3: a task's panic reported twice ---------------------------------

/// Spins (no sleep: a real condition) until `task` has ended.
fn until_finished<T: Send + 'static>(task: &Task<T>) {
    while !task.is_finished() {
        thread::yield_now();
    }
}

/// Bug 3: a barrier made after a task panicked copied the panic, and still
/// reported it after the task's own wait had delivered it.
pub fn a_task_panic_taken_by_its_task_is_not_reported_by_an_earlier_made_barrier(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("once");
    let mut task = domain.spawn(|_| -> u8 { panic!("once only") });
    until_finished(&task);
    let mut barrier = domain.synchronize();
    let mut full = rt.synchronize_full();
    assert!(matches!(task.wait(), Err(TaskError::Panicked(_))));
    assert_eq!(
        barrier.wait_timeout(HANG),
        Ok(()),
        "reported again after its task took it"
    );
    assert_eq!(full.wait_timeout(HANG), Ok(()), "reported again after its task took it");
}

/// Bug 3, the other order: a barrier reported a task's panic, and the task
/// then delivered it again. A call with a handle delivers its panic to the
/// handle only.
pub fn a_task_panic_goes_to_its_task_not_to_barriers(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("handle");
    let mut task = domain.spawn(|_| -> u8 { panic!("for the handle") });
    until_finished(&task);
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
    assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    match task.wait() {
        Err(TaskError::Panicked(report)) => assert_eq!(report.message(), "for the handle"),
        other => panic!("{other:?}"),
    }
    // A barrier waiting while a call with a handle panics leaves it to the
    // handle too.
    let gate = Gate::new();
    let _release = OpenOnDrop(gate.clone());
    let g = gate.clone();
    let mut task = domain.spawn(move |_| -> u8 {
        g.wait();
        panic!("while watched")
    });
    let mut barrier = domain.synchronize();
    gate.open();
    assert_eq!(barrier.wait_no_help(), Ok(()));
    assert!(matches!(task.wait(), Err(TaskError::Panicked(_))));
}

/// Bug 3's rule, the other half: a handle dropped before it took its
/// call's panic hands the panic to barriers, so nothing is lost.
pub fn a_panic_left_in_a_dropped_handle_is_reported_by_barriers(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("dropped");
    let task = domain.spawn(|_| -> u8 { panic!("left behind") });
    let cookie = task.cookie();
    until_finished(&task);
    drop(task);
    match domain.synchronize().wait_timeout(HANG) {
        Err(SyncError::Panicked(report)) => {
            assert_eq!(report.cookie(), cookie);
            assert_eq!(report.message(), "left behind");
        }
        other => panic!("the dropped task's panic was lost: {other:?}"),
    }
    // Reported once: the next barrier is clean.
    assert_eq!(rt.synchronize_full().wait_timeout(HANG), Ok(()));
    // The same for an item handle.
    #[derive(Debug)]
    struct Boom;
    impl Work for Boom {
        fn run(&mut self, _: Cookie) {
            panic!("item left behind");
        }
    }
    let mut submitted = domain.submit(Item::new(Boom));
    let mut barrier = domain.synchronize();
    let cookie = submitted.cookie();
    // Taken by its handle: the barrier made before does not report it.
    match submitted.wait() {
        Err(WaitError::Panicked { report, .. }) => assert_eq!(report.cookie(), cookie),
        other => panic!("{other:?}"),
    }
    assert_eq!(barrier.wait_timeout(HANG), Ok(()));
}

// ---- bug 4: a helped async call whose `.await` is pending ------------------

/// Bug 4: on the threads adapter, a thread waiting on async call A ran A
/// (polled to completion on the helping thread); A `.await`ed a barrier
/// over call B, queued behind the only worker; the helping thread parked
/// inside A's poll and B never ran. With one worker the chain G -> A -> B
/// must finish by helping.
pub fn a_helped_async_call_awaiting_a_queued_call_does_not_trap_its_helper(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let b_domain = rt.domain("b");
    let ran_b = Arc::new(AtomicUsize::new(0));
    let r = ran_b.clone();
    b_domain.schedule(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
    });
    let b = b_domain.clone();
    let mut a = rt
        .domain("a")
        .spawn_async(move |_| async move { b.synchronize().await });
    let waited = returns_within_hang(move || a.wait());
    hold.0.open();
    match waited {
        Some(result) => assert_eq!(result, Ok(Ok(()))),
        None => leak_and_fail(
            rt,
            "the helper of an async call awaiting a queued call was trapped".into(),
        ),
    }
    assert_eq!(ran_b.load(Ordering::SeqCst), 1);
}

/// Bug 4 with a task in the middle: A `.await`s a task of its own making,
/// queued behind the held worker.
pub fn a_helped_async_call_awaiting_a_queued_task_does_not_trap_its_helper(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let domain = rt.domain("a");
    let d = domain.clone();
    let mut a = domain.spawn_async(move |_| async move {
        let b = d.spawn(|cookie| cookie.get());
        let cookie = b.cookie();
        (cookie.get(), b.await)
    });
    let waited = returns_within_hang(move || a.wait());
    hold.0.open();
    match waited {
        Some(Ok((cookie, value))) => assert_eq!(value, Ok(cookie)),
        Some(Err(e)) => panic!("{e}"),
        None => leak_and_fail(
            rt,
            "the helper of an async call awaiting a queued task was trapped".into(),
        ),
    }
}

// ---- suspects: waits on one's own handle -------------------------------------

/// Suspect, confirmed: an item's `run` waiting on its own `Submitted` hung
/// (`Submitted::wait` made no self-wait check).
pub fn waiting_on_an_items_own_handle_would_deadlock(make: &MakeBuilder) {
    type Slot = Arc<Mutex<Option<kasync::Submitted<WaitsOnItself>>>>;
    struct WaitsOnItself {
        handle: Slot,
        ready: Gate,
        result: mpsc::Sender<(Cookie, Result<(), String>)>,
    }
    impl Work for WaitsOnItself {
        fn run(&mut self, cookie: Cookie) {
            self.ready.wait();
            let handle = self.handle.lock().unwrap().take();
            let result = match handle {
                Some(mut handle) => match handle.wait() {
                    Err(WaitError::WouldDeadlock { waiter }) => {
                        // The handle is still waitable, and still this
                        // call's: dropping it detaches the item.
                        assert_eq!(handle.cookie(), cookie);
                        drop(handle);
                        Ok(waiter)
                    }
                    Err(other) => Err(format!("unexpected {other}")),
                    Ok(_) => Err("unexpected Ok".to_owned()),
                },
                None => Err("no handle".to_owned()),
            };
            let _ = self
                .result
                .send((cookie, result.map(|waiter| assert_eq!(waiter, cookie))));
        }
    }
    let rt = make().build().unwrap();
    let slot: Slot = Arc::new(Mutex::new(None));
    let ready = Gate::new();
    let _release = OpenOnDrop(ready.clone());
    let (tx, rx) = mpsc::channel();
    let domain = rt.domain("own");
    let submitted = domain.submit(Item::new(WaitsOnItself {
        handle: slot.clone(),
        ready: ready.clone(),
        result: tx,
    }));
    let cookie = submitted.cookie();
    *slot.lock().unwrap() = Some(submitted);
    ready.open();
    match rx.recv_timeout(HANG) {
        Ok((seen, result)) => {
            assert_eq!(seen, cookie);
            assert_eq!(result, Ok(()));
        }
        Err(_) => leak_and_fail(rt, "an item waiting on its own handle hung".into()),
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

/// Suspect, confirmed: an async task awaiting its own `Task` hung (its
/// `poll` made no self-wait check).
pub fn awaiting_an_async_tasks_own_handle_would_deadlock(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let (handle_tx, handle_rx) = futures::channel::oneshot::channel::<Task<()>>();
    let (result_tx, result_rx) = mpsc::channel();
    let domain = rt.domain("own-async");
    let task = domain.spawn_async(move |cookie| async move {
        let mut own = handle_rx.await.expect("the task was passed in");
        let result = (&mut own).await;
        // Still its own handle after the refusal: not spent.
        assert!(!own.is_finished());
        result_tx.send((cookie, result)).unwrap();
    });
    let cookie = task.cookie();
    handle_tx.send(task).unwrap();
    match result_rx.recv_timeout(HANG) {
        Ok((seen, result)) => {
            assert_eq!(seen, cookie);
            assert_eq!(result, Err(TaskError::WouldDeadlock { waiter: cookie }));
        }
        Err(_) => leak_and_fail(rt, format!("async task {cookie} awaiting its own handle hung")),
    }
    assert_eq!(domain.synchronize().wait_timeout(HANG), Ok(()));
}

// ---- the review of this round: cancellations whose drops wait, scope panics

/// Joins a task when dropped, and sends what the wait gave.
struct JoinOnDrop(Option<Task<u64>>, mpsc::Sender<Result<u64, TaskError>>);

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(mut task) = self.0.take() {
            let _ = self.1.send(task.wait());
        }
    }
}

/// Review: `Domain::cancel` dropped every cancelled closure before it ended
/// any call, so a drop that joined an earlier cancelled task waited for a
/// call that could only end after it: a hang. The calls are settled one at
/// a time, in cookie order.
pub fn a_cancelled_closure_joining_an_earlier_cancelled_task_does_not_hang(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let domain = rt.domain("batch");
    let first = domain.spawn(|cookie| cookie.get());
    let (tx, rx) = mpsc::channel();
    let guard = JoinOnDrop(Some(first), tx);
    domain.schedule(move |_| drop(guard));
    let d = domain.clone();
    let cancelled = returns_within_hang(move || d.cancel());
    hold.0.open();
    if cancelled.is_none() {
        leak_and_fail(rt, "a cancelled closure joining an earlier cancelled task hung".into());
    }
    assert_eq!(cancelled, Some(2));
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Err(TaskError::Cancelled));
}

/// Review, the other direction: the drop joins a task cancelled by the same
/// `Domain::cancel` but later in cookie order. The wait settles that
/// cancelled call itself instead of waiting for the cancelling thread.
pub fn a_cancelled_closure_joining_a_later_cancelled_task_settles_it(make: &MakeBuilder) {
    /// Takes its task from a channel when dropped, then joins it.
    struct JoinLater(mpsc::Receiver<Task<u64>>, mpsc::Sender<Result<u64, TaskError>>);
    impl Drop for JoinLater {
        fn drop(&mut self) {
            if let Ok(mut task) = self.0.recv() {
                let _ = self.1.send(task.wait());
            }
        }
    }
    let (rt, hold) = held_runtime(make);
    let domain = rt.domain("batch");
    let (task_tx, task_rx) = mpsc::channel::<Task<u64>>();
    let (tx, rx) = mpsc::channel();
    let joiner = JoinLater(task_rx, tx);
    domain.schedule(move |_| drop(joiner));
    task_tx.send(domain.spawn(|cookie| cookie.get())).unwrap();
    let d = domain.clone();
    let cancelled = returns_within_hang(move || d.cancel());
    hold.0.open();
    if cancelled.is_none() {
        leak_and_fail(rt, "a cancelled closure joining a later cancelled task hung".into());
    }
    assert_eq!(cancelled, Some(2));
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Err(TaskError::Cancelled));
}

/// Waits, when dropped, for the calls of its domain before its own call.
struct SyncBeforeMeOnDrop(Domain, mpsc::Sender<Result<(), SyncError>>);

impl Drop for SyncBeforeMeOnDrop {
    fn drop(&mut self) {
        let own = kasync::current_cookie().expect("dropped in its call's frame");
        let _ = self.1.send(self.0.synchronize_cookie(own).wait());
    }
}

/// Review: the kernel's "register in order" in a cancelled closure's drop
/// waited for the calls before it in the same cancellation, which ended
/// only after every drop: a hang.
pub fn cancelled_closures_syncing_on_their_own_cookie_in_drop_do_not_hang(make: &MakeBuilder) {
    let (rt, hold) = held_runtime(make);
    let domain = rt.domain("ordered");
    let (tx, rx) = mpsc::channel();
    for _ in 0..2 {
        let guard = SyncBeforeMeOnDrop(domain.clone(), tx.clone());
        domain.schedule(move |_| drop(guard));
    }
    drop(tx);
    let d = domain.clone();
    let cancelled = returns_within_hang(move || d.cancel());
    hold.0.open();
    if cancelled.is_none() {
        leak_and_fail(rt, "cancelled closures syncing on their own cookie in drop hung".into());
    }
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Ok(()));
    assert_eq!(rx.recv_timeout(HANG).unwrap(), Ok(()));
}

/// Panics in `run`.
struct Boom(&'static str);

impl Work for Boom {
    fn run(&mut self, _: Cookie) {
        panic!("{}", self.0);
    }
}

/// Review: a scope kept only its first item's panic; the second was counted
/// and delivered nowhere. The scope re-raises one, barriers get the rest.
pub fn a_scopes_second_panic_goes_to_barriers(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("scoped");
    let mut items = [Item::local(Boom("first")), Item::local(Boom("second"))];
    let raised = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        domain.scope(|s| {
            for item in items.iter_mut() {
                s.submit(item);
            }
        })
    }))
    .expect_err("the scope re-raises");
    let text = super::gate::panic_text(&*raised);
    assert_eq!(rt.stats().panicked, 2);
    match domain.synchronize().wait() {
        Err(SyncError::Panicked(report)) => {
            assert_eq!(report.others(), 0);
            let other = if text.contains("first") { "second" } else { "first" };
            assert_eq!(report.message(), other, "re-raised: {text}");
        }
        other => panic!("the second panic was lost (re-raised: {text}): {other:?}"),
    }
}

/// Review: when the scope's closure panicked, the items' panic was dropped
/// with the scope. It goes to barriers then.
pub fn a_scoped_items_panic_is_not_lost_when_the_scope_closure_panics(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let domain = rt.domain("scoped");
    let mut item = Item::local(Boom("item"));
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        domain.scope(|s| {
            s.submit(&mut item);
            panic!("closure");
        })
    }));
    assert!(unwound.is_err());
    assert_eq!(rt.stats().panicked, 1);
    let barrier = domain.synchronize().wait();
    assert!(
        matches!(&barrier, Err(SyncError::Panicked(r)) if r.message() == "item"),
        "the item's panic was delivered nowhere: {barrier:?}"
    );
}
