//! The conformance suite on the smol adapter, plus smol-specific behaviour.
#![cfg(feature = "smol")]

mod suite;

use kasync::{Runtime, SyncError};

fn builder() -> kasync::Builder {
    Runtime::builder().executor(kasync::executor::Smol)
}

suite::conformance!(builder);

#[test]
fn barriers_are_awaited_on_smol() {
    let rt = builder().build().unwrap();
    let domain = rt.domain("smol");
    let (tx, rx) = smol::channel::bounded::<()>(1);
    domain.schedule_async(move |_| async move {
        rx.recv().await.unwrap();
    });
    smol::block_on(async {
        let barrier = domain.synchronize();
        assert!(!barrier.is_finished());
        tx.send(()).await.unwrap();
        barrier.await.unwrap();
    });
}

#[test]
fn blocking_inside_an_async_call_is_refused() {
    let rt = builder().build().unwrap();
    let domain = rt.domain("inner");
    let other = rt.exclusive_domain("other");
    let (tx, rx) = std::sync::mpsc::channel();
    let o = other.clone();
    domain.schedule_async(move |_| async move {
        o.schedule(|_| {});
        let blocking = o.synchronize().wait();
        let awaited = o.synchronize().await;
        tx.send((blocking, awaited)).unwrap();
    });
    let (blocking, awaited) = rx.recv().unwrap();
    assert!(
        matches!(blocking, Err(SyncError::BlockingNotAllowed { executor: "smol", .. })),
        "{blocking:?}"
    );
    assert_eq!(awaited, Ok(()));
    domain.synchronize().wait().unwrap();
}
