//! The conformance suite on the native-threads adapter.
#![cfg(feature = "threads")]

mod suite;

fn builder() -> kasync::Builder {
    kasync::Runtime::builder().executor(kasync::executor::Threads)
}

suite::conformance!(builder);
