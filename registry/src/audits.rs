//! Work on uploaded content that reads a whole blob, bounded in memory whatever clients do: the
//! audit of a publish and the WIT extraction of a release's first read. Each runs at most once
//! at a time per digest however many requests ask for it (they share the result), and is
//! admitted by a memory budget, so concurrent work on large blobs waits rather than exhausts RAM.
//!
//! Work on a blob of `n` bytes is charged `AUDIT_COST_FACTOR * n` (the bytes and the parser's
//! structures), at most the whole budget: a blob larger than the budget is worked on alone.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridreg_protocol::Digest;
use gridreg_verifier::Audit;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use crate::blob::BlobStore;

/// Default memory budget for audits and WIT extractions in progress: 1 GiB.
pub const DEFAULT_AUDIT_MEMORY: u64 = 1 << 30;
/// What an audit holds per byte of its blob, as a multiple.
const AUDIT_COST_FACTOR: u64 = 2;
/// Budget accounting unit: 1 MiB.
const UNIT: u64 = 1 << 20;
/// How long a failed WIT extraction is not tried again for the same content.
const WIT_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Most failed WIT extractions remembered.
const WIT_FAILURES_KEPT: usize = 4096;

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

/// Requests waiting on one run of some work, keyed by what it works on.
struct Inflight<K, T> {
    slots: Mutex<HashMap<K, Arc<OnceCell<T>>>>,
}

impl<K: Hash + Eq + Clone, T: Clone> Inflight<K, T> {
    fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The result of `work` for `key`: a run already going for `key` is waited on and shared;
    /// else this call runs it. Results are not kept once every waiter has one.
    async fn run<F: Future<Output = T>>(&self, key: K, work: impl FnOnce() -> F) -> T {
        let slot = {
            let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone())
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        let result = slot.get_or_init(work).await.clone();
        let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            map.remove(&key);
        }
        result
    }
}

type AuditResult = Result<Arc<Audit>, AuditFailure>;
type WitResult = Result<Option<Arc<str>>, AuditFailure>;

/// The audits and WIT extractions in progress and the budget they share.
pub struct Audits {
    budget: Arc<Semaphore>,
    budget_units: u32,
    audits: Inflight<Digest, AuditResult>,
    wits: Inflight<Digest, WitResult>,
    /// Content whose WIT could not be extracted, and when that was last tried.
    wit_failed: Mutex<HashMap<Digest, Instant>>,
    runs: AtomicU64,
    wit_runs: AtomicU64,
}

impl Audits {
    /// Audits sharing `budget` bytes (at least 1 MiB).
    pub fn new(budget: u64) -> Self {
        let units = u32::try_from((budget / UNIT).max(1)).unwrap_or(u32::MAX >> 4);
        let units = units.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            budget: Arc::new(Semaphore::new(units as usize)),
            budget_units: units,
            audits: Inflight::new(),
            wits: Inflight::new(),
            wit_failed: Mutex::new(HashMap::new()),
            runs: AtomicU64::new(0),
            wit_runs: AtomicU64::new(0),
        }
    }

    /// How many audits have actually run (publishes that shared one count once).
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// How many WIT extractions have actually run.
    pub fn wit_runs(&self) -> u64 {
        self.wit_runs.load(Ordering::Relaxed)
    }

    /// The audit of the stored content `digest` of `size` bytes, run at most once at a time per
    /// digest, after its share of the memory budget is free.
    pub async fn audit(
        &self,
        blobs: &Arc<dyn BlobStore>,
        digest: Digest,
        size: u64,
    ) -> Result<Arc<Audit>, AuditFailure> {
        self.audits
            .run(digest, || self.run_audit(blobs, digest, size))
            .await
    }

    /// The WIT text of the stored component `digest` of `size` bytes, under the same rules as
    /// [`Audits::audit`]. `Ok(None)` when the text cannot be extracted (a decoder limit: the
    /// content passed its audit); that answer is kept for a while, so repeated reads of such a
    /// release do not decode it again each time.
    pub async fn wit(
        &self,
        blobs: &Arc<dyn BlobStore>,
        digest: Digest,
        size: u64,
    ) -> Result<Option<Arc<str>>, AuditFailure> {
        if self.wit_failed_recently(digest) {
            return Ok(None);
        }
        self.wits
            .run(digest, || self.run_wit(blobs, digest, size))
            .await
    }

    fn wit_failed_recently(&self, digest: Digest) -> bool {
        let failed = self.wit_failed.lock().unwrap_or_else(|p| p.into_inner());
        failed
            .get(&digest)
            .is_some_and(|at| at.elapsed() < WIT_RETRY_AFTER)
    }

    /// The blob, read once this work's share of the budget is held.
    async fn admitted_read(
        &self,
        blobs: &Arc<dyn BlobStore>,
        digest: Digest,
        size: u64,
    ) -> Result<(OwnedSemaphorePermit, Vec<u8>), AuditFailure> {
        let units = u32::try_from(size.saturating_mul(AUDIT_COST_FACTOR).div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.budget_units);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(units)
            .await
            .map_err(|e| AuditFailure::Internal(format!("audit budget: {e}")))?;
        let bytes = blobs
            .read(digest)
            .await
            .map_err(|e| AuditFailure::Internal(e.to_string()))?
            .ok_or(AuditFailure::Missing(digest))?;
        Ok((permit, bytes))
    }

    async fn run_audit(
        &self,
        blobs: &Arc<dyn BlobStore>,
        digest: Digest,
        size: u64,
    ) -> AuditResult {
        let (_permit, bytes) = self.admitted_read(blobs, digest, size).await?;
        self.runs.fetch_add(1, Ordering::Relaxed);
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

    async fn run_wit(&self, blobs: &Arc<dyn BlobStore>, digest: Digest, size: u64) -> WitResult {
        let (_permit, bytes) = self.admitted_read(blobs, digest, size).await?;
        self.wit_runs.fetch_add(1, Ordering::Relaxed);
        let wit = tokio::task::spawn_blocking(move || gridreg_verifier::wit_text(&bytes))
            .await
            .map_err(|e| AuditFailure::Internal(format!("WIT task: {e}")))?;
        match wit {
            Ok(text) => Ok(Some(Arc::from(text))),
            Err(e) => {
                tracing::warn!(%digest, "no WIT extracted: {e}");
                let mut failed = self.wit_failed.lock().unwrap_or_else(|p| p.into_inner());
                if failed.len() >= WIT_FAILURES_KEPT {
                    failed.retain(|_, at| at.elapsed() < WIT_RETRY_AFTER);
                }
                if failed.len() < WIT_FAILURES_KEPT {
                    failed.insert(digest, Instant::now());
                }
                Ok(None)
            }
        }
    }
}

impl std::fmt::Debug for Audits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audits")
            .field("budget_mib", &self.budget_units)
            .field("available_mib", &self.budget.available_permits())
            .field("runs", &self.runs())
            .field("wit_runs", &self.wit_runs())
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

    /// Eight calls of `one` at once. The budget is held until every call has asked, so the
    /// first cannot finish before the last has joined it (a small blob's work can be done
    /// within one poll).
    async fn eight_at_once<T, F: std::future::Future<Output = T>>(
        audits: &Audits,
        one: impl Fn() -> F,
    ) -> [T; 8] {
        let held = audits
            .budget
            .clone()
            .acquire_many_owned(audits.budget_units)
            .await
            .unwrap();
        let release_later = async move {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            drop(held);
        };
        let (a, b, c, d, e, f, g, h, ()) = tokio::join!(
            one(),
            one(),
            one(),
            one(),
            one(),
            one(),
            one(),
            one(),
            release_later
        );
        [a, b, c, d, e, f, g, h]
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
        for r in eight_at_once(&audits, one).await {
            assert_eq!(r.unwrap().digest, digest);
        }
        assert_eq!(audits.runs(), 1);
        // Nothing is kept: a later publish audits again.
        audits.audit(&blobs, digest, size).await.unwrap();
        assert_eq!(audits.runs(), 2);
    }

    /// The first reads of a release's WIT, many at once: one extraction, every reader gets the
    /// same text; content whose WIT cannot be extracted is not decoded again on every read.
    #[tokio::test]
    async fn concurrent_wit_reads_of_one_digest_extract_once() {
        let hello = include_bytes!("../../examples/wasm/hello.wasm");
        let (_dir, blobs, digest) = store_with(hello).await;
        let audits = Audits::new(UNIT);
        let size = hello.len() as u64;
        let one = || audits.wit(&blobs, digest, size);
        let [a, rest @ ..] = eight_at_once(&audits, one).await;
        let first = a.unwrap().expect("hello.wasm has WIT");
        assert!(first.contains("world"), "{first}");
        for r in rest {
            assert_eq!(r.unwrap().as_deref(), Some(&*first));
        }
        assert_eq!(audits.wit_runs(), 1);
        assert_eq!(audits.budget.available_permits(), 1, "the budget is back");

        // A component whose WIT the decoder refuses: tried once, then remembered.
        let bad = b"\0asm\x0d\0\x01\0\0\x03\x01x";
        let (_dir2, blobs2, bad_digest) = store_with(bad).await;
        for _ in 0..3 {
            let r = audits.wit(&blobs2, bad_digest, bad.len() as u64).await;
            assert!(matches!(r, Ok(None)), "{r:?}");
        }
        assert_eq!(audits.wit_runs(), 2);
        // Content that is gone is an error for the caller, not a remembered failure.
        let gone = Digest([7; 32]);
        let r = audits.wit(&blobs, gone, 10).await;
        assert!(
            matches!(r, Err(AuditFailure::Missing(d)) if d == gone),
            "{r:?}"
        );
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
