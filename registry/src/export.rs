//! The log's static resources written to the blob store's bucket (docs/protocol.md §7.12.5), so
//! a CDN or any static host in front of the bucket serves the C2SP tiles without the registry:
//! every tile and entry bundle that became full, the partial ones of the newest checkpoint, and
//! the checkpoint itself (renewed every [`RENEW_AFTER`] so its timestamp stays fresh). Full
//! tiles never change, so they are written once each, with an immutable `Cache-Control`; the
//! size up to which they are written is the bucket object [`PROGRESS`], written after them (the
//! store's database is the sequencer's alone to write). Only stores that hold static resources
//! (S3) get them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use gridreg_protocol::tiles::{Tile, entry_bundles, hash_tiles};

use crate::blob::{BlobStore, IMMUTABLE};
use crate::sequencer::LogView;
use crate::store::Store;
use crate::timestamp::Timestamper;
use crate::witness::submit::Witnesses;

/// The checkpoint object is rewritten at least this often while the log stands still.
pub const RENEW_AFTER: Duration = Duration::from_secs(60);
/// Bucket object: the log size whose full tiles are all in the bucket, in decimal.
pub const PROGRESS: &str = "gridreg/tiles-exported";
const OCTETS: &str = "application/octet-stream";

/// What the exporter reads from.
pub struct Exporter {
    pub store: Arc<Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub view: Arc<LogView>,
    pub timestamp: Arc<Timestamper>,
    pub witnesses: Arc<Witnesses>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// Runs until the task is aborted; failures are logged and retried at the next checkpoint
    /// or renewal.
    pub async fn run(self) {
        let mut changes = self.view.subscribe();
        let mut done = match self.blobs.get_static(PROGRESS).await {
            Ok(b) => b
                .and_then(|b| std::str::from_utf8(&b).ok()?.trim().parse().ok())
                .unwrap_or(0),
            Err(e) => {
                tracing::warn!(error = %e, "reading the tile export's progress; writing every tile again");
                0
            }
        };
        loop {
            changes.borrow_and_update();
            match self.export_once(done).await {
                Ok(size) => done = size,
                Err(e) => {
                    tracing::warn!(error = %e, "writing the log's tiles to the bucket; trying again later")
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tokio::time::sleep(RENEW_AFTER) => {}
            }
        }
    }

    /// Writes what the newest checkpoint adds to a bucket whose full tiles cover `done`
    /// entries: the tiles that became full since, the partial tiles of this size, the progress,
    /// then the checkpoint. Returns the size now covered.
    pub async fn export_once(&self, done: u64) -> Result<u64, String> {
        let latest = self.view.latest();
        let size = latest.size;
        let done = done.min(size);
        let tiles = hash_tiles(size).into_iter().chain(entry_bundles(size));
        for tile in tiles {
            // A full tile already in the bucket (the log held it at the last export) is skipped.
            if tile.is_full() && tile.within(done) {
                continue;
            }
            self.put_tile(&tile).await?;
        }
        self.blobs
            .put_static(
                PROGRESS,
                Bytes::from(format!("{size}\n")),
                "text/plain; charset=utf-8",
                "no-store",
            )
            .await
            .map_err(|e| e.to_string())?;
        let served = self.witnesses.serve(&self.timestamp, &latest.body);
        self.blobs
            .put_static(
                "checkpoint",
                Bytes::from(served),
                "text/plain; charset=utf-8",
                "public, max-age=5",
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(size)
    }

    async fn put_tile(&self, tile: &Tile) -> Result<(), String> {
        let bytes = self
            .store
            .tile_bytes(tile)
            .await
            .map_err(|e| e.to_string())?;
        self.blobs
            .put_static(&tile.path(), Bytes::from(bytes), OCTETS, IMMUTABLE)
            .await
            .map_err(|e| e.to_string())
    }
}
