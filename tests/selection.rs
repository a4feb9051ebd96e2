//! Enabling an adapter selects it: `Runtime::new()` and the global runtime
//! pick their adapter from the enabled features (tokio inside a tokio
//! runtime; otherwise smol, then async-std, then threads; the global
//! runtime never the calling thread's tokio runtime). CI runs this file
//! under several feature sets.

/// The adapter `Runtime::new()` picks outside a tokio runtime, by feature.
fn expected_outside_tokio() -> Option<&'static str> {
    if cfg!(feature = "smol") {
        Some("smol")
    } else if cfg!(feature = "async-std") {
        Some("async-std")
    } else if cfg!(feature = "threads") {
        Some("threads")
    } else {
        None
    }
}

#[test]
fn runtime_new_picks_the_enabled_adapter() {
    match (kasync::Runtime::new(), expected_outside_tokio()) {
        (Ok(rt), Some(name)) => assert_eq!(rt.executor_name(), name),
        (Err(e), None) => {
            // Only tokio, and no tokio runtime to attach to: a clear error.
            assert!(e.to_string().contains("tokio"), "{e}");
        }
        (result, expected) => panic!("expected {expected:?}, got {:?}", result.map(|rt| rt.executor_name())),
    }
}

#[cfg(feature = "tokio")]
#[test]
fn runtime_new_inside_a_tokio_runtime_picks_tokio() {
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let name = tokio_rt.block_on(async { kasync::Runtime::new().map(|rt| rt.executor_name()) });
    assert_eq!(name.unwrap(), "tokio");
}

#[test]
fn the_global_runtime_picks_the_enabled_adapter() {
    let expected = expected_outside_tokio().unwrap_or("tokio");
    assert_eq!(kasync::runtime().executor_name(), expected);
}
