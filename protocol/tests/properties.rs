//! Property tests: for random trees every inclusion and consistency proof verifies, and any
//! flipped bit, wrong index or wrong size fails; records and checkpoints round-trip; checkpoint
//! comparison accepts honest logs and reports forks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gridreg_protocol::checkpoint::{Advance, Checkpoint, CheckpointError, check_against_trusted};
use gridreg_protocol::merkle::{self, Hash};
use gridreg_protocol::name::Version;
use gridreg_protocol::record::{Digest, Record, Release, Timestamp, Yank};
use gridreg_protocol::{Head, PackageName, Prev, SignerKey};
use proptest::prelude::*;

fn build(n: u64, salt: u8) -> (Vec<Hash>, Vec<Hash>) {
    let mut s = Vec::new();
    let mut leaves = Vec::new();
    for i in 0..n {
        let l = merkle::leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat());
        leaves.push(l);
        s.extend(merkle::stored_hashes_for_leaf(i, l, &s).unwrap());
    }
    (s, leaves)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    // docs/protocol.md §6.3 "Inclusion proofs"
    #[test]
    fn inclusion_proofs(size in 1u64..600, index_seed in any::<u64>(), bit in 0usize..256, other in 1u64..600) {
        let (s, leaves) = build(size, 0);
        let index = index_seed % size;
        let root = merkle::tree_hash(size, &s).unwrap();
        let proof = merkle::prove_inclusion(size, index, &s).unwrap();
        let leaf = leaves[index as usize];
        prop_assert!(merkle::verify_inclusion(&proof, size, &root, index, &leaf).is_ok());
        // A flipped bit anywhere in the proof, or in the leaf hash.
        if !proof.is_empty() {
            let mut p = proof.clone();
            let k = bit % p.len();
            p[k][bit / 8 % 32] ^= 1 << (bit % 8);
            prop_assert!(merkle::verify_inclusion(&p, size, &root, index, &leaf).is_err());
        }
        let mut l2 = leaf;
        l2[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(merkle::verify_inclusion(&proof, size, &root, index, &l2).is_err());
        // Any other index.
        let wrong = (index + 1 + index_seed % size.max(2)) % size;
        if wrong != index {
            prop_assert!(merkle::verify_inclusion(&proof, size, &root, wrong, &leaf).is_err());
        }
        // Any other size, claimed together with that size's real root (what a checkpoint binds).
        if other != size && index < other {
            let (s2, _) = build(other.max(size), 0);
            let other_root = merkle::tree_hash(other, &s2).unwrap();
            prop_assert!(merkle::verify_inclusion(&proof, other, &other_root, index, &leaf).is_err());
        }
    }

    // docs/protocol.md §6.4 "Consistency proofs"
    #[test]
    fn consistency_proofs(new in 1u64..600, old_seed in any::<u64>(), bit in 0usize..256, wrong_seed in any::<u64>()) {
        let (s, _) = build(new, 1);
        let old = old_seed % (new + 1);
        let new_root = merkle::tree_hash(new, &s).unwrap();
        let old_root = merkle::tree_hash(old, &s).unwrap();
        let proof = merkle::prove_consistency(new, old, &s).unwrap();
        prop_assert!(merkle::verify_consistency(&proof, new, &new_root, old, &old_root).is_ok());
        if !proof.is_empty() {
            let mut p = proof.clone();
            let k = bit % p.len();
            p[k][bit / 8 % 32] ^= 1 << (bit % 8);
            prop_assert!(merkle::verify_consistency(&p, new, &new_root, old, &old_root).is_err());
        }
        let mut r = old_root;
        r[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(merkle::verify_consistency(&proof, new, &new_root, old, &r).is_err());
        // Any other old size with its real root, and any other new size with its real root.
        // (An empty proof rightly proves both "0 is a prefix" and "new is a prefix of itself".)
        let other_old = wrong_seed % (new + 1);
        let trivially_true = proof.is_empty() && (other_old == 0 || other_old == new);
        if other_old != old && !trivially_true {
            let other_root = merkle::tree_hash(other_old, &s).unwrap();
            prop_assert!(merkle::verify_consistency(&proof, new, &new_root, other_old, &other_root).is_err());
        }
        let other_new = old.max(1) + wrong_seed % 600;
        if other_new != new && other_new >= old && old > 0 {
            let (s2, _) = build(other_new.max(new), 1);
            let other_root = merkle::tree_hash(other_new, &s2).unwrap();
            prop_assert!(merkle::verify_consistency(&proof, other_new, &other_root, old, &old_root).is_err());
        }
    }

    // docs/protocol.md §6.7 "Checking a checkpoint against a trusted one"
    #[test]
    fn a_different_history_is_a_fork(n1 in 1u64..200, extra in 0u64..200, flip in 0u64..1000) {
        let log = SignerKey::from_seed("log.example", &[4; 32]).unwrap();
        let n2 = n1 + extra;
        let (s, _) = build(n2, 2);
        let cp = |size: u64, root: Hash| Checkpoint::new("log.example", size, root).sign(&[&log]).unwrap();
        let trusted = cp(n1, merkle::tree_hash(n1, &s).unwrap());
        let honest = cp(n2, merkle::tree_hash(n2, &s).unwrap());
        let proof = merkle::prove_consistency(n2, n1, &s).unwrap();
        let want = if extra == 0 { Advance::Same } else { Advance::Newer };
        prop_assert_eq!(check_against_trusted(&trusted, &honest, &proof).unwrap(), want);
        if extra > 0 {
            prop_assert_eq!(check_against_trusted(&honest, &trusted, &proof).unwrap(), Advance::Older);
        }
        // A log that rewrote one leaf below n1 signs a root the trusted one cannot extend to.
        let (mut s_forked, mut leaves) = build(n2, 2);
        let victim = flip % n1;
        leaves[victim as usize][0] ^= 1;
        s_forked.clear();
        for (i, l) in leaves.iter().enumerate() {
            s_forked.extend(merkle::stored_hashes_for_leaf(i as u64, *l, &s_forked).unwrap());
        }
        let forked = cp(n2, merkle::tree_hash(n2, &s_forked).unwrap());
        let forked_proof = merkle::prove_consistency(n2, n1, &s_forked).unwrap();
        let err = check_against_trusted(&trusted, &forked, &forked_proof).unwrap_err();
        match err {
            CheckpointError::Fork(ev) => {
                prop_assert_eq!(&ev.trusted, &trusted);
                prop_assert_eq!(&ev.new, &forked);
                prop_assert_eq!(&ev.proof, &forked_proof);
                prop_assert!(ev.to_string().contains("LOG FORK DETECTED"));
            }
            other => prop_assert!(false, "expected a fork, got {other:?}"),
        }
    }

    // docs/protocol.md §4.1 "Release records", §4.3 "Yank records",
    // §4.5 "Parsing strictness"
    #[test]
    fn release_records_roundtrip(
        ns in "[a-z][a-z0-9]{0,8}(-[a-z][a-z0-9]{0,5}){0,2}",
        name in "[a-z][a-z0-9]{0,8}",
        (maj, min, pat) in (0u64..1000, 0u64..1000, 0u64..1000),
        size in any::<u64>(),
        secs in 0i64..253_402_300_799,
        imports in proptest::collection::btree_set("[a-z]{1,6}:[a-z]{1,6}/[a-z-]{1,8}@0\\.2\\.[0-9]", 0..8),
        exports in proptest::collection::btree_set("[a-z_.0-9]{1,12}", 0..4),
        digest in any::<[u8; 32]>(),
        reason in "[ -~]{0,40}",
        prev in proptest::option::of((any::<u64>(), any::<[u8; 32]>())),
    ) {
        let prev = match prev {
            None => Prev::None,
            Some((index, leaf)) => Prev::Entry(Head { index, leaf }),
        };
        let package = PackageName::parse(&format!("{ns}:{name}")).unwrap();
        let time = Timestamp::from_unix(secs).unwrap();
        let r = Record::Release(Release {
            package: package.clone(),
            prev,
            version: Version::new(maj, min, pat),
            digest: Digest(digest),
            size,
            time,
            imports: imports.into_iter().collect(),
            exports: exports.into_iter().collect(),
        });
        let body = r.to_body();
        prop_assert_eq!(&Record::parse(&body).unwrap(), &r);
        prop_assert_eq!(Record::parse(&body).unwrap().to_body(), body);
        let reason = format!("why {}", reason.trim());
        let reason = reason.trim().to_string();
        let y = Record::Yank(Yank { package, prev, version: Version::new(maj, min, pat), reason, time });
        prop_assert_eq!(Record::parse(&y.to_body()).unwrap(), y);
    }

    // docs/protocol.md §4.5 "Parsing strictness"
    #[test]
    fn record_parser_never_panics(body in "(gridreg/(release|yank|namespace)/v[12]\n)?([a-z]{1,9} [ -~]{0,30}\n){0,8}") {
        if let Ok(r) = Record::parse(&body) {
            prop_assert_eq!(r.to_body(), body);
        }
    }

    // docs/protocol.md §3.4 "Signed notes", §6.6 "Checkpoints"
    #[test]
    fn note_and_checkpoint_parsers_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        text in "([a-z0-9/. ]{0,20}\n){1,5}(\n(\u{2014} [a-z]{1,5} [A-Za-z0-9+/=]{0,20}\n){0,3})?",
    ) {
        let _ = gridreg_protocol::Note::parse(&bytes);
        if let Ok(n) = gridreg_protocol::Note::parse(text.as_bytes()) {
            prop_assert_eq!(n.to_text(), text.clone());
        }
        let _ = Checkpoint::parse_body(&text);
        if let Ok(c) = Checkpoint::parse_body(&text) {
            prop_assert_eq!(c.to_body(), text);
        }
    }
}
