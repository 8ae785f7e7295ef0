//! The log endpoints: checkpoint, key, entries (paged) and inclusion / consistency proofs.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use gridreg_protocol::api::{
    ConsistencyProof, InclusionProof, LogEntries, LogEntry, encode_hashes,
};
use serde::Deserialize;

use crate::error::ApiError;
use crate::log::{consistency_proof, inclusion_proof};
use crate::state::AppState;

/// Most entries one page returns.
pub const MAX_PAGE: u64 = 1000;
/// A page stops at the first entry that brings its bodies to this many bytes or more, so a log
/// of large records (up to 64 KiB each) still comes in pages a client and the server can hold.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Entries read from the store at a time while filling a page.
const READ_CHUNK: u64 = 64;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/log/checkpoint", get(checkpoint))
        .route("/v1/log/key", get(key))
        .route("/v1/log/timestamp-key", get(timestamp_key))
        .route("/v1/log/entries", get(entries))
        .route("/v1/log/proof/inclusion", get(inclusion))
        .route("/v1/log/proof/consistency", get(consistency))
}

const TEXT: (axum::http::HeaderName, &str) = (CONTENT_TYPE, "text/plain; charset=utf-8");

/// The newest checkpoint, cosigned by the timestamp key within the last second.
async fn checkpoint(State(state): State<AppState>) -> impl IntoResponse {
    served_checkpoint(&state)
}

/// The checkpoint as served (here and at the tiles' `/checkpoint`): the newest one, with a
/// timestamp cosignature.
pub fn served_checkpoint(state: &AppState) -> impl IntoResponse + use<> {
    let latest = state.view.latest();
    (
        [TEXT],
        state.witnesses.serve(&state.timestamp, &latest.body),
    )
}

/// The log key's signed statement naming the timestamp key.
async fn timestamp_key(State(state): State<AppState>) -> impl IntoResponse {
    ([TEXT], state.timestamp.statement().to_string())
}

async fn key(State(state): State<AppState>) -> impl IntoResponse {
    ([TEXT], format!("{}\n", state.log_key))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

#[derive(Debug, Deserialize)]
struct EntriesQuery {
    start: u64,
    end: Option<u64>,
}

async fn entries(
    State(state): State<AppState>,
    q: Result<Query<EntriesQuery>, QueryRejection>,
) -> Result<Json<LogEntries>, ApiError> {
    let q = query(q)?;
    if q.end.is_some_and(|end| end > state.view.latest().size) {
        state.view.catch_up(state.store.as_ref()).await?;
    }
    let size = state.view.latest().size;
    let end = q.end.unwrap_or(q.start.saturating_add(MAX_PAGE));
    if end < q.start {
        return Err(ApiError::BadRequest(format!(
            "expected start <= end, found start {} and end {end}",
            q.start
        )));
    }
    // Bounded page, and never past the newest durable checkpoint.
    let end = end.min(q.start.saturating_add(MAX_PAGE)).min(size);
    let start = q.start.min(end);
    // Read in chunks and stop once the page holds MAX_PAGE_BYTES: memory per request stays near
    // the budget however large the entries; the client asks again from where the page ended.
    let mut entries = Vec::new();
    let mut bytes = 0usize;
    let mut next = start;
    'page: while next < end {
        let chunk_end = end.min(next.saturating_add(READ_CHUNK));
        for (index, body) in state.store.entries(next, chunk_end).await? {
            bytes += body.len();
            let body = String::from_utf8(body)
                .map_err(|_| ApiError::Internal(format!("log entry {index} is not UTF-8")))?;
            entries.push(LogEntry { index, body });
            if bytes >= MAX_PAGE_BYTES {
                break 'page;
            }
        }
        next = chunk_end;
    }
    Ok(Json(LogEntries { entries }))
}

#[derive(Debug, Deserialize)]
struct InclusionQuery {
    index: u64,
    size: u64,
}

async fn inclusion(
    State(state): State<AppState>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProof>, ApiError> {
    let q = query(q)?;
    if q.size > state.view.latest().size {
        // A checkpoint from another replica may be newer than this one's view.
        state.view.catch_up(state.store.as_ref()).await?;
    }
    let latest = state.view.latest().size;
    if q.size > latest {
        return Err(ApiError::BadRequest(format!(
            "expected size at most the log size {latest}, found {}",
            q.size
        )));
    }
    if q.index >= q.size {
        return Err(ApiError::BadRequest(format!(
            "expected index below size {}, found {}",
            q.size, q.index
        )));
    }
    let hashes = inclusion_proof(state.store.as_ref(), q.size, q.index).await?;
    Ok(Json(InclusionProof {
        index: q.index,
        size: q.size,
        hashes: encode_hashes(&hashes),
    }))
}

#[derive(Debug, Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

async fn consistency(
    State(state): State<AppState>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let q = query(q)?;
    if q.to > state.view.latest().size {
        state.view.catch_up(state.store.as_ref()).await?;
    }
    let latest = state.view.latest().size;
    if q.to > latest || q.from > q.to {
        return Err(ApiError::BadRequest(format!(
            "expected from <= to <= the log size {latest}, found from {} and to {}",
            q.from, q.to
        )));
    }
    let hashes = consistency_proof(state.store.as_ref(), q.from, q.to).await?;
    Ok(Json(ConsistencyProof {
        from: q.from,
        to: q.to,
        hashes: encode_hashes(&hashes),
    }))
}
