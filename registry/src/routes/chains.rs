//! Chain heads: the `prev` a new record of a namespace's or a package's chain must name
//! (docs/protocol.md §4.7). A convenience for signers: the sequencer checks `prev` itself, and a
//! client that verifies takes heads only from what it can check.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use gridreg_protocol::api::ChainHead;
use gridreg_protocol::{ChainKey, Namespace, PackageName, Prev};

use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chains/namespace/{namespace}", get(namespace_head))
        .route("/v1/chains/package/{package}", get(package_head))
}

async fn namespace_head(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ChainHead>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let ns = Namespace::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    head(&state, ChainKey::Namespace(ns)).await
}

async fn package_head(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ChainHead>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let package = PackageName::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    head(&state, ChainKey::Package(package)).await
}

/// The chain's newest stored entry. It may belong to a batch whose checkpoint is being published
/// this instant; that is the head the sequencer will judge the next record against.
async fn head(state: &AppState, chain: ChainKey) -> Result<Json<ChainHead>, ApiError> {
    state.view.catch_up(state.store.as_ref()).await?;
    let size = state.view.latest().size;
    let chain = chain.to_string();
    let head = state.store.chain_head(&chain).await?;
    Ok(Json(ChainHead {
        chain,
        head: Prev::after(head).to_string(),
        size,
    }))
}
