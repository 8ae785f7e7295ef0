//! Log benchmark: builds a 1M-leaf stored-hash array in memory, then times proof generation
//! (inclusion + consistency, p50/p99) and client verification (checkpoint signature + inclusion
//! and consistency), next to the physical floor (SHA-256 of 64 bytes and Ed25519 verify per
//! second). Run with `cargo bench -p gridreg-protocol`; `LEAVES=N` changes the tree size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use gridreg_protocol::SignerKey;
use gridreg_protocol::checkpoint::{Checkpoint, SignedCheckpoint, check_against_trusted};
use gridreg_protocol::merkle::{self, Hash};
use sha2::{Digest as _, Sha256};

/// A small deterministic generator so runs are comparable and no extra crate is needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Counts how many stored hashes a proof reads, to show the O(log n) bound at full size.
struct Counting<'a> {
    hashes: &'a [Hash],
    reads: std::cell::Cell<usize>,
}

impl merkle::HashReader for Counting<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, merkle::MerkleError> {
        self.reads.set(self.reads.get() + indexes.len());
        self.hashes.read_hashes(indexes)
    }
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let leaves: u64 = std::env::var("LEAVES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1 << 20);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Floor: raw SHA-256 of a 64-byte input, and Ed25519 verification.
    let block = [7u8; 65];
    let n = 2_000_000u32;
    let t = Instant::now();
    let mut acc = [0u8; 32];
    for _ in 0..n {
        acc = Sha256::digest(black_box(&block[..64])).into();
    }
    black_box(acc);
    let sha_per_s = f64::from(n) / t.elapsed().as_secs_f64();

    // An interior node hash hashes 65 bytes (two SHA-256 blocks): the real unit of proof work.
    let (l, r) = ([1u8; 32], [2u8; 32]);
    let t = Instant::now();
    let mut h = l;
    for _ in 0..n {
        h = merkle::node_hash(black_box(&h), black_box(&r));
    }
    black_box(h);
    let node_per_s = f64::from(n) / t.elapsed().as_secs_f64();

    let key = SignerKey::from_seed("bench.example/log", &[9; 32]).unwrap();
    let vkey = key.verifier();
    let msg = b"bench.example/log\n1048576\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
    let sig = key.sign(msg);
    let n = 20_000u32;
    let t = Instant::now();
    for _ in 0..n {
        assert!(vkey.verify(black_box(msg), black_box(&sig)));
    }
    let ed_per_s = f64::from(n) / t.elapsed().as_secs_f64();

    // Build the log: append in batches of 256, as a sequencer would.
    let t = Instant::now();
    let mut stored: Vec<Hash> = Vec::with_capacity(merkle::stored_hash_count(leaves) as usize);
    let mut leaf_hashes = Vec::with_capacity(leaves as usize);
    let mut batch = Vec::with_capacity(256);
    for i in 0..leaves {
        let h = merkle::leaf_hash(&i.to_be_bytes());
        leaf_hashes.push(h);
        batch.push(h);
        if batch.len() == 256 || i + 1 == leaves {
            let start = i + 1 - batch.len() as u64;
            let new = merkle::append_leaves(start, &batch, &stored).unwrap();
            stored.extend(new);
            batch.clear();
        }
    }
    let build = t.elapsed();
    assert_eq!(stored.len() as u64, merkle::stored_hash_count(leaves));
    let root = merkle::tree_hash(leaves, &stored).unwrap();

    // Proof generation: one inclusion proof and one consistency proof per sample, at random
    // indexes and sizes near the top of the tree (what a live log serves).
    let samples = 20_000;
    let mut incl = Vec::with_capacity(samples);
    let mut cons = Vec::with_capacity(samples);
    let mut both = Vec::with_capacity(samples);
    for _ in 0..samples {
        let size = leaves - rng.below(leaves / 4);
        let index = rng.below(size);
        let old = 1 + rng.below(size);
        let t0 = Instant::now();
        let p = merkle::prove_inclusion(size, index, &stored).unwrap();
        let t1 = Instant::now();
        let c = merkle::prove_consistency(size, old, &stored).unwrap();
        let t2 = Instant::now();
        black_box((p, c));
        incl.push(t1 - t0);
        cons.push(t2 - t1);
        both.push(t2 - t0);
    }

    // Stored-hash reads per proof (untimed), worst case over many random positions.
    let counting = Counting {
        hashes: &stored,
        reads: std::cell::Cell::new(0),
    };
    let (mut max_incl_reads, mut max_cons_reads) = (0, 0);
    for _ in 0..5_000 {
        let size = 1 + rng.below(leaves);
        counting.reads.set(0);
        merkle::prove_inclusion(size, rng.below(size), &counting).unwrap();
        max_incl_reads = max_incl_reads.max(counting.reads.get());
        counting.reads.set(0);
        merkle::prove_consistency(size, 1 + rng.below(size), &counting).unwrap();
        max_cons_reads = max_cons_reads.max(counting.reads.get());
    }

    // Client verification: checkpoint signature + inclusion proof + consistency with the last
    // trusted checkpoint. Inputs are prepared up front so only the client's work is timed.
    let origin = "bench.example/log";
    let new_cp = Checkpoint::new(origin, leaves, root).sign(&[&key]).unwrap();
    let mut cases = Vec::new();
    for _ in 0..2_000 {
        let old = 1 + rng.below(leaves - 1);
        let trusted = Checkpoint::new(origin, old, merkle::tree_hash(old, &stored).unwrap())
            .sign(&[&key])
            .unwrap();
        let index = rng.below(leaves);
        let inclusion = merkle::prove_inclusion(leaves, index, &stored).unwrap();
        let consistency = merkle::prove_consistency(leaves, old, &stored).unwrap();
        cases.push((trusted, index, inclusion, consistency));
    }
    // Node hashes a client computes: one per inclusion step, up to two per consistency step.
    let mean_hashes = cases
        .iter()
        .map(|(_, _, i, c)| (i.len() + 2 * c.len()) as f64)
        .sum::<f64>()
        / cases.len() as f64;
    let mut verify = Vec::with_capacity(cases.len());
    for (trusted, index, inclusion, consistency) in &cases {
        let t0 = Instant::now();
        let cp = SignedCheckpoint::verify(new_cp.note.as_bytes(), origin, &vkey).unwrap();
        merkle::verify_inclusion(
            inclusion,
            cp.size(),
            cp.root(),
            *index,
            &leaf_hashes[*index as usize],
        )
        .unwrap();
        check_against_trusted(trusted, &cp, consistency).unwrap();
        verify.push(t0.elapsed());
    }

    let (ip50, ip99, _) = percentiles(incl);
    let (cp50, cp99, _) = percentiles(cons);
    let (bp50, bp99, bmax) = percentiles(both);
    let (vp50, vp99, vmax) = percentiles(verify);
    let sha_us = 1e6 / sha_per_s;
    let node_us = 1e6 / node_per_s;
    let ed_us = 1e6 / ed_per_s;
    println!(
        "## protocol benchmark ({leaves} leaves, {} stored hashes)",
        stored.len()
    );
    println!(
        "floor: SHA-256(64 B) {:.2} M/s ({sha_us:.3} us each); node hash (65 B) {:.2} M/s ({node_us:.3} us); Ed25519 verify {:.0} /s ({ed_us:.1} us each)",
        sha_per_s / 1e6,
        node_per_s / 1e6,
        ed_per_s
    );
    println!(
        "build: {:.2} s for {leaves} appends ({:.0} leaves/s)",
        build.as_secs_f64(),
        leaves as f64 / build.as_secs_f64()
    );
    println!(
        "proof generation ({samples} samples): inclusion p50 {:.1} us p99 {:.1} us; consistency p50 {:.1} us p99 {:.1} us; both p50 {:.1} us p99 {:.1} us max {:.1} us",
        us(ip50),
        us(ip99),
        us(cp50),
        us(cp99),
        us(bp50),
        us(bp99),
        us(bmax)
    );
    println!(
        "stored-hash reads per proof (worst of 5000 random): inclusion {max_incl_reads}, consistency {max_cons_reads} (log2 n = {})",
        64 - (leaves - 1).leading_zeros()
    );
    println!(
        "client verify (checkpoint signature + inclusion + consistency, {} samples): p50 {:.1} us p99 {:.1} us max {:.1} us; floor = 1 Ed25519 verify + {:.0} node hashes (mean) = {:.1} us",
        cases.len(),
        us(vp50),
        us(vp99),
        us(vmax),
        mean_hashes,
        ed_us + mean_hashes * node_us
    );
}
