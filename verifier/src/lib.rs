//! Static audit of WebAssembly components and core modules: import/export surface, capability
//! classes, WIT, producers, and the policy that judges them.
//!
//! Invariant: this crate does no I/O and never panics on input; callers hand it bytes and text.
