//! Content-addressed blob storage: the [`BlobStore`] seam and where blobs live ([`BlobLocation`],
//! `gridreg serve --blobs`). Files under a directory ([`files`]) are the default; an
//! S3-compatible bucket ([`s3`]) serves several replicas. Callers hash what
//! they stream in and only commit a blob whose digest they checked; the store never trusts a
//! name it did not verify.

pub mod files;
pub mod s3;

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use gridreg_protocol::Digest;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::store::BoxFuture;

/// `Cache-Control` for whatever is named by its content (blobs, manifests by digest, full
/// tiles): the bytes behind such a name can never change, so caches may keep them for a year.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Why a blob operation failed. Always an internal error: inputs are checked before they get here.
#[derive(Debug, thiserror::Error)]
#[error("blob store: {context}: {source}")]
pub struct BlobError {
    context: String,
    #[source]
    source: io::Error,
}

impl BlobError {
    pub(crate) fn new(context: impl Into<String>, source: io::Error) -> Self {
        Self {
            context: context.into(),
            source,
        }
    }
}

fn ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> BlobError {
    let context = context.into();
    move |source| BlobError { context, source }
}

/// Where the bytes of a stored blob can be read from.
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// A local file, served with `Range` support straight from disk.
    File { path: PathBuf, size: u64 },
    /// An object in an object store, streamed (whole or a range) from there.
    Object(ObjectBlob),
}

impl BlobSource {
    /// The blob's length in bytes.
    pub fn size(&self) -> u64 {
        match self {
            BlobSource::File { size, .. } => *size,
            BlobSource::Object(o) => o.size(),
        }
    }
}

/// Where a registry keeps its blobs (`gridreg serve --blobs URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// `file://DIR`: files under `DIR/sha256/` (the default is `DATA/blobs`).
    Dir(PathBuf),
    /// `s3://BUCKET?endpoint=URL&region=R`: an S3-compatible bucket (AWS S3, MinIO, Garage,
    /// R2). Credentials come from the standard `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// environment variables; without `endpoint`, AWS S3 itself.
    S3 {
        bucket: String,
        endpoint: Option<String>,
        region: Option<String>,
        /// Explicit credentials; `None` (what [`BlobLocation::parse`] gives) reads the
        /// standard `AWS_*` environment variables.
        credentials: Option<S3Credentials>,
    },
}

/// An access key and its secret (the secret is never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl BlobLocation {
    /// Parses `file://DIR` or `s3://BUCKET[?endpoint=URL][&region=R]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(dir) = s.strip_prefix("file://") {
            if dir.is_empty() {
                return Err("expected a directory after `file://`, found nothing".into());
            }
            return Ok(BlobLocation::Dir(PathBuf::from(dir)));
        }
        let Some(rest) = s.strip_prefix("s3://") else {
            return Err(format!(
                "expected `file://DIR` or `s3://BUCKET?endpoint=URL&region=R`, found `{s}`"
            ));
        };
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
        // S3 bucket naming rules: 3-63 of lowercase letters, digits, `.` and `-`.
        if bucket.len() < 3
            || bucket.len() > 63
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return Err(format!(
                "expected a bucket name (3-63 of a-z, 0-9, `.`, `-`) after `s3://`, found `{bucket}`"
            ));
        }
        let (mut endpoint, mut region) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v)?;
            if v.is_empty() {
                return Err(format!("expected a value for `{k}` in `{s}`, found none"));
            }
            match k {
                "endpoint" => {
                    if !(v.starts_with("http://") || v.starts_with("https://")) {
                        return Err(format!(
                            "expected an http:// or https:// endpoint, found `{v}`"
                        ));
                    }
                    endpoint = Some(v);
                }
                "region" => region = Some(v),
                other => {
                    return Err(format!(
                        "expected the parameters `endpoint` and `region`, found `{other}`"
                    ));
                }
            }
        }
        Ok(BlobLocation::S3 {
            bucket: bucket.to_string(),
            endpoint,
            region,
            credentials: None,
        })
    }
}

impl std::fmt::Display for BlobLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlobLocation::Dir(d) => write!(f, "file://{}", d.display()),
            BlobLocation::S3 {
                bucket, endpoint, ..
            } => match endpoint {
                Some(e) => write!(f, "s3://{bucket} at {e}"),
                None => write!(f, "s3://{bucket}"),
            },
        }
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("expected `%` and two hex digits in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("expected UTF-8 in `{s}`"))
}

/// An upload in progress. Dropping it without [`BlobWriter::commit`] discards the bytes.
pub trait BlobWriter: Send {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>>;
    /// Makes the bytes durable under `digest`, which the caller has checked against them.
    fn commit(self: Box<Self>, digest: Digest) -> BoxFuture<'static, Result<(), BlobError>>;
}

/// Blob storage. The file implementation is the default; object storage can be a second one.
pub trait BlobStore: Send + Sync + 'static {
    /// Starts an upload.
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn BlobWriter>, BlobError>>;
    /// Where a blob is, or `None` if it was never stored.
    fn get(&self, digest: Digest) -> BoxFuture<'_, Result<Option<BlobSource>, BlobError>>;
    /// The whole blob in memory (for the audit at publish time).
    fn read(&self, digest: Digest) -> BoxFuture<'_, Result<Option<Vec<u8>>, BlobError>>;
    /// How many blobs are stored (tests and metrics).
    fn count(&self) -> BoxFuture<'_, Result<u64, BlobError>>;
    /// The blobs last written before `before`, for the collector of unnamed uploads (`gc`).
    fn written_before(
        &self,
        before: std::time::SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Digest>, BlobError>>;
    /// Deletes a blob; deleting one that is not there is not an error.
    fn delete(&self, digest: Digest) -> BoxFuture<'_, Result<(), BlobError>>;
    /// The whole blob as shared bytes, for serving downloads. A store may keep popular small
    /// blobs in memory; blobs are immutable, so a kept copy never goes stale.
    fn read_shared(&self, digest: Digest) -> BoxFuture<'_, Result<Option<Bytes>, BlobError>> {
        Box::pin(async move { Ok(self.read(digest).await?.map(Bytes::from)) })
    }
    /// Whether this store can hold the log's static resources (tiles, entry bundles and the
    /// checkpoint, docs/protocol.md §7.12.5) for a CDN or a static host to serve.
    fn serves_static(&self) -> bool {
        false
    }
    /// Writes one static resource at `path` (`checkpoint`, `tile/0/x001/234`, ...) with the
    /// given `Cache-Control`; only called when [`BlobStore::serves_static`].
    fn put_static<'a>(
        &'a self,
        path: &'a str,
        bytes: Bytes,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        let _ = (path, bytes, content_type, cache_control);
        Box::pin(async { Ok(()) })
    }
    /// Reads back a static resource written by [`BlobStore::put_static`].
    fn get_static<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BlobError>> {
        let _ = path;
        Box::pin(async { Ok(None) })
    }
}

/// Largest blob kept in memory for downloads.
pub const HOT_MAX_BLOB: u64 = 4 * 1024 * 1024;
/// Most memory the kept blobs may use together.
pub const HOT_BUDGET: usize = 64 * 1024 * 1024;

/// Small blobs kept in memory after a download, so popular components are served without a
/// disk read per request. Bounded by [`HOT_BUDGET`]; the least recently served blob goes first.
#[derive(Debug, Default)]
pub(crate) struct HotBlobs {
    inner: Mutex<HotInner>,
}

#[derive(Debug, Default)]
struct HotInner {
    blobs: HashMap<Digest, (Bytes, u64)>,
    used: usize,
    clock: u64,
}

impl HotBlobs {
    pub(crate) fn get(&self, digest: &Digest) -> Option<Bytes> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        inner.blobs.get_mut(digest).map(|(b, used)| {
            *used = now;
            b.clone()
        })
    }

    pub(crate) fn remove(&self, digest: &Digest) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((b, _)) = inner.blobs.remove(digest) {
            inner.used -= b.len();
        }
    }

    pub(crate) fn put(&self, digest: Digest, bytes: Bytes) {
        if bytes.len() as u64 > HOT_MAX_BLOB {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.blobs.contains_key(&digest) {
            return;
        }
        while inner.used + bytes.len() > HOT_BUDGET {
            let Some(oldest) = inner
                .blobs
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(d, _)| *d)
            else {
                break;
            };
            if let Some((b, _)) = inner.blobs.remove(&oldest) {
                inner.used -= b.len();
            }
        }
        inner.clock += 1;
        let now = inner.clock;
        inner.used += bytes.len();
        inner.blobs.insert(digest, (bytes, now));
    }
}

pub(crate) fn object_error(
    context: impl Into<String>,
) -> impl FnOnce(object_store::Error) -> BlobError {
    let context = context.into();
    move |e| {
        let kind = match &e {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            _ => io::ErrorKind::Other,
        };
        BlobError::new(context, io::Error::new(kind, e.to_string()))
    }
}

/// A blob stored as an object: where it is and how long it is.
#[derive(Clone)]
pub struct ObjectBlob {
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    size: u64,
}

impl std::fmt::Debug for ObjectBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBlob")
            .field("key", &self.key.as_ref())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ObjectBlob {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Streams the whole object, or `range` of it (which the caller has checked lies within
    /// [`ObjectBlob::size`]), straight from the bucket.
    pub async fn body(&self, range: Option<Range<u64>>) -> Result<Body, BlobError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.key, options)
            .await
            .map_err(object_error(format!("reading {}", self.key)))?;
        Ok(Body::from_stream(got.into_stream()))
    }
}
