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
//! parts: **lowest cookie first** (workers and barrier helpers start the
//! lowest queued cookie, so within a domain the started calls are a prefix
//! of cookie order, except calls a waiter runs early because it waits for
//! exactly them: a task or item it waits for, or what an async call it waits
//! for awaits); **borrow the waiter's thread** ([`Barrier::wait`] first runs the
//! queued calls it covers, lowest first; a wait for one [`Task`] or
//! [`Submitted`] runs that call if it is queued, and nothing else; a
//! [`Domain::scope`] runs its own queued calls; [`TaskSet::join_next`] runs
//! a queued member only while none of the set's calls runs; a thread
//! waiting for an async call that is pending on a kasync wait runs the
//! queued calls that wait covers; all at most [`Builder::help_depth`]
//! deep; [`Barrier::wait_no_help`] and [`Builder::help`] turn this off);
//! **compensate at once** (a worker about to block in a kasync wait, or in a
//! pending async call polled on it, is replaced while calls are queued);
//! **grow by progress** for blocking kasync cannot see (sleeps, I/O,
//! foreign locks: while calls are queued, a watchdog looks at the workers
//! every [`Builder::stall_timeout`] and keeps [`Builder::eager_workers`] of
//! them runnable: one found off the CPUs gets a thread in its place, one
//! that computes gets none; on Linux, see [`ProgressSignal`]); and **cap
//! and shrink** ([`Builder::max_workers`], [`Builder::min_workers`],
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
//!   domain), everything finishes with `max_workers(1)`: the lowest
//!   unfinished call never waits on anything unstarted, and a waiter runs
//!   what it needs on its own thread.
//! * **Acyclic waits finish below the cap.** Say call A *waits for* call B
//!   when A waits on a barrier covering B, on B's [`Task`] or [`Submitted`],
//!   on a [`Domain::scope`] holding B, on a [`TaskSet`] holding B (while no
//!   other member runs), or on an async call that is pending on one of
//!   these. If that graph has no cycle and all waiting goes
//!   through kasync, everything finishes as long as the cap leaves one
//!   thread per `help_depth` levels of the longest chain of waits: a waiter
//!   runs the queued calls it waits for itself, so the calls stacked on one
//!   thread are always a chain of real waits (never unrelated siblings),
//!   and a worker that still has to block is replaced at once. The nested
//!   parent/child, parents-waiting-on-their-own-children and cross-domain
//!   chain tests run this with `max_workers(1)` and `max_workers(2)`. An
//!   async call that awaits an async call that awaits a queued call is two
//!   levels kasync does not look through: its waiter does not run that
//!   queued call.
//! * **Waits kasync cannot see** (a call blocking on a channel another queued
//!   call feeds) finish while the cap is not reached: the watchdog adds a
//!   worker within about `stall_timeout` (within 8 of them after a stretch
//!   in which every worker it looked at was computing: it looks less often
//!   then).
//! * **Not guaranteed:** cycles (A waits for B while B waits for A, which is a
//!   bug kasync reports as [`SyncError::WouldDeadlock`], or
//!   [`TaskError::WouldDeadlock`], only when both are on one thread),
//!   invisible blocking once `max_workers` threads are all blocked, and
//!   waits on calls that never get scheduled.
//!
//! A call's panic is delivered once where it can be taken: to its [`Task`],
//! [`Submitted`] or [`ScopedTask`] if it has one (no barrier reports it
//! then, unless that handle is dropped before it took the panic); a scope
//! re-raises the first panic nobody took; any other goes to the barriers
//! covering its call (see [`Barrier`]). Drops of what a call held run in
//! the call's frame, whether it ran, was cancelled, or was dropped by its
//! executor: a drop that waits on its own call is refused with
//! `WouldDeadlock`, and a drop of the runtime's last handle does not wait
//! for the call it is part of. Cancelled calls are settled one at a time
//! in cookie order, so a drop may wait for an earlier call of the same
//! cancellation; one that waits for a later one settles it itself.
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
pub use api::item::{Submitted, WaitError};
pub use api::ordered::OrderedMap;
pub use api::runtime::{Builder, Runtime, Stats};
#[allow(deprecated)]
pub use api::scope::ItemScope;
pub use api::scope::{Scope, ScopedTask};
pub use api::task::Task;
pub use api::task_set::{JoinNext, TaskSet};
pub use api::unordered::UnorderedMap;
pub use base::cookie::Cookie;
pub use base::error::{BuildError, Full, PanicReport, SyncError, TaskError};
pub use base::executor::Executor;
pub use engine::context::{current_cookie, current_is_async};
pub use engine::shared::{Overflow, ProgressSignal};
pub use model::item::{Item, Work};
pub use model::timeline::{CallRecord, ThreadRecord, Timeline, WaitRecord};
