//! Every on-disk location under the data directory, in one place, so no other module builds a
//! path by hand and no path is ever derived from unvalidated input.

use std::path::{Path, PathBuf};

use gridreg_protocol::Digest;

/// The layout of a data directory (`gridreg serve --data DIR`).
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database holding metadata, the log entries and the stored hashes.
    pub fn database(&self) -> PathBuf {
        self.root.join("registry.db")
    }

    /// The log's signer key (mode 0600), generated on first start.
    pub fn log_key(&self) -> PathBuf {
        self.root.join("log.key")
    }

    /// The default blob directory, `DATA/blobs`.
    pub fn blob_dir(&self) -> BlobDir {
        BlobDir::new(self.root.join("blobs"))
    }

    /// The root of the content-addressed blob tree.
    pub fn blobs(&self) -> PathBuf {
        self.blob_dir().sha256()
    }

    /// Where uploads are written before they are checked and renamed into place.
    pub fn blob_tmp(&self) -> PathBuf {
        self.blob_dir().tmp()
    }

    /// `blobs/sha256/ab/<64 hex>` for a digest (see [`BlobDir::blob`]).
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().blob(digest)
    }
}

/// The layout of a blob directory (`DATA/blobs`, or `gridreg serve --blobs file://DIR`).
#[derive(Debug, Clone)]
pub struct BlobDir {
    root: PathBuf,
}

impl BlobDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root of the content-addressed blob tree.
    pub fn sha256(&self) -> PathBuf {
        self.root.join("sha256")
    }

    /// Where uploads are written before they are checked and renamed into place. It sits on the
    /// same file system as the blobs so the rename is atomic.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `sha256/ab/<64 hex>` for a digest. A [`Digest`] is 32 bytes, so the hex is always 64
    /// lowercase hex characters and the path cannot escape the blob tree.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        let hex = hex::encode(digest.0);
        self.sha256().join(&hex[..2]).join(hex)
    }

    /// The object-store key of a blob: `sha256/<64 hex>` (hex only, like [`BlobDir::blob`]).
    pub fn object_key(digest: &Digest) -> String {
        format!("sha256/{}", hex::encode(digest.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn digests_in_paths_are_hex_only() {
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let dir = DataDir::new("/data");
        assert_eq!(
            dir.blob(&d),
            PathBuf::from(format!("/data/blobs/sha256/ab/{}", "ab".repeat(32)))
        );
        for bad in [
            "sha256:../../etc/passwd".to_string(),
            format!("sha256:{}", "AB".repeat(32)),
            format!("sha512:{}", "ab".repeat(32)),
            format!("sha256:{}/", "ab".repeat(32)),
            format!("sha256:{}", "ab".repeat(31)),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }
}
