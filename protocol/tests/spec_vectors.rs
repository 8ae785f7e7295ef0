//! The test vectors of `docs/protocol.md` §11, asserted byte for byte against this crate: keys
//! from fixed seeds, a signed note, two signed records and their leaf hashes, the tree of those
//! two leaves with its proofs, and a signed checkpoint. Ed25519 signing is deterministic, so
//! every value is exact. The last test checks that each value here is the one printed in §11, so
//! the document and this file cannot drift apart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gridreg_protocol::checkpoint::{Checkpoint, SignedCheckpoint};
use gridreg_protocol::key;
use gridreg_protocol::merkle::{self, Hash};
use gridreg_protocol::note::{self, KeySet, Note, NoteError};
use gridreg_protocol::record::{NamespaceOp, Record, Role};
use gridreg_protocol::{Namespace, NamespaceState, SignerKey, VerifierKey};

// §11.1 "Key"
const ALICE_SEED: [u8; 32] = [0x03; 32];
const ALICE_PUBLIC_HEX: &str = "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1";
const ALICE_KEY_ID: &str = "1937b6eb";
const ALICE_VERIFIER: &str = "alice+1937b6eb+Ae1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR";
const ALICE_SIGNER: &str =
    "PRIVATE+KEY+alice+1937b6eb+AQMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMD";
const LOG_SEED: [u8; 32] = [0x04; 32];
const LOG_VERIFIER: &str = "log.example+3db4ee08+AcqTrBcFGHBx1nuDx/8O/oEI6OxFMFdddyaHkzPb2r58";

// §11.2 "Note"
const HELLO_NOTE: &str = "hello\n\
\n\
\u{2014} alice GTe265T+7VH3+mYZ0Pqj+90gc8TJvyOhd1ktN+hiAQgQNy49rkVeZL0o8yoxWvetQGQ9+V8CIfP9MMAAGLyWKGvXnAo=\n";

// §11.3 "Records and leaf hashes"
const CLAIM_BODY: &str = "gridreg/namespace/v2\n\
namespace acme\n\
prev none\n\
op claim\n\
key alice+1937b6eb+Ae1JKMYo0cLG6ukDOJBZlWEpWSc6XGP5NjbBRhSshzfR\n\
role owner\n\
time 2026-11-21T19:56:57Z\n";
const CLAIM_SIG_LINE: &str = "\u{2014} alice GTe268mUbXg1TyeCV1guUSi81eqQwZ/bzD9N/sCPnBQ+XQvOUok8IG13wI3yTmaPTb+lbr27/uujPd2cLF2A8K9Lig4=\n";
const CLAIM_LEAF_HASH: &str = "be4945a95d2a4ff050ce46a6289b35c5987c5ddb3c03f8cba0075c7cf20cbfd2";
const RELEASE_BODY: &str = "gridreg/release/v2\n\
package acme:auth\n\
prev none\n\
version 1.2.0\n\
digest sha256:abababababababababababababababababababababababababababababababab\n\
size 123456\n\
time 2026-11-21T19:56:57Z\n\
import wasi:cli/stdout@0.2.6\n\
import wasi:sockets/tcp@0.2.6\n\
export neon:cybergrid/authenticator@0.1.0\n";
const RELEASE_SIG_LINE: &str = "\u{2014} alice GTe26xPjBONkuPYghRrVc9kF1CWUrwWmmoa+eCVea7eJ7Qs3nh0zOtbWijyQmmY0BeKeoqtMM5aweE2ESSVJrvqEagY=\n";
const RELEASE_LEAF_HASH: &str = "cb2fa7ddb247eca44bd85fff169d721dad678dbcf20aceea6b34850432735b49";

// §11.4 "Log and checkpoint"
const MTH_0: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const MTH_1: &str = "be4945a95d2a4ff050ce46a6289b35c5987c5ddb3c03f8cba0075c7cf20cbfd2";
const MTH_2: &str = "a43de5e4579bc3067d4166d878bee09d6128b6f980b5488bf400f847268caae7";
const INCLUSION_1_IN_2: &[&str] = &["vklFqV0qT/BQzkamKJs1xZh8Xds8A/jLoAdcfPIMv9I="];
const INCLUSION_0_IN_2: &[&str] = &["yy+n3bJH7KRL2F//Fp1yHa1njbzyCs7qazSFBDJzW0k="];
const CONSISTENCY_1_TO_2: &[&str] = &["yy+n3bJH7KRL2F//Fp1yHa1njbzyCs7qazSFBDJzW0k="];
const CHECKPOINT_BODY: &str = "log.example\n2\npD3l5FebwwZ9QWbYeL7gnWEotvmAtUiL9AD4RyaMquc=\n";
const CHECKPOINT_SIG_LINE: &str = "\u{2014} log.example PbTuCBebVieaEb3zlImdUutvoqCA4mBCXTe76/rcnSZfHgw4fvMBUjQVZ03gNdAuuLZwH2vfQKrj7ZdFpwVqmYXV4gI=\n";

fn alice() -> SignerKey {
    SignerKey::from_seed("alice", &ALICE_SEED).unwrap()
}

fn log_key() -> SignerKey {
    SignerKey::from_seed("log.example", &LOG_SEED).unwrap()
}

/// A signed note as text: body, empty line, signature lines.
fn signed(body: &str, sig_lines: &str) -> String {
    format!("{body}\n{sig_lines}")
}

fn b64_hashes(list: &[&str]) -> Vec<Hash> {
    list.iter()
        .map(|s| B64.decode(s).unwrap().try_into().unwrap())
        .collect()
}

/// The stored hashes of the two-leaf log of §11.3, appended as the sequencer does.
fn two_leaf_log() -> Vec<Hash> {
    let a = alice();
    let leaves: Vec<Hash> = [CLAIM_BODY, RELEASE_BODY]
        .iter()
        .map(|body| merkle::leaf_hash(Record::parse(body).unwrap().sign(&[&a]).unwrap().as_bytes()))
        .collect();
    merkle::append_leaves(0, &leaves, &Vec::new()).unwrap()
}

// docs/protocol.md §11.1 "Key"
#[test]
fn key_from_seed() {
    let a = alice();
    let v = a.verifier();
    assert_eq!(hex::encode(v.public_bytes()), ALICE_PUBLIC_HEX);
    assert_eq!(format!("{:08x}", a.id()), ALICE_KEY_ID);
    assert_eq!(format!("{:08x}", v.id()), ALICE_KEY_ID);
    let public: [u8; 32] = hex::decode(ALICE_PUBLIC_HEX).unwrap().try_into().unwrap();
    assert_eq!(
        format!("{:08x}", key::key_id("alice", &public)),
        ALICE_KEY_ID
    );
    assert_eq!(v.to_string(), ALICE_VERIFIER);
    assert_eq!(a.to_secret_string(), ALICE_SIGNER);

    // The text forms read back to the same key.
    assert_eq!(VerifierKey::parse(ALICE_VERIFIER).unwrap(), v);
    assert_eq!(VerifierKey::from_public("alice", &public).unwrap(), v);
    let parsed = SignerKey::parse(ALICE_SIGNER).unwrap();
    assert_eq!(parsed.to_secret_string(), ALICE_SIGNER);
    assert_eq!(parsed.verifier(), v);

    // A key file (§3.3) is the signer key on one line, optionally followed by one line ending.
    for file in [
        ALICE_SIGNER.to_string(),
        format!("{ALICE_SIGNER}\n"),
        format!("{ALICE_SIGNER}\r\n"),
    ] {
        let k = SignerKey::parse_key_file(&file).unwrap();
        assert_eq!(k.to_secret_string(), ALICE_SIGNER, "{file:?}");
    }
    assert!(SignerKey::parse_key_file(&format!("{ALICE_SIGNER}\n\n")).is_err());
}

// docs/protocol.md §11.1 "Key"
#[test]
fn log_key_from_seed() {
    let l = log_key();
    assert_eq!(l.verifier().to_string(), LOG_VERIFIER);
    assert_eq!(VerifierKey::parse(LOG_VERIFIER).unwrap(), l.verifier());
}

// docs/protocol.md §11.2 "Note"
#[test]
fn hello_note() {
    let a = alice();
    let n = Note::sign("hello\n", &[&a]).unwrap();
    assert_eq!(n.to_text(), HELLO_NOTE);
    assert_eq!(Note::parse(HELLO_NOTE.as_bytes()).unwrap(), n);

    let alice_only = KeySet::from_keys([a.verifier()]);
    let v = note::verify(HELLO_NOTE.as_bytes(), &alice_only).unwrap();
    assert_eq!(v.text(), "hello\n");
    assert_eq!(v.verified_by, vec![a.verifier()]);
    assert!(v.unknown.is_empty());

    // Another key does not verify it; the same signature over other text is a bad signature.
    let log_only = KeySet::from_keys([log_key().verifier()]);
    assert!(matches!(
        note::verify(HELLO_NOTE.as_bytes(), &log_only),
        Err(NoteError::NoVerifiedSignature { .. })
    ));
    let jello = HELLO_NOTE.replacen("hello", "jello", 1);
    assert!(matches!(
        note::verify(jello.as_bytes(), &alice_only),
        Err(NoteError::InvalidSignature { .. })
    ));
}

// docs/protocol.md §11.3 "Records and leaf hashes"
#[test]
fn claim_record_and_leaf() {
    let a = alice();
    let rec = Record::parse(CLAIM_BODY).unwrap();
    assert_eq!(rec.to_body(), CLAIM_BODY);
    let Record::Namespace(n) = &rec else {
        panic!("expected a namespace record, got {rec:?}");
    };
    assert_eq!(n.namespace, Namespace::parse("acme").unwrap());
    assert_eq!(n.op, NamespaceOp::Claim);
    assert_eq!(n.key, a.verifier());
    assert_eq!(n.role, Role::Owner);
    assert_eq!(n.time.to_string(), "2026-11-21T19:56:57Z");

    let leaf = rec.sign(&[&a]).unwrap();
    assert_eq!(leaf, signed(CLAIM_BODY, CLAIM_SIG_LINE));
    assert_eq!(
        hex::encode(merkle::leaf_hash(leaf.as_bytes())),
        CLAIM_LEAF_HASH
    );
    let note = Note::parse(leaf.as_bytes()).unwrap();
    assert_eq!(Record::from_note(&note).unwrap(), rec);
}

// docs/protocol.md §11.3 "Records and leaf hashes"
#[test]
fn release_record_and_leaf() {
    let a = alice();
    let rec = Record::parse(RELEASE_BODY).unwrap();
    assert_eq!(rec.to_body(), RELEASE_BODY);
    let Record::Release(r) = &rec else {
        panic!("expected a release record, got {rec:?}");
    };
    assert_eq!(r.package.to_string(), "acme:auth");
    assert_eq!(r.version.to_string(), "1.2.0");
    assert_eq!(r.digest.0, [0xab; 32]);
    assert_eq!(r.size, 123_456);
    assert_eq!(r.time.to_string(), "2026-11-21T19:56:57Z");
    assert_eq!(
        r.imports,
        vec!["wasi:cli/stdout@0.2.6", "wasi:sockets/tcp@0.2.6"]
    );
    assert_eq!(r.exports, vec!["neon:cybergrid/authenticator@0.1.0"]);

    let leaf = rec.sign(&[&a]).unwrap();
    assert_eq!(leaf, signed(RELEASE_BODY, RELEASE_SIG_LINE));
    assert_eq!(
        hex::encode(merkle::leaf_hash(leaf.as_bytes())),
        RELEASE_LEAF_HASH
    );
    let note = Note::parse(leaf.as_bytes()).unwrap();
    assert_eq!(Record::from_note(&note).unwrap(), rec);
}

// docs/protocol.md §11.3 "Records and leaf hashes" (replayed by §5)
#[test]
fn replaying_both_entries() {
    let a = alice();
    let acme = Namespace::parse("acme").unwrap();
    let mut state = NamespaceState::new();
    let (claim, by) = state
        .apply_entry(0, signed(CLAIM_BODY, CLAIM_SIG_LINE).as_bytes())
        .unwrap();
    assert_eq!(claim.to_body(), CLAIM_BODY);
    assert_eq!(by, vec![a.verifier()]);
    let history = state.history(&acme);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].key, a.verifier());
    assert_eq!(history[0].role, Role::Owner);
    assert_eq!(history[0].from, 0);
    assert_eq!(history[0].until, None);
    assert!(!state.may_publish(&acme, &a.verifier(), 0));
    assert!(state.may_publish(&acme, &a.verifier(), 1));

    let (release, by) = state
        .apply_entry(1, signed(RELEASE_BODY, RELEASE_SIG_LINE).as_bytes())
        .unwrap();
    assert_eq!(release.to_body(), RELEASE_BODY);
    assert_eq!(by, vec![a.verifier()]);

    // In the other order the release comes first, in an unclaimed namespace, and is refused.
    let mut fresh = NamespaceState::new();
    assert!(
        fresh
            .apply_entry(0, signed(RELEASE_BODY, RELEASE_SIG_LINE).as_bytes())
            .is_err()
    );
}

// docs/protocol.md §11.4 "Log and checkpoint"
#[test]
fn tree_hashes_and_proofs() {
    let s = two_leaf_log();
    assert_eq!(hex::encode(merkle::tree_hash(0, &s).unwrap()), MTH_0);
    assert_eq!(hex::encode(merkle::EMPTY_ROOT), MTH_0);
    assert_eq!(hex::encode(merkle::tree_hash(1, &s).unwrap()), MTH_1);
    assert_eq!(hex::encode(merkle::tree_hash(2, &s).unwrap()), MTH_2);
    // MTH(1) is the claim's leaf hash, MTH(2) the node hash of the two leaf hashes.
    assert_eq!(MTH_1, CLAIM_LEAF_HASH);
    let leaf0: Hash = hex::decode(CLAIM_LEAF_HASH).unwrap().try_into().unwrap();
    let leaf1: Hash = hex::decode(RELEASE_LEAF_HASH).unwrap().try_into().unwrap();
    assert_eq!(hex::encode(merkle::node_hash(&leaf0, &leaf1)), MTH_2);

    let root1 = merkle::tree_hash(1, &s).unwrap();
    let root2 = merkle::tree_hash(2, &s).unwrap();
    let incl1 = merkle::prove_inclusion(2, 1, &s).unwrap();
    assert_eq!(incl1, b64_hashes(INCLUSION_1_IN_2));
    merkle::verify_inclusion(&incl1, 2, &root2, 1, &leaf1).unwrap();
    let incl0 = merkle::prove_inclusion(2, 0, &s).unwrap();
    assert_eq!(incl0, b64_hashes(INCLUSION_0_IN_2));
    merkle::verify_inclusion(&incl0, 2, &root2, 0, &leaf0).unwrap();
    // Each proof is for its own index only.
    assert!(merkle::verify_inclusion(&incl1, 2, &root2, 0, &leaf0).is_err());

    let cons = merkle::prove_consistency(2, 1, &s).unwrap();
    assert_eq!(cons, b64_hashes(CONSISTENCY_1_TO_2));
    merkle::verify_consistency(&cons, 2, &root2, 1, &root1).unwrap();
}

// docs/protocol.md §11.4 "Log and checkpoint"
#[test]
fn checkpoint_of_size_two() {
    let l = log_key();
    let root = merkle::tree_hash(2, &two_leaf_log()).unwrap();
    let cp = Checkpoint::new("log.example", 2, root);
    assert_eq!(cp.to_body(), CHECKPOINT_BODY);
    let parsed = Checkpoint::parse_body(CHECKPOINT_BODY).unwrap();
    assert_eq!(parsed, cp);
    assert_eq!(hex::encode(parsed.root), MTH_2);

    let want = signed(CHECKPOINT_BODY, CHECKPOINT_SIG_LINE);
    let s = cp.sign(&[&l]).unwrap();
    assert_eq!(s.note, want);
    assert_eq!(s.checkpoint, cp);

    let v = SignedCheckpoint::verify(want.as_bytes(), "log.example", &l.verifier()).unwrap();
    assert_eq!(v.size(), 2);
    assert_eq!(v.root(), &root);
    assert_eq!(v.note, want);
    // Only the log key counts, and the origin must match.
    assert!(SignedCheckpoint::verify(want.as_bytes(), "log.example", &alice().verifier()).is_err());
    assert!(SignedCheckpoint::verify(want.as_bytes(), "other.example", &l.verifier()).is_err());
}

/// The text of §11 in `docs/protocol.md`, from its heading to the next `## ` heading.
fn section_11() -> String {
    let path = format!("{}/../docs/protocol.md", env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc.find("\n## 11. Test vectors\n").expect("§11 heading");
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    rest[..end].to_string()
}

/// `text` as an indented code block of the document: each non-empty line behind four spaces.
fn indented(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|l| {
            if l == "\n" {
                l.to_string()
            } else {
                format!("    {l}")
            }
        })
        .collect()
}

// docs/protocol.md §11 "Test vectors": the values asserted above are the ones printed there.
#[test]
fn document_prints_these_values() {
    let s = section_11();
    let list = |l: &[&str]| {
        let quoted: Vec<String> = l.iter().map(|h| format!("\"{h}\"")).collect();
        format!("[{}]", quoted.join(", "))
    };
    let expected = [
        "### 11.1 Key".to_string(),
        "Signer seed `0x03` repeated 32 times, name `alice`".to_string(),
        format!("    public key (hex)  {ALICE_PUBLIC_HEX}\n"),
        format!("    key id            {ALICE_KEY_ID}\n"),
        format!("    verifier key      {ALICE_VERIFIER}\n"),
        format!("    signer key        {ALICE_SIGNER}\n"),
        "seed `0x04` repeated 32 times, name `log.example`".to_string(),
        format!("    verifier key      {LOG_VERIFIER}\n"),
        "### 11.2 Note".to_string(),
        indented(HELLO_NOTE),
        "### 11.3 Records and leaf hashes".to_string(),
        indented(&signed(CLAIM_BODY, CLAIM_SIG_LINE)),
        format!("    leaf hash {CLAIM_LEAF_HASH}\n"),
        indented(&signed(RELEASE_BODY, RELEASE_SIG_LINE)),
        format!("    leaf hash {RELEASE_LEAF_HASH}\n"),
        "### 11.4 Log and checkpoint".to_string(),
        format!("    MTH(0) = {MTH_0}\n"),
        format!("    MTH(1) = {MTH_1}\n"),
        format!("    MTH(2) = {MTH_2}\n"),
        format!(
            "    inclusion of index 1 in size 2:  {}\n",
            list(INCLUSION_1_IN_2)
        ),
        format!(
            "    inclusion of index 0 in size 2:  {}\n",
            list(INCLUSION_0_IN_2)
        ),
        format!(
            "    consistency from 1 to 2:         {}\n",
            list(CONSISTENCY_1_TO_2)
        ),
        "origin `log.example`, signed by the log key".to_string(),
        indented(&signed(CHECKPOINT_BODY, CHECKPOINT_SIG_LINE)),
    ];
    for want in &expected {
        assert!(s.contains(want.as_str()), "§11 does not contain:\n{want}");
    }
}
