//! RFC 6962 proof verification (§6.3, §6.4) with attacker-chosen proofs, sizes and indexes:
//! never panics, and an inclusion proof of one leaf in a tree of one is checked exactly.
#![no_main]

use gridreg_protocol::merkle::{self, Hash};
use libfuzzer_sys::fuzz_target;

fn take_u64(d: &mut &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = d.len().min(8);
    b[..n].copy_from_slice(&d[..n]);
    *d = &d[n..];
    u64::from_le_bytes(b)
}

fn take_hash(d: &mut &[u8]) -> Hash {
    let mut h = [0u8; 32];
    let n = d.len().min(32);
    h[..n].copy_from_slice(&d[..n]);
    *d = &d[n..];
    h
}

fuzz_target!(|data: &[u8]| {
    let mut d = data;
    let (a, b) = (take_u64(&mut d), take_u64(&mut d));
    let (root, other, leaf) = (take_hash(&mut d), take_hash(&mut d), take_hash(&mut d));
    let proof: Vec<Hash> = d
        .chunks(32)
        .take(70)
        .map(|c| {
            let mut h = [0u8; 32];
            h[..c.len()].copy_from_slice(c);
            h
        })
        .collect();
    let _ = merkle::verify_inclusion(&proof, a, &root, b, &leaf);
    let _ = merkle::verify_consistency(&proof, a, &root, b, &other);
    // A tree of one leaf: its root is the leaf hash and the proof is empty.
    let ok = merkle::verify_inclusion(&[], 1, &leaf, 0, &leaf).is_ok();
    assert!(ok);
    assert_eq!(
        merkle::verify_inclusion(&[], 1, &root, 0, &leaf).is_ok(),
        root == leaf
    );
});
