//! The core's layering, checked over its sources: base < model < engine <
//! api. A file may refer to its own layer and the layers below it, never to
//! one above; inside a layer, no cycle of files may be longer than four
//! (ARCHITECTURE.md has the picture). Test modules at the end of a file
//! (from its first `#[cfg(all(test` on) are not counted: they may build a
//! whole runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const LAYERS: [&str; 4] = ["base", "model", "engine", "api"];

/// The most files one cycle of references may hold.
const MAX_CYCLE: usize = 4;

/// Names the crate root re-exports, by the layer they come from: a lower
/// layer must not reach a higher one through them either.
const ROOT_NAMES: [(&str, &str); 12] = [
    ("Runtime", "api"),
    ("Builder", "api"),
    ("Stats", "api"),
    ("Domain", "api"),
    ("Barrier", "api"),
    ("Submitted", "api"),
    ("ItemScope", "api"),
    ("WaitError", "api"),
    ("Overflow", "engine"),
    ("current_cookie", "engine"),
    ("current_is_async", "engine"),
    ("Timeline", "model"),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as a module path like `engine/pool/act`.
fn modules(dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src()).unwrap().with_extension("");
            let mut name = rel.to_string_lossy().replace('\\', "/");
            if let Some(parent) = name.strip_suffix("/mod") {
                name = parent.to_string();
            }
            let text = fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(all(test") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            // Comments may name anything.
            let code: String = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(name, code);
        }
    }
}

fn layer(module: &str) -> Option<usize> {
    let top = module.split('/').next()?;
    LAYERS.iter().position(|l| *l == top)
}

/// The modules `code` (of `module`) refers to: `crate::a::b::...` resolved
/// to the longest known module, `super::x` and `mod x` to siblings.
fn references(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    for (at, _) in code.match_indices("crate::") {
        let path: Vec<String> = code[at + 7..]
            .split("::")
            .map(|seg| words(seg).into_iter().next().unwrap_or_default())
            .take_while(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .collect();
        for len in (1..=path.len()).rev() {
            let candidate = path[..len].join("/");
            if known.contains(&candidate) {
                refs.insert(candidate);
                break;
            }
        }
    }
    let parent = match module.rsplit_once('/') {
        Some((parent, _)) => parent.to_string(),
        None => String::new(),
    };
    let mut siblings = |name: &str, base: &str| {
        let candidate = if base.is_empty() {
            name.to_string()
        } else {
            format!("{base}/{name}")
        };
        if known.contains(&candidate) {
            refs.insert(candidate);
        }
    };
    for (at, _) in code.match_indices("super::") {
        let rest = &code[at + 7..];
        let group = if let Some(list) = rest.strip_prefix('{') {
            list.split('}').next().unwrap_or("")
        } else {
            rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
        };
        for name in words(group) {
            siblings(&name, &parent);
        }
    }
    for line in code.lines() {
        let line = line.trim_start();
        let line = line
            .strip_prefix("pub(crate) ")
            .or_else(|| line.strip_prefix("pub "))
            .unwrap_or(line);
        if let Some(rest) = line.strip_prefix("mod ") {
            siblings(rest.trim_end_matches(';').trim(), module);
        }
    }
    refs.remove(module);
    refs
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut code = BTreeMap::new();
    modules(&src(), &mut code);
    let known: BTreeSet<String> = code.keys().filter(|m| layer(m).is_some()).cloned().collect();
    known
        .iter()
        .map(|m| (m.clone(), references(m, &code[m], &known)))
        .collect()
}

#[test]
fn no_layer_refers_to_a_higher_one() {
    let mut code = BTreeMap::new();
    modules(&src(), &mut code);
    let mut wrong = Vec::new();
    for (from, to) in graph() {
        let own = layer(&from).unwrap();
        for target in to {
            if layer(&target).unwrap() > own {
                wrong.push(format!("{from} -> {target}"));
            }
        }
        for (name, home) in ROOT_NAMES {
            let home = LAYERS.iter().position(|l| *l == home).unwrap();
            if home > own && code[&from].contains(&format!("crate::{name}")) {
                wrong.push(format!("{from} -> crate::{name}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a lower layer refers to a higher one:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_core_file_is_in_a_layer() {
    let mut code = BTreeMap::new();
    modules(&src(), &mut code);
    let outside: Vec<&String> = code
        .keys()
        .filter(|m| layer(m).is_none() && !["lib", "loom_tests"].contains(&m.as_str()))
        .collect();
    assert!(outside.is_empty(), "files outside the layers: {outside:?}");
}

#[test]
fn no_cycle_holds_more_than_four_files() {
    let graph = graph();
    let mut too_long = Vec::new();
    for component in strongly_connected(&graph) {
        if component.len() > MAX_CYCLE {
            too_long.push(component.join(", "));
        }
    }
    assert!(
        too_long.is_empty(),
        "cycles of more than {MAX_CYCLE} files:\n{}",
        too_long.join("\n")
    );
}

#[test]
fn the_checker_sees_references() {
    // `cargo test --test layers -- --nocapture` prints today's cycles.
    for component in strongly_connected(&graph()) {
        if component.len() > 1 {
            println!("cycle: {}", component.join(", "));
        }
    }
    // The graph is not empty, and known edges are found: a checker that
    // found none would pass every test above.
    let graph = graph();
    assert!(graph["api/runtime"].contains("engine/shared"));
    assert!(graph["engine/pool/act"].contains("engine/pool/worker"));
    assert!(graph["model/state"].contains("model/growth"));
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        components: Vec<Vec<String>>,
    }
    fn visit<'a>(w: &mut Walk<'a>, v: &'a str) {
        let at = w.index.len();
        w.index.insert(v, at);
        w.low.insert(v, at);
        w.stack.push(v);
        for t in &w.graph[v] {
            let t = t.as_str();
            if !w.index.contains_key(t) {
                visit(w, t);
                let low = w.low[v].min(w.low[t]);
                w.low.insert(v, low);
            } else if w.stack.contains(&t) {
                let low = w.low[v].min(w.index[t]);
                w.low.insert(v, low);
            }
        }
        if w.low[v] == w.index[v] {
            let mut component = Vec::new();
            while let Some(t) = w.stack.pop() {
                component.push(t.to_string());
                if t == v {
                    break;
                }
            }
            component.sort();
            w.components.push(component);
        }
    }
    let mut w = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        components: Vec::new(),
    };
    for v in graph.keys() {
        if !w.index.contains_key(v.as_str()) {
            visit(&mut w, v);
        }
    }
    w.components
}
