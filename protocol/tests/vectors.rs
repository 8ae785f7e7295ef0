//! Published test vectors (see `vectors/SOURCES.md`): RFC 6962 tree hashes and proofs, the Go
//! `note` package's keys and notes, and the C2SP checkpoint example.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gridreg_protocol::checkpoint::{Checkpoint, SignedCheckpoint};
use gridreg_protocol::merkle::{self, Hash};
use gridreg_protocol::note::{self, KeySet, Note, NoteError};
use gridreg_protocol::{SignerKey, VerifierKey};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn h(v: &Value) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().unwrap(), &mut out).unwrap();
    out
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(h).collect()
}

/// Stored hashes for the eight vector leaves, built leaf by leaf.
fn storage(v: &Value) -> Vec<Hash> {
    let mut s = Vec::new();
    for (i, leaf) in v["leaves_hex"].as_array().unwrap().iter().enumerate() {
        let data = hex::decode(leaf.as_str().unwrap()).unwrap();
        let new = merkle::stored_hashes_for_leaf(i as u64, merkle::leaf_hash(&data), &s).unwrap();
        s.extend(new);
    }
    s
}

// docs/protocol.md §6.1 "Leaves and hashing", §6.2 "Tree hash"
#[test]
fn rfc6962_leaf_hashes_and_roots() {
    let v = load("rfc6962-merkle.json");
    let leaves = v["leaves_hex"].as_array().unwrap();
    let want = hashes(&v["leaf_hashes_hex"]);
    for (leaf, want) in leaves.iter().zip(&want) {
        let data = hex::decode(leaf.as_str().unwrap()).unwrap();
        assert_eq!(&merkle::leaf_hash(&data), want);
    }
    let s = storage(&v);
    let roots = hashes(&v["roots_by_size_hex"]);
    assert_eq!(roots[0], merkle::EMPTY_ROOT);
    for (size, root) in roots.iter().enumerate() {
        assert_eq!(
            &merkle::tree_hash(size as u64, &s).unwrap(),
            root,
            "size {size}"
        );
    }
}

// docs/protocol.md §6.3 "Inclusion proofs"
#[test]
fn rfc6962_inclusion_proofs_generate_and_verify() {
    let v = load("rfc6962-merkle.json");
    let s = storage(&v);
    let roots = hashes(&v["roots_by_size_hex"]);
    let leaf_hashes = hashes(&v["leaf_hashes_hex"]);
    for case in v["inclusion"].as_array().unwrap() {
        let index = case["index"].as_u64().unwrap();
        let size = case["size"].as_u64().unwrap();
        let want = hashes(&case["proof"]);
        let got = merkle::prove_inclusion(size, index, &s).unwrap();
        assert_eq!(got, want, "index {index} size {size}");
        let root = &roots[size as usize];
        let leaf = &leaf_hashes[index as usize];
        merkle::verify_inclusion(&want, size, root, index, leaf).unwrap();
        // The same probes as the reference suite: wrong index, size, leaf, root, extra hashes.
        let bad: Vec<(Vec<Hash>, u64, Hash, u64, Hash)> = vec![
            (want.clone(), size, *root, index.wrapping_sub(1), *leaf),
            (want.clone(), size, *root, index + 1, *leaf),
            (want.clone(), size * 2, *root, index, *leaf),
            (want.clone(), size / 2, *root, index, *leaf),
            (want.clone(), size, *root, index, [7; 32]),
            (want.clone(), size, merkle::EMPTY_ROOT, index, *leaf),
            (
                [want.clone(), vec![*root]].concat(),
                size,
                *root,
                index,
                *leaf,
            ),
            (
                [vec![*root], want.clone()].concat(),
                size,
                *root,
                index,
                *leaf,
            ),
        ];
        for (p, sz, r, i, l) in bad {
            if sz == size && i == index && p == want && r == *root && l == *leaf {
                continue;
            }
            assert!(
                merkle::verify_inclusion(&p, sz, &r, i, &l).is_err(),
                "accepted a corrupted proof for index {i} size {sz}"
            );
        }
    }
}

// docs/protocol.md §6.4 "Consistency proofs"
#[test]
fn rfc6962_consistency_proofs_generate_and_verify() {
    let v = load("rfc6962-merkle.json");
    let s = storage(&v);
    let roots = hashes(&v["roots_by_size_hex"]);
    for case in v["consistency"].as_array().unwrap() {
        let old = case["old"].as_u64().unwrap();
        let new = case["new"].as_u64().unwrap();
        let want = hashes(&case["proof"]);
        assert_eq!(
            merkle::prove_consistency(new, old, &s).unwrap(),
            want,
            "{old} -> {new}"
        );
        let (r1, r2) = (&roots[old as usize], &roots[new as usize]);
        merkle::verify_consistency(&want, new, r2, old, r1).unwrap();
        if want.is_empty() {
            continue;
        }
        for i in 0..want.len() {
            let mut p = want.clone();
            p[i][0] ^= 16;
            assert!(merkle::verify_consistency(&p, new, r2, old, r1).is_err());
        }
        assert!(merkle::verify_consistency(&want, new, r1, old, r2).is_err());
        assert!(merkle::verify_consistency(&want[..want.len() - 1], new, r2, old, r1).is_err());
        assert!(merkle::verify_consistency(&[], new, r2, old, r1).is_err());
        assert!(merkle::verify_consistency(&want, new, r2, old + 1, r1).is_err());
        assert!(merkle::verify_consistency(&want, new * 2, r2, old, r1).is_err());
    }
}

// docs/protocol.md §3.1 "Key names and key ids", §3.2 "Verifier keys",
// §3.3 "Signer keys and key files"
#[test]
fn go_note_keys() {
    let v = load("go-note.json");
    let vkey = v["peter_verifier"].as_str().unwrap();
    let skey = v["peter_signer"].as_str().unwrap();
    let verifier = VerifierKey::parse(vkey).unwrap();
    assert_eq!(verifier.to_string(), vkey);
    assert_eq!(verifier.id(), 0xc74f20a3);
    let signer = SignerKey::parse(skey).unwrap();
    assert_eq!(signer.to_secret_string(), skey);
    assert_eq!(signer.verifier(), verifier);
    assert_eq!(
        gridreg_protocol::key::key_id("PeterNeumann", &verifier.public_bytes()),
        0xc74f20a3
    );
    VerifierKey::parse(v["enoch_verifier"].as_str().unwrap()).unwrap();
    for bad in v["bad_verifiers"].as_array().unwrap() {
        assert!(VerifierKey::parse(bad.as_str().unwrap()).is_err(), "{bad}");
    }
    // Every proper substring and every single-byte increment must fail, as in the Go suite.
    for key in [vkey, skey] {
        let parse = |s: &str| {
            if key == vkey {
                VerifierKey::parse(s).is_ok()
            } else {
                SignerKey::parse(s).is_ok()
            }
        };
        let b = key.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if (i, j) != (0, b.len()) {
                    let sub = String::from_utf8_lossy(&b[i..j]);
                    assert!(!parse(&sub), "accepted substring {sub:?}");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            let s = String::from_utf8_lossy(&m);
            assert!(!parse(&s), "accepted mangled key {s:?}");
        }
    }
}

// docs/protocol.md §3.4 "Signed notes", §3.5 "Verifying a note"
#[test]
fn go_note_sign_and_open() {
    let v = load("go-note.json");
    let text = v["text"].as_str().unwrap();
    let peter_line = v["peter_sig_line"].as_str().unwrap();
    let enoch_line = v["enoch_sig_line"].as_str().unwrap();
    let signer = SignerKey::parse(v["peter_signer"].as_str().unwrap()).unwrap();
    let peter = VerifierKey::parse(v["peter_verifier"].as_str().unwrap()).unwrap();
    let enoch = VerifierKey::parse(v["enoch_verifier"].as_str().unwrap()).unwrap();

    // Ed25519 is deterministic, so our signature must be byte-identical to Go's.
    let signed = Note::sign(text, &[&signer]).unwrap().to_text();
    assert_eq!(signed, format!("{text}\n{peter_line}"));

    let msg = format!("{text}\n{peter_line}{enoch_line}");
    let only_peter = KeySet::from_keys([peter.clone()]);
    let n = note::verify(msg.as_bytes(), &only_peter).unwrap();
    assert_eq!(n.text(), text);
    assert_eq!(n.verified_by, vec![peter.clone()]);
    assert_eq!(n.unknown.len(), 1);
    assert_eq!(n.unknown[0].name, "EnochRoot");
    assert_eq!(n.unknown[0].key_id, 0xaf0cfe78);

    let both = KeySet::from_keys([peter.clone(), enoch.clone()]);
    let n = note::verify(msg.as_bytes(), &both).unwrap();
    assert_eq!(n.verified_by, vec![peter.clone(), enoch]);
    assert!(n.unknown.is_empty());

    assert!(matches!(
        note::verify(msg.as_bytes(), &KeySet::new()),
        Err(NoteError::NoVerifiedSignature { .. })
    ));

    // 101 signatures is over the limit even when they are all valid.
    let many = format!("{text}\n{}", peter_line.repeat(101));
    assert!(matches!(
        note::verify(many.as_bytes(), &only_peter),
        Err(NoteError::TooManySignatures { .. })
    ));

    // A corrupted signature by a known key is rejected outright.
    let corrupt = format!("{text}\n{}ABCD{}", &peter_line[..60], &peter_line[60..]);
    assert!(matches!(
        note::verify(corrupt.as_bytes(), &only_peter),
        Err(NoteError::InvalidSignature { .. })
    ));

    // The Go suite's malformed messages.
    let bad: Vec<Vec<u8>> = vec![
        text.as_bytes().to_vec(),
        format!("{text}\n").into_bytes(),
        format!("{text}\n{}", &peter_line[..peter_line.len() - 1]).into_bytes(),
        format!("\u{1}{text}\n{peter_line}").into_bytes(),
        [b"\xff".as_slice(), format!("{text}\n{peter_line}").as_bytes()].concat(),
        format!("{text}\n\u{2014} Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=").into_bytes(),
        format!("{text}\n{peter_line}Unexpected line.\n").into_bytes(),
    ];
    for m in bad {
        assert!(
            note::verify(&m, &only_peter).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(&m)
        );
    }
}

// docs/protocol.md §6.6 "Checkpoints"
#[test]
fn c2sp_checkpoint_example() {
    let raw = std::fs::read_to_string(format!(
        "{}/tests/vectors/c2sp-checkpoint.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let parsed = Note::parse(raw.as_bytes()).unwrap();
    let c = Checkpoint::parse_body(&parsed.text).unwrap();
    assert_eq!(c.origin, "example.com/behind-the-sofa");
    assert_eq!(c.size, 20852163);
    assert_eq!(
        hex::encode(c.root),
        "0ac5186a91863e8e1d90c808014aa89bf5da8e3ee1d9f07630f0378f68f1ab62"
    );
    assert_eq!(c.to_body(), parsed.text);
    assert_eq!(parsed.signatures[0].name, "example.com/behind-the-sofa");
    // The spec does not publish the key; a reader holding some other key must reject it.
    let other = SignerKey::from_seed("example.com/behind-the-sofa", &[5; 32]).unwrap();
    assert!(SignedCheckpoint::verify(raw.as_bytes(), &c.origin, &other.verifier()).is_err());
}
