//! `TaskSet`: tasks joined in the order they end, as tokio's `JoinSet`.
//! Each member's item knows its set (`Mode::Grouped`): when its call ends,
//! under the state lock, it joins the set's queue of ended members, so
//! `join_next` takes the next one without looking at every member.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use slab::Slab;

use crate::api::domain::Domain;
use crate::api::task::Task;
use crate::base::error::TaskError;
use crate::base::executor::Blocking;
use crate::engine::blocking::{block_permitted, blocking_permission};
use crate::engine::pool::{self};
use crate::model::ids::Scope;
use crate::model::item::{GroupCell, Mode};
use crate::model::state::{State, Wake};
use crate::Cookie;

/// A set of calls of one domain whose values come back in the order the
/// calls end: [`Domain::task_set`].
///
/// Like tokio's `JoinSet`, a call withdrawn by [`TaskSet::cancel_all`] is
/// still joined, as `Err(TaskError::Cancelled)` (as an aborted task comes
/// out of a `JoinSet`). Unlike it, dropping the set cancels the calls that
/// have not started but lets running ones finish, detached: a `JoinSet`
/// aborts its tasks on drop, which a blocking call cannot be.
///
/// ```
/// # use kasync_core as kasync;
/// let rt = kasync::Runtime::new().unwrap();
/// let mut set = rt.default_domain().task_set();
/// for n in 1..=3u64 {
///     set.spawn(move |_| n * 10);
/// }
/// let mut sum = 0;
/// while let Some(result) = set.join_next().wait() {
///     sum += result.unwrap(); // in the order the calls ended
/// }
/// assert_eq!(sum, 60);
/// ```
#[must_use = "dropping a task set cancels its calls that have not started"]
pub struct TaskSet<T: Send + 'static> {
    domain: Domain,
    /// Where members' ends are queued; boxed so members can point at it.
    group: Box<GroupCell>,
    members: Slab<Task<T>>,
    /// Members' cookies in the order they were spawned, for a joining thread
    /// to run one still queued when none runs (a call not queued now never
    /// will be again).
    to_help: VecDeque<Cookie>,
}

// SAFETY: members' items point at the group only to record their ends,
// under the state lock; everything else in the set is `Send`.
unsafe impl<T: Send + 'static> Send for TaskSet<T> {}

impl Domain {
    /// A set of this domain's calls, joined in the order they end; see
    /// [`TaskSet`].
    pub fn task_set<T: Send + 'static>(&self) -> TaskSet<T> {
        TaskSet {
            domain: self.clone(),
            group: Box::new(GroupCell::new()),
            members: Slab::new(),
            to_help: VecDeque::new(),
        }
    }
}

impl<T: Send + 'static> TaskSet<T> {
    /// Schedules `f` as a call of the set's domain (like
    /// [`Domain::spawn`]: it takes the next cookie and counts for barriers)
    /// and adds it to the set. Returns its cookie.
    pub fn spawn<F>(&mut self, f: F) -> Cookie
    where
        F: FnOnce(Cookie) -> T + Send + 'static,
    {
        let member = self.members.vacant_key();
        let group = NonNull::from(&*self.group);
        let task = self.domain.spawn_as(f, Mode::Grouped { group, member });
        let cookie = task.cookie();
        self.members.insert(task);
        self.to_help.push_back(cookie);
        cookie
    }

    /// How many calls are in the set: not joined yet.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether every call was joined.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Cancels the set's calls that have not started (see
    /// [`Task::cancel`]); returns how many. They are still joined, as
    /// `Err(TaskError::Cancelled)`.
    pub fn cancel_all(&self) -> usize {
        self.members.iter().filter(|(_, task)| task.cancel()).count()
    }

    /// The next call to end, its value or why it has none: `.await` it, or
    /// [`JoinNext::wait`]. `None` once the set is empty.
    pub fn join_next(&mut self) -> JoinNext<'_, T> {
        JoinNext { set: self }
    }

    /// The member whose call ended first, taken out of the set, if any
    /// ended (lock held).
    fn take_ended(&mut self, st: &mut State) -> Option<Task<T>> {
        let member = self.group.with(st, |g| g.take_ended())?;
        Some(self.members.remove(member))
    }
}

impl<T: Send + 'static> Drop for TaskSet<T> {
    fn drop(&mut self) {
        self.cancel_all();
        // Detached (or freed, if ended) one by one under the lock, so no
        // member points at the group once it goes.
        self.members.clear();
    }
}

impl<T: Send + 'static> fmt::Debug for TaskSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSet")
            .field("domain", &self.domain.name())
            .field("len", &self.len())
            .finish()
    }
}

/// The next call of a [`TaskSet`] to end: one value with two ways to wait,
/// as a [`Barrier`](crate::Barrier): `.await` it (holds no thread), or
/// [`JoinNext::wait`].
#[must_use = "a JoinNext does nothing unless awaited or waited for"]
pub struct JoinNext<'a, T: Send + 'static> {
    set: &'a mut TaskSet<T>,
}

impl<T: Send + 'static> JoinNext<'_, T> {
    /// Blocks until a call of the set ends and returns its value (or its
    /// panic, or `Cancelled`), in the order the calls end; `None` once the
    /// set is empty. While none of the set's calls is running, this thread
    /// runs the first one queued itself, so the set never waits for a
    /// worker that is not coming; while one runs, it leaves the queued
    /// ones to the workers, so a slow call run here never holds up the
    /// join of a quick one. Where blocking would stall an async runtime it returns
    /// `Some(Err(TaskError::BlockingNotAllowed { .. }))` and takes nothing
    /// from the set: `.await` there instead.
    pub fn wait(self) -> Option<Result<T, TaskError>> {
        let set = self.set;
        if set.is_empty() {
            return None;
        }
        let shared = set.domain.shared().clone();
        let permission = blocking_permission(&shared);
        if let Blocking::Forbidden(reason) = permission {
            return Some(Err(TaskError::BlockingNotAllowed {
                executor: shared.executor.name(),
                reason,
            }));
        }
        let st = shared.lock();
        let ended = block_permitted(&shared, st, permission, |st| {
            let TaskSet {
                domain,
                group,
                members,
                to_help,
            } = &mut *set;
            let domain = domain.id();
            // This thread runs a member itself only while none is running:
            // then the set never stalls for want of a worker (at the cap,
            // or with every worker blocked), yet a slow member never delays
            // the join of a quick one a worker ends meanwhile.
            let mut claim = |st: &mut State| {
                let unjoined = members.len() - group.with(st, |g| g.ended_count());
                // `to_help` holds every member still queued, and maybe some
                // that started since: fewer entries than unjoined members
                // means one is running. Pruned only when it may decide.
                if unjoined > to_help.len() {
                    return None;
                }
                to_help.retain(|&cookie| st.is_claimable(domain, cookie));
                if unjoined > to_help.len() {
                    return None;
                }
                let cookie = to_help.pop_front()?;
                st.claim_call(domain, cookie)
            };
            let wait = pool::Wait {
                scope: Scope::Domain(domain),
                below: u64::MAX,
                // The set keeps its domain alive: the state has the name.
                domain_name: None,
                help: Some(&mut claim),
                deadline: None,
            };
            let (mut st, _) = pool::block_until(
                &shared,
                st,
                wait,
                &mut |st| group.with(st, |g| g.has_ended()),
                &mut |st, wake, _| group.with(st, |g| std::mem::replace(&mut g.wake, wake)),
            );
            let ended = group
                .with(&mut st, |g| g.take_ended())
                .map(|member| members.remove(member));
            let stale = group.with(&mut st, |g| std::mem::replace(&mut g.wake, Wake::Nobody));
            drop(st);
            drop(stale);
            ended
        });
        let mut task = ended.expect("a wait without a deadline returns when a member ended");
        Some(task.wait())
    }
}

impl<T: Send + 'static> Future for JoinNext<'_, T> {
    type Output = Option<Result<T, TaskError>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let set = &mut *self.get_mut().set;
        if set.is_empty() {
            return Poll::Ready(None);
        }
        let shared = set.domain.shared().clone();
        let mut st = shared.lock();
        if let Some(mut task) = set.take_ended(&mut st) {
            drop(st);
            // It ended: its result is there at once.
            let mut cx = Context::from_waker(futures::task::noop_waker_ref());
            return match Pin::new(&mut task).poll(&mut cx) {
                Poll::Ready(result) => Poll::Ready(Some(result)),
                Poll::Pending => unreachable!("a member that ended has its result"),
            };
        }
        let previous = set.group.with(&mut st, |g| {
            std::mem::replace(&mut g.wake, Wake::Task(cx.waker().clone()))
        });
        drop(st);
        drop(previous); // after unlocking: a waker's drop is foreign code
        Poll::Pending
    }
}

impl<T: Send + 'static> fmt::Debug for JoinNext<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinNext").field("set", &self.set).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};

    use crate::Runtime;

    use crate::base::drop_count::Counted;

    /// A set's members point at its group: joined, cancelled, ended and
    /// left in the set, and running when the set is dropped. Each value is
    /// dropped once and no member touches the group after the set is gone
    /// (miri checks both).
    #[test]
    fn miri_a_task_set_frees_each_member_once() {
        let rt = Runtime::builder().max_workers(1).no_stall_watchdog().build().unwrap();
        let domain = rt.default_domain();
        let drops = Arc::new(AtomicUsize::new(0));
        let mut set = domain.task_set();
        for _ in 0..3 {
            let drops = drops.clone();
            set.spawn(move |_| Some(Counted(drops)));
        }
        // The one worker runs them lowest first: they end in spawn order.
        drop(set.join_next().wait());
        assert_eq!(drops.load(Ordering::SeqCst), 1);

        // Then it runs a member that holds it (so the first three ended),
        // and one queued behind it is cancelled.
        let (started_tx, started) = mpsc::channel();
        let (release, held) = mpsc::channel::<()>();
        let d = drops.clone();
        set.spawn(move |_| {
            started_tx.send(()).unwrap();
            held.recv().unwrap();
            Some(Counted(d))
        });
        started.recv().unwrap();
        set.spawn(|_| None);
        assert_eq!(set.cancel_all(), 1);
        assert!(matches!(set.join_next().wait(), Some(Ok(Some(_)))));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        // Dropped holding an ended member, a cancelled one and a running one.
        assert_eq!(set.len(), 3);
        drop(set);
        assert_eq!(drops.load(Ordering::SeqCst), 3);
        release.send(()).unwrap();
        domain.synchronize().wait().unwrap();
        drop(rt);
        assert_eq!(drops.load(Ordering::SeqCst), 4);
    }
}
