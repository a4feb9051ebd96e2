//! The model and the deadlock-free growth rule behind
//! [kasync](https://docs.rs/kasync): the Linux kernel's asynchronous function
//! calls (`kernel/async.c`) for Rust applications.
//!
//! Applications normally depend on the `kasync` facade crate, which re-exports
//! everything here and adds kernel-style free functions on a global runtime.
//!
//! ```
//! use kasync_core::Runtime;
//!
//! let rt = Runtime::new().unwrap();
//! let probes = rt.domain("probes");
//! for n in 0..4 {
//!     let probes2 = probes.clone();
//!     probes.schedule(move |cookie| {
//!         // slow probing runs in parallel ...
//!         probes2.synchronize_cookie(cookie).wait().unwrap();
//!         // ... registering happens in cookie order
//!         println!("registered device {n}");
//!     });
//! }
//! rt.synchronize_full().wait().unwrap();
//! ```
//!
//! # Guarantees
//!
//! The worker pool follows one growth rule on every executor, in five
//! parts: **lowest cookie first** (workers and helping waiters always start
//! the lowest queued cookie, so within a domain the started calls are a
//! prefix of cookie order); **borrow the waiter's thread** ([`Barrier::wait`]
//! first runs the queued calls it covers, at most [`Builder::help_depth`]
//! deep; [`Barrier::wait_no_help`] and [`Builder::help`] turn this off);
//! **compensate at once** (a worker about to block in a kasync wait, or in a
//! pending async call polled on it, is replaced while calls are queued); a
//! **watchdog** for blocking kasync cannot see (sleeps, I/O, foreign locks:
//! while calls are queued behind a worker that sat in one call for
//! [`Builder::stall_timeout`], the awake workers double); and **cap and
//! shrink** ([`Builder::max_workers`], [`Builder::min_workers`],
//! [`Builder::keep_alive`]). The rule, its state machines and the reasons
//! for its thresholds are described once, in
//! [`core/src/engine/pool/README.md`](https://github.com/kasync/kasync/blob/main/core/src/engine/pool/README.md).
//!
//! What that guarantees to finish, counting workers plus the threads that
//! wait:
//!
//! * **Waits on earlier cookies finish with a single worker.** If every call
//!   waits only through barriers on cookies lower than its own (the kernel's
//!   `synchronize_cookie(own_cookie)` pattern, in its own or any other
//!   domain), everything finishes with `max_workers(1)`: by rule 1 the
//!   lowest unfinished call never waits on anything unstarted, and rule 2
//!   runs what a waiter needs on the waiter's own thread.
//! * **Acyclic waits finish below the cap.** If the graph "call A waits on a
//!   barrier covering call B" has no cycle and all waiting goes through kasync
//!   barriers, everything finishes as long as the cap leaves one thread per
//!   `help_depth` levels of the longest chain of waits: a waiter helps with
//!   what it waits for (rule 2) and a worker that still has to block is
//!   replaced at once (rule 3). The nested parent/child and cross-domain
//!   chain tests run this with `max_workers(1)` and `max_workers(2)`.
//! * **Waits kasync cannot see** (a call blocking on a channel another queued
//!   call feeds) finish while the cap is not reached: the watchdog adds a
//!   worker within about `stall_timeout`.
//! * **Not guaranteed:** cycles (A waits for B while B waits for A, which is a
//!   bug kasync reports as [`SyncError::WouldDeadlock`] only when both are on
//!   one thread), invisible blocking once `max_workers` threads are all
//!   blocked, and waits on calls that never get scheduled.
//!
//! Waiting on another runtime's domain, from inside a call or not, is
//! allowed and follows the same rules: the waiter helps with the other
//! runtime's queued calls, and a wait that would wait for a call running
//! lower on the same thread is refused with [`SyncError::WouldDeadlock`]
//! whichever runtime that call belongs to. A cycle between runtimes on
//! different threads is, like any cycle, not detected.
//!
//! Waits from async code (`.await`) hold no thread at all.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod api;
mod base;
mod engine;
mod model;

pub use base::executor;

#[cfg(all(test, loom))]
mod loom_tests;

pub use api::barrier::Barrier;
pub use api::domain::Domain;
pub use api::item::{ItemScope, Submitted, WaitError};
pub use api::ordered::OrderedMap;
pub use api::runtime::{Builder, Runtime, Stats};
pub use api::task::Task;
pub use base::cookie::Cookie;
pub use base::error::{BuildError, Full, PanicReport, SyncError, TaskError};
pub use base::executor::Executor;
pub use engine::context::{current_cookie, current_is_async};
pub use engine::shared::Overflow;
pub use model::item::{Item, Work};
pub use model::timeline::{CallRecord, ThreadRecord, Timeline, WaitRecord};
