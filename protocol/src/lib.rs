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
//! - [`merkle`]: RFC 6962 hashing, the stored-hash layout, tree hashes and proofs;
//! - [`checkpoint`]: C2SP checkpoints and the trusted-versus-new comparison that detects forks.
//!
//! Who signs what: a namespace `claim` is signed by the key it claims (proof of possession) and
//! is valid only while the namespace is unclaimed; `grant` and `revoke` are signed by a current
//! owner; releases and yanks by a key with role owner or publish at that log index; checkpoints
//! by the log's key. Readers ignore signatures by keys they do not know.

pub mod checkpoint;
pub mod key;
pub mod merkle;
pub mod name;
pub mod namespace;
pub mod note;
pub mod record;

pub use checkpoint::{Checkpoint, CheckpointError, ForkEvidence, SignedCheckpoint};
pub use key::{KeyError, SignerKey, VerifierKey};
pub use merkle::{Hash, HashReader, MerkleError};
pub use name::{NameError, Namespace, PackageName, Reference, Requirement};
pub use namespace::{NamespaceError, NamespaceState};
pub use note::{KeySet, Note, NoteError, VerifiedNote};
pub use record::{
    Digest, NamespaceOp, NamespaceRecord, Record, RecordError, Release, Role, Timestamp, Yank,
};
