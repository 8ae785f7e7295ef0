//! gridreg's trust model: package names and versions, Ed25519 keys and C2SP signed notes, the
//! release / namespace / yank records, and the RFC 6962 Merkle log with its checkpoints and proofs.
//!
//! Invariant: this crate does no I/O, spawns nothing, and never panics on input.
//!
//! Modules, one concern each:
//! - [`name`]: package names, versions, references and resolution against yanks;
//! - [`key`]: Ed25519 signer and verifier keys in the C2SP signed-note text forms;
//! - [`note`]: C2SP signed notes (sign, parse, verify against known keys);
//! - [`record`]: release, namespace and yank record bodies, strict and canonical;
//! - [`namespace`]: the namespace state machine (who may publish where, at which log index);
//! - [`chain`]: the `prev` links that chain each namespace's and each package's records;
//! - [`merkle`]: RFC 6962 hashing, the stored-hash layout, tree hashes and proofs;
//! - [`map`]: the head map, a verifiable map from every chain key to its head, with proofs;
//! - [`bundle`]: map entries, and the one-answer evidence for a package verified against them;
//! - [`checkpoint`]: C2SP checkpoints and the trusted-versus-new comparison that detects forks;
//! - [`cosignature`]: C2SP tlog cosignatures: the registry's timestamp on the checkpoint it serves;
//! - [`api`]: the JSON bodies of the log's HTTP API;
//! - [`oci`]: a release's OCI manifest and config, derived byte for byte from its record.
//!
//! Who signs what: a namespace `claim` is signed by the key it claims (proof of possession) and
//! is valid only while the namespace is unclaimed; `grant` and `revoke` are signed by a current
//! owner; releases and yanks by a key with role owner or publish at that log index; checkpoints
//! by the log's key. Readers ignore signatures by keys they do not know, and reject a note whose
//! signature by a key they do know fails.
//!
//! The whole path, from a new key to a client that has checked a release is in the log:
//!
//! ```
//! use gridreg_protocol::checkpoint::{self, Advance, Checkpoint, SignedCheckpoint};
//! use gridreg_protocol::merkle::{self, Hash};
//! use gridreg_protocol::{NamespaceState, Record, SignerKey};
//!
//! let alice = SignerKey::generate("alice").unwrap();
//! let log_key = SignerKey::generate("log.example").unwrap();
//! let claim = format!(
//!     "gridreg/namespace/v2\nnamespace acme\nprev none\nop claim\nkey {}\nrole owner\ntime 2026-11-21T19:56:57Z\n",
//!     alice.verifier()
//! );
//! let release = format!(
//!     "gridreg/release/v2\npackage acme:auth\nprev none\nversion 1.2.0\ndigest sha256:{}\nsize 5\ntime 2026-11-21T19:57:00Z\nimport wasi:cli/stdout@0.2.6\n",
//!     "ab".repeat(32)
//! );
//!
//! // The registry: check each record against the namespace state, then append it to the log.
//! let mut state = NamespaceState::new();
//! let mut stored: Vec<Hash> = Vec::new();
//! for (index, body) in [&claim, &release].into_iter().enumerate() {
//!     let leaf = Record::parse(body).unwrap().sign(&[&alice]).unwrap();
//!     state.apply_entry(index as u64, leaf.as_bytes()).unwrap();
//!     let new = merkle::append_leaves(index as u64, &[merkle::leaf_hash(leaf.as_bytes())], &stored).unwrap();
//!     stored.extend(new);
//! }
//! let root = merkle::tree_hash(2, &stored).unwrap();
//! let signed = Checkpoint::new("log.example", 2, root).sign(&[&log_key]).unwrap();
//! let proof = merkle::prove_inclusion(2, 1, &stored).unwrap();
//!
//! // The client: verify the checkpoint, the inclusion proof, and consistency with what it trusted.
//! let cp = SignedCheckpoint::verify(signed.note.as_bytes(), "log.example", &log_key.verifier()).unwrap();
//! let leaf = merkle::leaf_hash(Record::parse(&release).unwrap().sign(&[&alice]).unwrap().as_bytes());
//! merkle::verify_inclusion(&proof, cp.size(), cp.root(), 1, &leaf).unwrap();
//! let trusted = Checkpoint::new("log.example", 1, merkle::tree_hash(1, &stored).unwrap())
//!     .sign(&[&log_key])
//!     .unwrap();
//! let consistency = merkle::prove_consistency(2, 1, &stored).unwrap();
//! assert_eq!(checkpoint::check_against_trusted(&trusted, &cp, &consistency).unwrap(), Advance::Newer);
//! ```

pub mod api;
pub mod bundle;
pub mod chain;
pub mod checkpoint;
pub mod cosignature;
pub mod key;
pub mod map;
pub mod merkle;
pub mod name;
pub mod namespace;
pub mod note;
pub mod oci;
pub mod record;
pub mod tiles;
pub mod witness;

pub use bundle::{
    Bundle, BundleError, ChainEvidence, Entry, Held, HeldEntry, MapEntry, MapEntryError,
    VerifiedPackage, VerifiedRelease, VerifiedYank, verify_bundle, verify_bundle_after,
};
pub use chain::{ChainError, ChainKey, Chains, Head, Prev};
pub use checkpoint::{Checkpoint, CheckpointError, ForkEvidence, SignedCheckpoint};
pub use cosignature::{CosignatureError, Cosigner, CosignerKey};
pub use key::{KeyError, SignerKey, VerifierKey, key_label};
pub use map::{HeadMap, MapError, MapKey, MapProof};
pub use merkle::{Hash, HashReader, MerkleError};
pub use name::{NameError, Namespace, PackageName, Reference, Requirement};
pub use namespace::{EntryError, NamespaceError, NamespaceState};
pub use note::{KeySet, Note, NoteError, VerifiedNote};
pub use record::{
    Digest, NamespaceOp, NamespaceRecord, Record, RecordError, Release, Role, Timestamp, Yank,
};
