//! The conformance suite on the tokio adapter, plus tokio-specific behaviour.
#![cfg(feature = "tokio")]

mod suite;

use std::sync::OnceLock;

use kasync::executor::Tokio;
use kasync::{Runtime, SyncError};

/// One multi-thread tokio runtime shared by the suite's tests; the tests
/// themselves block from plain test threads, outside it.
fn tokio_runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn builder() -> kasync::Builder {
    Runtime::builder().executor(Tokio::with_handle(tokio_runtime().handle().clone()))
}

suite::conformance!(builder);

#[test]
fn attaching_outside_a_tokio_runtime_is_a_clear_error() {
    let err = Tokio::current().unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_new_inside_tokio_picks_tokio_and_awaits_barriers() {
    let rt = Runtime::new().unwrap();
    assert_eq!(rt.executor_name(), "tokio");
    let domain = rt.domain("svc");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let first = domain.schedule_async(|_| async move {
        let _ = rx.await;
    });
    let second = domain.schedule(|_| {});
    let barrier = domain.synchronize_cookie(second);
    assert!(!barrier.is_finished());
    tx.send(()).unwrap();
    barrier.await.unwrap();
    domain.synchronize().await.unwrap();
    assert!(first < second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_wait_on_a_multi_thread_worker_uses_block_in_place() {
    let rt = Runtime::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    rt.schedule(move |_| rx.recv().unwrap());
    // The sender runs as a separate tokio task while this worker blocks.
    tokio::spawn(async move { tx.send(()).unwrap() });
    rt.synchronize_full().wait().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_wait_on_a_current_thread_runtime_is_refused() {
    let rt = Runtime::new().unwrap();
    assert_eq!(rt.executor_name(), "tokio");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    rt.schedule_async(|_| async move {
        let _ = rx.await;
    });
    match rt.synchronize_full().wait() {
        Err(SyncError::BlockingNotAllowed { executor, reason }) => {
            assert_eq!(executor, "tokio");
            assert!(reason.contains("current-thread"), "{reason}");
        }
        other => panic!("expected BlockingNotAllowed, got {other:?}"),
    }
    tx.send(()).unwrap();
    rt.synchronize_full().await.unwrap();
}

#[test]
fn blocking_inside_an_async_call_uses_block_in_place() {
    let rt = builder().build().unwrap();
    let domain = rt.domain("inner");
    let other = rt.exclusive_domain("other");
    let (tx, rx) = std::sync::mpsc::channel();
    let o = other.clone();
    domain.schedule_async(move |_| async move {
        o.schedule(|_| {});
        tx.send(o.synchronize().wait()).unwrap();
    });
    assert_eq!(rx.recv().unwrap(), Ok(()));
    domain.synchronize().wait().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn shutdown_on_a_current_thread_runtime_is_refused_and_loses_nothing() {
    let rt = Runtime::new().unwrap();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    rt.schedule_async(|_| async move {
        let _ = go_rx.await;
        let _ = done_tx.send(());
    });
    match rt.shutdown() {
        Err(SyncError::BlockingNotAllowed { executor, .. }) => assert_eq!(executor, "tokio"),
        other => panic!("expected BlockingNotAllowed, got {other:?}"),
    }
    go_tx.send(()).unwrap();
    done_rx.await.expect("the call still ran after the refused shutdown");
}

/// Bug: on a tokio current-thread runtime (the default of `#[tokio::test]`)
/// blocking waits were refused on its `spawn_blocking` threads too, although
/// blocking there stalls nothing. The runtime's own thread still refuses.
#[tokio::test]
async fn blocking_wait_on_a_current_thread_runtimes_blocking_thread_is_allowed() {
    let rt = Runtime::new().unwrap();
    assert_eq!(rt.executor_name(), "tokio");
    let domain = rt.default_domain().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    rt.schedule(move |_| tx.send(()).unwrap());
    let d = domain.clone();
    let result = tokio::task::spawn_blocking(move || d.synchronize().wait())
        .await
        .unwrap();
    assert_eq!(result, Ok(()));
    assert_eq!(rx.try_recv(), Ok(()), "the call ran before the barrier returned");
    match domain.synchronize().wait() {
        Err(SyncError::BlockingNotAllowed { executor, .. }) => assert_eq!(executor, "tokio"),
        other => panic!("expected BlockingNotAllowed on the runtime's own thread, got {other:?}"),
    }
}
