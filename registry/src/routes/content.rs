//! `PUT` and `GET /v1/content/sha256:<hex>`: uploads are streamed to a temp file while hashed,
//! checked against the digest in the path, and only then renamed into place; downloads of
//! small blobs are served from memory after the first one, others (and `Range` requests) from
//! disk or streamed from the object store; the digest is the `ETag` and responses are cacheable
//! forever.

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, Request, State};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    RANGE,
};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use gridreg_protocol::api::Stored;
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use crate::auth::Scope;
use crate::blob::{BlobSource, HOT_MAX_BLOB};
use crate::error::ApiError;
use crate::listen::ClientAddr;
use crate::routes::Caller;
use crate::state::AppState;
use crate::uploads::{QuotaError, Uploader};

fn quota(e: QuotaError) -> ApiError {
    ApiError::UploadQuota(e.to_string())
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/content/{digest}", put(upload).get(download))
}

fn digest_from(
    path: Result<Path<String>, PathRejection>,
) -> Result<gridreg_protocol::Digest, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    gridreg_protocol::Digest::parse(&raw).map_err(ApiError::BadRequest)
}

/// Who an upload counts against: the token if one was given, else the client's address.
fn uploader(caller: &Caller, client: Option<&ClientAddr>) -> Uploader {
    match (&caller.0, client) {
        (Some(grant), _) => Uploader::Token(grant.token_id.clone()),
        (None, Some(ClientAddr(addr))) => Uploader::from_address(addr.ip()),
        (None, None) => Uploader::Unknown,
    }
}

async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    client: Option<Extension<ClientAddr>>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    caller.require(&state, Scope::Publish, None)?;
    let digest = digest_from(path)?;
    let mut pending = state
        .uploads
        .begin(uploader(&caller, client.as_ref().map(|Extension(c)| c)));
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
    // Refuse a declared length over the caller's share before reading any of it; the bytes are
    // then counted as they arrive, so an undeclared length cannot outrun the cap either.
    if let Some(n) = declared {
        pending.add(n).map_err(quota)?;
    }
    // Content-addressed and checked when first stored: a second upload has nothing to add.
    if let Some(size) = state.blobs.get(digest).await?.map(|s| s.size()) {
        return Ok(Json(Stored {
            digest: digest.to_string(),
            size,
        })
        .into_response());
    }
    let mut body = req.into_body();
    let mut writer = state.blobs.create().await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut magic: Vec<u8> = Vec::with_capacity(4);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BadRequest(format!("reading the upload: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        // Only release content is hosted: the first bytes must be WebAssembly's magic.
        if size < 4 {
            let take = chunk.len().min(4 - size as usize);
            magic.extend_from_slice(&chunk[..take]);
            if !WASM_MAGIC.starts_with(&magic) {
                return Err(not_wasm(&magic));
            }
        }
        size += chunk.len() as u64;
        if size > limit {
            return Err(ApiError::TooLarge(format!(
                "expected at most {limit} bytes, found more"
            )));
        }
        if declared.is_none_or(|n| size > n) {
            pending.add(chunk.len() as u64).map_err(quota)?;
        }
        hasher.update(&chunk);
        writer.write(&chunk).await?;
    }
    if size < 4 {
        return Err(not_wasm(&magic));
    }
    let found = gridreg_protocol::Digest(hasher.finalize().into());
    if found != digest {
        return Err(ApiError::DigestMismatch(format!(
            "expected content with digest {digest}, found {found} ({size} bytes)"
        )));
    }
    writer.commit(digest).await?;
    pending.stored(digest);
    Ok((
        StatusCode::CREATED,
        Json(Stored {
            digest: digest.to_string(),
            size,
        }),
    )
        .into_response())
}

async fn download(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let digest = digest_from(path)?;
    serve_content(&state, digest, req).await
}

/// Serves the stored content `digest` for `req` (whole, a `Range` of it, or 304 when the
/// caller's entity tag matches); shared with the OCI blob endpoint.
pub async fn serve_content(
    state: &AppState,
    digest: gridreg_protocol::Digest,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(source) = state.blobs.get(digest).await? else {
        return Err(ApiError::NotFound(format!(
            "no content with digest {digest}"
        )));
    };
    let size = source.size();
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
        match source {
            BlobSource::File { path, .. } => ServeFile::new(path)
                .oneshot(req)
                .await
                .map_err(|e| ApiError::Internal(format!("serving a blob: {e}")))?
                .map(Body::new),
            BlobSource::Object(object) => serve_object(&object, req.headers(), &etag).await?,
        }
    };
    if resp.status().is_success() || resp.status() == StatusCode::NOT_MODIFIED {
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static(crate::blob::IMMUTABLE),
        );
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(ETAG, v);
        }
    }
    Ok(resp)
}

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No range, one we do not serve piecewise (several ranges), or an `If-Range` that no
    /// longer matches: the whole blob.
    Whole,
    /// One satisfiable range, end exclusive.
    Part(std::ops::Range<u64>),
    /// A range that starts past the end.
    Unsatisfiable,
}

/// Parses a single `bytes=` range (RFC 9110 section 14.1.2). Anything malformed is ignored, as
/// the RFC allows, and the whole blob is served.
fn range_ask(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `bytes=-N`: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeAsk::Unsatisfiable,
            Ok(_) if size == 0 => RangeAsk::Unsatisfiable,
            Ok(n) => RangeAsk::Part(size - n.min(size)..size),
            Err(_) => RangeAsk::Whole,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAsk::Whole;
    };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(l) if l >= start => l.saturating_add(1).min(size),
            _ => return RangeAsk::Whole,
        }
    };
    if start >= size {
        RangeAsk::Unsatisfiable
    } else {
        RangeAsk::Part(start..end)
    }
}

/// Serves a blob from object storage: whole, or the one range asked for (streamed through a
/// ranged read of the object), with the status and headers `ServeFile` gives a file.
async fn serve_object(
    object: &crate::blob::ObjectBlob,
    headers: &axum::http::HeaderMap,
    etag: &str,
) -> Result<Response, ApiError> {
    let size = object.size();
    let range = headers.get(RANGE).and_then(|v| v.to_str().ok());
    // `If-Range` with another validator means the client's copy is stale: send it all.
    let if_range_ok = headers
        .get(axum::http::header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() == etag);
    let ask = if if_range_ok {
        range_ask(range, size)
    } else {
        RangeAsk::Whole
    };
    let mut resp = match ask {
        RangeAsk::Whole => {
            let mut r = object.body(None).await?.into_response();
            if let Ok(v) = HeaderValue::from_str(&size.to_string()) {
                r.headers_mut().insert(CONTENT_LENGTH, v);
            }
            r
        }
        RangeAsk::Part(part) => {
            let content_range = format!("bytes {}-{}/{size}", part.start, part.end - 1);
            let len = part.end - part.start;
            let mut r = object.body(Some(part)).await?.into_response();
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&content_range) {
                h.insert(CONTENT_RANGE, v);
            }
            if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
                h.insert(CONTENT_LENGTH, v);
            }
            r
        }
        RangeAsk::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(CONTENT_RANGE, v);
            }
            r
        }
    };
    resp.headers_mut()
        .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    Ok(resp)
}

/// The first four bytes of every WebAssembly module and component.
const WASM_MAGIC: &[u8; 4] = b"\0asm";

fn not_wasm(start: &[u8]) -> ApiError {
    ApiError::NotWasm(format!(
        "expected WebAssembly (a component or core module, starting with \\0asm), found bytes starting with {}",
        if start.is_empty() {
            "nothing (an empty upload)".to_string()
        } else {
            format!("0x{}", hex::encode(start))
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |h: &str| range_ask(Some(h), 100);
        assert_eq!(range_ask(None, 100), RangeAsk::Whole);
        assert_eq!(p("bytes=0-9"), RangeAsk::Part(0..10));
        assert_eq!(p("bytes=90-"), RangeAsk::Part(90..100));
        assert_eq!(p("bytes=90-500"), RangeAsk::Part(90..100));
        assert_eq!(p("bytes=-10"), RangeAsk::Part(90..100));
        assert_eq!(p("bytes=-500"), RangeAsk::Part(0..100));
        assert_eq!(p("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=-0"), RangeAsk::Unsatisfiable);
        assert_eq!(p("bytes=0-1,5-6"), RangeAsk::Whole);
        assert_eq!(p("bytes=9-1"), RangeAsk::Whole);
        assert_eq!(p("items=0-1"), RangeAsk::Whole);
        assert_eq!(p("bytes=x-1"), RangeAsk::Whole);
        assert_eq!(range_ask(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
        assert_eq!(range_ask(Some("bytes=-5"), 0), RangeAsk::Unsatisfiable);
    }
}
