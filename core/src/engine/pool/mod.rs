//! The worker pool and the deadlock-free growth rule, described once in
//! `README.md` beside this file.
//!
//! * `model/growth.rs` decides: pure functions of the pool's state and an
//!   event, returning `Actions`. Unit-tested with event tables.
//! * `act.rs` acts: notifies woken workers and starts threads, in one place.
//! * `worker.rs` is a worker's loop, `watchdog.rs` the watchdog's,
//!   `wait.rs` the one blocking-wait loop barriers, items and scopes share.

pub(crate) mod act;

mod progress;
mod wait;
mod watchdog;
mod worker;

pub(crate) use crate::model::growth::{Phase, Settings, Watchdog};
pub(crate) use act::{dispatch_waiting, notify_woken, on_enqueue, start_min_workers, start_threads};
pub(crate) use wait::{block_until, Helper, Wait};
