//! Static audit of WebAssembly components and core modules: import/export surface, capability
//! classes, WIT, producers, and the policy that judges them.
//!
//! Invariant: this crate does no I/O and never panics on input; callers hand it bytes and text.
//! (It does use threads: function bodies are validated in parallel.)

pub mod audit;
pub mod drift;
pub mod error;
pub mod policy;
pub mod report;
pub mod size;
pub mod surface;
pub mod taxonomy;
pub mod wit;

pub use audit::{Audit, Import, Kind, Producer, audit, audit_serial, audit_with_digest};
pub use drift::Drift;
pub use error::AuditError;
pub use policy::{
    Date, Evaluation, Policy, PolicyError, Rule, Severity, Signers, Subject, Verdict, Violation,
};
pub use size::parse_size;
pub use surface::SurfaceDiff;
pub use taxonomy::Class;
pub use wit::wit_text;
