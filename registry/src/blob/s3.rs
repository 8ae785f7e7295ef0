//! Blobs in an S3-compatible bucket (`gridreg serve --blobs s3://BUCKET?endpoint=...`) through
//! the `object_store` crate: AWS S3, MinIO, Garage, R2, s3s-fs.
//!
//! Layout: a blob is the object `sha256/<64 hex>`; nothing else under `sha256/` is ever written.
//! An upload is held in memory while the route hashes it; one that outgrows
//! [`MEMORY_UPLOAD_MAX`] goes on as a multipart upload to a random `tmp/upload-<hex>` key. Only
//! after the route has checked the digest does [`BlobWriter::commit`] put the bytes (or copy the
//! temporary object) under `sha256/<hex>`, so a reader never sees a blob under a name its bytes do
//! not hash to; a rejected or abandoned upload is dropped (its multipart upload aborted, its
//! temporary object deleted). Blobs are immutable, so replicas sharing a bucket never disagree
//! and each may keep small popular blobs in memory.

use std::io;
use std::sync::Arc;

use axum::body::Bytes;
use gridreg_protocol::Digest;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayloadMut, WriteMultipart};

use super::{
    BlobError, BlobSource, BlobStore, BlobWriter, HotBlobs, ObjectBlob, S3Credentials, object_error,
};
use crate::paths::BlobDir;
use crate::store::BoxFuture;

/// Uploads up to this size are buffered in memory and stored with one `PUT`; larger ones stream
/// to the bucket as a multipart upload of [`PART_SIZE`] parts.
pub const MEMORY_UPLOAD_MAX: usize = 8 * 1024 * 1024;
/// Multipart part size (S3's minimum is 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

fn key(digest: &Digest) -> ObjectPath {
    ObjectPath::from(BlobDir::object_key(digest))
}

/// Blobs in an S3-compatible bucket.
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    hot: HotBlobs,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl S3BlobStore {
    /// Connects to `bucket` (at `endpoint`, e.g. `http://127.0.0.1:9000`, or AWS S3 when `None`)
    /// with credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and the other
    /// standard `AWS_*` variables) unless `credentials` are given, and checks that the bucket
    /// answers.
    pub async fn open(
        bucket: &str,
        endpoint: Option<&str>,
        region: Option<&str>,
        credentials: Option<&S3Credentials>,
    ) -> Result<Self, BlobError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(c) = credentials {
            builder = builder
                .with_access_key_id(&c.access_key_id)
                .with_secret_access_key(&c.secret_access_key);
        }
        if let Some(e) = endpoint {
            builder = builder
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = region {
            builder = builder.with_region(r);
        }
        let s3 = builder
            .build()
            .map_err(object_error(format!("configuring bucket {bucket}")))?;
        let store = Self {
            store: Arc::new(s3),
            bucket: bucket.to_string(),
            hot: HotBlobs::default(),
        };
        // Fail at start-up, not at the first upload, when the bucket or credentials are wrong.
        store
            .store
            .list_with_delimiter(Some(&ObjectPath::from("sha256")))
            .await
            .map_err(object_error(format!(
                "listing bucket {bucket}{}",
                endpoint.map(|e| format!(" at {e}")).unwrap_or_default()
            )))?;
        Ok(store)
    }

    /// The object store underneath (tests look inside the bucket through it).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }
}

enum Upload {
    Memory(PutPayloadMut),
    Multipart {
        upload: WriteMultipart,
        tmp: ObjectPath,
    },
    Done,
}

struct S3Writer {
    store: Arc<dyn ObjectStore>,
    upload: Upload,
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        // An abandoned or rejected upload: nothing was written under `sha256/`; give the
        // bucket back the parts (best effort).
        if let Upload::Multipart { upload, tmp } = std::mem::replace(&mut self.upload, Upload::Done)
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let store = self.store.clone();
            handle.spawn(async move {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(key = %tmp, error = %e, "aborting an abandoned upload");
                }
                let _ = store.delete(&tmp).await;
            });
        }
    }
}

fn finished() -> BlobError {
    BlobError::new("upload", io::Error::other("upload already finished"))
}

fn random_tmp_key() -> ObjectPath {
    let mut raw = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    ObjectPath::from(format!("tmp/upload-{}", hex::encode(raw)))
}

impl BlobWriter for S3Writer {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            match &mut self.upload {
                Upload::Memory(buf) if buf.content_length() + chunk.len() <= MEMORY_UPLOAD_MAX => {
                    buf.extend_from_slice(chunk);
                    Ok(())
                }
                Upload::Memory(buf) => {
                    let tmp = random_tmp_key();
                    let started =
                        self.store
                            .put_multipart(&tmp)
                            .await
                            .map_err(object_error(format!(
                                "starting a multipart upload to {tmp}"
                            )))?;
                    let mut upload = WriteMultipart::new_with_chunk_size(started, PART_SIZE);
                    for part in std::mem::take(buf).freeze().iter() {
                        upload.put(part.clone());
                    }
                    upload.write(chunk);
                    self.upload = Upload::Multipart { upload, tmp };
                    Ok(())
                }
                Upload::Multipart { upload, tmp } => {
                    // At most two parts in flight per upload bounds its memory.
                    upload
                        .wait_for_capacity(2)
                        .await
                        .map_err(object_error(format!("uploading to {tmp}")))?;
                    upload.write(chunk);
                    Ok(())
                }
                Upload::Done => Err(finished()),
            }
        })
    }

    fn commit(mut self: Box<Self>, digest: Digest) -> BoxFuture<'static, Result<(), BlobError>> {
        Box::pin(async move {
            let dest = key(&digest);
            match std::mem::replace(&mut self.upload, Upload::Done) {
                Upload::Memory(buf) => self
                    .store
                    .put(&dest, buf.freeze())
                    .await
                    .map(|_| ())
                    .map_err(object_error(format!("storing {dest}"))),
                Upload::Multipart { upload, tmp } => {
                    let result = async {
                        upload
                            .finish()
                            .await
                            .map_err(object_error(format!("finishing the upload to {tmp}")))?;
                        // The checked bytes get their content name only now, in one copy.
                        self.store
                            .copy(&tmp, &dest)
                            .await
                            .map_err(object_error(format!("copying {tmp} to {dest}")))
                    }
                    .await;
                    if let Err(e) = self.store.delete(&tmp).await {
                        tracing::warn!(key = %tmp, error = %e, "deleting a finished upload");
                    }
                    result
                }
                Upload::Done => Err(finished()),
            }
        })
    }
}

impl BlobStore for S3BlobStore {
    fn serves_static(&self) -> bool {
        true
    }

    fn put_static<'a>(
        &'a self,
        path: &'a str,
        bytes: Bytes,
        content_type: &'static str,
        cache_control: &'static str,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            use object_store::{Attribute, Attributes, PutOptions};
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, content_type.into());
            attributes.insert(Attribute::CacheControl, cache_control.into());
            self.store
                .put_opts(
                    &ObjectPath::from(path),
                    bytes.into(),
                    PutOptions::from(attributes),
                )
                .await
                .map_err(object_error(format!(
                    "writing {path} to bucket {}",
                    self.bucket
                )))?;
            Ok(())
        })
    }

    fn get_static<'a>(&'a self, path: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, BlobError>> {
        Box::pin(self.fetch_key(ObjectPath::from(path)))
    }

    fn create(&self) -> BoxFuture<'_, Result<Box<dyn BlobWriter>, BlobError>> {
        Box::pin(async move {
            Ok(Box::new(S3Writer {
                store: self.store.clone(),
                upload: Upload::Memory(PutPayloadMut::new()),
            }) as Box<dyn BlobWriter>)
        })
    }

    fn get(&self, digest: Digest) -> BoxFuture<'_, Result<Option<BlobSource>, BlobError>> {
        Box::pin(async move {
            let key = key(&digest);
            match self.store.head(&key).await {
                Ok(meta) => Ok(Some(BlobSource::Object(ObjectBlob {
                    store: self.store.clone(),
                    key,
                    size: meta.size,
                }))),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(object_error(format!("looking up {key}"))(e)),
            }
        })
    }

    fn read(&self, digest: Digest) -> BoxFuture<'_, Result<Option<Vec<u8>>, BlobError>> {
        Box::pin(async move { Ok(self.fetch(digest).await?.map(|b| Vec::from(b.as_ref()))) })
    }

    fn read_shared(&self, digest: Digest) -> BoxFuture<'_, Result<Option<Bytes>, BlobError>> {
        Box::pin(async move {
            if let Some(b) = self.hot.get(&digest) {
                return Ok(Some(b));
            }
            let Some(bytes) = self.fetch(digest).await? else {
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
            let listed = self.blobs().await?;
            let before = before
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            Ok(listed
                .into_iter()
                .filter(|o| o.last_modified.timestamp() < before)
                .filter_map(|o| {
                    let name = o.location.filename()?;
                    Digest::parse(&format!("sha256:{name}")).ok()
                })
                .collect())
        })
    }

    fn delete(&self, digest: Digest) -> BoxFuture<'_, Result<(), BlobError>> {
        Box::pin(async move {
            self.hot.remove(&digest);
            let key = key(&digest);
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(object_error(format!("deleting {key}"))(e)),
            }
        })
    }

    fn count(&self) -> BoxFuture<'_, Result<u64, BlobError>> {
        Box::pin(async move { Ok(self.blobs().await?.len() as u64) })
    }
}

impl S3BlobStore {
    /// Every blob's metadata: every page of `sha256/` (the client follows continuation tokens);
    /// blob keys have no further `/`, so they are all direct children.
    async fn blobs(&self) -> Result<Vec<object_store::ObjectMeta>, BlobError> {
        let prefix = ObjectPath::from("sha256");
        self.store
            .list_with_delimiter(Some(&prefix))
            .await
            .map(|listed| listed.objects)
            .map_err(object_error(format!("listing {prefix}")))
    }

    async fn fetch(&self, digest: Digest) -> Result<Option<Bytes>, BlobError> {
        self.fetch_key(key(&digest)).await
    }

    async fn fetch_key(&self, key: ObjectPath) -> Result<Option<Bytes>, BlobError> {
        let got = match self.store.get(&key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(object_error(format!("reading {key}"))(e)),
        };
        got.bytes()
            .await
            .map(Some)
            .map_err(object_error(format!("reading {key}")))
    }
}
