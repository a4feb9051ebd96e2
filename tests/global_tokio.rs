//! The facade's global runtime under the `tokio` feature. A test binary of
//! its own: the global runtime is per process, and this test must be the
//! first to touch it.
#![cfg(feature = "tokio")]

use std::sync::mpsc;
use std::time::Duration;

/// Longer than any passing test waits.
const HANG: Duration = Duration::from_secs(30);

/// Bug: the global runtime `kasync::runtime()` bound to whichever tokio
/// runtime first touched it; once that tokio runtime was dropped, nothing
/// could start a worker, and calls scheduled on the global runtime never ran
/// unless a waiter ran them itself.
#[test]
fn the_global_runtime_outlives_the_tokio_runtime_that_first_used_it() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel();
        kasync::schedule(move |_| {
            let _ = tx.send(());
        });
        rx.await.unwrap();
        kasync::synchronize_full().await.unwrap();
    });
    drop(tokio_rt);
    let (tx, rx) = mpsc::channel();
    kasync::schedule(move |_| tx.send(()).unwrap());
    // Neither waits helps: a worker must run the call.
    assert!(
        rx.recv_timeout(HANG).is_ok(),
        "the call never ran after the first tokio runtime was dropped: {:?}",
        kasync::runtime().stats()
    );
    assert_eq!(kasync::synchronize_full().wait_timeout(HANG), Ok(()));
    kasync::schedule(|_| {});
    assert_eq!(kasync::synchronize_full().wait(), Ok(()));
}
