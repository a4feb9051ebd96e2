//! The API layer: the public handles, `Runtime`/`Builder`, `Domain`,
//! `Barrier` and the item handles.

pub(crate) mod barrier;
pub(crate) mod domain;
pub(crate) mod item;
pub(crate) mod ordered;
pub(crate) mod runtime;
pub(crate) mod scope;
pub(crate) mod task;
pub(crate) mod task_set;
pub(crate) mod unordered;
