//! The state every request handler shares: the store, the blobs, the sequencer's view of the
//! log and its submission queue, and the registry's fixed settings.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::audits::Audits;
use crate::blob::BlobStore;
use crate::gc::Pins;
use crate::metrics::Metrics;
use crate::sequencer::{LogView, Submission};
use crate::store::Store;
use crate::timestamp::Timestamper;

/// What every handler shares. Cloned for every request (axum hands each handler and middleware
/// its own copy), so it is one reference count, not one per field.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`]. The sequencer stops once every copy of `submit` is dropped, that
/// is once the last [`AppState`] is.
pub struct Shared {
    pub store: Arc<Store>,
    pub blobs: Arc<dyn BlobStore>,
    /// Audits of content for publishes: one per digest at a time, within a memory budget.
    pub audits: Arc<Audits>,
    /// Digests publishes in progress name, which the collector of unnamed uploads leaves alone.
    pub pins: Arc<Pins>,
    pub view: Arc<LogView>,
    pub metrics: Arc<Metrics>,
    pub submit: mpsc::Sender<Submission>,
    pub origin: Arc<str>,
    pub log_key: Arc<str>,
    /// Stamps served checkpoints with the timestamp key.
    pub timestamp: Arc<Timestamper>,
    pub max_blob_size: u64,
    pub require_token: bool,
    /// What the OCI read side finds by digest (manifests, configs, bundle artifacts).
    pub oci: Arc<crate::oci::OciCache>,
    /// The witnesses this registry submits its checkpoints to (`--witness`).
    pub witnesses: Arc<crate::witness::submit::Witnesses>,
    /// Full tiles served lately, within a byte budget.
    pub tiles: Arc<crate::tile_cache::TileCache>,
    /// Bytes uploaded and not yet named by a release, per uploader and in all, within caps.
    pub uploads: Arc<crate::uploads::Uploads>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("origin", &self.origin)
            .field("max_blob_size", &self.max_blob_size)
            .field("require_token", &self.require_token)
            .finish_non_exhaustive()
    }
}
