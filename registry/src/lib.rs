//! The registry server (`gridreg serve`): HTTP API, metadata store, blob store, and the
//! sequencer that appends to the transparency log.
//!
//! Entry points:
//! - [`server::Registry::open`] opens a data directory (SQLite `registry.db`, or PostgreSQL
//!   with `Config::database_url`; `blobs/`, `log.key`), checks the stored origin, rebuilds the
//!   namespace state and starts the sequencer; [`server::Registry::serve`] serves it with
//!   graceful shutdown;
//! - [`routes::app`] builds the axum router from an [`state::AppState`] (tests drive it with
//!   `oneshot`);
//! - [`auth::create_token`] and the [`store::Store`] token methods back
//!   `gridreg serve token ...`.
//!
//! Invariants:
//! - only this crate knows SQL and HTTP server types; the protocol and verifier crates stay pure;
//! - only the sequencer ([`sequencer`]) writes the log, one transaction per batch holding the
//!   leaves, stored hashes, checkpoint and derived rows; a checkpoint is served, and a publish
//!   acknowledged, only after that transaction is durable, and a size never gets two roots;
//! - a rejected record changes nothing: every check runs before the sequencer assigns an index;
//! - storage paths come only from [`paths`], and the only input-derived part (a digest) is hex;
//! - [`store::Store`] is written once for SQLite and PostgreSQL; only [`store::Log`] (size,
//!   stored hashes, staging read, commit, sequencer lock) differs between them;
//!   [`blob::BlobStore`] has files ([`blob::files`]) and an S3-compatible bucket ([`blob::s3`]);
//! - modules import only downward: no file imports one that imports it back
//!   (`tests/layout.rs`).

pub mod audits;
pub mod auth;
pub mod blob;
pub mod error;
pub mod export;
pub mod gc;
pub mod listen;
pub mod log;
pub mod metrics;
pub mod oci;
pub mod paths;
pub mod policy;
pub mod rejection;
pub mod routes;
pub mod sequencer;
pub mod server;
pub mod state;
pub mod store;
pub mod tile_cache;
pub mod timestamp;
pub mod uploads;
pub mod witness;

pub use server::{Config, Registry};
pub use state::{AppState, Shared};
