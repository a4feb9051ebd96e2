//! Shutdown joins: after `Runtime::shutdown` returns, every worker thread the
//! executor started has left kasync and terminates, even with an infinite
//! `keep_alive` (which would keep idle workers forever if shutdown did not
//! release them). Threads are started by a wrapper executor that keeps their
//! join handles.
#![cfg(feature = "threads")]

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kasync::executor::{ExecutorFuture, Threads, WorkerSpec};
use kasync::{Executor, Runtime};

/// Native threads whose join handles the test keeps.
#[derive(Clone, Default)]
struct Joinable {
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Executor for Joinable {
    fn name(&self) -> &'static str {
        "joinable threads"
    }

    fn spawn_worker(&self, spec: WorkerSpec, body: Box<dyn FnOnce() + Send + 'static>) -> io::Result<()> {
        let handle = std::thread::Builder::new().name(spec.name).spawn(body)?;
        self.handles.lock().unwrap().push(handle);
        Ok(())
    }

    fn spawn_future(&self, future: ExecutorFuture) {
        Threads.spawn_future(future)
    }
}

/// Joins every thread the executor started, failing instead of hanging if
/// one never ends.
fn join_all(executor: &Joinable) -> usize {
    let handles = std::mem::take(&mut *executor.handles.lock().unwrap());
    let count = handles.len();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for handle in handles {
            handle.join().unwrap();
        }
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("every worker thread ends after shutdown");
    count
}

#[test]
fn shutdown_lets_every_worker_thread_end() {
    let executor = Joinable::default();
    let rt = Runtime::builder()
        .executor(executor.clone())
        .min_workers(2)
        .keep_alive(Duration::MAX)
        .build()
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let domain = rt.domain("work");
    for _ in 0..1000 {
        let (ran, nested) = (ran.clone(), domain.clone());
        domain.schedule(move |cookie| {
            nested.synchronize_cookie(cookie).wait().unwrap();
            ran.fetch_add(1, Ordering::SeqCst);
        });
    }
    let spawned = rt.stats().spawned;
    rt.shutdown().unwrap();
    assert_eq!(ran.load(Ordering::SeqCst), 1000);
    let joined = join_all(&executor);
    assert!(joined as u64 >= spawned.max(2), "joined {joined} of at least {spawned}");
}

#[test]
fn dropping_lets_every_worker_thread_end() {
    let executor = Joinable::default();
    let rt = Runtime::builder()
        .executor(executor.clone())
        .min_workers(3)
        .keep_alive(Duration::MAX)
        .build()
        .unwrap();
    rt.schedule(|_| {});
    drop(rt);
    assert!(join_all(&executor) >= 3);
}
