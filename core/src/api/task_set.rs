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
use crate::engine::context;
use crate::engine::pool::{self};
use crate::model::awaiting::Awaited;
use crate::model::ids::{DomainId, Scope};
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
    /// will be again). Pruned as members are joined, so it stays O(len).
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
        let task = self.members.remove(member);
        // Cookies of members that started stay in `to_help` until pruned:
        // prune when they are the most of it, so it never outgrows the set
        // (a set joined only by `.await` would never prune otherwise).
        if self.to_help.len() > 2 * self.members.len() + 8 {
            let domain = self.domain.id();
            self.to_help.retain(|&cookie| st.is_claimable(domain, cookie));
        }
        Some(task)
    }

    /// What a joining thread may do while no member's end is waiting to be
    /// joined (lock held); see [`next_step`].
    fn next_step(&mut self, st: &mut State, own: &[Cookie]) -> Step {
        next_step(
            self.members.len(),
            &self.group,
            &mut self.to_help,
            self.domain.id(),
            st,
            own,
        )
    }

    /// The set's members running lower on this thread (a member joining
    /// its own set).
    fn own_members(&self) -> Vec<Cookie> {
        let (runtime, domain) = (self.domain.shared().id(), self.domain.id());
        context::own_calls(runtime, |frame| {
            frame.domain == domain && self.members.iter().any(|(_, task)| task.cookie() == frame.cookie)
        })
    }
}

/// What a joining thread may do while no member's end is waiting to be
/// joined (lock held), for a set of `members` whose queued ones are among
/// `to_help`, given `own`: the members running lower on this very thread,
/// which cannot end before it returns.
fn next_step(
    members: usize,
    group: &GroupCell,
    to_help: &mut VecDeque<Cookie>,
    domain: DomainId,
    st: &mut State,
    own: &[Cookie],
) -> Step {
    let unjoined = members - group.with(st, |g| g.ended_count());
    // `to_help` holds every member still queued, and maybe some that
    // started since: more unjoined members than that (besides this
    // thread's own) means one runs elsewhere. Pruned only when that cannot
    // decide.
    if unjoined > to_help.len() + own.len() {
        return Step::Wait;
    }
    to_help.retain(|&cookie| st.is_claimable(domain, cookie));
    match to_help.front() {
        _ if unjoined > to_help.len() + own.len() => Step::Wait,
        Some(&cookie) => Step::Run(cookie),
        // Every member left runs lower on this thread: none can end.
        None if unjoined > 0 => Step::Deadlock(own[0]),
        None => Step::Wait,
    }
}

/// [`next_step`].
enum Step {
    /// A member runs elsewhere (or none is left): wait for an end.
    Wait,
    /// None runs elsewhere: the joining thread runs this queued one.
    Run(Cookie),
    /// Every member left runs lower on this thread: waiting would hang.
    Deadlock(Cookie),
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
        let own = set.own_members();
        let st = shared.lock();
        let ended = block_permitted(&shared, st, permission, |mut st| {
            if !set.group.with(&mut st, |g| g.has_ended()) {
                if let Step::Deadlock(waiter) = set.next_step(&mut st, &own) {
                    return Err(TaskError::WouldDeadlock { waiter });
                }
            }
            let members = set.members.len();
            let domain = set.domain.id();
            let TaskSet { group, to_help, .. } = &mut *set;
            let mut claim = |st: &mut State| match next_step(members, group, to_help, domain, st, &own) {
                Step::Run(cookie) => {
                    to_help.pop_front();
                    st.claim_call(domain, cookie)
                }
                Step::Wait | Step::Deadlock(_) => None,
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
            let ended = set.take_ended(&mut st);
            let stale = set
                .group
                .with(&mut st, |g| std::mem::replace(&mut g.wake, Wake::Nobody));
            drop(st);
            drop(stale);
            Ok(ended)
        });
        let mut task = match ended {
            Ok(ended) => ended.expect("a wait without a deadline returns when a member ended"),
            Err(e) => return Some(Err(e)),
        };
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
        let own = set.own_members();
        // Cloned before locking: a waker's clone is foreign code, which may
        // call kasync (dropped, if unused, after the lock is released).
        let waker = cx.waker().clone();
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
        let awaited = match set.next_step(&mut st, &own) {
            Step::Deadlock(waiter) => {
                drop(st);
                return Poll::Ready(Some(Err(TaskError::WouldDeadlock { waiter })));
            }
            Step::Run(cookie) => Some(cookie),
            Step::Wait => None,
        };
        let previous = set
            .group
            .with(&mut st, |g| std::mem::replace(&mut g.wake, Wake::Task(waker)));
        drop(st);
        drop(previous); // after unlocking: a waker's drop is foreign code
        if let Some(cookie) = awaited {
            // Inside an async call: the thread that polls it, or one
            // waiting for it, may run this queued member (none runs).
            let domain = set.domain.id();
            context::note_awaited(shared.id(), Awaited::Call { domain, cookie });
        }
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
