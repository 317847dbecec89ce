//! The library's module graph is a DAG (docs/architecture.md, "The module layers"): every path a module
//! names (`crate::a::b`, `use crate::{a, b}`, `super::c`, outside its `#[cfg(test)] mod tests`, doc links
//! included) points down the pipeline, never back up. A new import that closes a cycle fails here, naming
//! the cycle and each edge in it, so whoever adds the next backend or output format keeps the layers.
//!
//! The scan is textual (no compiler): a module is a file of `src/` (`a/mod.rs` is `a`), a path is resolved
//! to the longest module prefix it names, and a module depends on its children (imports of a parent from
//! its own children are family, not edges). It over-approximates (a doc link counts as an edge), which only
//! makes it stricter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn modules(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
        if p.is_dir() {
            if rel != "bin" {
                modules(root, &p, out);
            }
            continue;
        }
        let Some(stem) = rel.strip_suffix(".rs") else {
            continue;
        };
        let mut parts: Vec<&str> = stem.split('/').collect();
        if matches!(parts.last(), Some(&"mod") | Some(&"lib")) {
            parts.pop();
        }
        out.insert(parts.join("::"), std::fs::read_to_string(&p).unwrap());
    }
}

/// The longest module that `path` (`a::b::Item`) starts with; never the crate root.
fn resolve(names: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    (1..=parts.len())
        .rev()
        .map(|i| parts[..i].join("::"))
        .find(|c| names.contains_key(c))
}

fn ident_path(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(':')
}

/// The paths `src` names after `prefix` (`crate::` or `super::`), brace groups expanded loosely: every
/// identifier inside `crate::{...}` is taken as a path from the crate root.
fn paths_after<'a>(src: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find(';').unwrap_or(group.len());
            let mut g = &group[..end];
            while let Some(j) = g.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
                let id = ident_path(&g[j..]);
                let first = id.split("::").next().unwrap_or("");
                out.push(first);
                g = &g[j + first.len().max(1)..];
            }
        } else {
            out.push(ident_path(rest));
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods = BTreeMap::new();
    modules(&root, &root, &mut mods);
    let mut edges = BTreeMap::new();
    for (m, src) in &mods {
        // A test module in a file of its own (`#[cfg(test)] mod tests;`) is test code, as the inline one is.
        if m.ends_with("::tests") {
            continue;
        }
        let code = match src.find("#[cfg(test)]\nmod tests {") {
            Some(i) => &src[..i],
            None => src.as_str(),
        };
        let inside = |t: &str| t == m || m.starts_with(&format!("{t}::"));
        let mut to = BTreeSet::new();
        for p in paths_after(code, "crate::") {
            if let Some(t) = resolve(&mods, p) {
                if !inside(&t) && !t.starts_with(&format!("{m}::")) {
                    to.insert(t);
                }
            }
        }
        // `super::x` from `a/b.rs` (module a::b) or from `a/b/mod.rs` (module a::b) is `a::x`.
        let parent: Vec<&str> = m.split("::").collect();
        let parent = parent[..parent.len().saturating_sub(1)].join("::");
        for p in paths_after(code, "super::") {
            let full = if parent.is_empty() {
                p.to_string()
            } else {
                format!("{parent}::{p}")
            };
            if let Some(t) = resolve(&mods, &full) {
                if !inside(&t) {
                    to.insert(t);
                }
            }
        }
        edges.insert(m.clone(), to);
    }
    // A module holds its children: what a child imports, its parent's importers depend on too (an upward
    // import from `backend::host` to `session` closes session → backend → backend::host → session).
    for m in mods.keys() {
        if let Some((parent, _)) = m.rsplit_once("::") {
            if let Some(to) = edges.get_mut(parent) {
                to.insert(m.clone());
            }
        }
    }
    edges
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct S<'a> {
        e: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        let e = s.e;
        for w in e.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let l = s.low[v].min(s.low[w]);
                s.low.insert(v, l);
            } else if s.on.contains(w) {
                let l = s.low[v].min(s.index[w]);
                s.low.insert(v, l);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = S {
        e: edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_module_graph_has_no_cycle() {
    let edges = graph();
    assert!(edges.len() > 40, "the scan found the modules: {edges:?}");
    let found = cycles(&edges);
    let mut report = String::new();
    for c in &found {
        report += &format!("cycle of {}: {}\n", c.len(), c.join(" "));
        for a in c {
            let inner: Vec<&str> = edges[a]
                .iter()
                .filter(|t| c.contains(t))
                .map(|s| s.as_str())
                .collect();
            report += &format!("    {a} -> {}\n", inner.join(" "));
        }
    }
    assert!(
        found.is_empty(),
        "imports that point back up the pipeline:\n{report}"
    );
}

/// Producers and exporters sit side by side: no backend module names an export module, and no export module
/// names a backend (they meet in the device model, `device`, and the profile's facts, `profile`).
#[test]
fn backends_and_exporters_never_import_each_other() {
    let edges = graph();
    let family = |m: &str, f: &str| m == f || m.starts_with(&format!("{f}::"));
    let mut wrong = Vec::new();
    for (a, to) in &edges {
        for b in to {
            if (family(a, "backend") && family(b, "export"))
                || (family(a, "export") && family(b, "backend"))
            {
                wrong.push(format!("{a} -> {b}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The scan sees what it must: known downward edges, and a cycle when one exists.
#[test]
fn the_scan_finds_known_edges_and_a_planted_cycle() {
    let mut edges = graph();
    assert!(edges["session"].contains("drain"), "{:?}", edges["session"]);
    assert!(edges["export"].contains("device"), "{:?}", edges["export"]);
    assert!(!edges["device"].contains("export"), "{:?}", edges["device"]);
    edges.get_mut("device").unwrap().insert("export".into());
    let found = cycles(&edges);
    assert!(
        found
            .iter()
            .any(|c| c.contains(&"device".into()) && c.contains(&"export".into())),
        "{found:?}"
    );
}
