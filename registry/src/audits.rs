//! Audits of uploaded content for publishes, bounded in memory whatever clients do: one audit
//! per digest however many publishes name it at once (they share the result), and admission by
//! a memory budget, so concurrent audits of large blobs wait rather than exhaust RAM.
//!
//! An audit of a blob of `n` bytes is charged `AUDIT_COST_FACTOR * n` (the bytes and the parser's
//! structures), at most the whole budget: a blob larger than the budget is audited alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gridreg_protocol::Digest;
use gridreg_verifier::Audit;
use tokio::sync::{OnceCell, Semaphore};

use crate::blob::BlobStore;

/// Default memory budget for audits in progress: 1 GiB.
pub const DEFAULT_AUDIT_MEMORY: u64 = 1 << 30;
/// What an audit holds per byte of its blob, as a multiple.
const AUDIT_COST_FACTOR: u64 = 2;
/// Budget accounting unit: 1 MiB.
const UNIT: u64 = 1 << 20;

/// Why an audit could not give a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditFailure {
    #[error("content {0} vanished")]
    Missing(Digest),
    #[error("content {digest}: {message}")]
    Invalid { digest: Digest, message: String },
    #[error("{0}")]
    Internal(String),
}

type Slot = Arc<OnceCell<Result<Arc<Audit>, AuditFailure>>>;

/// The audits in progress and the budget they share.
pub struct Audits {
    budget: Arc<Semaphore>,
    budget_units: u32,
    inflight: Mutex<HashMap<Digest, Slot>>,
    runs: AtomicU64,
}

impl Audits {
    /// Audits sharing `budget` bytes (at least 1 MiB).
    pub fn new(budget: u64) -> Self {
        let units = u32::try_from((budget / UNIT).max(1)).unwrap_or(u32::MAX >> 4);
        let units = units.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            budget: Arc::new(Semaphore::new(units as usize)),
            budget_units: units,
            inflight: Mutex::new(HashMap::new()),
            runs: AtomicU64::new(0),
        }
    }

    /// How many audits have actually run (publishes that shared one count once).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// The audit of the stored content `digest` of `size` bytes, run at most once at a time per
    /// digest, after its share of the memory budget is free.
    pub async fn audit(
        &self,
        blobs: &Arc<dyn BlobStore>,
        digest: Digest,
        size: u64,
    ) -> Result<Arc<Audit>, AuditFailure> {
        let slot = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(digest)
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let result = slot
            .get_or_init(|| self.run(blobs, digest, size))
            .await
            .clone();
        // Done: later publishes of this digest audit again (results are not kept), and the
        // map holds only audits in progress.
        let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&digest).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            map.remove(&digest);
        }
        result
    }

    async fn run(
        &self,
        blobs: &Arc<dyn BlobStore>,
        digest: Digest,
        size: u64,
    ) -> Result<Arc<Audit>, AuditFailure> {
        let units = u32::try_from(size.saturating_mul(AUDIT_COST_FACTOR).div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.budget_units);
        let _permit = self
            .budget
            .acquire_many(units)
            .await
            .map_err(|e| AuditFailure::Internal(format!("audit budget: {e}")))?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let bytes = blobs
            .read(digest)
            .await
            .map_err(|e| AuditFailure::Internal(e.to_string()))?
            .ok_or(AuditFailure::Missing(digest))?;
        // Serial: concurrent publishes already fill the cores.
        let audit = tokio::task::spawn_blocking(move || gridreg_verifier::audit_serial(&bytes))
            .await
            .map_err(|e| AuditFailure::Internal(format!("audit task: {e}")))?
            .map_err(|e| AuditFailure::Invalid {
                digest,
                message: e.to_string(),
            })?;
        if audit.digest != digest {
            return Err(AuditFailure::Internal(format!(
                "stored blob {digest} hashes to {}",
                audit.digest
            )));
        }
        Ok(Arc::new(audit))
    }
}

impl std::fmt::Debug for Audits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audits")
            .field("budget_mib", &self.budget_units)
            .field("available_mib", &self.budget.available_permits())
            .field("runs", &self.runs())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::blob::files::FileBlobStore;
    use crate::paths::BlobDir;

    async fn store_with(bytes: &[u8]) -> (tempfile::TempDir, Arc<dyn BlobStore>, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let store = FileBlobStore::open_dir(BlobDir::new(dir.path()))
            .await
            .unwrap();
        let digest = Digest::of(bytes);
        let mut w = store.create().await.unwrap();
        w.write(bytes).await.unwrap();
        w.commit(digest).await.unwrap();
        (dir, Arc::new(store), digest)
    }

    /// The hostile-load issue's row: one record naming one blob, POSTed many times at once,
    /// read and audited the blob once per request. Now they share one audit.
    #[tokio::test]
    async fn concurrent_audits_of_one_digest_run_once() {
        let hello = include_bytes!("../../examples/wasm/hello.wasm");
        let (_dir, blobs, digest) = store_with(hello).await;
        let audits = Audits::new(DEFAULT_AUDIT_MEMORY);
        let size = hello.len() as u64;
        let one = || audits.audit(&blobs, digest, size);
        let (a, b, c, d, e, f, g, h) =
            tokio::join!(one(), one(), one(), one(), one(), one(), one(), one());
        for r in [a, b, c, d, e, f, g, h] {
            assert_eq!(r.unwrap().digest, digest);
        }
        assert_eq!(audits.runs(), 1);
        // Nothing is kept: a later publish audits again.
        audits.audit(&blobs, digest, size).await.unwrap();
        assert_eq!(audits.runs(), 2);
    }

    /// Audits whose blobs together exceed the budget wait for each other; one larger than the
    /// whole budget still runs (alone). Bad bytes fail every waiter with the same error.
    #[tokio::test]
    async fn the_budget_admits_what_fits_and_failures_are_shared() {
        let hello = include_bytes!("../../examples/wasm/hello.wasm");
        let (_dir, blobs, digest) = store_with(hello).await;
        // 1 MiB budget, a blob "of" 10 MiB: charged the whole budget, runs alone.
        let audits = Audits::new(UNIT);
        audits
            .audit(&blobs, digest, 10 * UNIT)
            .await
            .expect("a blob over the budget still gets audited");
        assert_eq!(audits.budget.available_permits(), 1, "the budget is back");

        let junk = b"\0asm\x01\0\0\0garbage";
        let (_dir2, blobs2, bad) = store_with(junk).await;
        let one = || audits.audit(&blobs2, bad, junk.len() as u64);
        let (x, y) = tokio::join!(one(), one());
        for r in [x, y] {
            assert!(matches!(r, Err(AuditFailure::Invalid { .. })), "{r:?}");
        }
    }
}
