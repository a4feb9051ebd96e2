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
#![warn(missing_docs)]

mod barrier;
mod call;
mod context;
mod cookie;
mod domain;
mod error;
pub mod executor;
mod pool;
mod runtime;
mod state;
mod sync;

#[cfg(all(test, loom))]
mod loom_tests;

pub use barrier::Barrier;
pub use context::{current_cookie, current_is_async};
pub use cookie::Cookie;
pub use domain::Domain;
pub use error::{BuildError, Full, PanicReport, SyncError};
pub use executor::Executor;
pub use runtime::{Builder, Overflow, Runtime, Stats};
