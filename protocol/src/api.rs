//! JSON bodies of the log's HTTP API (DESIGN.md "HTTP API"), shared by the registry that serves
//! them and the client that checks them. Hashes travel as standard base64 strings.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

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

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
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
        assert_eq!(e.error.code, "not_found");
    }
}
