//! The engine layer: running calls, the worker pool and the watchdog,
//! blocking waits, scheduling and shutdown, the thread's context and
//! observation. It acts on the model's decisions.

pub(crate) mod blocking;
pub(crate) mod cancel;
pub(crate) mod context;
pub(crate) mod observe;
pub(crate) mod pool;
pub(crate) mod run;
pub(crate) mod schedule;
pub(crate) mod shared;
pub(crate) mod shutdown;
