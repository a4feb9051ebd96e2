//! The conformance suite on the async-std adapter (async-std is deprecated
//! upstream in favour of smol; the adapter is kept working for its users).
#![cfg(feature = "async-std")]

mod suite;

use kasync::{Runtime, SyncError};

fn builder() -> kasync::Builder {
    Runtime::builder().executor(kasync::executor::AsyncStd)
}

suite::conformance!(builder);

#[test]
fn blocking_inside_an_async_std_task_is_refused_and_await_works() {
    let rt = builder().build().unwrap();
    let domain = rt.domain("task");
    let (tx, rx) = async_std::channel::bounded::<()>(1);
    domain.schedule_async(move |_| async move {
        rx.recv().await.unwrap();
    });
    async_std::task::block_on(async {
        match domain.synchronize().wait() {
            Err(SyncError::BlockingNotAllowed { executor, .. }) => assert_eq!(executor, "async-std"),
            other => panic!("expected BlockingNotAllowed, got {other:?}"),
        }
        tx.send(()).await.unwrap();
        domain.synchronize().await.unwrap();
    });
}
