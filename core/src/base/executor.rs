//! The adapter seam: the [`Executor`] trait (from `kasync-executor`) and the
//! adapters the enabled features bring. Each adapter's whole behaviour
//! (threads, futures, where blocking is allowed) lives in its own crate;
//! the core only picks one.

use std::sync::Arc;

pub use kasync_executor::{Blocking, Executor, ExecutorFuture, WorkerSpec};

#[cfg(feature = "async-std")]
#[cfg_attr(docsrs, doc(cfg(feature = "async-std")))]
pub use kasync_async_std::AsyncStd;
#[cfg(feature = "smol")]
#[cfg_attr(docsrs, doc(cfg(feature = "smol")))]
pub use kasync_smol::Smol;
#[cfg(feature = "threads")]
#[cfg_attr(docsrs, doc(cfg(feature = "threads")))]
pub use kasync_threads::Threads;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use kasync_tokio::{NoRuntime, Tokio};

use crate::base::error::BuildError;

/// The executor picked from the enabled features; see
/// [`Builder::build`](crate::Builder::build): enabling an adapter selects
/// it. `tokio` inside a tokio runtime; otherwise `smol`, then `async-std`,
/// then `threads`; `tokio` alone, outside a tokio runtime, cannot be built.
pub(crate) fn from_features() -> Result<Arc<dyn Executor>, BuildError> {
    #[cfg(feature = "tokio")]
    {
        if let Ok(tokio) = Tokio::current() {
            return Ok(Arc::new(tokio));
        }
    }
    #[cfg(feature = "smol")]
    {
        return Ok(Arc::new(Smol));
    }
    #[allow(unreachable_code)]
    {
        #[cfg(feature = "async-std")]
        {
            return Ok(Arc::new(AsyncStd));
        }
        #[cfg(feature = "threads")]
        {
            return Ok(Arc::new(Threads));
        }
        #[cfg(feature = "tokio")]
        {
            return Err(BuildError::from(NoRuntime));
        }
        Err(BuildError::NoExecutor)
    }
}
