//! Content-addressed blob storage: the [`BlobStore`] seam, where blobs live ([`BlobLocation`],
//! `gridreg serve --blobs`), and the file implementation under `DIR/sha256/ab/<hex>` (by default
//! `DATA/blobs`). The object-storage implementation is in [`crate::blob_s3`]. Callers hash what
//! they stream in and only commit a blob whose digest they checked; the store never trusts a
//! name it did not verify.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;

use gridreg_protocol::Digest;
use tokio::fs;
use tokio::io::AsyncWriteExt as _;

use crate::blob_s3::ObjectBlob;
use crate::paths::{BlobDir, DataDir};
use crate::store::BoxFuture;

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
    /// The whole blob as shared bytes, for serving downloads. A store may keep popular small
    /// blobs in memory; blobs are immutable, so a kept copy never goes stale.
    fn read_shared(&self, digest: Digest) -> BoxFuture<'_, Result<Option<Bytes>, BlobError>> {
        Box::pin(async move { Ok(self.read(digest).await?.map(Bytes::from)) })
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

/// Blobs as files under a directory (by default `DATA/blobs`).
#[derive(Debug)]
pub struct FileBlobStore {
    dir: BlobDir,
    next_tmp: AtomicU64,
    hot: HotBlobs,
}

impl FileBlobStore {
    /// Opens the blobs under `DATA/blobs` (see [`FileBlobStore::open_dir`]).
    pub async fn open(dir: DataDir) -> Result<Self, BlobError> {
        Self::open_dir(dir.blob_dir()).await
    }

    /// Creates the blob directories and clears uploads a previous process left half-written.
    pub async fn open_dir(dir: BlobDir) -> Result<Self, BlobError> {
        let tmp = dir.tmp();
        if fs::try_exists(&tmp).await.unwrap_or(false) {
            fs::remove_dir_all(&tmp)
                .await
                .map_err(ctx(format!("clearing {}", tmp.display())))?;
        }
        fs::create_dir_all(&tmp)
            .await
            .map_err(ctx(format!("creating {}", tmp.display())))?;
        fs::create_dir_all(dir.sha256())
            .await
            .map_err(ctx(format!("creating {}", dir.sha256().display())))?;
        Ok(Self {
            dir,
            next_tmp: AtomicU64::new(0),
            hot: HotBlobs::default(),
        })
    }
}

struct FileWriter {
    file: Option<fs::File>,
    tmp: PathBuf,
    dir: BlobDir,
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            // An abandoned upload: best effort, the temp directory is also cleared at start-up.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

async fn sync_dir(path: PathBuf) -> Result<(), BlobError> {
    let what = format!("syncing directory {}", path.display());
    tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_all())
        .await
        .map_err(|e| io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(ctx(what))
}

impl BlobWriter for FileWriter {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let Some(file) = self.file.as_mut() else {
                return Err(BlobError {
                    context: "writing".into(),
                    source: io::Error::other("upload already finished"),
                });
            };
            file.write_all(chunk).await.map_err(ctx("writing upload"))
        })
    }

    fn commit(mut self: Box<Self>, digest: Digest) -> BoxFuture<'static, Result<(), BlobError>> {
        Box::pin(async move {
            let Some(mut file) = self.file.take() else {
                return Err(BlobError {
                    context: "committing".into(),
                    source: io::Error::other("upload already finished"),
                });
            };
            let tmp = self.tmp.clone();
            let result = async {
                file.flush().await.map_err(ctx("flushing upload"))?;
                // Durability step 1: the bytes are on disk before the name points at them, so a
                // crash never leaves a blob name over a short file.
                file.sync_all().await.map_err(ctx("syncing upload"))?;
                drop(file);
                let dest = self.dir.blob(&digest);
                let parent = dest.parent().map(PathBuf::from).unwrap_or_default();
                fs::create_dir_all(&parent)
                    .await
                    .map_err(ctx(format!("creating {}", parent.display())))?;
                // Step 2: the rename is atomic; a crash before it leaves only a temp file that
                // start-up deletes, and the client retries the idempotent upload.
                fs::rename(&tmp, &dest)
                    .await
                    .map_err(ctx(format!("renaming into {}", dest.display())))?;
                // Step 3: the directory entry itself is made durable.
                sync_dir(parent).await
            }
            .await;
            if result.is_err() {
                let _ = fs::remove_file(&tmp).await;
            }
            result
        })
    }
}

impl BlobStore for FileBlobStore {
    fn create(&self) -> BoxFuture<'_, Result<Box<dyn BlobWriter>, BlobError>> {
        Box::pin(async move {
            let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
            let tmp = self
                .dir
                .tmp()
                .join(format!("upload-{}-{n}", std::process::id()));
            let file = fs::File::create(&tmp)
                .await
                .map_err(ctx(format!("creating {}", tmp.display())))?;
            Ok(Box::new(FileWriter {
                file: Some(file),
                tmp,
                dir: self.dir.clone(),
            }) as Box<dyn BlobWriter>)
        })
    }

    fn get(&self, digest: Digest) -> BoxFuture<'_, Result<Option<BlobSource>, BlobError>> {
        Box::pin(async move {
            let path = self.dir.blob(&digest);
            match fs::metadata(&path).await {
                Ok(m) => Ok(Some(BlobSource::File {
                    path,
                    size: m.len(),
                })),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ctx(format!("reading {}", path.display()))(e)),
            }
        })
    }

    fn read(&self, digest: Digest) -> BoxFuture<'_, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move {
            let path = self.dir.blob(&digest);
            match fs::read(&path).await {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ctx(format!("reading {}", path.display()))(e)),
            }
        })
    }

    fn read_shared(&self, digest: Digest) -> BoxFuture<'_, Result<Option<Bytes>, BlobError>> {
        Box::pin(async move {
            if let Some(b) = self.hot.get(&digest) {
                return Ok(Some(b));
            }
            let Some(bytes) = self.read(digest).await?.map(Bytes::from) else {
                return Ok(None);
            };
            self.hot.put(digest, bytes.clone());
            Ok(Some(bytes))
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, BlobError>> {
        Box::pin(async move {
            let root = self.dir.sha256();
            tokio::task::spawn_blocking(move || -> io::Result<u64> {
                let mut n = 0;
                for shard in std::fs::read_dir(&root)? {
                    let shard = shard?;
                    if shard.file_type()?.is_dir() {
                        n += std::fs::read_dir(shard.path())?.count() as u64;
                    }
                }
                Ok(n)
            })
            .await
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(ctx("counting blobs"))
        })
    }
}
