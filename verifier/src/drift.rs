//! What changed in the surface between two versions of a component: interfaces added and removed,
//! interfaces whose version moved, and, what a reviewer cares about most, capability classes gained.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::audit::{Audit, Import};
use crate::taxonomy::{Class, InterfaceName};

/// An interface present in both versions under different versions (`@0.2.0` → `@0.2.6`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChange {
    pub interface: String,
    pub old: String,
    pub new: String,
}

/// The difference between an old and a new audit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub added_imports: Vec<Import>,
    pub removed_imports: Vec<Import>,
    pub changed_imports: Vec<VersionChange>,
    pub added_exports: Vec<String>,
    pub removed_exports: Vec<String>,
    pub changed_exports: Vec<VersionChange>,
    /// Classes the new version can reach and the old could not.
    pub added_capabilities: Vec<Class>,
    pub removed_capabilities: Vec<Class>,
}

impl Drift {
    pub fn between(old: &Audit, new: &Audit) -> Drift {
        let (added_imports, removed_imports, changed_imports) = compare(
            old.imports.iter().map(|i| (i.name.as_str(), i)),
            new.imports.iter().map(|i| (i.name.as_str(), i)),
        );
        let (added_exports, removed_exports, changed_exports) = compare(
            old.exports.iter().map(|e| (e.as_str(), e)),
            new.exports.iter().map(|e| (e.as_str(), e)),
        );
        let old_caps: BTreeSet<&Class> = old.capabilities.iter().collect();
        let new_caps: BTreeSet<&Class> = new.capabilities.iter().collect();
        Drift {
            added_imports,
            removed_imports,
            changed_imports,
            added_exports,
            removed_exports,
            changed_exports,
            added_capabilities: new_caps
                .difference(&old_caps)
                .map(|c| (*c).clone())
                .collect(),
            removed_capabilities: old_caps
                .difference(&new_caps)
                .map(|c| (*c).clone())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Drift::default()
    }
}

/// Interface names compare without their version, so a version bump is a change, not an
/// add-and-remove. Names that are not interfaces compare whole.
fn identity(name: &str) -> (String, Option<String>) {
    match InterfaceName::parse(name) {
        Some(i) => (i.unversioned(), i.version.map(str::to_string)),
        None => (name.to_string(), None),
    }
}

type Compared<T> = (Vec<T>, Vec<T>, Vec<VersionChange>);

/// One side's items grouped by identity, each with its version.
type Index<'a, T> = BTreeMap<String, Vec<(Option<String>, &'a T)>>;

fn index<'a, T>(items: impl Iterator<Item = (&'a str, &'a T)>) -> Index<'a, T> {
    let mut map: Index<'a, T> = BTreeMap::new();
    for (name, item) in items {
        let (id, version) = identity(name);
        map.entry(id).or_default().push((version, item));
    }
    map
}

fn versions<T>(items: &[(Option<String>, &T)]) -> BTreeSet<Option<String>> {
    items.iter().map(|(v, _)| v.clone()).collect()
}

fn show(versions: &BTreeSet<Option<String>>) -> String {
    let shown: Vec<&str> = versions
        .iter()
        .map(|v| v.as_deref().unwrap_or("(none)"))
        .collect();
    shown.join(", ")
}

fn compare<'a, T: Clone + 'a>(
    old: impl Iterator<Item = (&'a str, &'a T)>,
    new: impl Iterator<Item = (&'a str, &'a T)>,
) -> Compared<T> {
    let (old, new) = (index(old), index(new));
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for (id, new_items) in &new {
        match old.get(id) {
            None => added.extend(new_items.iter().map(|(_, t)| (*t).clone())),
            Some(old_items) => {
                let (was, now) = (versions(old_items), versions(new_items));
                if was != now {
                    changed.push(VersionChange {
                        interface: id.clone(),
                        old: show(&was),
                        new: show(&now),
                    });
                }
            }
        }
    }
    for (id, old_items) in &old {
        if !new.contains_key(id) {
            removed.extend(old_items.iter().map(|(_, t)| (*t).clone()));
        }
    }
    (added, removed, changed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::audit::Kind;
    use crate::taxonomy::classify_component_import;

    fn audit(imports: &[&str], exports: &[&str]) -> Audit {
        let imports: Vec<Import> = imports
            .iter()
            .map(|n| Import {
                name: n.to_string(),
                class: classify_component_import(n),
            })
            .collect();
        let mut caps: Vec<Class> = imports.iter().map(|i| i.class.clone()).collect();
        caps.sort();
        caps.dedup();
        Audit {
            kind: Kind::Component,
            size: 0,
            digest: gridreg_protocol::Digest([0; 32]),
            imports,
            exports: exports.iter().map(|s| s.to_string()).collect(),
            capabilities: caps,
            producers: vec![],
        }
    }

    #[test]
    fn new_socket_import_is_a_new_capability() {
        let old = audit(&["wasi:cli/stdout@0.2.0"], &["wasi:cli/run@0.2.0"]);
        let new = audit(
            &["wasi:cli/stdout@0.2.6", "wasi:sockets/tcp@0.2.6"],
            &["wasi:cli/run@0.2.0"],
        );
        let d = Drift::between(&old, &new);
        assert_eq!(d.added_imports.len(), 1);
        assert_eq!(d.added_imports[0].name, "wasi:sockets/tcp@0.2.6");
        assert_eq!(d.added_capabilities, vec![Class::parse("network").unwrap()]);
        assert!(d.removed_capabilities.is_empty());
        assert_eq!(d.changed_imports.len(), 1);
        assert_eq!(d.changed_imports[0].interface, "wasi:cli/stdout");
        assert_eq!(
            (
                d.changed_imports[0].old.as_str(),
                d.changed_imports[0].new.as_str()
            ),
            ("0.2.0", "0.2.6")
        );
    }

    #[test]
    fn identical_surfaces_have_no_drift() {
        let a = audit(&["wasi:cli/stdout@0.2.0"], &["x"]);
        assert!(Drift::between(&a, &a).is_empty());
        let b = audit(&[], &[]);
        let d = Drift::between(&a, &b);
        assert_eq!(d.removed_imports.len(), 1);
        assert_eq!(d.removed_exports, vec!["x".to_string()]);
    }
}
