//! Chrome Trace Event JSON, the format Perfetto and `chrome://tracing` open.
//!
//! Calls and waits become complete (`"X"`) events with begin and duration in
//! microseconds; each thread gets a `thread_name` metadata event so the
//! viewer labels its row. Events on one thread nest properly: a call helped by
//! a waiter runs inside that waiter's wait, which runs inside its own call.

use serde_json::{json, Value};

use super::Timeline;

/// Microseconds, as the format wants, keeping sub-microsecond precision.
fn micros(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(super) fn render(timeline: &Timeline) -> String {
    let mut events = Vec::with_capacity(timeline.threads.len() + timeline.calls.len() + timeline.waits.len() + 1);
    events.push(json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": "kasync" },
    }));
    for thread in &timeline.threads {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": 1, "tid": thread.index,
            "args": { "name": thread.name },
        }));
    }
    for call in &timeline.calls {
        let start = timeline.offset(call.started);
        events.push(json!({
            "name": format!("{} #{}", call.domain, call.cookie),
            "cat": "call",
            "ph": "X",
            "pid": 1,
            "tid": call.thread,
            "ts": micros(start),
            "dur": micros(call.finished.saturating_duration_since(call.started)),
            "args": {
                "cookie": call.cookie.get(),
                "domain": &*call.domain,
                "queued_us": micros(call.started.saturating_duration_since(call.queued)),
                "panicked": call.panicked,
                "helped": call.helped,
            },
        }));
    }
    for wait in &timeline.waits {
        events.push(json!({
            "name": format!("wait {}", wait.what),
            "cat": "wait",
            "ph": "X",
            "pid": 1,
            "tid": wait.thread,
            "ts": micros(timeline.offset(wait.started)),
            "dur": micros(wait.finished.saturating_duration_since(wait.started)),
            "args": { "helped": wait.helped, "blocking": wait.blocking },
        }));
    }
    let trace = json!({ "traceEvents": Value::Array(events), "displayTimeUnit": "ms" });
    trace.to_string()
}
