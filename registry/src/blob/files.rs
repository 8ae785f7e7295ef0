//! Blobs as files under a directory (by default `DATA/blobs`), at `DIR/sha256/ab/<hex>`. An
//! upload is written to a temporary file, fsynced, and renamed into place only after the route
//! has checked its digest.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use gridreg_protocol::Digest;
use tokio::fs;
use tokio::io::AsyncWriteExt as _;

use super::{BlobError, BlobSource, BlobStore, BlobWriter, HotBlobs, ctx};
use crate::paths::{BlobDir, DataDir};
use crate::store::BoxFuture;

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

    fn written_before(
        &self,
        before: std::time::SystemTime,
    ) -> BoxFuture<'_, Result<Vec<Digest>, BlobError>> {
        Box::pin(async move {
            let root = self.dir.sha256();
            tokio::task::spawn_blocking(move || -> io::Result<Vec<Digest>> {
                let mut out = Vec::new();
                let shards = match std::fs::read_dir(&root) {
                    Ok(s) => s,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(e),
                };
                for shard in shards {
                    let shard = shard?;
                    if !shard.file_type()?.is_dir() {
                        continue;
                    }
                    for blob in std::fs::read_dir(shard.path())? {
                        let blob = blob?;
                        // Only names this store writes: 64 lowercase hex.
                        let Some(digest) = blob
                            .file_name()
                            .to_str()
                            .and_then(|n| Digest::parse(&format!("sha256:{n}")).ok())
                        else {
                            continue;
                        };
                        if blob.metadata()?.modified()? < before {
                            out.push(digest);
                        }
                    }
                }
                Ok(out)
            })
            .await
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(ctx(format!("listing {}", self.dir.sha256().display())))
        })
    }

    fn delete(&self, digest: Digest) -> BoxFuture<'_, Result<(), BlobError>> {
        Box::pin(async move {
            self.hot.remove(&digest);
            let path = self.dir.blob(&digest);
            match fs::remove_file(&path).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(ctx(format!("deleting {}", path.display()))(e)),
            }
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
