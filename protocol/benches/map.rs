//! Head map benchmark (docs/protocol.md): builds the map of 1M chains from scratch, measures its
//! memory, applies 64-key batches (48 updated heads, 16 new chains), and times proof generation,
//! client verification and proof sizes over random members and absent keys. Run with
//! `cargo bench -p gridreg-protocol --bench map`; `CHAINS=N` changes the map size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use gridreg_protocol::map::{self, HeadMap, MapKey};
use gridreg_protocol::{ChainKey, Head, merkle};

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

/// Chain `i`: one namespace chain for every three package chains.
fn chain(i: u64) -> ChainKey {
    let text = if i.is_multiple_of(4) {
        format!("namespace n{i}")
    } else {
        format!("package n{}:p{i}", i / 4 * 4)
    };
    ChainKey::parse(&text).unwrap()
}

fn head(index: u64) -> Head {
    Head {
        index,
        leaf: merkle::leaf_hash(&index.to_be_bytes()),
    }
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99), at(1.0))
}

fn main() {
    let chains: u64 = std::env::var("CHAINS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // Floor: one interior node hash (65 bytes) and one map leaf hash (73 bytes).
    let n = 2_000_000u32;
    let t = Instant::now();
    let mut h = [1u8; 32];
    for _ in 0..n {
        h = map::node_hash(black_box(&h), black_box(&[2u8; 32]));
    }
    black_box(h);
    let node_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);

    let keys: Vec<ChainKey> = (0..chains).map(chain).collect();
    let t = Instant::now();
    let paths: Vec<MapKey> = keys.iter().map(MapKey::of).collect();
    let path_time = t.elapsed();
    let t = Instant::now();
    let mut m =
        HeadMap::from_keyed(paths.iter().enumerate().map(|(i, k)| (*k, head(i as u64)))).unwrap();
    let build = t.elapsed();
    let t = Instant::now();
    let again =
        HeadMap::from_heads(keys.iter().enumerate().map(|(i, k)| (k, head(i as u64)))).unwrap();
    let build_from_keys = t.elapsed();
    assert_eq!(again.root(), m.root());
    drop(again);
    let bytes = m.memory_bytes();

    // Batches of 64: 48 heads of existing chains move on, 16 chains are new.
    let batches = 500;
    let mut apply = Vec::with_capacity(batches);
    let mut next_new = chains;
    let mut next_index = chains;
    for _ in 0..batches {
        let mut batch = Vec::with_capacity(64);
        for j in 0..64 {
            let k = if j < 48 {
                keys[rng.below(chains) as usize].clone()
            } else {
                next_new += 1;
                chain(next_new)
            };
            next_index += 1;
            batch.push((k, head(next_index)));
        }
        let t0 = Instant::now();
        m.apply(batch).unwrap();
        apply.push(t0.elapsed());
    }
    let total = m.len() as u64;
    let rebuilt = HeadMap::from_keyed(m.iter().map(|(k, h)| (*k, *h))).unwrap();
    assert_eq!(
        rebuilt.root(),
        m.root(),
        "incremental root differs from rebuild"
    );
    drop(rebuilt);
    let root = m.root();

    // Proofs of random members and of absent chains.
    let samples = 10_000;
    let (mut prove_member, mut prove_absent, mut verify) = (Vec::new(), Vec::new(), Vec::new());
    let (mut bin, mut json, mut depth, mut present) = (Vec::new(), Vec::new(), Vec::new(), 0usize);
    for s in 0..samples {
        let k = &keys[rng.below(chains) as usize];
        let t0 = Instant::now();
        let p = m.prove(k);
        prove_member.push(t0.elapsed());
        let h = p.head();
        assert!(h.is_some());
        let t0 = Instant::now();
        p.verify(&root, k, h).unwrap();
        verify.push(t0.elapsed());
        bin.push(p.encode().len());
        json.push(serde_json::to_string(&p).unwrap().len());
        depth.push(p.depth());
        present += p
            .siblings()
            .iter()
            .filter(|s| **s != map::EMPTY_HASH)
            .count();

        let absent = ChainKey::parse(&format!("package absent:x{s}")).unwrap();
        let t0 = Instant::now();
        let a = m.prove(&absent);
        prove_absent.push(t0.elapsed());
        a.verify(&root, &absent, None).unwrap();
    }

    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    let max = |v: &[usize]| *v.iter().max().unwrap();
    let (ap50, ap99, apmax) = percentiles(apply);
    let (pm50, pm99, pmmax) = percentiles(prove_member);
    let (pa50, pa99, _) = percentiles(prove_absent);
    let (v50, v99, vmax) = percentiles(verify);
    println!("## head map benchmark ({chains} chains, {total} after the batches)");
    println!("floor: node hash (65 B) {node_us:.3} us");
    println!(
        "build: paths {:.2} s; from_keyed {:.2} s; from_heads (paths included) {:.2} s",
        path_time.as_secs_f64(),
        build.as_secs_f64(),
        build_from_keys.as_secs_f64()
    );
    println!(
        "memory: {} bytes in node arrays = {:.1} bytes per chain",
        bytes,
        bytes as f64 / chains as f64
    );
    println!(
        "apply 64-key batch (48 updates + 16 new, {batches} batches): p50 {ap50:.1} us p99 {ap99:.1} us max {apmax:.1} us"
    );
    println!(
        "prove ({samples} random): member p50 {pm50:.2} us p99 {pm99:.2} us max {pmmax:.1} us; absent p50 {pa50:.2} us p99 {pa99:.2} us"
    );
    println!("verify membership: p50 {v50:.2} us p99 {v99:.2} us max {vmax:.1} us");
    println!(
        "proof size: binary mean {:.1} B max {} B; JSON mean {:.1} B max {} B; depth mean {:.1} max {}; non-empty siblings mean {:.1}",
        mean(&bin),
        max(&bin),
        mean(&json),
        max(&json),
        mean(&depth),
        max(&depth),
        present as f64 / samples as f64
    );
}
