//! Conformance: caller-owned items share cookies, domains, barriers, helping
//! and panics with closures.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use kasync::{Cookie, Item, SyncError, WaitError, Work};

use super::gate::Gate;
use super::MakeBuilder;

/// Records its cookie; counts drops in a shared counter.
struct Probe {
    cookie: Option<Cookie>,
    runs: usize,
    drops: Arc<AtomicUsize>,
    panic: bool,
    gate: Option<Gate>,
}

impl Probe {
    fn new(drops: &Arc<AtomicUsize>) -> Probe {
        Probe {
            cookie: None,
            runs: 0,
            drops: drops.clone(),
            panic: false,
            gate: None,
        }
    }
}

impl Work for Probe {
    fn run(&mut self, cookie: Cookie) {
        self.cookie = Some(cookie);
        self.runs += 1;
        if let Some(gate) = &self.gate {
            gate.wait();
        }
        assert!(!self.panic, "probe asked to panic");
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

pub fn submit_and_wait_give_the_same_box_back(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = rt.domain("items");
    let mut item = Item::new(Probe::new(&drops));
    let address = &**item as *const Probe;
    for round in 1..=5 {
        let mut submitted = domain.submit(item);
        let cookie = submitted.cookie();
        item = submitted.wait().unwrap();
        assert_eq!(&**item as *const Probe, address, "the very same memory comes back");
        assert_eq!(item.cookie, Some(cookie));
        assert_eq!(item.runs, round);
    }
    // And through `.await`.
    let submitted = domain.submit(item);
    let item = futures::executor::block_on(submitted).unwrap();
    assert_eq!(&**item as *const Probe, address);
    assert_eq!(item.runs, 6);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    let probe = item.into_inner();
    assert_eq!(probe.runs, 6);
    drop(probe);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

pub fn items_share_cookies_domains_and_barriers_with_closures(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = rt.domain("mixed");
    let gate = Gate::new();
    let mut blocked = Probe::new(&drops);
    blocked.gate = Some(gate.clone());
    let c1 = domain.schedule(|_| {});
    let mut submitted = domain.submit(Item::new(blocked));
    let c3 = domain.schedule(|_| {});
    assert!(c1 < submitted.cookie() && submitted.cookie() < c3);
    let mut barrier = domain.synchronize_cookie(c3);
    assert!(!barrier.is_finished(), "the item is still blocked on its gate");
    gate.open();
    barrier.wait().unwrap();
    let item = submitted.wait().unwrap();
    assert_eq!(item.runs, 1);
    rt.synchronize_full().wait().unwrap();
}

pub fn panicking_item_comes_back_with_the_panic(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut probe = Probe::new(&drops);
    probe.panic = true;
    let mut submitted = rt.default_domain().submit(Item::new(probe));
    let cookie = submitted.cookie();
    match submitted.wait() {
        Err(WaitError::Panicked { item, report }) => {
            assert_eq!(report.cookie(), cookie);
            assert!(report.message().contains("probe asked to panic"));
            assert_eq!(item.runs, 1);
            let mut item = item;
            item.panic = false;
            let again = rt.default_domain().submit(item).wait().unwrap();
            assert_eq!(again.runs, 2);
        }
        Err(other) => panic!("expected Panicked, got {other:?}"),
        Ok(_) => panic!("expected Panicked, got the item back cleanly"),
    }
    // Delivered with the item: barriers made afterwards do not report it again.
    rt.synchronize_full().wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

pub fn dropped_handle_detaches_and_frees_once(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = rt.domain("detach");
    // Dropped before it runs.
    let gate = Gate::new();
    let g = gate.clone();
    domain.schedule(move |_| g.wait());
    drop(domain.submit(Item::new(Probe::new(&drops))));
    // Dropped while it runs.
    let running = Gate::new();
    let mut probe = Probe::new(&drops);
    probe.gate = Some(running.clone());
    let submitted = domain.submit(Item::new(probe));
    gate.open();
    drop(submitted);
    running.open();
    // Dropped after it ran.
    let submitted = domain.submit(Item::new(Probe::new(&drops)));
    domain.synchronize().wait().unwrap();
    drop(submitted);
    let (tx, rx) = mpsc::channel();
    domain.schedule(move |_| tx.send(()).unwrap());
    rx.recv().unwrap();
    domain.synchronize().wait().unwrap();
    // Frees after a call ends can trail the barrier by a moment when the
    // handle was dropped mid-run; poll (no sleeping) until all three are done.
    while drops.load(Ordering::SeqCst) < 3 {
        std::thread::yield_now();
    }
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

pub fn detached_items_are_freed_once_before_the_barrier_returns(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = rt.domain("kfree");
    for _ in 0..100 {
        domain.submit_detached(Item::new(Probe::new(&drops)));
    }
    domain.synchronize().wait().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 100);
    let mut bad = Probe::new(&drops);
    bad.panic = true;
    let cookie = domain.submit_detached(Item::new(bad));
    match domain.synchronize().wait() {
        Err(SyncError::Panicked(r)) => assert_eq!(r.cookie(), cookie),
        other => panic!("expected Panicked, got {other:?}"),
    }
    assert_eq!(drops.load(Ordering::SeqCst), 101);
}

pub fn scoped_items_have_finished_when_scope_returns(make: &MakeBuilder) {
    let rt = make().max_workers(2).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let domain = rt.domain("scope");
    let mut items: Vec<Item<Probe>> = (0..32).map(|_| Item::local(Probe::new(&drops))).collect();
    let cookies = domain.scope(|s| items.iter_mut().map(|item| s.submit(item)).collect::<Vec<_>>());
    for (item, cookie) in items.iter().zip(&cookies) {
        assert_eq!(item.runs, 1);
        assert_eq!(item.cookie, Some(*cookie));
    }
    drop(items);
    assert_eq!(drops.load(Ordering::SeqCst), 32);
    // A panicking scoped item makes the scope panic after everything ended.
    let mut items: Vec<Item<Probe>> = (0..4).map(|_| Item::local(Probe::new(&drops))).collect();
    items[2].panic = true;
    let result = catch_unwind(AssertUnwindSafe(|| {
        domain.scope(|s| {
            for item in items.iter_mut() {
                s.submit(item);
            }
        })
    }));
    assert!(result.is_err());
    assert!(items.iter().all(|i| i.runs == 1));
    let _ = domain.synchronize().wait();
    drop(items);
    assert_eq!(drops.load(Ordering::SeqCst), 36);
}

/// Registers in cookie order: waits for earlier calls, then records itself.
struct Register {
    domain: kasync::Domain,
    order: Arc<std::sync::Mutex<Vec<Cookie>>>,
}

impl Work for Register {
    fn run(&mut self, cookie: Cookie) {
        self.domain.synchronize_cookie(cookie).wait().unwrap();
        self.order.lock().unwrap().push(cookie);
    }
}

pub fn items_follow_the_growth_rule_with_one_worker(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let domain = rt.domain("ordered");
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..200)
        .map(|_| {
            domain.submit(Item::new(Register {
                domain: domain.clone(),
                order: order.clone(),
            }))
        })
        .collect();
    // Waiting on the last one helps with everything before it.
    let cookies: Vec<_> = handles.iter().map(|h| h.cookie()).collect();
    for mut handle in handles.into_iter().rev() {
        handle.wait().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), cookies);
}

struct PanicsOnDrop;

impl Work for PanicsOnDrop {
    fn run(&mut self, _: Cookie) {}
}

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("drop panicked");
        }
    }
}

pub fn panicking_drop_of_a_detached_item_does_not_break_the_pool(make: &MakeBuilder) {
    let rt = make().max_workers(1).build().unwrap();
    let domain = rt.domain("drops");
    let gate = Gate::new();
    let g = gate.clone();
    domain.schedule(move |_| g.wait());
    // Dropped before it runs: the worker frees it after it runs, before the
    // call counts as finished, so the drop's panic is the call's.
    let cookie = domain.submit(Item::new(PanicsOnDrop)).cookie();
    gate.open();
    match domain.synchronize().wait_no_help() {
        Err(SyncError::Panicked(report)) => {
            assert_eq!((report.cookie(), report.message()), (cookie, "drop panicked"));
        }
        other => panic!("the drop's panic was lost: {other:?}"),
    }
    assert_eq!(rt.stats().panicked, 1);
    for _ in 0..10 {
        let (tx, rx) = mpsc::channel();
        domain.schedule(move |_| tx.send(()).unwrap());
        rx.recv().unwrap();
    }
    domain.synchronize().wait_no_help().unwrap();
    assert!(rt.stats().workers <= 1);
}

pub fn try_submit_gives_the_item_back_when_full(make: &MakeBuilder) {
    let rt = make().max_pending(1).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let g = gate.clone();
    rt.schedule(move |_| g.wait());
    let item = Item::new(Probe::new(&drops));
    let address = &**item as *const Probe;
    let full = rt.default_domain().try_submit(item).unwrap_err();
    let item = full.into_inner();
    assert_eq!(&**item as *const Probe, address);
    assert_eq!(item.runs, 0, "never run");
    gate.open();
    rt.synchronize_full().wait().unwrap();
    let item = rt.default_domain().try_submit(item).unwrap().wait().unwrap();
    assert_eq!(item.runs, 1);
}

pub fn a_barrier_waiting_when_an_item_panics_leaves_it_to_the_handle(make: &MakeBuilder) {
    let rt = make().build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let gate = Gate::new();
    let mut probe = Probe::new(&drops);
    probe.panic = true;
    probe.gate = Some(gate.clone());
    let domain = rt.domain("both");
    let mut submitted = domain.submit(Item::new(probe));
    let mut barrier = domain.synchronize();
    gate.open();
    // The handle delivers the panic, and only the handle.
    assert_eq!(barrier.wait_no_help(), Ok(()));
    assert!(matches!(submitted.wait(), Err(WaitError::Panicked { .. })));
    // A barrier waiting when a *detached* item panics reports it.
    let mut probe = Probe::new(&drops);
    probe.panic = true;
    let gate = Gate::new();
    probe.gate = Some(gate.clone());
    domain.submit_detached(Item::new(probe));
    let mut barrier = domain.synchronize();
    gate.open();
    assert!(matches!(barrier.wait_no_help(), Err(SyncError::Panicked(_))));
}
