//! The model layer: the state kept under the runtime's lock (domains' call
//! queues, waiters, panic records, item headers, the pool's state and its
//! pure growth decisions) and the timeline's records. It never calls the
//! engine and never blocks, spawns or runs user code.

pub(crate) mod awaiting;
pub(crate) mod call;
pub(crate) mod domain;
pub(crate) mod growth;
pub(crate) mod ids;
pub(crate) mod item;
pub(crate) mod state;
pub(crate) mod timeline;
