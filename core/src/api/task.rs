//! Typed task handles: one call, one value. A task is an item whose work
//! holds the closure and, once it ran, its value: `spawn` allocates that one
//! box and nothing else, and waiting, helping, `.await`, detaching and
//! panics behave exactly as for items.

use std::fmt;
use std::future::Future;

use futures::future::FusedFuture;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::api::domain::Domain;
use crate::api::item::{Submitted, WaitError};
use crate::base::error::TaskError;
use crate::base::sync::{now, Mutex};
use crate::model::call::BoxFuture;
use crate::model::item::{Cancellable, Item, Mode, Work};
use crate::Cookie;

/// A task's work, whatever closure made it: what [`Task`] needs of it.
trait TaskWork<T>: Work {
    /// The value, once the call ran (taken once).
    fn take_value(&mut self) -> Option<T>;
}

/// `spawn`'s work: the closure until it runs, then its value.
struct BlockingTask<F, T> {
    f: Option<F>,
    value: Option<T>,
}

impl<F, T> Work for BlockingTask<F, T>
where
    F: FnOnce(Cookie) -> T + Send + 'static,
    T: Send + 'static,
{
    fn run(&mut self, cookie: Cookie) {
        if let Some(f) = self.f.take() {
            self.value = Some(f(cookie));
        }
    }
}

impl<F, T> Cancellable for BlockingTask<F, T>
where
    F: FnOnce(Cookie) -> T + Send + 'static,
    T: Send + 'static,
{
    /// The closure goes when the call is cancelled, not when the handle
    /// does: what it captured (a channel's sender, say) is let go at once.
    fn cancelled(&mut self) {
        self.f = None;
    }
}

impl<F, T> TaskWork<T> for BlockingTask<F, T>
where
    F: FnOnce(Cookie) -> T + Send + 'static,
    T: Send + 'static,
{
    fn take_value(&mut self) -> Option<T> {
        self.value.take()
    }
}

/// `spawn_async`'s work: the future runs as an async call and leaves its
/// value here; `run` is never called for it.
struct AsyncTask<T> {
    value: Arc<Mutex<Option<T>>>,
}

impl<T: Send + 'static> Work for AsyncTask<T> {
    fn run(&mut self, _: Cookie) {}
}

impl<T: Send + 'static> TaskWork<T> for AsyncTask<T> {
    fn take_value(&mut self) -> Option<T> {
        self.value.lock().take()
    }
}

/// A spawned call and the value it returns: [`Domain::spawn`],
/// [`Domain::spawn_async`].
///
/// Wait for it with [`Task::wait`] (blocks, and runs the task's call on
/// this thread if it is still queued), [`Task::wait_timeout`], or `.await`
/// it (holds no thread). Dropping it detaches the task: the call still runs
/// and its value is dropped (its panic, if it panics, goes to barriers).
///
/// ```
/// # use kasync_core as kasync;
/// let rt = kasync::Runtime::new().unwrap();
/// let mut task = rt.spawn(|cookie| cookie.get() * 2);
/// let cookie = task.cookie();
/// assert_eq!(task.wait().unwrap(), cookie.get() * 2);
/// ```
#[must_use = "dropping a task detaches it; wait for it to get its value"]
pub struct Task<T> {
    handle: Submitted<dyn TaskWork<T>>,
}

impl<T: Send + 'static> Task<T> {
    /// The call's cookie: it counts for barriers like any call's.
    pub fn cookie(&self) -> Cookie {
        self.handle.cookie()
    }

    /// Whether the call has ended (returned, panicked or was cancelled).
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Cancels the call if it has not started: it then never runs, its
    /// closure is dropped once, it counts as finished for every barrier,
    /// and waiting gives [`TaskError::Cancelled`]. Returns `false` if the
    /// call is running or has ended: it then runs to its end.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::builder().max_workers(1).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// rt.schedule(move |_| rx.recv().unwrap()); // holds the only worker
    /// let mut task = rt.spawn(|_| "never");
    /// assert!(task.cancel());
    /// assert_eq!(task.wait(), Err(kasync::TaskError::Cancelled));
    /// tx.send(()).unwrap();
    /// ```
    pub fn cancel(&self) -> bool {
        self.handle.cancel()
    }

    /// Blocks until the call ended and returns its value. If the call is
    /// still queued, this thread runs it (and no other call: the calls
    /// queued before it are not its business); if it is an async call
    /// pending on a kasync wait, this thread runs the queued calls that wait
    /// covers.
    ///
    /// Errors: [`TaskError::Panicked`], [`TaskError::Cancelled`];
    /// [`TaskError::WouldDeadlock`] (the task's call runs lower on this
    /// very thread) and [`TaskError::BlockingNotAllowed`] (where blocking
    /// would stall an async runtime: `.await` instead) leave the task
    /// waitable, its value kept.
    ///
    /// # Panics
    ///
    /// If the task's result was already taken (by an earlier wait or
    /// `.await` that returned its value, its panic or its cancellation).
    pub fn wait(&mut self) -> Result<T, TaskError> {
        value_of(self.handle.wait_for(true, None))
    }

    /// Like [`Task::wait`], but gives up with [`TaskError::TimedOut`] after
    /// `timeout`, and never runs calls on this thread (so it returns on
    /// time). After `TimedOut` the task is still waitable.
    ///
    /// # Panics
    ///
    /// As [`Task::wait`].
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<T, TaskError> {
        value_of(self.handle.wait_for(false, now().checked_add(timeout)))
    }
}

/// The task's result, from its item's.
fn value_of<T: Send + 'static>(ended: crate::api::item::Ended<dyn TaskWork<T>>) -> Result<T, TaskError> {
    match ended {
        Ok(mut item) => match item.take_value() {
            Some(value) => Ok(value),
            None => {
                // A call that ended without a panic left its value: a
                // future that did not finish ends as a panic.
                debug_assert!(false, "a task ended cleanly without a value");
                Err(TaskError::Cancelled)
            }
        },
        Err(WaitError::Panicked { report, .. }) => Err(TaskError::Panicked(report)),
        Err(WaitError::Cancelled { .. }) => Err(TaskError::Cancelled),
        Err(WaitError::BlockingNotAllowed { executor, reason }) => {
            Err(TaskError::BlockingNotAllowed { executor, reason })
        }
        Err(WaitError::WouldDeadlock { waiter }) => Err(TaskError::WouldDeadlock { waiter }),
        Err(WaitError::TimedOut) => Err(TaskError::TimedOut),
    }
}

impl<T: Send + 'static> Future for Task<T> {
    type Output = Result<T, TaskError>;

    /// # Panics
    ///
    /// If polled again after it returned `Ready`.
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(
            !self.handle.is_spent(),
            "kasync: a task was polled after it returned its result"
        );
        Pin::new(&mut self.handle).poll(cx).map(value_of)
    }
}

impl<T: Send + 'static> FusedFuture for Task<T> {
    /// True once the task returned its result.
    fn is_terminated(&self) -> bool {
        self.handle.is_spent()
    }
}

impl<T: Send + 'static> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("cookie", &self.handle.cookie()).finish()
    }
}

impl Domain {
    /// Schedules `f` like [`Domain::schedule`] (it takes the next cookie and
    /// counts for barriers, lowest-first and helping) and returns a
    /// [`Task`] for its value. One allocation: the task's box.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let probes = rt.domain("probes");
    /// let tasks: Vec<_> = (0..4u64).map(|n| probes.spawn(move |_| n * n)).collect();
    /// let squares: Vec<u64> = tasks.into_iter().map(|mut t| t.wait().unwrap()).collect();
    /// assert_eq!(squares, [0, 1, 4, 9]);
    /// ```
    pub fn spawn<F, T>(&self, f: F) -> Task<T>
    where
        F: FnOnce(Cookie) -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_as(f, Mode::Owned)
    }

    /// [`Domain::spawn`], its item in `mode` (`Grouped` for a `TaskSet`).
    pub(crate) fn spawn_as<F, T>(&self, f: F, mode: Mode) -> Task<T>
    where
        F: FnOnce(Cookie) -> T + Send + 'static,
        T: Send + 'static,
    {
        let item = Item::new(BlockingTask {
            f: Some(f),
            value: None,
        });
        Task {
            handle: self
                .submit_cancellable(item, mode)
                .unsize(|p| -> NonNull<Item<dyn TaskWork<T>>> { p }),
        }
    }

    /// Schedules an async call like [`Domain::schedule_async`] and returns a
    /// [`Task`] for the value of the future `f` makes.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let task = rt.default_domain().spawn_async(|cookie| async move { cookie.get() + 1 });
    /// let cookie = task.cookie();
    /// assert_eq!(futures::executor::block_on(task).unwrap(), cookie.get() + 1);
    /// ```
    pub fn spawn_async<F, Fut, T>(&self, f: F) -> Task<T>
    where
        F: FnOnce(Cookie) -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let value = Arc::new(Mutex::new(None));
        let out = value.clone();
        let make = move |cookie| {
            let future = f(cookie);
            Box::pin(async move {
                let v = future.await;
                *out.lock() = Some(v);
            }) as BoxFuture
        };
        let submitted = self.submit_async(Item::new(AsyncTask { value }), Box::new(make));
        Task {
            handle: submitted.unsize(|p| -> NonNull<Item<dyn TaskWork<T>>> { p }),
        }
    }

    /// Cancels every queued, unstarted call of this domain (closures, async
    /// calls, tasks, items) and returns how many. They never run, their
    /// closures are dropped once, and they count as finished for every
    /// barrier once that drop is done (a barrier over them returns only
    /// after it); tasks give [`TaskError::Cancelled`], items come back as
    /// [`WaitError::Cancelled`] (detached ones are freed, first). Calls
    /// already running run to their end, and items borrowed by a
    /// [`Domain::scope`] are left to run: a scope promises its items run.
    /// The domain stays usable.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::builder().max_workers(1).build().unwrap();
    /// let (tx, rx) = std::sync::mpsc::channel::<()>();
    /// let work = rt.domain("work");
    /// rt.schedule(move |_| rx.recv().unwrap()); // holds the only worker
    /// for _ in 0..3 {
    ///     work.schedule(|_| unreachable!("cancelled"));
    /// }
    /// assert_eq!(work.cancel(), 3);
    /// work.synchronize().wait().unwrap(); // cancelled calls count as finished
    /// tx.send(()).unwrap();
    /// ```
    pub fn cancel(&self) -> usize {
        self.shared().cancel_domain(self.id())
    }
}

#[cfg(all(test, not(loom), feature = "threads"))]
mod tests {
    //! The unsized item behind a task (`Submitted::unsize`): named `miri_*`
    //! so CI runs them under miri.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use crate::{Runtime, TaskError};

    use crate::base::drop_count::Counted;

    #[test]
    fn miri_task_values_cancels_and_detaches_free_each_box_once() {
        let rt = Runtime::builder().max_workers(1).no_stall_watchdog().build().unwrap();
        let drops = Arc::new(AtomicUsize::new(0));
        // A value comes back; the closure's captures are dropped once.
        let captured = Counted(drops.clone());
        let mut task = rt.spawn(move |_| {
            let _keep = &captured;
            Counted(Arc::new(AtomicUsize::new(0)))
        });
        drop(task.wait().unwrap());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        // Cancelled while the only worker is held: never runs, dropped once.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        rt.schedule(move |_| rx.recv().unwrap());
        let captured = Counted(drops.clone());
        let mut task = rt.spawn(move |_| drop(captured));
        assert!(task.cancel());
        assert_eq!(task.wait(), Err(TaskError::Cancelled));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        // Detached before it ran: it runs, and its value is dropped once.
        let value = drops.clone();
        drop(rt.spawn(move |_| Counted(value)));
        tx.send(()).unwrap();
        rt.synchronize_full().wait().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        // A future's value.
        let task = rt.spawn_async(|cookie| async move { cookie.get() });
        let cookie = task.cookie();
        assert_eq!(futures::executor::block_on(task), Ok(cookie.get()));
    }
}
