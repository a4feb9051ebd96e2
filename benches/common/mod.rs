//! Shared by the benchmarks: timing every iteration criterion runs, and the
//! ratio table printed at the end of a run. Each bench uses part of it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every measured iteration, per contender.
#[derive(Clone, Default)]
pub struct Results(Arc<Mutex<BTreeMap<String, Vec<Duration>>>>);

impl Results {
    /// Runs `f` `iters` times, recording each run; returns the total (for
    /// criterion's `iter_custom`).
    pub fn timed(&self, name: &str, iters: u64, mut f: impl FnMut()) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let start = Instant::now();
            f();
            let took = start.elapsed();
            self.0.lock().unwrap().entry(name.to_string()).or_default().push(took);
            total += took;
        }
        total
    }

    /// Runs `rounds` rounds in which every contender runs once, in an order
    /// that rotates each round, recording every run. This machine's speed
    /// drifts over seconds, and criterion measures one contender after the
    /// other, so its medians can compare a fast minute with a slow one; in
    /// rounds every contender sees the same drift.
    pub fn interleaved(&self, rounds: usize, contenders: &mut [(&str, &mut dyn FnMut())]) {
        for round in 0..rounds {
            if round > 0 {
                contenders.rotate_left(1);
            }
            for (name, run) in contenders.iter_mut() {
                self.timed(name, 1, &mut **run);
            }
        }
    }

    /// Records one run of `name` that took `took` (measured elsewhere, such
    /// as in a child process).
    pub fn record(&self, name: &str, took: Duration) {
        self.0.lock().unwrap().entry(name.to_string()).or_default().push(took);
    }

    /// Records a contender that could not finish.
    pub fn failed(&self, name: &str) {
        self.0.lock().unwrap().entry(name.to_string()).or_default();
    }

    /// Prints each contender's median and its ratio to `ideal`, fastest first.
    pub fn print_ratios(&self, title: &str, ideal: Duration) {
        let results = self.0.lock().unwrap();
        println!("\n{title}; ideal {:.1} ms", ideal.as_secs_f64() * 1e3);
        println!("{:<40} {:>12} {:>10}", "contender", "median ms", "x ideal");
        let mut rows: Vec<(&String, Option<Duration>)> = results
            .iter()
            .map(|(name, times)| {
                let mut times = times.clone();
                times.sort();
                (name, times.get(times.len() / 2).copied())
            })
            .collect();
        rows.sort_by_key(|r| r.1.unwrap_or(Duration::MAX));
        for (name, median) in rows {
            match median {
                Some(m) => println!(
                    "{:<40} {:>12.2} {:>10.2}",
                    name,
                    m.as_secs_f64() * 1e3,
                    m.as_secs_f64() / ideal.as_secs_f64()
                ),
                None => println!("{:<40} {:>12} {:>10}", name, "deadlock", "-"),
            }
        }
    }
}

impl Results {
    /// Medians per contender in nanoseconds per call (each run made `calls`
    /// calls), with each one's ratio to `baseline`, fastest first.
    pub fn print_per_call(&self, title: &str, calls: usize, baseline: &str) {
        let results = self.0.lock().unwrap();
        let median = |times: &Vec<Duration>| {
            let mut times = times.clone();
            times.sort();
            times.get(times.len() / 2).copied()
        };
        let ns = |d: Duration| d.as_secs_f64() * 1e9 / calls as f64;
        let base = results.get(baseline).and_then(median).map(ns);
        println!("\n{title}");
        println!(
            "{:<40} {:>12} {:>10} {:>12}",
            "contender",
            "median ms",
            "ns/call",
            format!("x {baseline}")
        );
        let mut rows: Vec<(&String, Option<Duration>)> = results.iter().map(|(n, t)| (n, median(t))).collect();
        rows.sort_by_key(|r| r.1.unwrap_or(Duration::MAX));
        for (name, m) in rows {
            match (m, base) {
                (Some(m), Some(base)) => println!(
                    "{:<40} {:>12.2} {:>10.0} {:>12.2}",
                    name,
                    m.as_secs_f64() * 1e3,
                    ns(m),
                    ns(m) / base
                ),
                (Some(m), None) => println!(
                    "{:<40} {:>12.2} {:>10.0} {:>12}",
                    name,
                    m.as_secs_f64() * 1e3,
                    ns(m),
                    "-"
                ),
                (None, _) => println!("{:<40} {:>12} {:>10} {:>12}", name, "failed", "-", "-"),
            }
        }
    }
}

/// Runs this benchmark again in a child process with `env` set to `spec`,
/// and returns the numbers on the last line it printed; `Err` with what went
/// wrong if it failed, or did not finish within `timeout` (then it is killed).
pub fn child_numbers(env: &str, spec: &str, timeout: Duration) -> Result<Vec<u64>, String> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let me = std::env::current_exe().unwrap();
    let mut proc = Command::new(&me)
        .env(env, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = proc.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = proc.kill();
            let _ = proc.wait();
            return Err(format!("no result after {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (mut out, mut err) = (String::new(), String::new());
    proc.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    proc.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    if !status.success() {
        return Err(format!("{status}: {}", err.trim()));
    }
    Ok(out
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect())
}

/// The process's current thread count, from `/proc/self/status` (0 where
/// there is none).
pub fn threads_now() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
