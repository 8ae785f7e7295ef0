//! gridreg's trust model: package names and versions, Ed25519 keys and C2SP signed notes, the
//! release / namespace / yank records, and the RFC 6962 Merkle log with its checkpoints and proofs.
//!
//! Invariant: this crate does no I/O, spawns nothing, and never panics on input.
