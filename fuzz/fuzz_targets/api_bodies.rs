//! Every JSON body the client reads from a registry it must not trust (`protocol::api`):
//! deserialising arbitrary bytes never panics, and the hashes inside decode or are refused.
#![no_main]

use gridreg_protocol::api::{
    ChainHead, ConsistencyProof, ErrorBody, InclusionProof, LogEntries, NamespaceInfo, OciTags,
    PackageVersions, PublishResponse, SearchResults, decode_hashes,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = serde_json::from_slice::<InclusionProof>(data) {
        let _ = decode_hashes(&p.hashes);
    }
    if let Ok(p) = serde_json::from_slice::<ConsistencyProof>(data) {
        let _ = decode_hashes(&p.hashes);
    }
    if let Ok(p) = serde_json::from_slice::<PublishResponse>(data) {
        let _ = decode_hashes(&p.proof);
    }
    let _ = serde_json::from_slice::<LogEntries>(data);
    let _ = serde_json::from_slice::<PackageVersions>(data);
    let _ = serde_json::from_slice::<SearchResults>(data);
    let _ = serde_json::from_slice::<NamespaceInfo>(data);
    let _ = serde_json::from_slice::<ChainHead>(data);
    let _ = serde_json::from_slice::<ErrorBody>(data);
    let _ = serde_json::from_slice::<OciTags>(data);
});
