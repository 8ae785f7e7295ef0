//! The registry's modules import only downward: no file of `registry/src` imports another that
//! imports it back, directly or around a circle. A module's path is what `crate::` and `super::`
//! paths in it name (comments excluded; `super::` counts from a top-level `use`); `mod` declarations are not imports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`store::sqlite`, `` for the crate root) → source text without comments.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// The longest module prefix of `path` (`store::sqlite::open` → `store::sqlite`).
fn resolve<'a>(mods: &'a BTreeMap<String, String>, path: &str) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|m| mods.get_key_value(&m).map(|(k, _)| k.as_str()))
}

fn imports(mods: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, code) in mods {
        let set = edges.entry(m.as_str()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let end = rest
                .find(|c: char| {
                    !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':')
                })
                .unwrap_or(rest.len());
            if let Some(target) = resolve(mods, &rest[..end])
                && target != m
            {
                set.insert(target);
            }
        }
        // A top-level `use super::` names the parent module (in a `mod tests` it names the file
        // itself, which is no edge).
        if code.lines().any(|l| l.starts_with("use super::")) {
            let parent = m.rsplit_once("::").map_or("", |(p, _)| p);
            if let Some((parent, _)) = mods.get_key_value(parent) {
                set.insert(parent.as_str());
            }
        }
    }
    edges
}

/// A circle through `start`, if one exists.
fn circle<'a>(
    edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    let mut stack = vec![(start, vec![start])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for &next in edges.get(node).into_iter().flatten() {
            if next == start {
                return Some(path.clone());
            }
            if seen.insert(next) {
                let mut p = path.clone();
                p.push(next);
                stack.push((next, p));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mods = modules();
    assert!(mods.contains_key("store::sqlite"), "{:?}", mods.keys());
    let edges = imports(&mods);
    // The check itself sees imports: the sequencer reads the store, SQLite builds a Store.
    assert!(edges["sequencer"].contains("store"), "{edges:?}");
    assert!(edges["store::sqlite"].contains("store"), "{edges:?}");
    let circles: Vec<String> = mods
        .keys()
        .filter_map(|m| circle(&edges, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}
