//! The base layer: synchronisation primitives, cookies, errors, inline
//! closures and the executor seam. Imports nothing above it.

pub(crate) mod cookie;
#[cfg(test)]
pub(crate) mod drop_count;
pub(crate) mod error;
pub mod executor;
pub(crate) mod inline_fn;
pub(crate) mod os_thread;
pub(crate) mod sync;
