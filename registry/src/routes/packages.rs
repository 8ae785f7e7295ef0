//! Package endpoints: search and list, a package's versions, and one release with its record,
//! log index, audit report and WIT. The bodies are `protocol::api`'s; the store's rows are
//! converted here.

use std::collections::BTreeMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use gridreg_protocol::PackageName;
use gridreg_protocol::api::{PackageHit, PackageVersions, ReleaseInfo, SearchResults, VersionInfo};
use gridreg_protocol::name::parse_version;
use serde::Deserialize;

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

/// A version's row as the API shows it.
pub fn version_info(row: VersionRow) -> VersionInfo {
    let VersionRow {
        version,
        digest,
        size,
        log_index,
        yanked,
        yank_reason,
        capabilities,
    } = row;
    VersionInfo {
        version,
        digest,
        size,
        log_index,
        yanked,
        yank_reason,
        capabilities,
    }
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
    let mut by_package: BTreeMap<String, Vec<VersionInfo>> = BTreeMap::new();
    for hit in hits {
        by_package
            .entry(hit.package)
            .or_default()
            .push(version_info(hit.row));
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

async fn versions(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PackageVersions>, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let package = package_from(&raw)?.to_string();
    let versions = state.store.versions(&package).await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("no package {package}")));
    }
    Ok(Json(PackageVersions {
        package,
        versions: versions.into_iter().map(version_info).collect(),
    }))
}

async fn release(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ReleaseInfo<serde_json::Value>>, ApiError> {
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
    Ok(Json(ReleaseInfo {
        package: r.package,
        info: version_info(r.row),
        record: r.record,
        audit,
        wit: r.wit,
    }))
}
