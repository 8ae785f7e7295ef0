//! Collection of uploads no release names: content is accepted only to be published, so a blob
//! that no release references once it is older than the upload TTL (`--upload-ttl`, default 1 h)
//! is deleted, and the registry is no free file host.
//!
//! A publish pins the digest it names ([`Pins::pin`]) from before it reads the content until its
//! answer. The collector marks a digest as being deleted only while it is not pinned, checks
//! again in the store that no release names it, and then deletes it; a publish that comes while
//! a digest is being deleted is told to upload it again. So a release is never committed naming
//! content the collector deleted, within one process. (Replicas sharing a bucket each collect;
//! a publish on one racing the collector on another can still lose its content: give replicas a
//! TTL well above the time a publish takes.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gridreg_protocol::Digest;

use crate::blob::{BlobError, BlobStore};
use crate::store::{Store, StoreError};

/// How long an upload may stay unnamed by any release.
pub const DEFAULT_UPLOAD_TTL: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Pinned(usize),
    Deleting,
}

/// The digests publishes in progress name, and those being deleted.
#[derive(Debug, Default)]
pub struct Pins {
    marks: Mutex<HashMap<Digest, Mark>>,
}

/// Holds a digest pinned until dropped.
#[derive(Debug)]
pub struct Pin {
    pins: Arc<Pins>,
    digest: Digest,
}

impl Pins {
    /// Pins `digest` for a publish; `None` while the collector is deleting it.
    pub fn pin(self: &Arc<Self>, digest: Digest) -> Option<Pin> {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        match marks.get_mut(&digest) {
            Some(Mark::Deleting) => return None,
            Some(Mark::Pinned(n)) => *n += 1,
            None => {
                marks.insert(digest, Mark::Pinned(1));
            }
        }
        Some(Pin {
            pins: self.clone(),
            digest,
        })
    }

    /// Marks `digest` as being deleted unless a publish holds it.
    fn start_delete(&self, digest: Digest) -> bool {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if marks.contains_key(&digest) {
            return false;
        }
        marks.insert(digest, Mark::Deleting);
        true
    }

    fn end_delete(&self, digest: Digest) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        if marks.get(&digest) == Some(&Mark::Deleting) {
            marks.remove(&digest);
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut marks = self.pins.marks.lock().unwrap_or_else(|p| p.into_inner());
        match marks.get_mut(&self.digest) {
            Some(Mark::Pinned(n)) if *n > 1 => *n -= 1,
            Some(Mark::Pinned(_)) => {
                marks.remove(&self.digest);
            }
            _ => {}
        }
    }
}

/// Why a collection stopped.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Deletes every blob written longer than `ttl` ago that no release names and no publish holds.
/// Returns how many were deleted.
pub async fn collect(
    store: &Store,
    blobs: &Arc<dyn BlobStore>,
    pins: &Pins,
    ttl: Duration,
) -> Result<usize, GcError> {
    let before = SystemTime::now()
        .checked_sub(ttl)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut deleted = 0;
    for digest in blobs.written_before(before).await? {
        if !pins.start_delete(digest) {
            continue;
        }
        let result = async {
            if store.digest_released(&digest.to_string()).await? {
                return Ok(false);
            }
            blobs.delete(digest).await?;
            Ok::<_, GcError>(true)
        }
        .await;
        pins.end_delete(digest);
        if result? {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// How often the collector looks: a quarter of the TTL, between 1 s and 10 min.
pub fn interval(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_digest_being_deleted_cannot_be_pinned_and_a_pinned_one_is_not_deleted() {
        let pins = Arc::new(Pins::default());
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        let pin = pins.pin(a).unwrap();
        let again = pins.pin(a).unwrap();
        assert!(!pins.start_delete(a), "pinned twice");
        drop(pin);
        assert!(!pins.start_delete(a), "still pinned once");
        drop(again);
        assert!(pins.start_delete(a), "no pin left");
        assert!(pins.pin(a).is_none(), "being deleted");
        pins.end_delete(a);
        assert!(pins.pin(a).is_some());
        assert!(pins.start_delete(b));
        assert!(!pins.start_delete(b), "already being deleted");
    }

    #[test]
    fn the_collector_looks_often_enough_but_not_constantly() {
        assert_eq!(
            interval(Duration::from_secs(3600)),
            Duration::from_secs(600)
        );
        assert_eq!(interval(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(interval(Duration::ZERO), Duration::from_secs(1));
    }
}
