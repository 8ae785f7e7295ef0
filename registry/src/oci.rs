//! What the OCI read side (routes/oci.rs, docs/protocol.md §7.11) finds by digest: the manifest and
//! config digests of every release, derived from the signed records and kept per package, and
//! the proof-bundle artifacts recently served as referrers.
//!
//! Records never change, so a package's derived digests only grow; a lookup that misses reads
//! the package's releases again only when the store holds more of them than were derived. Both
//! caches are bounded: past [`MAX_CACHED_RELEASES`] derived releases the package cache starts
//! over, past [`MAX_BUNDLE_CACHE_BYTES`] the oldest bundles go.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use gridreg_protocol::oci::{self, Blob, ReleaseArtifact, WasmKind};
use gridreg_protocol::{Digest, Note, PackageName, Record};

use crate::store::{Store, StoreError};

/// Most releases whose digests are kept in memory at once (about 250 bytes each).
pub const MAX_CACHED_RELEASES: usize = 200_000;
/// Most bytes of derived manifests and configs kept for reads by tag.
pub const MAX_ARTIFACT_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// Most bytes of bundle artifacts (manifests and layers) kept for by-digest reads.
pub const MAX_BUNDLE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// What a digest under a repository names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// The manifest of this version.
    Manifest(String),
    /// The config blob of this version.
    Config(String),
    /// The content of a release (the layer).
    Layer,
}

/// What a lookup of a digest in a repository found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Named),
    /// The package has releases; none of them names the digest.
    Missing,
    /// The package has no releases.
    NoPackage,
}

/// A release's OCI form with the version it is of.
#[derive(Debug, Clone)]
pub struct Derived {
    pub version: String,
    /// The content's digest: the one layer.
    pub layer: Digest,
    pub artifact: ReleaseArtifact,
}

/// Derives the OCI form of one stored release: its `version`, content `kind` (`component` or
/// `module`) and signed `record`.
pub fn derive(version: &str, kind: &str, record: &str) -> Result<Derived, StoreError> {
    let corrupt =
        |why: String| StoreError::Corrupt(format!("the stored record of version {version}: {why}"));
    let note = Note::parse(record.as_bytes()).map_err(|e| corrupt(e.to_string()))?;
    let Record::Release(release) = Record::parse(&note.text).map_err(|e| corrupt(e.to_string()))?
    else {
        return Err(corrupt("not a release record".into()));
    };
    let kind =
        WasmKind::parse(kind).ok_or_else(|| corrupt(format!("unknown content kind `{kind}`")))?;
    let author = note.signatures.first().map(|s| s.name.as_str());
    Ok(Derived {
        version: version.to_string(),
        layer: release.digest,
        artifact: oci::release_artifact(&release, author, kind),
    })
}

#[derive(Debug, Default)]
struct PackageDigests {
    releases: usize,
    by_digest: HashMap<Digest, Named>,
}

#[derive(Debug, Default)]
struct Artifacts {
    bytes: usize,
    by_release: HashMap<(String, String), Arc<ReleaseArtifact>>,
}

/// A bundle artifact: its manifest and its one layer.
#[derive(Debug)]
pub struct BundleArtifact {
    pub manifest: Blob,
    pub layer: Blob,
}

#[derive(Debug, Default)]
struct Bundles {
    bytes: usize,
    order: VecDeque<Digest>,
    /// Manifest digest → artifact (layer digests are looked up through `layers`).
    manifests: HashMap<Digest, (String, Arc<BundleArtifact>)>,
    layers: HashMap<Digest, (String, Arc<BundleArtifact>)>,
    /// Per repository, the newest bundle kept and the log size it proves: a referrers request
    /// at the same size reuses its layer instead of reading the chains again.
    newest: HashMap<String, (u64, Arc<BundleArtifact>)>,
}

/// The caches, shared by every request.
#[derive(Debug, Default)]
pub struct OciCache {
    packages: Mutex<(usize, HashMap<String, PackageDigests>)>,
    artifacts: Mutex<Artifacts>,
    bundles: Mutex<Bundles>,
}

impl OciCache {
    /// What `digest` names among the releases of `package`, reading the store only when it
    /// holds releases not derived yet.
    pub async fn lookup(
        &self,
        store: &Store,
        package: &PackageName,
        digest: Digest,
    ) -> Result<Lookup, StoreError> {
        let key = package.to_string();
        let known = {
            let guard = self.packages.lock().unwrap_or_else(|e| e.into_inner());
            guard
                .1
                .get(&key)
                .map(|p| (p.by_digest.get(&digest).cloned(), p.releases))
        };
        if let Some((Some(named), _)) = known {
            return Ok(Lookup::Found(named));
        }
        let count = store.versions(&key).await?.len();
        if count == 0 {
            return Ok(Lookup::NoPackage);
        }
        if known.is_some_and(|(_, n)| n == count) {
            return Ok(Lookup::Missing);
        }
        let rows = store.release_records(&key).await?;
        let mut fresh = PackageDigests {
            releases: rows.len(),
            by_digest: HashMap::with_capacity(rows.len() * 3),
        };
        for row in &rows {
            let d = derive(&row.version, &row.kind, &row.record)?;
            fresh.by_digest.insert(d.layer, Named::Layer);
            fresh.by_digest.insert(
                d.artifact.manifest.digest,
                Named::Manifest(d.version.clone()),
            );
            fresh
                .by_digest
                .insert(d.artifact.config.digest, Named::Config(d.version));
        }
        let found = fresh.by_digest.get(&digest).cloned();
        let mut guard = self.packages.lock().unwrap_or_else(|e| e.into_inner());
        let (total, map) = &mut *guard;
        if let Some(old) = map.remove(&key) {
            *total -= old.releases;
        }
        if *total + fresh.releases > MAX_CACHED_RELEASES {
            map.clear();
            *total = 0;
        }
        *total += fresh.releases;
        map.insert(key, fresh);
        Ok(found.map_or(Lookup::Missing, Lookup::Found))
    }

    /// The OCI form of `package@version`; `None` when no such release is stored. Releases
    /// never change, so a derived form is kept (within [`MAX_ARTIFACT_CACHE_BYTES`]).
    pub async fn artifact(
        &self,
        store: &Store,
        package: &str,
        version: &str,
    ) -> Result<Option<Arc<ReleaseArtifact>>, StoreError> {
        let key = (package.to_string(), version.to_string());
        {
            let a = self.artifacts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(found) = a.by_release.get(&key) {
                return Ok(Some(found.clone()));
            }
        }
        let Some(row) = store.release(package, version).await? else {
            return Ok(None);
        };
        let derived = Arc::new(derive(&row.row.version, &row.kind, &row.record)?.artifact);
        let size = derived.manifest.bytes.len() + derived.config.bytes.len();
        let mut a = self.artifacts.lock().unwrap_or_else(|e| e.into_inner());
        if a.bytes + size > MAX_ARTIFACT_CACHE_BYTES {
            a.by_release.clear();
            a.bytes = 0;
        }
        if a.by_release.insert(key, derived.clone()).is_none() {
            a.bytes += size;
        }
        Ok(Some(derived))
    }

    /// Keeps a bundle artifact served for `repository` so that its manifest and layer can be
    /// read by digest afterwards.
    pub fn keep_bundle(
        &self,
        repository: &str,
        size: u64,
        artifact: BundleArtifact,
    ) -> Arc<BundleArtifact> {
        let artifact = Arc::new(artifact);
        let mut b = self.bundles.lock().unwrap_or_else(|e| e.into_inner());
        let digest = artifact.manifest.digest;
        b.newest
            .insert(repository.to_string(), (size, artifact.clone()));
        if b.manifests.contains_key(&digest) {
            return artifact;
        }
        b.bytes += artifact.manifest.bytes.len() + artifact.layer.bytes.len();
        b.order.push_back(digest);
        b.layers.insert(
            artifact.layer.digest,
            (repository.to_string(), artifact.clone()),
        );
        b.manifests
            .insert(digest, (repository.to_string(), artifact.clone()));
        while b.bytes > MAX_BUNDLE_CACHE_BYTES && b.order.len() > 1 {
            let Some(old) = b.order.pop_front() else {
                break;
            };
            if let Some((_, a)) = b.manifests.remove(&old) {
                b.bytes -= a.manifest.bytes.len() + a.layer.bytes.len();
                if b.layers
                    .get(&a.layer.digest)
                    .is_some_and(|(_, l)| Arc::ptr_eq(l, &a))
                {
                    b.layers.remove(&a.layer.digest);
                }
                b.newest.retain(|_, (_, n)| !Arc::ptr_eq(n, &a));
            }
        }
        artifact
    }

    /// The layer of the newest bundle kept for `repository` if it proves log size `size`.
    pub fn newest_bundle_layer(&self, repository: &str, size: u64) -> Option<Blob> {
        let b = self.bundles.lock().unwrap_or_else(|e| e.into_inner());
        b.newest
            .get(repository)
            .filter(|(at, _)| *at == size)
            .map(|(_, a)| a.layer.clone())
    }

    /// A kept bundle manifest of `repository`.
    pub fn bundle_manifest(&self, repository: &str, digest: Digest) -> Option<Blob> {
        let b = self.bundles.lock().unwrap_or_else(|e| e.into_inner());
        b.manifests
            .get(&digest)
            .filter(|(r, _)| r == repository)
            .map(|(_, a)| a.manifest.clone())
    }

    /// A kept bundle layer of `repository`.
    pub fn bundle_layer(&self, repository: &str, digest: Digest) -> Option<Blob> {
        let b = self.bundles.lock().unwrap_or_else(|e| e.into_inner());
        b.layers
            .get(&digest)
            .filter(|(r, _)| r == repository)
            .map(|(_, a)| a.layer.clone())
    }
}
