//! Parallel in, first done first out: [`Domain::map_unordered`]. A window
//! of calls in a [`TaskSet`], topped up from the inputs as results are
//! taken: results come back in the order the calls end, and memory stays
//! O(window).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use crate::api::domain::Domain;
use crate::api::task_set::TaskSet;
use crate::base::error::TaskError;

/// Pulls the next input and spawns its call into the set; `false` once the
/// inputs ran out.
type SpawnNext<T> = Box<dyn FnMut(&mut TaskSet<T>) -> bool + Send>;

/// The results of [`Domain::map_unordered`], in the order their calls end:
/// an [`Iterator`] whose `next` blocks (running a queued call of the map
/// itself only while none runs, as [`JoinNext::wait`](crate::JoinNext::wait)
/// does), or, through [`UnorderedMap::into_stream`], a `Stream` that
/// holds no thread.
///
/// A panicking input yields `Err(TaskError::Panicked(..))`, a cancelled one
/// `Err(TaskError::Cancelled)`, and the map goes on. Dropping the map early
/// cancels its queued calls (the rest of the inputs are never pulled) and
/// lets the running ones finish.
#[must_use = "a map pulls no input and runs no call until it is iterated or streamed"]
pub struct UnorderedMap<T: Send + 'static> {
    set: TaskSet<T>,
    spawn_next: SpawnNext<T>,
    window: usize,
    inputs_left: bool,
}

impl Domain {
    /// Runs `f` on every input, up to `window` at once, and yields the
    /// results in the order the calls end (as `buffer_unordered` and
    /// tokio's `JoinSet` do; [`Domain::map_ordered`] yields in input order).
    ///
    /// The same bounds as `map_ordered`: inputs are pulled lazily, never
    /// more than `window` pulled and not yet yielded, at most `window` of
    /// the map's calls running at once; each input is one call of this
    /// domain.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let mut lengths: Vec<usize> = rt
    ///     .default_domain()
    ///     .map_unordered(["a", "bb", "ccc"], 2, |s: &str| s.len())
    ///     .map(Result::unwrap)
    ///     .collect();
    /// lengths.sort();
    /// assert_eq!(lengths, [1, 2, 3]);
    /// ```
    ///
    /// # Panics
    ///
    /// If `window` is 0, at this call.
    pub fn map_unordered<I, F, T>(&self, inputs: I, window: usize, f: F) -> UnorderedMap<T>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        assert!(window > 0, "kasync: map_unordered needs a window of at least 1 call");
        let f = Arc::new(f);
        let mut inputs = inputs.into_iter();
        let spawn_next = Box::new(move |set: &mut TaskSet<T>| match inputs.next() {
            Some(input) => {
                let f = f.clone();
                set.spawn(move |_| f(input));
                true
            }
            None => false,
        });
        UnorderedMap {
            set: self.task_set(),
            spawn_next,
            window,
            inputs_left: true,
        }
    }
}

impl<T: Send + 'static> UnorderedMap<T> {
    /// The same results as a `Stream`, which holds no thread while it
    /// waits.
    ///
    /// ```
    /// # use kasync_core as kasync;
    /// use futures::StreamExt;
    /// let rt = kasync::Runtime::new().unwrap();
    /// let doubled = rt.default_domain().map_unordered(1..=3, 2, |n: u32| n * 2).into_stream();
    /// let mut results: Vec<u32> = futures::executor::block_on(doubled.map(Result::unwrap).collect());
    /// results.sort();
    /// assert_eq!(results, [2, 4, 6]);
    /// ```
    pub fn into_stream(self) -> impl Stream<Item = Result<T, TaskError>> + Send + Unpin {
        UnorderedStream { map: self }
    }

    /// Pulls inputs and spawns their calls until `window` are in flight or
    /// the inputs run out.
    fn top_up(&mut self) {
        while self.inputs_left && self.set.len() < self.window {
            self.inputs_left = (self.spawn_next)(&mut self.set);
        }
    }
}

impl<T: Send + 'static> Iterator for UnorderedMap<T> {
    type Item = Result<T, TaskError>;

    /// The next result to be ready; blocks until one is (running a queued
    /// call of the map itself only while none of them runs).
    ///
    /// # Panics
    ///
    /// Where blocking would stall an async runtime (use
    /// [`UnorderedMap::into_stream`] and `.await` there).
    fn next(&mut self) -> Option<Self::Item> {
        self.top_up();
        let result = self.set.join_next().wait()?;
        if let Err(TaskError::BlockingNotAllowed { executor, reason }) = &result {
            panic!(
                "kasync: UnorderedMap::next cannot block on this thread ({executor}: {reason}); \
                 use into_stream() and .await it"
            );
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let in_flight = self.set.len();
        (in_flight, (!self.inputs_left).then_some(in_flight))
    }
}

impl<T: Send + 'static> fmt::Debug for UnorderedMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnorderedMap")
            .field("window", &self.window)
            .field("in_flight", &self.set.len())
            .field("inputs_left", &self.inputs_left)
            .finish()
    }
}

/// [`UnorderedMap::into_stream`].
struct UnorderedStream<T: Send + 'static> {
    map: UnorderedMap<T>,
}

impl<T: Send + 'static> Stream for UnorderedStream<T> {
    type Item = Result<T, TaskError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let map = &mut self.map;
        map.top_up();
        let mut next = map.set.join_next();
        Pin::new(&mut next).poll(cx)
    }
}
