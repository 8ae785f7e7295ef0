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
pub mod ops;
pub mod packages;
pub mod pages;
pub mod records;
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
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Resolves the bearer token, if any, into a [`Caller`]; a presented but invalid token is
/// always refused, and a private registry refuses requests without one (except `/healthz`).
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_string));
    let caller = match header {
        None => Caller(None),
        Some(Ok(v)) => match v.strip_prefix("Bearer ") {
            Some(token) => match auth::check_token(state.store.as_ref(), token.trim()).await {
                Ok(grant) => Caller(Some(grant)),
                Err(e) => return e.into_response(),
            },
            None => {
                return ApiError::Unauthenticated(
                    "expected `Authorization: Bearer <token>`, found another scheme".into(),
                )
                .into_response();
            }
        },
        Some(Err(_)) => {
            return ApiError::Unauthenticated("the Authorization header is not text".into())
                .into_response();
        }
    };
    let open_path = matches!(req.uri().path(), "/healthz");
    if !open_path && let Err(e) = caller.require(&state, Scope::Read, None) {
        return e.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
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
