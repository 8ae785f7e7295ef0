//! `PUT` and `GET /v1/content/sha256:<hex>`: uploads are streamed to a temp file while hashed,
//! checked against the digest in the path, and only then renamed into place; downloads of
//! small blobs are served from memory after the first one, others (and `Range` requests) from
//! disk; the digest is the `ETag` and responses are cacheable forever.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, Request, State};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use crate::auth::Scope;
use crate::blob::{BlobSource, HOT_MAX_BLOB};
use crate::error::ApiError;
use crate::paths::parse_digest;
use crate::routes::Caller;
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/content/{digest}", put(upload).get(download))
}

fn digest_from(
    path: Result<Path<String>, PathRejection>,
) -> Result<gridreg_protocol::Digest, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    parse_digest(&raw).map_err(ApiError::BadRequest)
}

async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require(&state, Scope::Publish, None)?;
    let digest = digest_from(path)?;
    let limit = state.max_blob_size;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit
    {
        return Err(ApiError::TooLarge(format!(
            "expected at most {limit} bytes, found Content-Length {n}"
        )));
    }
    // Content-addressed and checked when first stored: a second upload has nothing to add.
    if let Some(BlobSource::File { size, .. }) = state.blobs.get(digest).await? {
        return Ok(
            Json(serde_json::json!({"digest": digest.to_string(), "size": size})).into_response(),
        );
    }
    let mut body = req.into_body();
    let mut writer = state.blobs.create().await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::TooLarge(format!(
                "expected at most {limit} bytes, found more"
            )));
        }
        hasher.update(&chunk);
        writer.write(&chunk).await?;
    }
    let found = gridreg_protocol::Digest(hasher.finalize().into());
    if found != digest {
        return Err(ApiError::DigestMismatch(format!(
            "expected content with digest {digest}, found {found} ({size} bytes)"
        )));
    }
    writer.commit(digest).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"digest": digest.to_string(), "size": size})),
    )
        .into_response())
}

async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let digest = digest_from(path)?;
    let Some(BlobSource::File { path, size }) = state.blobs.get(digest).await? else {
        return Err(ApiError::NotFound(format!(
            "no content with digest {digest}"
        )));
    };
    // Content never changes under its digest: the digest is the entity tag, and caches may
    // keep the bytes for good.
    let etag = format!("\"{digest}\"");
    let matches_etag = req
        .headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if matches_etag {
        StatusCode::NOT_MODIFIED.into_response()
    } else if size <= HOT_MAX_BLOB && !req.headers().contains_key(RANGE) {
        // Whole small blobs come from memory after the first download; a Range request, or a
        // large blob, is streamed from disk.
        let Some(bytes) = state.blobs.read_shared(digest).await? else {
            return Err(ApiError::NotFound(format!(
                "no content with digest {digest}"
            )));
        };
        let mut r = Body::from(bytes).into_response();
        r.headers_mut()
            .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        r
    } else {
        ServeFile::new(path)
            .oneshot(req)
            .await
            .map_err(|e| ApiError::Internal(format!("serving a blob: {e}")))?
            .map(Body::new)
    };
    if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(ETAG, v);
        }
    }
    Ok(resp)
}
