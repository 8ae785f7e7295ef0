//! The log as C2SP tlog-tiles (docs/protocol.md §7.12): `/checkpoint`, `/tile/<L>/<N>[.p/<W>]`
//! and `/tile/entries/<N>[.p/<W>]`, read from the same stored hashes and entries as the JSON log
//! endpoints. A tile's bytes never change once the log holds what it names (hashes are stored
//! once and a partial tile's width fixes its content), so every tile is served as immutable and
//! a CDN or a mirror may keep it forever.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gridreg_protocol::tiles::Tile;

use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/checkpoint", get(checkpoint))
        .route("/tile/{*path}", get(tile))
}

/// The checkpoint exactly as `/v1/log/checkpoint` serves it (timestamp and witness
/// cosignatures included), cacheable for a second at most.
async fn checkpoint(State(state): State<AppState>) -> Response {
    let mut resp = super::log::served_checkpoint(&state).into_response();
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=1"));
    resp
}

async fn tile(
    State(state): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let tile = Tile::parse_path(&format!("tile/{path}"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    // A kept tile was within the log when it was read, and logs only grow.
    let key = tile.is_full().then(|| tile.path());
    if let Some(bytes) = key.as_deref().and_then(|k| state.tiles.get(k)) {
        return Ok(tile_response(bytes));
    }
    if !tile.within(state.view.latest().size) {
        // Another replica may have grown the log a moment ago.
        state.view.catch_up(state.store.as_ref()).await?;
        let size = state.view.latest().size;
        if !tile.within(size) {
            return Err(ApiError::NotFound(format!(
                "{tile} names positions {}..{} at tree level {}, beyond the log's {size} entries",
                tile.positions().start,
                tile.positions().end,
                tile.tree_level()
            )));
        }
    }
    let bytes = Bytes::from(state.store.tile_bytes(&tile).await?);
    if let Some(k) = key {
        state.tiles.insert(&k, bytes.clone());
    }
    Ok(tile_response(bytes))
}

fn tile_response(bytes: Bytes) -> Response {
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(crate::blob::IMMUTABLE),
    );
    resp
}
