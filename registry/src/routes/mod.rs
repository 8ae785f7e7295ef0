//! The HTTP API of docs/protocol.md §7: [`app`] builds the router over an [`AppState`], apart from
//! serving, so tests drive it with `oneshot`. One file per resource.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use tower_http::trace::TraceLayer;

use crate::auth::{self, Grant, Scope};
use crate::error::ApiError;
use crate::state::AppState;

pub mod bundles;
pub mod chains;
pub mod content;
pub mod log;
pub mod namespaces;
pub mod oci;
pub mod ops;
pub mod packages;
pub mod pages;
pub mod records;
pub mod tiles;
pub mod wit;

/// Who is calling: the grant of a valid bearer token, if one was presented.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Grant>);

impl Caller {
    /// Checks the caller may do `scope` (in `namespace`). On an open registry only admin
    /// actions need a token; on a private one (`--require-token`) everything does.
    pub fn require(
        &self,
        state: &AppState,
        scope: Scope,
        namespace: Option<&str>,
    ) -> Result<(), ApiError> {
        if !state.require_token && scope < Scope::Admin {
            return Ok(());
        }
        match &self.0 {
            Some(grant) => grant.allows(scope, namespace),
            None => Err(ApiError::Unauthenticated(format!(
                "expected `Authorization: Bearer <token>` with scope {}, found no token",
                scope.as_str()
            ))),
        }
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(ops::routes())
        .merge(content::routes())
        .merge(records::routes())
        .merge(log::routes())
        .merge(packages::routes())
        .merge(namespaces::routes())
        .merge(chains::routes())
        .merge(bundles::routes())
        .merge(pages::routes())
        .merge(oci::routes())
        .merge(tiles::routes())
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Resolves the bearer token, if any, into a [`Caller`]; a presented but invalid token is
/// always refused, and a private registry refuses requests without one (except `/healthz` and
/// what an OCI client needs to learn how to log in). Under `/v2/` (OCI, docs/protocol.md §7.11)
/// refusals are OCI errors with a Bearer challenge, `Basic` credentials carry the token as the
/// password, and an empty bearer token (what `/v2/token` gives anonymous callers) is none.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let oci = path == "/v2" || path.starts_with("/v2/");
    let open_path = matches!(
        path,
        "/healthz" | "/v2/token" | "/.well-known/wasm-pkg/registry.json"
    );
    let refuse = |e: ApiError, headers: &axum::http::HeaderMap| -> Response {
        if oci {
            oci::OciError::unauthorized(headers, e.to_string()).into_response()
        } else {
            e.into_response()
        }
    };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_string));
    let presented = match header {
        None => None,
        Some(Ok(v)) => match v.strip_prefix("Bearer ") {
            Some(token) if oci && token.trim().is_empty() => None,
            Some(token) => Some(token.trim().to_string()),
            None if oci && v.starts_with("Basic ") => oci::basic_password(&v),
            None => {
                return refuse(
                    ApiError::Unauthenticated(
                        "expected `Authorization: Bearer <token>`, found another scheme".into(),
                    ),
                    req.headers(),
                );
            }
        },
        Some(Err(_)) => {
            return refuse(
                ApiError::Unauthenticated("the Authorization header is not text".into()),
                req.headers(),
            );
        }
    };
    let caller = match presented {
        // The token endpoint checks its own credentials.
        Some(_) if path == "/v2/token" => Caller(None),
        Some(token) => match auth::check_token(state.store.as_ref(), &token).await {
            Ok(grant) => Caller(Some(grant)),
            Err(e) => return refuse(e, req.headers()),
        },
        None => Caller(None),
    };
    if !open_path && let Err(e) = caller.require(&state, Scope::Read, None) {
        return refuse(e, req.headers());
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Paths no route serves: an OCI error under `/v2/` (405 for writes), else a bare 404 as the
/// framework gives (docs/protocol.md §7.1).
async fn fallback(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    if uri.path() == "/v2" || uri.path().starts_with("/v2/") {
        return oci::refuse_push(method).await.into_response();
    }
    axum::http::StatusCode::NOT_FOUND.into_response()
}

/// Counts every request and its latency for `/metrics`.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let resp = next.run(req).await;
    state
        .metrics
        .request(resp.status().as_u16(), start.elapsed());
    resp
}
