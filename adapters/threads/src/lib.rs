//! Native-threads executor adapter for [kasync](https://docs.rs/kasync).
//!
//! Each kasync worker is a dedicated OS thread, named and sized as the
//! runtime asks. Async calls are polled to completion on the worker that
//! claimed them, so this adapter needs no event loop.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::thread;

/// Starts `body` on a new OS thread named `name`, with `stack_size` bytes of
/// stack if given. The thread is detached.
pub fn spawn_thread(
    name: String,
    stack_size: Option<usize>,
    body: Box<dyn FnOnce() + Send + 'static>,
) -> io::Result<()> {
    let mut builder = thread::Builder::new().name(name);
    if let Some(bytes) = stack_size {
        builder = builder.stack_size(bytes);
    }
    builder.spawn(body).map(drop)
}

/// Polls `future` to completion on the calling thread, parking it while the
/// future is pending. Calls may nest: a thread already inside a `block_on`
/// (this one, or `futures::executor::block_on`) may run another future here.
pub fn run_future(future: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
    futures_lite::future::block_on(future)
}
