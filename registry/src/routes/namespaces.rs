//! Namespace endpoints: the namespace's records with their log indexes and its current keys,
//! and the server-side policy an admin sets per namespace.

use axum::extract::rejection::PathRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use gridreg_protocol::Namespace;
use gridreg_protocol::api::{LogEntry, Member, NamespaceInfo};
use gridreg_verifier::Policy;

use crate::auth::Scope;
use crate::error::ApiError;
use crate::routes::Caller;
use crate::state::AppState;

/// Longest policy text accepted.
pub const MAX_POLICY_LEN: usize = 256 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/namespaces/{namespace}", get(show))
        .route(
            "/v1/namespaces/{namespace}/policy",
            get(get_policy).put(put_policy).delete(delete_policy),
        )
}

fn namespace_from(path: Result<Path<String>, PathRejection>) -> Result<Namespace, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Namespace::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<NamespaceInfo>, ApiError> {
    let ns = namespace_from(path)?;
    let size = state.view.latest().size;
    let rows = state.store.namespace_entries(Some(ns.as_str())).await?;
    let records: Vec<LogEntry> = rows
        .into_iter()
        .filter(|(i, _)| *i < size)
        .map(|(index, body)| LogEntry {
            index,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
        .collect();
    if records.is_empty() {
        return Err(ApiError::NotFound(format!("namespace {ns} is not claimed")));
    }
    let members = state.view.with_namespaces(|s| {
        s.current(&ns)
            .into_iter()
            .map(|(k, r)| Member {
                key: k.to_string(),
                role: r.to_string(),
            })
            .collect()
    });
    Ok(Json(NamespaceInfo {
        namespace: ns.to_string(),
        records,
        members,
    }))
}

async fn get_policy(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let ns = namespace_from(path)?;
    match state.store.policy(ns.as_str()).await? {
        Some(text) => Ok(([(CONTENT_TYPE, "application/toml")], text).into_response()),
        None => Err(ApiError::NotFound(format!("namespace {ns} has no policy"))),
    }
}

async fn put_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
    body: String,
) -> Result<Response, ApiError> {
    let ns = namespace_from(path)?;
    caller.require(&state, Scope::Admin, Some(ns.as_str()))?;
    if body.len() > MAX_POLICY_LEN {
        return Err(ApiError::TooLarge(format!(
            "expected a policy of at most {MAX_POLICY_LEN} bytes, found {}",
            body.len()
        )));
    }
    // Refuse a policy that does not parse now, rather than failing every later publish.
    Policy::parse(&body, &format!("policy of namespace {ns}"))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state.store.set_policy(ns.as_str(), Some(&body)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let ns = namespace_from(path)?;
    caller.require(&state, Scope::Admin, Some(ns.as_str()))?;
    state.store.set_policy(ns.as_str(), None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
