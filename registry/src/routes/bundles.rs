//! Package bundles (docs/protocol.md §8.6): the evidence for one package in one answer. The
//! newest checkpoint (cosigned by the timestamp key), the map entry that is its last leaf with
//! that entry's inclusion proof, and for the package's chain and its namespace's chain a
//! head-map proof and the chain's records from the head back to the first. A client verifies it
//! with `gridreg_protocol::bundle::verify_bundle` and believes nothing else the registry says.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use gridreg_protocol::bundle::{
    Bundle, ChainEvidence, Entry, MAX_CHAIN_RECORDS, MapEntry, NamespaceBundle,
};
use gridreg_protocol::map::MapProof;
use gridreg_protocol::{ChainKey, Namespace, PackageName, Prev};
use serde::Deserialize;

use crate::error::ApiError;
use crate::log::inclusion_proof;
use crate::state::AppState;

/// A bundle stops growing at this many bytes of records: the answer is refused (413) rather
/// than held in memory whole, however long a chain's records are.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;
/// Records read from the store at a time while walking a chain.
const READ_CHUNK: usize = 64;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/bundles/{package}", get(bundle))
        .route("/v1/namespaces/{namespace}/bundle", get(namespace_bundle))
}

/// `?package_after=<index>:<hex>&namespace_after=<index>:<hex>`: the heads a client verified
/// before; each chain's records are served down to (not including) that index only.
#[derive(Debug, Default, Deserialize)]
struct AfterQuery {
    package_after: Option<String>,
    namespace_after: Option<String>,
}

/// Where a chain's records stop: the log index of a head the client holds (exclusive).
#[derive(Debug, Clone, Copy, Default)]
pub struct After {
    pub package: Option<u64>,
    pub namespace: Option<u64>,
}

impl After {
    fn parse(q: &AfterQuery) -> Result<Self, ApiError> {
        let head = |name: &str, v: &Option<String>| -> Result<Option<u64>, ApiError> {
            let Some(v) = v else { return Ok(None) };
            match Prev::parse(v) {
                Ok(Prev::Entry(h)) => Ok(Some(h.index)),
                _ => Err(ApiError::BadRequest(format!(
                    "{name}: expected `<log index>:<64 lowercase hex leaf hash>`, found `{v}`"
                ))),
            }
        };
        Ok(Self {
            package: head("package_after", &q.package_after)?,
            namespace: head("namespace_after", &q.namespace_after)?,
        })
    }
}

async fn bundle(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Result<Query<AfterQuery>, QueryRejection>,
) -> Result<Json<Bundle>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let package = PackageName::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let after = After::parse(&q)?;
    Ok(Json(
        package_bundle(&state, &package, Stamp::Now, after).await?,
    ))
}

/// Whether a bundle's checkpoint carries the timestamp cosignature of the moment it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Cosigned now: what a client asking for fresh evidence gets.
    Now,
    /// The log's signature alone: the same bytes from every replica for one log size, for the
    /// OCI referrer artifact (docs/protocol.md §7.11.4).
    None,
}

/// The bundle of `package` at the newest checkpoint.
pub async fn package_bundle(
    state: &AppState,
    package: &PackageName,
    stamp: Stamp,
    after: After,
) -> Result<Bundle, ApiError> {
    let package_chain = ChainKey::Package(package.clone());
    let namespace_chain = ChainKey::Namespace(package.namespace().clone());
    let (head, mut proofs) = proven(state, &[&package_chain, &namespace_chain], stamp).await?;
    let (namespace_proof, package_proof) = (proofs.remove(1), proofs.remove(0));
    let mut budget = MAX_BUNDLE_BYTES;
    let package_records = records(
        state,
        &package_chain,
        &package_proof,
        after.package,
        &mut budget,
    )
    .await?;
    let namespace_records = records(
        state,
        &namespace_chain,
        &namespace_proof,
        after.namespace,
        &mut budget,
    )
    .await?;
    Ok(Bundle {
        checkpoint: head.checkpoint,
        map_entry: head.map_entry,
        map_inclusion: head.map_inclusion,
        package: ChainEvidence {
            proof: package_proof,
            records: package_records,
        },
        namespace: ChainEvidence {
            proof: namespace_proof,
            records: namespace_records,
        },
    })
}

/// The namespace alone (docs/protocol.md §8.6.4), for `gridreg namespace show`.
async fn namespace_bundle(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<NamespaceBundle>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let namespace = Namespace::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let chain = ChainKey::Namespace(namespace);
    let (head, mut proofs) = proven(&state, &[&chain], Stamp::Now).await?;
    let proof = proofs.remove(0);
    let mut budget = MAX_BUNDLE_BYTES;
    let records = records(&state, &chain, &proof, None, &mut budget).await?;
    Ok(Json(NamespaceBundle {
        checkpoint: head.checkpoint,
        map_entry: head.map_entry,
        map_inclusion: head.map_inclusion,
        namespace: ChainEvidence { proof, records },
    }))
}

/// What every bundle starts with: the checkpoint (cosigned now), the map entry that is its last
/// leaf, and that entry's inclusion proof.
struct MapHead {
    checkpoint: String,
    map_entry: String,
    map_inclusion: Vec<gridreg_protocol::Hash>,
}

/// The newest checkpoint with its map entry, and the head-map proofs of `chains` from the map
/// of exactly that checkpoint.
async fn proven(
    state: &AppState,
    chains: &[&ChainKey],
    stamp: Stamp,
) -> Result<(MapHead, Vec<MapProof>), ApiError> {
    state.view.catch_up(state.store.as_ref()).await?;
    let (checkpoint, proofs) = state
        .view
        .with_map(|s| {
            (
                s.checkpoint.clone(),
                chains.iter().map(|c| s.map.prove(c)).collect::<Vec<_>>(),
            )
        })
        .await
        .ok_or_else(|| {
            ApiError::Unavailable(
                "the log is empty or its head map is being updated; try again".to_string(),
            )
        })?;
    let size = checkpoint.size;
    let last = size - 1;
    let map_entry = state
        .store
        .entries(last, size)
        .await?
        .into_iter()
        .next()
        .and_then(|(_, body)| String::from_utf8(body).ok())
        .ok_or_else(|| ApiError::Internal(format!("log entry {last} is missing")))?;
    let ends_in_map = gridreg_protocol::Note::parse(map_entry.as_bytes())
        .ok()
        .is_some_and(|n| MapEntry::parse(&n.text).is_ok());
    if !ends_in_map {
        return Err(ApiError::Unavailable(format!(
            "the log of size {size} does not end in a map entry yet (it was written before map \
             entries existed); the sequencer appends one at start-up, try again"
        )));
    }
    let map_inclusion = inclusion_proof(state.store.as_ref(), size, last)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        MapHead {
            checkpoint: match stamp {
                Stamp::Now => state.witnesses.serve(&state.timestamp, &checkpoint.body),
                Stamp::None => checkpoint.body.to_string(),
            },
            map_entry,
            map_inclusion,
        },
        proofs,
    ))
}

/// The records of `chain` from the head `proof` names back to the first, or down to (not
/// including) log index `after`, head first, in chunks, within `budget` bytes. Whether the
/// chain really passes through `after` is the client's check (docs/protocol.md §8.6.5).
async fn records(
    state: &AppState,
    chain: &ChainKey,
    proof: &MapProof,
    after: Option<u64>,
    budget: &mut usize,
) -> Result<Vec<Entry>, ApiError> {
    let Some(head) = proof.head() else {
        return Ok(Vec::new());
    };
    if after.is_some_and(|a| a >= head.index) {
        return Ok(Vec::new());
    }
    let key = chain.to_string();
    let mut out: Vec<Entry> = Vec::new();
    let mut below = head.index + 1;
    loop {
        let chunk = state.store.chain_entries(&key, below, READ_CHUNK).await?;
        let mut done = chunk.len() < READ_CHUNK;
        for (index, body) in chunk {
            if after.is_some_and(|a| index <= a) {
                done = true;
                break;
            }
            if out.len() == MAX_CHAIN_RECORDS {
                return Err(ApiError::TooLarge(format!(
                    "{chain} has more than {MAX_CHAIN_RECORDS} records, more than a bundle carries"
                )));
            }
            *budget = budget.checked_sub(body.len()).ok_or_else(|| {
                ApiError::TooLarge(format!(
                    "the records of {chain} come to more than {MAX_BUNDLE_BYTES} bytes, more than \
                     a bundle carries"
                ))
            })?;
            let body = String::from_utf8(body)
                .map_err(|_| ApiError::Internal(format!("log entry {index} is not UTF-8")))?;
            below = index;
            out.push(Entry { index, body });
        }
        if done {
            break;
        }
    }
    if out.first().map(|e| e.index) != Some(head.index) {
        return Err(ApiError::Internal(format!(
            "the head map names log index {} as the head of {chain}, the store does not",
            head.index
        )));
    }
    Ok(out)
}
