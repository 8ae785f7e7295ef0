//! The registry's HTTP API on the wire (docs/protocol.md §7 "HTTP API"): every JSON body the registry
//! serves, and the error codes it answers with, as one set of types that the registry serialises
//! and the client deserialises. Field names and order are the JSON's. `registry/openapi.json`
//! documents the same shapes, and `registry/tests/openapi.rs` fails when a field here is added,
//! renamed or made optional without it. Hashes travel as standard base64 strings.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::merkle::Hash;

/// Where a bare `gridreg serve` listens, and where the CLI looks for a registry by default.
pub const DEFAULT_REGISTRY_ADDR: &str = "127.0.0.1:7411";

/// Encodes hashes for a JSON body.
pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

/// Decodes hashes from a JSON body, naming the first bad one.
pub fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, String> {
    hashes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            B64.decode(s)
                .ok()
                .and_then(|raw| <Hash>::try_from(raw.as_slice()).ok())
                .ok_or_else(|| format!("hash {i}: expected base64 of 32 bytes, found `{s}`"))
        })
        .collect()
}

/// `GET /v2/`: the OCI API version check, an empty object (docs/protocol.md §7.11.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciBase {}

/// An error under `/v2/` in the OCI distribution form (docs/protocol.md §7.11.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciErrors {
    pub errors: Vec<OciErrorItem>,
}

/// One OCI error: a distribution-spec code (`MANIFEST_UNKNOWN`, ...) and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciErrorItem {
    pub code: String,
    pub message: String,
}

/// `GET /v2/{namespace}/{name}/tags/list`: the repository and one page of its tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciTags {
    pub name: String,
    pub tags: Vec<String>,
}

/// `GET /v2/token`: the bearer token to present (both names, as clients read either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciToken {
    pub token: String,
    pub access_token: String,
}

/// `GET /.well-known/wasm-pkg/registry.json`: where wkg finds the registry's OCI side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmPkgDiscovery {
    #[serde(rename = "preferredProtocol")]
    pub preferred_protocol: String,
    pub oci: WasmPkgOci,
}

/// The `oci` member of [`WasmPkgDiscovery`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmPkgOci {
    pub registry: String,
    #[serde(rename = "namespacePrefix")]
    pub namespace_prefix: String,
}

/// `GET /v1/log/proof/inclusion?index=I&size=S`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    pub hashes: Vec<String>,
}

/// `GET /v1/log/proof/consistency?from=M&to=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

/// One entry of `GET /v1/log/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub index: u64,
    /// The signed note text: the exact leaf bytes.
    pub body: String,
}

/// `GET /v1/log/entries?start=A&end=B`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntries {
    pub entries: Vec<LogEntry>,
}

/// `POST /v1/records`, answered once the record is durable in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    pub index: u64,
    /// The signed checkpoint that covers `index`.
    pub checkpoint: String,
    /// Inclusion proof of `index` in that checkpoint's tree.
    pub proof: Vec<String>,
}

/// `GET /healthz`. The fields are in the order the registry has always sent them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The newest checkpoint's size, as this replica sees it.
    pub log_size: u64,
    /// Always `ok`: a registry that answers is alive.
    pub status: String,
}

/// `PUT /v1/content/sha256:<hex>`: the content the registry holds under that digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    pub size: u64,
}

/// One version of a package, as the versions list, a search hit and a release show it. The
/// registry derives these fields from the log; a client takes the digest and size it trusts from
/// the signed record instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    /// `sha256:<64 lowercase hex>`.
    pub digest: String,
    pub size: u64,
    /// The index of the release record in the log.
    pub log_index: u64,
    pub yanked: bool,
    /// Present only for a yanked version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yank_reason: Option<String>,
    /// The capability classes of the release's imports, sorted.
    pub capabilities: Vec<String>,
}

/// `GET /v1/packages/<ns>:<name>`: every version of a package, yanked ones included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageVersions {
    pub package: String,
    pub versions: Vec<VersionInfo>,
}

/// One package in a search answer, with the versions that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageHit {
    pub name: String,
    pub versions: Vec<VersionInfo>,
}

/// `GET /v1/packages?q=&capability=&imports=&exports=&limit=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResults {
    pub packages: Vec<PackageHit>,
}

/// `GET /v1/packages/<ns>:<name>/<version>`: the version's fields, flattened, with the signed
/// record, the registry's audit report and the WIT.
///
/// `A` is the audit report's form: the registry serves the report it stored (as JSON), and a
/// client that audits the bytes itself may skip it (`serde::de::IgnoredAny`). This crate stays
/// free of a JSON library, so it does not pick one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo<A> {
    pub package: String,
    #[serde(flatten)]
    pub info: VersionInfo,
    /// The signed record: the exact log leaf.
    pub record: String,
    pub audit: A,
    /// The component's WIT; `null` for a module, or until the registry could extract it.
    pub wit: Option<String>,
}

/// A key that holds a role in a namespace now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The verifier key, `NAME+KEYID+BASE64`.
    pub key: String,
    /// `owner` or `publish`.
    pub role: String,
}

/// `GET /v1/namespaces/<ns>`: the namespace's records in log order and its current members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    pub namespace: String,
    pub records: Vec<LogEntry>,
    pub members: Vec<Member>,
}

/// `GET /v1/chains/namespace/<ns>` and `GET /v1/chains/package/<ns:name>`: the chain's head, the
/// `prev` a new record of the chain must name (a convenience for signers; clients that verify
/// take heads only from proofs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// `namespace acme` or `package acme:auth`.
    pub chain: String,
    /// `none` (no record yet) or `<log index>:<64 hex leaf hash>`.
    pub head: String,
    /// The size of the checkpoint the head was read at.
    pub size: u64,
}

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// For people: what was expected and what was found.
    pub message: String,
    /// With `stale_prev`: the chain's current head in `prev` form (`none` or
    /// `<index>:<64 hex>`), which a record must name to be appended now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
}

/// What went wrong, as the `code` of an error body. Each code is served with one HTTP status
/// ([`ErrorCode::status`]); on the wire it is the snake_case string ([`ErrorCode::as_str`]). A
/// code this build does not know (from a newer registry) is kept as [`ErrorCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A malformed request: path, query or parameters.
    BadRequest,
    /// A record that does not parse or whose keys cannot be read.
    MalformedRecord,
    /// Uploaded bytes that do not hash to the digest they were put under.
    DigestMismatch,
    TooLarge,
    NotFound,
    /// A release whose content was not uploaded first.
    ContentMissing,
    SizeMismatch,
    InvalidWasm,
    /// An upload whose bytes are not WebAssembly (no `\0asm` magic): only release content is
    /// hosted.
    NotWasm,
    /// A release whose import and export lines differ from its binary's.
    SurfaceMismatch,
    /// Refused by the namespace's policy.
    PolicyViolation,
    VersionExists,
    AlreadyYanked,
    NamespaceClaimed,
    NamespaceUnclaimed,
    /// A grant of a role the key has, a revoke of one it lacks, or of the last owner.
    NamespaceConflict,
    /// A record whose `prev` is not its chain's head (a replay, or another record got there
    /// first); the body's `head` says what the head is now.
    StalePrev,
    NotOwner,
    NotAuthorised,
    /// A signature by a key the namespace knows that does not verify.
    BadSignature,
    /// No token, or one that is not valid.
    Unauthenticated,
    /// A token whose scope or namespace does not allow the request.
    Forbidden,
    /// Nothing was stored; the same request may succeed later (see `Retry-After`).
    Unavailable,
    /// An upload refused because its uploader, or all uploaders together, already have as many
    /// bytes uploaded and not yet named by a release as the registry allows.
    UploadQuota,
    Internal,
    /// A code this build does not know, as the registry sent it.
    Other(String),
}

impl ErrorCode {
    /// Every code this build knows, in no particular order.
    pub const KNOWN: &[ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::MalformedRecord,
        ErrorCode::DigestMismatch,
        ErrorCode::TooLarge,
        ErrorCode::NotFound,
        ErrorCode::ContentMissing,
        ErrorCode::SizeMismatch,
        ErrorCode::InvalidWasm,
        ErrorCode::NotWasm,
        ErrorCode::SurfaceMismatch,
        ErrorCode::PolicyViolation,
        ErrorCode::VersionExists,
        ErrorCode::AlreadyYanked,
        ErrorCode::NamespaceClaimed,
        ErrorCode::NamespaceUnclaimed,
        ErrorCode::NamespaceConflict,
        ErrorCode::StalePrev,
        ErrorCode::NotOwner,
        ErrorCode::NotAuthorised,
        ErrorCode::BadSignature,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::Unavailable,
        ErrorCode::UploadQuota,
        ErrorCode::Internal,
    ];

    /// The code on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::MalformedRecord => "malformed_record",
            ErrorCode::DigestMismatch => "digest_mismatch",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::ContentMissing => "content_missing",
            ErrorCode::SizeMismatch => "size_mismatch",
            ErrorCode::InvalidWasm => "invalid_wasm",
            ErrorCode::NotWasm => "not_wasm",
            ErrorCode::SurfaceMismatch => "surface_mismatch",
            ErrorCode::PolicyViolation => "policy_violation",
            ErrorCode::VersionExists => "version_exists",
            ErrorCode::AlreadyYanked => "already_yanked",
            ErrorCode::NamespaceClaimed => "namespace_claimed",
            ErrorCode::NamespaceUnclaimed => "namespace_unclaimed",
            ErrorCode::NamespaceConflict => "namespace_conflict",
            ErrorCode::StalePrev => "stale_prev",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::NotAuthorised => "not_authorised",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::UploadQuota => "upload_quota",
            ErrorCode::Internal => "internal",
            ErrorCode::Other(code) => code,
        }
    }

    /// The code a wire string names; one this build does not know is kept as [`ErrorCode::Other`].
    pub fn parse(code: &str) -> ErrorCode {
        ErrorCode::KNOWN
            .iter()
            .find(|c| c.as_str() == code)
            .cloned()
            .unwrap_or_else(|| ErrorCode::Other(code.to_string()))
    }

    /// The HTTP status the registry answers this code with; `None` for a code this build does
    /// not know.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ErrorCode::BadRequest | ErrorCode::MalformedRecord | ErrorCode::DigestMismatch => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::NotOwner
            | ErrorCode::NotAuthorised
            | ErrorCode::BadSignature
            | ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::VersionExists
            | ErrorCode::AlreadyYanked
            | ErrorCode::NamespaceClaimed
            | ErrorCode::NamespaceUnclaimed
            | ErrorCode::NamespaceConflict
            | ErrorCode::StalePrev => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::NotWasm => 415,
            ErrorCode::ContentMissing
            | ErrorCode::SizeMismatch
            | ErrorCode::InvalidWasm
            | ErrorCode::SurfaceMismatch
            | ErrorCode::PolicyViolation => 422,
            ErrorCode::UploadQuota => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::Other(_) => return None,
        })
    }

    /// A refusal because the log already holds something in the way (409): the version, the
    /// yank, the claim or the grant.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&code))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn shapes_match_the_design() {
        let p = InclusionProof {
            index: 3,
            size: 8,
            hashes: encode_hashes(&[[0u8; 32]]),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"index":3,"size":8,"hashes":["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]}"#
        );
        assert_eq!(decode_hashes(&p.hashes).unwrap(), vec![[0u8; 32]]);
        assert!(decode_hashes(&["AAAA".to_string()]).is_err());
        let e: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"not_found","message":"no such package"}}"#)
                .unwrap();
        assert_eq!(e.error.code, ErrorCode::NotFound);
    }

    #[test]
    fn every_error_code_round_trips_to_its_string() {
        let expected = [
            (ErrorCode::BadRequest, "bad_request"),
            (ErrorCode::MalformedRecord, "malformed_record"),
            (ErrorCode::DigestMismatch, "digest_mismatch"),
            (ErrorCode::TooLarge, "too_large"),
            (ErrorCode::NotFound, "not_found"),
            (ErrorCode::ContentMissing, "content_missing"),
            (ErrorCode::SizeMismatch, "size_mismatch"),
            (ErrorCode::InvalidWasm, "invalid_wasm"),
            (ErrorCode::NotWasm, "not_wasm"),
            (ErrorCode::SurfaceMismatch, "surface_mismatch"),
            (ErrorCode::PolicyViolation, "policy_violation"),
            (ErrorCode::VersionExists, "version_exists"),
            (ErrorCode::AlreadyYanked, "already_yanked"),
            (ErrorCode::NamespaceClaimed, "namespace_claimed"),
            (ErrorCode::NamespaceUnclaimed, "namespace_unclaimed"),
            (ErrorCode::NamespaceConflict, "namespace_conflict"),
            (ErrorCode::StalePrev, "stale_prev"),
            (ErrorCode::NotOwner, "not_owner"),
            (ErrorCode::NotAuthorised, "not_authorised"),
            (ErrorCode::BadSignature, "bad_signature"),
            (ErrorCode::Unauthenticated, "unauthenticated"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::Unavailable, "unavailable"),
            (ErrorCode::UploadQuota, "upload_quota"),
            (ErrorCode::Internal, "internal"),
        ];
        assert_eq!(expected.len(), ErrorCode::KNOWN.len());
        for (code, text) in &expected {
            assert!(
                ErrorCode::KNOWN.contains(code),
                "{code:?} missing from KNOWN"
            );
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), *code);
            assert_eq!(code.to_string(), *text);
            assert!(code.status().is_some(), "{code:?} has no status");
        }
        // A newer registry's code is kept, and goes out again as it came in.
        let newer: ErrorCode = serde_json::from_str(r#""quota_exceeded""#).unwrap();
        assert_eq!(newer, ErrorCode::Other("quota_exceeded".into()));
        assert_eq!(
            serde_json::to_string(&newer).unwrap(),
            r#""quota_exceeded""#
        );
        assert_eq!(newer.status(), None);
        assert!(ErrorCode::VersionExists.is_conflict() && !ErrorCode::NotFound.is_conflict());
    }

    #[test]
    fn release_flattens_its_version() {
        let release = ReleaseInfo {
            package: "acme:auth".into(),
            info: VersionInfo {
                version: "1.0.0".into(),
                digest: format!("sha256:{}", "ab".repeat(32)),
                size: 5,
                log_index: 1,
                yanked: false,
                yank_reason: None,
                capabilities: vec!["stdio".into()],
            },
            record: "text".into(),
            audit: serde_json::json!({"kind": "component"}),
            wit: None,
        };
        let json = serde_json::to_string(&release).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"package":"acme:auth","version":"1.0.0","digest":"sha256:{}","size":5,"log_index":1,"yanked":false,"capabilities":["stdio"],"record":"text","audit":{{"kind":"component"}},"wit":null}}"#,
                "ab".repeat(32)
            )
        );
        let back: ReleaseInfo<serde_json::Value> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, release);
        // A client that does not read the audit skips it.
        let skipped: ReleaseInfo<serde::de::IgnoredAny> = serde_json::from_str(&json).unwrap();
        assert_eq!(skipped.info, release.info);
    }
}
