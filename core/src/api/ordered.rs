//! Parallel in, ordered out: [`Domain::map_ordered`]. A sliding window of
//! tasks over the inputs, consumed from the front: results come back in
//! input order, no call waits on another (so no thread is parked per
//! pending result), and memory stays O(window).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::api::domain::Domain;
use crate::api::task::Task;
use crate::base::error::TaskError;

/// Pulls the next input and spawns its call; `None` once inputs run out.
type NextCall<T> = Box<dyn FnMut(&Domain) -> Option<Task<T>> + Send>;

/// The results of [`Domain::map_ordered`], in input order: an
/// [`Iterator`] whose `next` blocks (running the next result's call if it
/// is still queued), or, through [`OrderedMap::into_stream`], a `Stream`
/// that holds no thread.
///
/// A panicking input yields `Err(TaskError::Panicked(..))` at its place, a
/// cancelled one `Err(TaskError::Cancelled)`, and the map goes on. Dropping
/// the map early cancels its queued calls (the rest of the inputs are never
/// pulled), lets the running ones finish and drops their results.
#[must_use = "a map pulls no input and runs no call until it is iterated or streamed"]
pub struct OrderedMap<T: Send + 'static> {
    domain: Domain,
    next_call: NextCall<T>,
    /// The calls of inputs pulled and not yet yielded, in input order.
    in_flight: VecDeque<Task<T>>,
    window: usize,
    inputs_left: bool,
}

impl Domain {
    /// Runs `f` on every input, up to `window` at once, and yields the
    /// results in input order.
    ///
    /// * Inputs are pulled lazily, on the consumer's side: at no time are
    ///   more than `window` inputs pulled and not yet yielded, so memory is
    ///   O(`window`), and at most `window` of the map's calls run at once.
    /// * Each input is one call of this domain (it takes a cookie, counts
    ///   for barriers and may be cancelled by [`Domain::cancel`]); no call
    ///   waits on another, so no thread is parked per pending result.
    /// * A panicking input yields `Err(TaskError::Panicked(..))` at its
    ///   place, an input whose call was cancelled `Err(TaskError::Cancelled)`,
    ///   and the map goes on.
    ///
    /// When to use which: the kernel's pattern, [`Domain::schedule`] with
    /// each call waiting on `synchronize_cookie(own cookie)` before it
    /// publishes, keeps a thread parked per waiting call (a slow first call
    /// makes the pool grow toward `max_workers`); `map_ordered` parks none
    /// and bounds memory, for results you consume in order.
    /// [`Domain::scope`] runs calls that borrow, and caller-owned items,
    /// and waits for all of them at once; [`Domain::map_unordered`] yields
    /// in the order the calls end.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let lengths: Vec<usize> = rt
    ///     .default_domain()
    ///     .map_ordered(["a", "bb", "ccc"], 2, |s: &str| s.len())
    ///     .map(Result::unwrap)
    ///     .collect();
    /// assert_eq!(lengths, [1, 2, 3]);
    /// ```
    ///
    /// # Panics
    ///
    /// If `window` is 0, at this call.
    pub fn map_ordered<I, F, T>(&self, inputs: I, window: usize, f: F) -> OrderedMap<T>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        assert!(window > 0, "kasync: map_ordered needs a window of at least 1 call");
        let f = Arc::new(f);
        let mut inputs = inputs.into_iter();
        let next_call = Box::new(move |domain: &Domain| {
            let input = inputs.next()?;
            let f = f.clone();
            Some(domain.spawn(move |_| f(input)))
        });
        OrderedMap {
            domain: self.clone(),
            next_call,
            in_flight: VecDeque::with_capacity(window.min(1024)),
            window,
            inputs_left: true,
        }
    }
}

impl<T: Send + 'static> OrderedMap<T> {
    /// The same results as a `Stream`, which holds no thread while it
    /// waits (a type that were both an `Iterator` and a `Stream` would make
    /// `.map()` ambiguous wherever `StreamExt` is in scope).
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// use futures::StreamExt;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let doubled = rt.default_domain().map_ordered(1..=3, 2, |n: u32| n * 2).into_stream();
    /// let results: Vec<u32> = futures::executor::block_on(doubled.map(Result::unwrap).collect());
    /// assert_eq!(results, [2, 4, 6]);
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = Result<T, TaskError>> + Send + Unpin {
        OrderedStream { map: self }
    }

    /// Pulls inputs and spawns their calls until `window` are in flight or
    /// the inputs run out.
    fn top_up(&mut self) {
        while self.inputs_left && self.in_flight.len() < self.window {
            match (self.next_call)(&self.domain) {
                Some(task) => self.in_flight.push_back(task),
                None => self.inputs_left = false,
            }
        }
    }
}

impl<T: Send + 'static> Iterator for OrderedMap<T> {
    type Item = Result<T, TaskError>;

    /// The next result in input order; blocks until it is there, running
    /// its call on this thread if it is still queued.
    ///
    /// # Panics
    ///
    /// Where blocking would stall an async runtime (use
    /// [`OrderedMap::into_stream`] and `.await` there): going on would pull
    /// past the window.
    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        let task = self.in_flight.front_mut()?;
        let result = task.wait();
        if let Err(TaskError::BlockingNotAllowed { executor, reason }) = &result {
            panic!(
                "kasync: OrderedMap::next cannot block on this thread ({executor}: {reason}); \
                 use into_stream() and .await it"
            );
        }
        self.in_flight.pop_front();
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_flight = self.in_flight.len();
        (in_flight, (!self.inputs_left).then_some(in_flight))
    }
}

impl<T: Send + 'static> Drop for OrderedMap<T> {
    fn drop(&mut self) {
        // Queued calls never run; running ones finish, and their results
        // are dropped with their detached tasks.
        for task in &self.in_flight {
            task.cancel();
        }
    }
}

impl<T: Send + 'static> fmt::Debug for OrderedMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrderedMap")
            .field("window", &self.window)
            .field("in_flight", &self.in_flight.len())
            .field("inputs_left", &self.inputs_left)
            .finish()
    }
}

/// [`OrderedMap::into_stream`].
struct OrderedStream<T: Send + 'static> {
    map: OrderedMap<T>,
}

impl<T: Send + 'static> Stream for OrderedStream<T> {
    type Item = Result<T, TaskError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let map = &mut self.map;
        map.top_up();
        let Some(front) = map.in_flight.front_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(front).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                map.in_flight.pop_front();
                Poll::Ready(Some(result))
            }
        }
    }
}
