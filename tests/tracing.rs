//! The `tracing` feature: a span per call with its cookie, domain and
//! adapter, and events for barrier waits (with how many calls the waiter ran
//! by helping), worker starts, panics and stalls. A small capturing
//! subscriber records what kasync emits (and uses kasync itself each time,
//! which would deadlock if kasync called it under its lock); one test
//! function, because the subscriber is process-wide (calls run on worker
//! threads).
#![cfg(all(feature = "tracing", feature = "threads"))]

use std::collections::HashMap;
use std::fmt;
use std::sync::{mpsc, Mutex};

use kasync::Runtime;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

type Fields = HashMap<String, String>;

#[derive(Default)]
struct Capture {
    /// A domain of the runtime under test: every span and event uses it,
    /// which deadlocks if kasync calls the subscriber under its lock.
    uses: std::sync::OnceLock<kasync::Domain>,
    spans: Mutex<Vec<(String, Fields)>>,
    events: Mutex<Vec<Fields>>,
}

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("kasync")
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.use_kasync();
        let mut fields = Fields::new();
        span.record(&mut Collect(&mut fields));
        // The id is the span's place in `spans`, plus one (ids are non-zero).
        let mut spans = self.spans.lock().unwrap();
        spans.push((span.metadata().name().to_owned(), fields));
        Id::from_u64(spans.len() as u64)
    }

    /// Values recorded after the span was made (kasync records the domain
    /// name once it has copied it out of its lock).
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        let (_, fields) = &mut spans[id.into_u64() as usize - 1];
        values.record(&mut Collect(fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        self.use_kasync();
        let mut fields = Fields::new();
        event.record(&mut Collect(&mut fields));
        self.events.lock().unwrap().push(fields);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

impl Capture {
    fn use_kasync(&self) {
        if let Some(domain) = self.uses.get() {
            let _ = domain.synchronize().is_finished();
        }
    }
}

fn message(fields: &Fields) -> &str {
    fields.get("message").map_or("", String::as_str)
}

#[test]
fn spans_and_events_describe_calls_waits_workers_and_stalls() {
    let capture: &'static Capture = Box::leak(Box::default());
    tracing::subscriber::set_global_default(CaptureRef(capture)).unwrap();

    // One worker, no watchdog: call 1 holds the worker until call 9, which
    // the waiting main thread runs by helping (with calls 2 to 8), releases it.
    let rt = Runtime::builder()
        .executor(kasync::executor::Threads)
        .max_workers(1)
        .no_stall_watchdog()
        .build()
        .unwrap();
    let probes = rt.domain("probes");
    capture.uses.set(rt.exclusive_domain("subscriber")).unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    probes.schedule(move |_| {
        started_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    started_rx.recv().unwrap();
    for _ in 0..6 {
        probes.schedule(|_| {});
    }
    probes.schedule(|_| panic!("probe fails"));
    probes.schedule(move |_| go_tx.send(()).unwrap());
    assert!(rt.synchronize_full().wait().is_err(), "the panic is reported");

    let spans = capture.spans.lock().unwrap().clone();
    let calls: Vec<&Fields> = spans
        .iter()
        .filter(|(name, _)| name == "call")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(calls.len(), 9, "one span per call");
    for (n, fields) in calls.iter().enumerate() {
        assert_eq!(fields["cookie"], (n + 1).to_string());
        assert_eq!(fields["domain"], "probes");
        assert_eq!(fields["adapter"], "threads");
    }
    let events = capture.events.lock().unwrap().clone();
    let wait = events
        .iter()
        .find(|e| message(e) == "barrier wait returned" && e["what"] == "synchronize_full()")
        .expect("the main thread's wait is an event");
    assert_eq!(wait["helped"], "8");
    assert_eq!(wait["blocking"], "true");
    assert!(wait["waited_us"].parse::<u64>().is_ok());
    assert!(events.iter().any(|e| message(e) == "call panicked"));
    assert!(events
        .iter()
        .any(|e| message(e) == "worker started" && e["worker"] == "kasync-worker-0"));

    // Invisible blocking: call 1 waits on a channel only call 2 feeds, so the
    // watchdog must find the pool stalled.
    let rt = Runtime::builder()
        .executor(kasync::executor::Threads)
        .max_workers(4)
        .eager_workers(1)
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel::<()>();
    rt.schedule(move |_| rx.recv().unwrap());
    rt.schedule(move |_| tx.send(()).unwrap());
    rt.synchronize_full().wait_no_help().unwrap();
    let events = capture.events.lock().unwrap();
    assert!(events.iter().any(|e| message(e) == "pool stalled: adding workers"));
}

/// `set_global_default` takes the subscriber by value; this shares the
/// leaked one with the test.
struct CaptureRef(&'static Capture);

impl Subscriber for CaptureRef {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.0.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.0.record(span, values)
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.0.record_follows_from(span, follows)
    }

    fn event(&self, event: &Event<'_>) {
        self.0.event(event)
    }

    fn enter(&self, span: &Id) {
        self.0.enter(span)
    }

    fn exit(&self, span: &Id) {
        self.0.exit(span)
    }
}
