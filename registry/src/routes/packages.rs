//! Package endpoints: search and list, a package's versions, and one release with its record,
//! log index, audit report and WIT.

use std::collections::BTreeMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use gridreg_protocol::PackageName;
use gridreg_protocol::name::parse_version;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Search, VersionRow};

/// Most releases a search returns.
pub const MAX_RESULTS: u32 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/packages", get(search))
        .route("/v1/packages/{package}", get(versions))
        .route("/v1/packages/{package}/{version}", get(release))
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    q: Option<String>,
    capability: Option<String>,
    imports: Option<String>,
    exports: Option<String>,
    limit: Option<u32>,
}

/// One package in a search answer, with the versions that matched.
#[derive(Debug, Serialize)]
pub struct PackageHit {
    pub name: String,
    pub versions: Vec<VersionRow>,
}

#[derive(Debug, Serialize)]
pub struct SearchResults {
    pub packages: Vec<PackageHit>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

async fn search(
    State(state): State<AppState>,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<SearchResults>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let search = Search {
        q: nonempty(q.q),
        capability: nonempty(q.capability),
        imports: nonempty(q.imports),
        exports: nonempty(q.exports),
        limit: q.limit.unwrap_or(MAX_RESULTS).min(MAX_RESULTS),
    };
    let hits = state.store.search(&search).await?;
    let mut by_package: BTreeMap<String, Vec<VersionRow>> = BTreeMap::new();
    for hit in hits {
        by_package.entry(hit.package).or_default().push(hit.row);
    }
    Ok(Json(SearchResults {
        packages: by_package
            .into_iter()
            .map(|(name, versions)| PackageHit { name, versions })
            .collect(),
    }))
}

fn package_from(raw: &str) -> Result<PackageName, ApiError> {
    PackageName::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

#[derive(Debug, Serialize)]
pub struct Versions {
    pub package: String,
    pub versions: Vec<VersionRow>,
}

async fn versions(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Versions>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let package = package_from(&raw)?.to_string();
    let versions = state.store.versions(&package).await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("no package {package}")));
    }
    Ok(Json(Versions { package, versions }))
}

/// `GET /v1/packages/<ns>:<name>/<version>`.
#[derive(Debug, Serialize)]
pub struct ReleaseView {
    pub package: String,
    #[serde(flatten)]
    pub row: VersionRow,
    /// The signed record: the exact log leaf.
    pub record: String,
    pub audit: serde_json::Value,
    pub wit: Option<String>,
}

async fn release(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ReleaseView>, ApiError> {
    let Path((raw, version)) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let package = package_from(&raw)?.to_string();
    let version = parse_version(&version)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .to_string();
    let Some(r) = crate::routes::wit::release_with_wit(&state, &package, &version).await? else {
        return Err(ApiError::NotFound(format!(
            "no release {package}@{version}"
        )));
    };
    let audit = serde_json::from_str(&r.audit_json)
        .map_err(|e| ApiError::Internal(format!("stored audit of {package}@{version}: {e}")))?;
    Ok(Json(ReleaseView {
        package: r.package,
        row: r.row,
        record: r.record,
        audit,
        wit: r.wit,
    }))
}
