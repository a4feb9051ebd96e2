//! The kernel-style free functions on the global runtime.

use std::sync::mpsc;

#[test]
fn free_functions_use_one_global_runtime() {
    assert!(!kasync::current_is_async());
    let (tx, rx) = mpsc::channel();
    let first = kasync::schedule(move |cookie| tx.send((cookie, kasync::current_cookie())).unwrap());
    let (got, current) = rx.recv().unwrap();
    assert_eq!(got, first);
    assert_eq!(current, Some(first));
    let second = kasync::schedule_async(|_| async {});
    assert!(second > first);
    kasync::synchronize_cookie(second).wait().unwrap();
    kasync::synchronize_full().wait().unwrap();
    assert!(std::ptr::eq(kasync::runtime(), kasync::runtime()));
    assert!(kasync::runtime().stats().completed >= 2);
}
