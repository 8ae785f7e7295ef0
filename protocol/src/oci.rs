//! The OCI form of a release (docs/protocol.md §7.11): the image manifest and config that OCI
//! clients (wkg, wash, spin, oras, skopeo) pull, in the CNCF "Wasm OCI Artifact" layout.
//!
//! Both are derived from the signed release record alone, byte for byte: fields in a fixed
//! order, compact JSON, no clock but the record's own `time`. So every replica and every restart
//! serves the same manifest digest, and a client holding the verified record re-derives it.

use serde::Serialize;

use crate::record::{Digest, Release};

/// Media type of an OCI image manifest.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index (the referrers answer).
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of the Wasm artifact's config blob.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Media type of the one layer: the component or module bytes.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Artifact type, and layer media type, of a release's proof bundle served as a referrer.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.gridreg.bundle.v1+json";
/// Media type of the empty config an artifact without a config names.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The empty config's bytes.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// What the one layer holds: the config's `os` depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A component: `os` is `wasip2` and the config lists its imports and exports.
    Component,
    /// A core module: `os` is `wasip1` and the config has no `component`.
    Module,
}

impl WasmKind {
    /// From the first eight bytes of the content (magic and version / layer fields), `None` if
    /// they are not WebAssembly's.
    pub fn of(header: &[u8]) -> Option<Self> {
        match header.get(..8)? {
            [0, b'a', b's', b'm', 1, 0, 0, 0] => Some(Self::Module),
            [0, b'a', b's', b'm', _, _, 1, 0] => Some(Self::Component),
            _ => None,
        }
    }

    /// The store's name for it (`component` or `module`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "component" => Some(Self::Component),
            "module" => Some(Self::Module),
            _ => None,
        }
    }
}

/// A blob an OCI manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations, serialised as a JSON object in this order.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "annotation_map"
    )]
    pub annotations: Option<Vec<(String, String)>>,
}

fn annotation_map<S: serde::Serializer>(
    list: &Option<Vec<(String, String)>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    let list = list.as_deref().unwrap_or_default();
    let mut m = s.serialize_map(Some(list.len()))?;
    for (k, v) in list {
        m.serialize_entry(k, v)?;
    }
    m.end()
}

/// Bytes with their digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Blob {
    /// `bytes` with their digest.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self {
            digest: Digest::of(&bytes),
            bytes,
        }
    }

    /// The descriptor of this blob with `media_type`.
    pub fn descriptor(&self, media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: self.digest,
            size: self.bytes.len() as u64,
            artifact_type: None,
            annotations: None,
        }
    }
}

/// A release in OCI form: the manifest (what a tag names) and its config blob. The layer is the
/// release's content, named by the record's digest and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseArtifact {
    pub manifest: Blob,
    pub config: Blob,
}

/// The OCI repository of a package: `ns:name` is `ns/name`.
pub fn repository(package: &crate::PackageName) -> String {
    format!("{}/{}", package.namespace(), package.name())
}

// Field order below is the byte order of the JSON: part of the format, do not reorder.

#[derive(Serialize)]
struct Config<'a> {
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    architecture: &'static str,
    os: &'static str,
    #[serde(rename = "layerDigests")]
    layer_digests: [Digest; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<ComponentInfo<'a>>,
}

#[derive(Serialize)]
struct ComponentInfo<'a> {
    exports: &'a [String],
    imports: &'a [String],
    target: Option<&'a str>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    #[serde(rename = "artifactType", skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'static str>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a Descriptor>,
    annotations: Annotations<'a>,
}

/// Annotations as a JSON object in the order given.
struct Annotations<'a>(Vec<(&'static str, &'a str)>);

impl Serialize for Annotations<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

fn json(value: &impl Serialize) -> Vec<u8> {
    // Serialising these plain structs cannot fail (no maps with non-string keys, no I/O).
    serde_json::to_vec(value).unwrap_or_default()
}

/// The manifest and config of `release`, whose note was signed first by `author` (the first
/// signature line's key name), holding content of `kind`.
pub fn release_artifact(
    release: &Release,
    author: Option<&str>,
    kind: WasmKind,
) -> ReleaseArtifact {
    let created = release.time.to_string();
    let config = Blob::new(json(&Config {
        created: created.clone(),
        author,
        architecture: "wasm",
        os: match kind {
            WasmKind::Component => "wasip2",
            WasmKind::Module => "wasip1",
        },
        layer_digests: [release.digest],
        component: (kind == WasmKind::Component).then_some(ComponentInfo {
            exports: &release.exports,
            imports: &release.imports,
            target: None,
        }),
    }));
    let title = format!("{}.wasm", release.package.name());
    let version = release.version.to_string();
    let package = release.package.to_string();
    let layer = Descriptor {
        media_type: WASM_LAYER_MEDIA_TYPE.to_string(),
        digest: release.digest,
        size: release.size,
        artifact_type: None,
        annotations: Some(vec![("org.opencontainers.image.title".to_string(), title)]),
    };
    let manifest = Blob::new(json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        artifact_type: None,
        config: config.descriptor(WASM_CONFIG_MEDIA_TYPE),
        layers: vec![layer],
        subject: None,
        annotations: Annotations(vec![
            ("org.opencontainers.image.created", &created),
            ("org.opencontainers.image.version", &version),
            ("dev.gridreg.package", &package),
        ]),
    }));
    ReleaseArtifact { manifest, config }
}

/// The manifest of a proof bundle artifact whose one layer is `bundle` (docs/protocol.md §7.11.4),
/// referring to the release manifest `subject`.
pub fn bundle_manifest(bundle: &Blob, subject: &Blob, checkpoint_size: u64) -> Blob {
    let size = checkpoint_size.to_string();
    Blob::new(json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE,
        artifact_type: Some(BUNDLE_MEDIA_TYPE),
        config: Blob::new(EMPTY_CONFIG.to_vec()).descriptor(EMPTY_MEDIA_TYPE),
        layers: vec![bundle.descriptor(BUNDLE_MEDIA_TYPE)],
        subject: Some(&subject.descriptor(MANIFEST_MEDIA_TYPE)),
        annotations: Annotations(vec![("dev.gridreg.checkpoint.size", &size)]),
    }))
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: &'a [Descriptor],
}

/// An image index listing `manifests` (the referrers answer).
pub fn index(manifests: &[Descriptor]) -> Vec<u8> {
    json(&Index {
        schema_version: 2,
        media_type: INDEX_MEDIA_TYPE,
        manifests,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::Record;

    fn release() -> Release {
        let body = format!(
            "gridreg/release/v2\npackage acme:hello\nprev none\nversion 1.0.0\ndigest sha256:{}\nsize 5\n\
             time 2026-11-21T19:57:00Z\nimport wasi:cli/stdout@0.2.6\nexport wasi:cli/run@0.2.6\n",
            "ab".repeat(32)
        );
        match Record::parse(&body).unwrap() {
            Record::Release(r) => r,
            _ => unreachable!("the body is a release"),
        }
    }

    #[test]
    fn the_config_and_manifest_are_these_bytes() {
        let a = release_artifact(&release(), Some("alice"), WasmKind::Component);
        let config = format!(
            r#"{{"created":"2026-11-21T19:57:00Z","author":"alice","architecture":"wasm","os":"wasip2","layerDigests":["sha256:{ab}"],"component":{{"exports":["wasi:cli/run@0.2.6"],"imports":["wasi:cli/stdout@0.2.6"],"target":null}}}}"#,
            ab = "ab".repeat(32)
        );
        assert_eq!(String::from_utf8(a.config.bytes.clone()).unwrap(), config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.wasm.config.v0+json","digest":"{cd}","size":{cs}}},"layers":[{{"mediaType":"application/wasm","digest":"sha256:{ab}","size":5,"annotations":{{"org.opencontainers.image.title":"hello.wasm"}}}}],"annotations":{{"org.opencontainers.image.created":"2026-11-21T19:57:00Z","org.opencontainers.image.version":"1.0.0","dev.gridreg.package":"acme:hello"}}}}"#,
            cd = a.config.digest,
            cs = a.config.bytes.len(),
            ab = "ab".repeat(32)
        );
        assert_eq!(
            String::from_utf8(a.manifest.bytes.clone()).unwrap(),
            manifest
        );
        assert_eq!(a.manifest.digest, Digest::of(manifest.as_bytes()));
    }

    #[test]
    fn a_module_has_no_component_section_and_another_author_another_digest() {
        let r = release();
        let module = release_artifact(&r, None, WasmKind::Module);
        let text = String::from_utf8(module.config.bytes).unwrap();
        assert!(text.contains(r#""os":"wasip1""#), "{text}");
        assert!(
            !text.contains("component") && !text.contains("author"),
            "{text}"
        );
        let a = release_artifact(&r, Some("alice"), WasmKind::Component);
        let b = release_artifact(&r, Some("bob"), WasmKind::Component);
        assert_ne!(a.manifest.digest, b.manifest.digest);
        assert_eq!(a, release_artifact(&r, Some("alice"), WasmKind::Component));
    }

    #[test]
    fn wasm_kind_reads_the_header() {
        assert_eq!(WasmKind::of(b"\0asm\x01\0\0\0"), Some(WasmKind::Module));
        assert_eq!(
            WasmKind::of(b"\0asm\x0d\0\x01\0"),
            Some(WasmKind::Component)
        );
        assert_eq!(WasmKind::of(b"\0asm"), None);
        assert_eq!(WasmKind::of(b"\x7fELF\x02\x01\x01\0"), None);
    }

    #[test]
    fn a_bundle_manifest_names_its_subject() {
        let a = release_artifact(&release(), Some("alice"), WasmKind::Component);
        let bundle = Blob::new(b"{\"checkpoint\":\"...\"}".to_vec());
        let m = bundle_manifest(&bundle, &a.manifest, 7);
        let v: serde_json::Value = serde_json::from_slice(&m.bytes).unwrap();
        assert_eq!(v["artifactType"], BUNDLE_MEDIA_TYPE);
        assert_eq!(v["subject"]["digest"], a.manifest.digest.to_string());
        assert_eq!(v["config"]["digest"], Digest::of(b"{}").to_string());
        assert_eq!(v["layers"][0]["digest"], bundle.digest.to_string());
        let idx: serde_json::Value =
            serde_json::from_slice(&index(&[m.descriptor(MANIFEST_MEDIA_TYPE)])).unwrap();
        assert_eq!(idx["manifests"][0]["digest"], m.digest.to_string());
    }
}
