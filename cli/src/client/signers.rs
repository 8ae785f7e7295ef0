//! The client's cache of records it has verified: for each record (by leaf hash, so by its
//! exact bytes, signatures included) the keys whose signatures verified. `pull --verify` passes
//! it to `verify_bundle_known`, so a pull checks again by hash every record of a chain but
//! verifies signatures only on records it has not seen (docs/protocol.md §8.6.2).
//!
//! One file per log under the state directory, beside the trusted checkpoint and as trusted as
//! it: `gridreg verified signers v1`, then `key <verifier key>` lines (each key once, numbered
//! from 0 in order; a key is parsed once, which costs a point decompression) and
//! `<64 hex leaf hash> <key numbers, comma-separated>` lines. A file that does not parse is
//! ignored (everything is verified again) and rewritten; it is only ever a shortcut.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use gridreg_protocol::{Hash, VerifierKey};

use super::fsutil;

const HEADER: &str = "gridreg verified signers v1";

/// At most this many records are kept; past it the file starts again from the last pull.
const MAX_RECORDS: usize = 200_000;

/// Leaf hash → the keys that verified it.
#[derive(Debug, Default)]
pub struct SignerCache {
    path: PathBuf,
    known: HashMap<Hash, Vec<VerifierKey>>,
    added: bool,
}

impl SignerCache {
    /// Loads the cache at `path`; a missing or unreadable file is an empty cache.
    pub fn load(path: PathBuf) -> Self {
        let known = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| parse(&text))
            .unwrap_or_default();
        Self {
            path,
            known,
            added: false,
        }
    }

    pub fn get(&self, leaf: &Hash) -> Option<Vec<VerifierKey>> {
        self.known.get(leaf).cloned()
    }

    /// Adds what a verification established.
    pub fn extend(&mut self, verified: &[(Hash, Vec<VerifierKey>)]) {
        if self.known.len() + verified.len() > MAX_RECORDS {
            self.known.clear();
        }
        for (leaf, signers) in verified {
            if !signers.is_empty() && !self.known.contains_key(leaf) {
                self.known.insert(*leaf, signers.clone());
                self.added = true;
            }
        }
    }

    /// Writes the cache back (atomically) when it gained records. A failure to write is not an
    /// error of the command: the next pull verifies those signatures again.
    pub fn save(&self) {
        if !self.added {
            return;
        }
        if let Err(e) = fsutil::write_atomic(&self.path, render(&self.known).as_bytes()) {
            eprintln!(
                "warning: could not save the verified-signers cache {}: {e:#}",
                self.path.display()
            );
        }
    }
}

fn render(known: &HashMap<Hash, Vec<VerifierKey>>) -> String {
    let mut numbers: HashMap<String, usize> = HashMap::new();
    let mut keys = String::new();
    let mut lines = String::new();
    let mut entries: Vec<_> = known.iter().collect();
    entries.sort_by_key(|(leaf, _)| **leaf);
    for (leaf, signers) in entries {
        let mut ids = Vec::with_capacity(signers.len());
        for k in signers {
            let text = k.to_string();
            let next = numbers.len();
            let n = *numbers.entry(text.clone()).or_insert_with(|| {
                let _ = writeln!(keys, "key {text}");
                next
            });
            ids.push(n.to_string());
        }
        let _ = writeln!(lines, "{} {}", hex::encode(leaf), ids.join(","));
    }
    format!("{HEADER}\n{keys}{lines}")
}

fn parse(text: &str) -> Option<HashMap<Hash, Vec<VerifierKey>>> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut keys: Vec<VerifierKey> = Vec::new();
    let mut known = HashMap::new();
    for line in lines {
        if let Some(k) = line.strip_prefix("key ") {
            keys.push(VerifierKey::parse(k).ok()?);
            continue;
        }
        let (leaf, ids) = line.split_once(' ')?;
        let leaf = hash_of(leaf)?;
        let signers = ids
            .split(',')
            .map(|n| n.parse::<usize>().ok().and_then(|n| keys.get(n).cloned()))
            .collect::<Option<Vec<_>>>()?;
        known.insert(leaf, signers);
    }
    Some(known)
}

/// A leaf hash from its 64 hex digits.
fn hash_of(text: &str) -> Option<Hash> {
    hex::decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use gridreg_protocol::SignerKey;

    use super::*;

    #[test]
    fn round_trips_and_ignores_a_damaged_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        let a = SignerKey::from_seed("alice", &[1; 32]).unwrap().verifier();
        let b = SignerKey::from_seed("bob", &[2; 32]).unwrap().verifier();
        let mut c = SignerCache::load(path.clone());
        assert!(c.get(&[7; 32]).is_none());
        c.extend(&[
            ([7; 32], vec![a.clone()]),
            ([8; 32], vec![a.clone(), b.clone()]),
        ]);
        c.save();
        let c = SignerCache::load(path.clone());
        assert_eq!(c.get(&[7; 32]), Some(vec![a.clone()]));
        assert_eq!(c.get(&[8; 32]), Some(vec![a, b]));
        std::fs::write(&path, format!("{HEADER}\nkey nonsense\n")).unwrap();
        assert!(SignerCache::load(path).get(&[7; 32]).is_none());
    }
}
