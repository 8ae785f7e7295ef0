//! Bundle benchmark (docs/protocol.md §8.6): the client-side cost of proving a package of
//! 1,000 releases in a namespace of 100 records from one bundle, the shape of the trust-model
//! goal (`pull --verify --locked` <= 10 ms). Builds a real log (signed records, stored hashes,
//! a head map and its map entry), then times, over many rounds: reading the bundle's JSON,
//! `verify_bundle` (every signature verified), `verify_bundle_known` with every record's signers
//! known (what a client that pulled before does), and the same continuing from a chain it holds
//! (`verify_bundle_after`: only the records above the heads it verified are served and parsed).
//! Run with `cargo bench -p gridreg-protocol --bench bundle`; `VERSIONS=N NS_RECORDS=M` change
//! the shape, `ROUNDS=R` the rounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use gridreg_protocol::bundle::{
    Bundle, ChainEvidence, Entry, MapEntry, verify_bundle, verify_bundle_after, verify_bundle_known,
};
use gridreg_protocol::name::Version;
use gridreg_protocol::record::{NamespaceOp, NamespaceRecord, Release, Role, Timestamp};
use gridreg_protocol::{
    ChainKey, Checkpoint, Digest, HeadMap, Namespace, Note, PackageName, Prev, Record, SignerKey,
    merkle,
};

const ORIGIN: &str = "bench.example";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.9))
}

/// An honest log: leaves, stored hashes and each chain's head.
struct Log {
    leaves: Vec<String>,
    stored: Vec<merkle::Hash>,
    heads: HashMap<ChainKey, gridreg_protocol::Head>,
}

impl Log {
    fn push(&mut self, mut record: Record, by: &SignerKey) {
        let chain = record.chain();
        let prev = Prev::after(self.heads.get(&chain).copied());
        match &mut record {
            Record::Release(r) => r.prev = prev,
            Record::Yank(y) => y.prev = prev,
            Record::Namespace(n) => n.prev = prev,
        }
        let leaf = record.sign(&[by]).unwrap();
        let index = self.leaves.len() as u64;
        self.heads
            .insert(chain, gridreg_protocol::Head::of(index, leaf.as_bytes()));
        self.append(leaf);
    }

    fn append(&mut self, leaf: String) {
        let index = self.leaves.len() as u64;
        let new = merkle::append_leaves(index, &[merkle::leaf_hash(leaf.as_bytes())], &self.stored)
            .unwrap();
        self.stored.extend(new);
        self.leaves.push(leaf);
    }

    /// Appends a map entry; returns the checkpoint it ends and the map.
    fn seal(&mut self, log_key: &SignerKey) -> (Checkpoint, HeadMap) {
        let map = HeadMap::from_heads(self.heads.iter().map(|(k, h)| (k, *h))).unwrap();
        let entry = MapEntry {
            size: self.leaves.len() as u64,
            root: map.root(),
        };
        self.append(entry.sign(log_key).unwrap());
        let n = self.leaves.len() as u64;
        (
            Checkpoint::new(ORIGIN, n, merkle::tree_hash(n, &self.stored).unwrap()),
            map,
        )
    }

    /// The records of `chain` from its head in `map` down to (not including) `stop`.
    fn evidence(&self, map: &HeadMap, chain: &ChainKey, stop: Option<u64>) -> ChainEvidence {
        let mut records = Vec::new();
        let mut next = map.get(chain);
        while let Some(h) = next {
            if Some(h.index) == stop {
                break;
            }
            let body = self.leaves[h.index as usize].clone();
            next = Record::from_note(&Note::parse(body.as_bytes()).unwrap())
                .unwrap()
                .prev()
                .head();
            records.push(Entry {
                index: h.index,
                body,
            });
        }
        ChainEvidence {
            proof: map.prove(chain),
            records,
        }
    }

    fn bundle(
        &self,
        checkpoint: &Checkpoint,
        map: &HeadMap,
        package: &PackageName,
        log_key: &SignerKey,
        after: [Option<u64>; 2],
    ) -> Bundle {
        Bundle {
            checkpoint: checkpoint.sign(&[log_key]).unwrap().note,
            map_entry: self.leaves[checkpoint.size as usize - 1].clone(),
            map_inclusion: merkle::prove_inclusion(
                checkpoint.size,
                checkpoint.size - 1,
                &self.stored,
            )
            .unwrap(),
            package: self.evidence(map, &ChainKey::Package(package.clone()), after[0]),
            namespace: self.evidence(
                map,
                &ChainKey::Namespace(package.namespace().clone()),
                after[1],
            ),
        }
    }
}

fn main() {
    let versions = env("VERSIONS", 1_000);
    let ns_records = env("NS_RECORDS", 100).max(2);
    let rounds = env("ROUNDS", 200);
    let new_versions = 5;

    let log_key = SignerKey::from_seed(ORIGIN, &[4; 32]).unwrap();
    let owner = SignerKey::from_seed("owner", &[3; 32]).unwrap();
    let ns = Namespace::parse("bench").unwrap();
    let package = PackageName::parse("bench:codec").unwrap();
    let time = Timestamp::parse("2026-12-01T20:00:00Z").unwrap();
    let ns_op = |op, key: &SignerKey, role| {
        Record::Namespace(NamespaceRecord {
            namespace: ns.clone(),
            prev: Prev::None,
            op,
            key: key.verifier(),
            role,
            time,
        })
    };
    let release = |v: usize| {
        Record::Release(Release {
            package: package.clone(),
            prev: Prev::None,
            version: Version::parse(&format!("0.{v}.0")).unwrap(),
            digest: Digest::of(&v.to_be_bytes()),
            size: 15_820,
            time,
            imports: [
                "wasi:cli/environment@0.2.6",
                "wasi:cli/exit@0.2.6",
                "wasi:cli/stdout@0.2.6",
                "wasi:io/error@0.2.6",
                "wasi:io/streams@0.2.6",
            ]
            .map(String::from)
            .to_vec(),
            exports: vec!["wasi:cli/run@0.2.6".to_string()],
        })
    };

    let mut log = Log {
        leaves: Vec::new(),
        stored: Vec::new(),
        heads: HashMap::new(),
    };
    log.push(ns_op(NamespaceOp::Claim, &owner, Role::Owner), &owner);
    let ci = SignerKey::from_seed("ci", &[5; 32]).unwrap();
    log.push(ns_op(NamespaceOp::Grant, &ci, Role::Publish), &owner);
    for i in 0..(ns_records - 2) / 2 {
        let other = SignerKey::from_seed(&format!("k{i}"), &[(i % 200) as u8 + 10; 32]).unwrap();
        log.push(ns_op(NamespaceOp::Grant, &other, Role::Publish), &owner);
        log.push(ns_op(NamespaceOp::Revoke, &other, Role::Publish), &owner);
    }
    for v in 0..versions {
        log.push(release(v), if v % 2 == 0 { &owner } else { &ci });
    }
    let (old_checkpoint, old_map) = log.seal(&log_key);
    let old_heads = [
        old_map.get(&ChainKey::Package(package.clone())).unwrap(),
        old_map
            .get(&ChainKey::Namespace(package.namespace().clone()))
            .unwrap(),
    ];
    for v in versions..versions + new_versions {
        log.push(release(v), &ci);
    }
    let (checkpoint, map) = log.seal(&log_key);
    let verifier = log_key.verifier();

    let full = log.bundle(&checkpoint, &map, &package, &log_key, [None, None]);
    let json = serde_json::to_vec(&full).unwrap();
    let after = log.bundle(
        &checkpoint,
        &map,
        &package,
        &log_key,
        [Some(old_heads[0].index), Some(old_heads[1].index)],
    );
    let after_json = serde_json::to_vec(&after).unwrap();

    // What a client holds after verifying the old checkpoint's bundle.
    let old_bundle = log.bundle(&old_checkpoint, &old_map, &package, &log_key, [None, None]);
    let old = verify_bundle(&old_bundle, &old_checkpoint, &verifier, &package).unwrap();
    let known: HashMap<merkle::Hash, Vec<gridreg_protocol::VerifierKey>> =
        verify_bundle(&full, &checkpoint, &verifier, &package)
            .unwrap()
            .record_signers
            .into_iter()
            .collect();
    let held = old.held.clone();

    let time_it = |f: &dyn Fn()| {
        let mut v = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            f();
            v.push(t.elapsed());
        }
        percentiles(v)
    };
    let cold_rounds = rounds.min(20);
    let mut cold = Vec::new();
    for _ in 0..cold_rounds {
        let t = Instant::now();
        black_box(verify_bundle(&full, &checkpoint, &verifier, &package).unwrap());
        cold.push(t.elapsed());
    }
    let cold = percentiles(cold);
    let parse = time_it(&|| {
        black_box(serde_json::from_slice::<Bundle>(&json).unwrap());
    });
    let warm = time_it(&|| {
        black_box(
            verify_bundle_known(&full, &checkpoint, &verifier, &package, &|h| {
                known.get(h).cloned()
            })
            .unwrap(),
        );
    });
    let parse_after = time_it(&|| {
        black_box(serde_json::from_slice::<Bundle>(&after_json).unwrap());
    });
    let resumed = time_it(&|| {
        black_box(
            verify_bundle_after(&after, &checkpoint, &verifier, &package, &held, &|h| {
                known.get(h).cloned()
            })
            .unwrap(),
        );
    });

    println!(
        "package of {} releases, namespace of {ns_records} records; {new_versions} releases after the held heads",
        versions + new_versions
    );
    println!("| step | bytes | median ms | p90 ms |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, bytes: usize, (p50, p90): (f64, f64)| {
        println!("| {name} | {bytes} | {p50:.3} | {p90:.3} |");
    };
    row("read the whole bundle (JSON)", json.len(), parse);
    row("verify_bundle, every signature verified", json.len(), cold);
    row(
        "verify_bundle_known, every record's signers known",
        json.len(),
        warm,
    );
    row(
        "read the bundle above the held heads (JSON)",
        after_json.len(),
        parse_after,
    );
    row(
        "verify_bundle_after, continuing from the held chains",
        after_json.len(),
        resumed,
    );
}
