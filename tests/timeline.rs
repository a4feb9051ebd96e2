//! The recorded timeline and its exports: Chrome Trace Event JSON holds one
//! complete event per call on the right thread and in the right order, the
//! SVG boot chart is well-formed XML with one bar per call and one band per
//! wait, and a runtime that does not record keeps no timeline.
#![cfg(feature = "threads")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::future::Future;

use kasync::{Cookie, Runtime};
use serde_json::Value;

const CALLS: u64 = 24;

/// The thread each call ran on and whether it panicked, by cookie.
type Ran = Arc<Mutex<HashMap<u64, (String, bool)>>>;

/// Runs the kernel's pattern on a recording runtime: calls register in
/// cookie order; a few panic; every third schedules a call in a second domain.
fn record(max_workers: usize) -> (Runtime, Ran) {
    let rt = Runtime::builder()
        .executor(kasync::executor::Threads)
        .max_workers(max_workers)
        .record_timeline(true)
        .build()
        .unwrap();
    let probes = rt.domain("probes");
    let firmware = rt.exclusive_domain("firmware <fw> & \"blobs\"");
    let ran: Ran = Arc::default();
    for n in 0..CALLS {
        let (in_order, firmware, ran) = (probes.clone(), firmware.clone(), ran.clone());
        probes.schedule(move |cookie: Cookie| {
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            let panics = n % 7 == 5;
            ran.lock().unwrap().insert(cookie.get(), (name, panics));
            // The result is checked below; waiting can report an earlier panic.
            let _ = in_order.synchronize_cookie(cookie).wait();
            if n % 3 == 0 {
                let ran = ran.clone();
                firmware.schedule(move |cookie| {
                    let name = std::thread::current().name().unwrap_or("?").to_owned();
                    ran.lock().unwrap().insert(cookie.get(), (name, false));
                });
            }
            assert!(!panics, "probe {n} fails");
        });
    }
    let _ = rt.synchronize_full().wait();
    firmware.synchronize().wait().unwrap();
    (rt, ran)
}

#[test]
fn timeline_records_every_call_with_its_thread() {
    let (rt, ran) = record(4);
    let timeline = rt.timeline().expect("recording is on");
    let ran = ran.lock().unwrap();
    assert_eq!(timeline.calls().len(), ran.len());
    for call in timeline.calls() {
        let (thread, panicked) = &ran[&call.cookie.get()];
        assert_eq!(&timeline.threads()[call.thread].name, thread);
        assert!(call.queued <= call.started && call.started <= call.finished);
        assert_eq!(call.panicked, *panicked);
    }
    let cookies: Vec<u64> = timeline.calls().iter().map(|c| c.cookie.get()).collect();
    assert!(cookies.windows(2).all(|w| w[0] < w[1]), "calls come in cookie order");
    // Waits that found their barrier done at once are not recorded, so
    // only their shape is checked here.
    let threads = timeline.threads().len();
    assert!(timeline
        .waits()
        .iter()
        .all(|w| w.started <= w.finished && w.thread < threads));
    assert!(timeline.to_string().lines().count() > ran.len());
}

#[test]
fn chrome_trace_has_one_complete_event_per_call_on_its_thread_in_order() {
    let (rt, ran) = record(3);
    let timeline = rt.timeline().unwrap();
    let trace: Value = serde_json::from_str(&timeline.to_chrome_trace()).expect("valid JSON");
    let events = trace["traceEvents"].as_array().expect("traceEvents array");
    let thread_names: HashMap<u64, &str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap()))
        .collect();
    let calls: Vec<&Value> = events.iter().filter(|e| e["cat"] == "call").collect();
    let ran = ran.lock().unwrap();
    assert_eq!(calls.len(), ran.len(), "one event per call");
    let mut probe_ends = Vec::new();
    for event in &calls {
        assert_eq!(event["ph"], "X", "a complete event");
        let cookie = event["args"]["cookie"].as_u64().unwrap();
        let tid = event["tid"].as_u64().unwrap();
        assert_eq!(
            thread_names[&tid], ran[&cookie].0,
            "call {cookie} on the thread that ran it"
        );
        let (ts, dur) = (event["ts"].as_f64().unwrap(), event["dur"].as_f64().unwrap());
        assert!(ts >= 0.0 && dur >= 0.0);
        if event["args"]["domain"] == "probes" {
            probe_ends.push((cookie, ts + dur));
        }
    }
    // Probes register in cookie order, so they also end in cookie order.
    assert_eq!(probe_ends.len(), CALLS as usize);
    assert!(probe_ends.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    let waits = events.iter().filter(|e| e["cat"] == "wait").count();
    assert_eq!(waits, timeline.waits().len());
}

#[test]
fn svg_is_well_formed_with_one_bar_per_call_and_one_band_per_wait() {
    let (rt, _) = record(2);
    let timeline = rt.timeline().unwrap();
    let svg = timeline.to_svg();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let count = |class: &str| {
        doc.descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("class") == Some(class))
            .count()
    };
    assert_eq!(count("call"), timeline.calls().len());
    assert_eq!(count("wait"), timeline.waits().len());
    // The domain name with XML specials survives escaping.
    assert!(doc
        .descendants()
        .any(|n| n.has_tag_name("text") && n.text() == Some("firmware <fw> & \"blobs\"")));
    // One label per thread row.
    for thread in timeline.threads() {
        assert!(doc.descendants().any(|n| n.text() == Some(thread.name.as_str())));
    }
}

#[test]
fn exports_are_written_to_files() {
    let (rt, _) = record(2);
    let timeline = rt.timeline().unwrap();
    let dir = std::env::temp_dir().join(format!("kasync-timeline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    timeline.write_svg(dir.join("t.svg")).unwrap();
    timeline.write_chrome_trace(dir.join("t.json")).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("t.svg")).unwrap(), timeline.to_svg());
    assert_eq!(
        std::fs::read_to_string(dir.join("t.json")).unwrap(),
        timeline.to_chrome_trace()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_timeline_still_renders() {
    let rt = Runtime::builder().record_timeline(true).build().unwrap();
    let timeline = rt.timeline().unwrap();
    assert!(timeline.calls().is_empty());
    roxmltree::Document::parse(&timeline.to_svg()).expect("well-formed");
    let trace: Value = serde_json::from_str(&timeline.to_chrome_trace()).unwrap();
    assert!(trace["traceEvents"].is_array());
}

#[test]
fn awaited_barriers_are_recorded_as_non_blocking_waits() {
    let rt = Runtime::builder().record_timeline(true).build().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    rt.schedule(move |_| rx.recv().unwrap());
    let barrier = rt.synchronize_full();
    futures::executor::block_on(async {
        let mut barrier = barrier;
        // Pending first: the call is held on the channel.
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(std::pin::Pin::new(&mut barrier).poll(&mut cx).is_pending());
        tx.send(()).unwrap();
        barrier.await.unwrap();
    });
    let timeline = rt.timeline().unwrap();
    let awaited: Vec<_> = timeline.waits().iter().filter(|w| !w.blocking).collect();
    assert_eq!(awaited.len(), 1);
    assert_eq!(awaited[0].what, "synchronize_full()");
}

#[test]
fn runtime_without_recording_has_no_timeline() {
    let rt = Runtime::builder().build().unwrap();
    rt.schedule(|_| {});
    rt.synchronize_full().wait().unwrap();
    assert!(rt.timeline().is_none());
}
