//! The OCI distribution read side (docs/protocol.md §7.11), so that wkg, wash, spin, oras, skopeo
//! and any OCI client pull from the registry unchanged: `/v2/` and its token endpoint,
//! manifests, blobs, tags and referrers of repository `<ns>/<name>` for package `ns:name`, and
//! `/.well-known/wasm-pkg/registry.json` for wkg's discovery. Manifests and configs are derived
//! from the signed release records ([`gridreg_protocol::oci`]); the one layer is the stored
//! content. Pushes are refused: a release needs a signature an OCI push does not carry.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LINK, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use gridreg_protocol::api::{
    OciBase, OciErrorItem, OciErrors, OciTags, OciToken, WasmPkgDiscovery, WasmPkgOci,
};
use gridreg_protocol::oci::{self, Blob};
use gridreg_protocol::{Digest, PackageName};
use serde::Deserialize;

use crate::auth::{self, Scope};
use crate::error::ApiError;
use crate::oci::{BundleArtifact, Lookup, Named};
use crate::routes::bundles::{After, Stamp, package_bundle};
use crate::state::AppState;

/// Most tags one `tags/list` page holds, whatever `n` asks for.
pub const MAX_TAGS_PAGE: usize = 1000;

/// Header OCI clients read a manifest's or blob's digest from.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2/", get(base).fallback(refuse_push))
        .route("/v2/token", get(token).fallback(refuse_push))
        .route(
            "/v2/{namespace}/{name}/manifests/{reference}",
            get(manifest).fallback(refuse_push),
        )
        .route(
            "/v2/{namespace}/{name}/blobs/{digest}",
            get(blob).fallback(refuse_push),
        )
        .route(
            "/v2/{namespace}/{name}/tags/list",
            get(tags).fallback(refuse_push),
        )
        .route(
            "/v2/{namespace}/{name}/referrers/{digest}",
            get(referrers).fallback(refuse_push),
        )
        .route("/.well-known/wasm-pkg/registry.json", get(well_known))
}

/// An error in the OCI form, `{"errors":[{"code","message","detail"}]}`, with one of the
/// distribution spec's codes.
#[derive(Debug)]
pub struct OciError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Set on 401s: the `WWW-Authenticate` challenge.
    challenge: Option<String>,
}

impl OciError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    /// 401 with the Bearer challenge that sends the client to `/v2/token`.
    pub fn unauthorized(headers: &HeaderMap, message: impl Into<String>) -> Self {
        let base = base_url(headers);
        Self {
            challenge: Some(format!(
                "Bearer realm=\"{base}/v2/token\",service=\"{}\"",
                host(headers)
            )),
            ..Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
        }
    }

    fn name_unknown(package: &PackageName) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!(
                "no repository {} (package {package} has no releases)",
                oci::repository(package)
            ),
        )
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let body = OciErrors {
            errors: vec![OciErrorItem {
                code: self.code.to_string(),
                message: self.message,
            }],
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(WWW_AUTHENTICATE, c);
        }
        resp
    }
}

impl From<ApiError> for OciError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let message = match &e {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let code = match status {
            StatusCode::UNAUTHORIZED => "UNAUTHORIZED",
            StatusCode::FORBIDDEN => "DENIED",
            StatusCode::NOT_FOUND => "NAME_UNKNOWN",
            StatusCode::TOO_MANY_REQUESTS => "TOOMANYREQUESTS",
            StatusCode::BAD_REQUEST => "UNSUPPORTED",
            _ => "UNKNOWN",
        };
        Self::new(status, code, message)
    }
}

impl From<crate::store::StoreError> for OciError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// The host the client asked for, if it is a plain host name or address with an optional port
/// (anything else, quotes included, is not echoed back into a header).
pub fn host(headers: &HeaderMap) -> String {
    headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        })
        .unwrap_or("localhost")
        .to_string()
}

/// `http://host` or, behind a proxy that says so, `https://host`.
fn base_url(headers: &HeaderMap) -> String {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!(
        "{}://{}",
        if https { "https" } else { "http" },
        host(headers)
    )
}

/// `GET /v2/`: the API version check. Reaching here means the caller may read (the
/// authentication layer answers 401 with the challenge otherwise).
async fn base() -> Response {
    (
        [("docker-distribution-api-version", "registry/2.0")],
        Json(OciBase {}),
    )
        .into_response()
}

/// Answers every method but GET and HEAD under `/v2/`, and every path there no route serves
/// (the router's fallback sends them here).
pub async fn refuse_push(method: Method) -> OciError {
    if method == Method::GET || method == Method::HEAD {
        return OciError::new(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "no such endpoint");
    }
    OciError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
        format!(
            "this registry is read-only over OCI ({method} refused): a release needs a signed \
             record, which an OCI push does not carry; publish with `gridreg publish`"
        ),
    )
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    scope: Option<String>,
}

/// `GET /v2/token`: Basic credentials whose password is a gridreg token (any user name) give
/// that token back as the bearer token; it is what every later request presents. A public
/// registry hands anonymous callers an empty token, which reads as no token.
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, OciError> {
    let Query(q) =
        query.map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", e.body_text()))?;
    for scope in q.scope.iter().flat_map(|s| s.split(' ')) {
        check_scope(scope)?;
    }
    let presented = match headers.get(AUTHORIZATION) {
        None => None,
        Some(v) => Some(v.to_str().ok().and_then(basic_password).ok_or_else(|| {
            basic_challenge(OciError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "expected `Authorization: Basic` with a gridreg token as the password",
            ))
        })?),
    };
    let token = match presented {
        Some(t) => {
            let grant = auth::check_token(state.store.as_ref(), &t)
                .await
                .map_err(|e| basic_challenge(OciError::from(e)))?;
            grant.allows(Scope::Read, None).map_err(OciError::from)?;
            t
        }
        None if state.require_token => {
            return Err(basic_challenge(OciError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "this registry needs a token: log in with any user name and a gridreg token \
                 (`gridreg serve token create --scope read`) as the password",
            )));
        }
        None => String::new(),
    };
    let mut resp = Json(OciToken {
        token: token.clone(),
        access_token: token,
    })
    .into_response();
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

fn basic_challenge(mut e: OciError) -> OciError {
    e.challenge = Some("Basic realm=\"gridreg\"".to_string());
    e
}

/// The password of `Basic` credentials, from the `Authorization` header's text.
pub fn basic_password(header: &str) -> Option<String> {
    let encoded = header.strip_prefix("Basic ")?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// A token scope `repository:<ns>/<name>:<actions>`; only reading is ever granted, so only its
/// form is checked.
fn check_scope(scope: &str) -> Result<(), OciError> {
    let bad = || {
        OciError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            format!("expected a scope `repository:<ns>/<name>:pull`, found `{scope}`"),
        )
    };
    let rest = scope.strip_prefix("repository:").ok_or_else(bad)?;
    let (repo, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
    if repo.is_empty() || actions.is_empty() {
        return Err(bad());
    }
    Ok(())
}

/// The package a repository `<ns>/<name>` stands for.
fn package_named(ns: &str, name: &str) -> Result<PackageName, OciError> {
    PackageName::parse(&format!("{ns}:{name}")).map_err(|e| {
        OciError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("expected a repository `<namespace>/<name>` of a package: {e}"),
        )
    })
}

/// The package of a `/v2/<ns>/<name>/<kind>/<last>` path, and its last segment.
fn package_of(
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<(PackageName, String), OciError> {
    let Path((ns, name, last)) =
        path.map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", e.body_text()))?;
    Ok((package_named(&ns, &name)?, last))
}

fn parse_digest(raw: &str, code: &'static str) -> Result<Digest, OciError> {
    Digest::parse(raw).map_err(|e| OciError::new(StatusCode::BAD_REQUEST, code, e))
}

/// A response carrying `blob` as `media_type`, with its digest.
fn blob_response(blob: Blob, media_type: &str) -> Response {
    let mut resp = Body::from(blob.bytes).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(media_type) {
        h.insert(CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&blob.digest.to_string()) {
        h.insert(DOCKER_CONTENT_DIGEST, v);
    }
    // An entity tag is a quoted string (RFC 9110 §8.8.3), as `/v1/content` sends it.
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", blob.digest)) {
        h.insert(axum::http::header::ETAG, v);
    }
    resp
}

/// `GET|HEAD /v2/<ns>/<name>/manifests/<version|digest>`.
async fn manifest(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, OciError> {
    let (package, reference) = package_of(path)?;
    let repository = oci::repository(&package);
    if reference.contains(':') {
        let digest = parse_digest(&reference, "DIGEST_INVALID")?;
        let version = match state
            .oci
            .lookup(state.store.as_ref(), &package, digest)
            .await?
        {
            Lookup::Found(Named::Manifest(v)) => v,
            Lookup::NoPackage => return Err(OciError::name_unknown(&package)),
            _ => {
                if let Some(m) = state.oci.bundle_manifest(&repository, digest) {
                    return Ok(blob_response(m, oci::MANIFEST_MEDIA_TYPE));
                }
                return Err(manifest_unknown(&repository, &reference));
            }
        };
        let artifact = release_artifact(&state, &package, &version).await?;
        let mut resp = blob_response(artifact.manifest.clone(), oci::MANIFEST_MEDIA_TYPE);
        immutable(&mut resp);
        return Ok(resp);
    }
    // A tag is a version; only the exact text of a stored version names it.
    let artifact = release_artifact(&state, &package, &reference).await?;
    Ok(blob_response(
        artifact.manifest.clone(),
        oci::MANIFEST_MEDIA_TYPE,
    ))
}

fn manifest_unknown(repository: &str, reference: &str) -> OciError {
    OciError::new(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        format!("no manifest {reference} in repository {repository}"),
    )
}

fn immutable(resp: &mut Response) {
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static(crate::blob::IMMUTABLE),
    );
}

/// The OCI form of `package@version`, from its stored record.
async fn release_artifact(
    state: &AppState,
    package: &PackageName,
    version: &str,
) -> Result<Arc<oci::ReleaseArtifact>, OciError> {
    let key = package.to_string();
    match state
        .oci
        .artifact(state.store.as_ref(), &key, version)
        .await?
    {
        Some(a) => Ok(a),
        None if state.store.versions(&key).await?.is_empty() => {
            Err(OciError::name_unknown(package))
        }
        None => Err(manifest_unknown(&oci::repository(package), version)),
    }
}

/// `GET|HEAD /v2/<ns>/<name>/blobs/<digest>`: the content of a release of this package, a
/// release's config, or a layer of a bundle artifact served as a referrer.
async fn blob(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, OciError> {
    let (package, raw) = package_of(path)?;
    let repository = oci::repository(&package);
    let digest = parse_digest(&raw, "DIGEST_INVALID")?;
    let unknown = || {
        OciError::new(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("no blob {digest} in repository {repository}"),
        )
    };
    if digest == Digest::of(oci::EMPTY_CONFIG) {
        return Ok(blob_response(
            Blob::new(oci::EMPTY_CONFIG.to_vec()),
            oci::EMPTY_MEDIA_TYPE,
        ));
    }
    match state
        .oci
        .lookup(state.store.as_ref(), &package, digest)
        .await?
    {
        Lookup::Found(Named::Layer) => {
            let mut resp = crate::routes::content::serve_content(&state, digest, req).await?;
            if let Ok(v) = HeaderValue::from_str(&digest.to_string()) {
                resp.headers_mut().insert(DOCKER_CONTENT_DIGEST, v);
            }
            Ok(resp)
        }
        Lookup::Found(Named::Config(version)) => {
            let artifact = release_artifact(&state, &package, &version).await?;
            let mut resp = blob_response(artifact.config.clone(), oci::WASM_CONFIG_MEDIA_TYPE);
            immutable(&mut resp);
            Ok(resp)
        }
        Lookup::NoPackage => Err(OciError::name_unknown(&package)),
        Lookup::Found(Named::Manifest(_)) | Lookup::Missing => {
            match state.oci.bundle_layer(&repository, digest) {
                Some(layer) => Ok(blob_response(layer, oci::BUNDLE_MEDIA_TYPE)),
                None => Err(unknown()),
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct TagsQuery {
    n: Option<String>,
    last: Option<String>,
}

/// `GET /v2/<ns>/<name>/tags/list[?n=N&last=T]`: the versions not yanked, in lexical order (as
/// the distribution spec pages them), with a `Link` to the next page.
async fn tags(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<TagsQuery>, QueryRejection>,
) -> Result<Response, OciError> {
    let Path((ns, name)) =
        path.map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "NAME_INVALID", e.body_text()))?;
    let package = package_named(&ns, &name)?;
    let Query(q) =
        query.map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", e.body_text()))?;
    let n = match q.n.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<usize>().map_err(|_| {
            OciError::new(
                StatusCode::BAD_REQUEST,
                "PAGINATION_NUMBER_INVALID",
                format!("expected `n` to be a whole number of tags, found `{raw}`"),
            )
        })?),
    };
    let versions = state.store.versions(&package.to_string()).await?;
    if versions.is_empty() {
        return Err(OciError::name_unknown(&package));
    }
    let mut all: Vec<String> = versions
        .into_iter()
        .filter(|v| !v.yanked)
        .map(|v| v.version)
        .collect();
    all.sort();
    let after: Vec<String> = match &q.last {
        Some(last) => all.into_iter().filter(|t| t > last).collect(),
        None => all,
    };
    let limit = n.unwrap_or(MAX_TAGS_PAGE).min(MAX_TAGS_PAGE);
    let more = after.len() > limit;
    let page: Vec<String> = after.into_iter().take(limit).collect();
    let repository = oci::repository(&package);
    let mut resp = Json(OciTags {
        name: repository.clone(),
        tags: page.clone(),
    })
    .into_response();
    if more && let Some(last) = page.last() {
        let link = format!("</v2/{repository}/tags/list?n={limit}&last={last}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(LINK, v);
        }
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
struct ReferrersQuery {
    #[serde(rename = "artifactType")]
    artifact_type: Option<String>,
}

/// `GET /v2/<ns>/<name>/referrers/<digest>`: an image index. For a release manifest it lists
/// the release's proof bundle (docs/protocol.md §7.11.4); for any other digest it is empty (the
/// spec wants 200, never 404, from a registry that serves referrers).
async fn referrers(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    query: Result<Query<ReferrersQuery>, QueryRejection>,
) -> Result<Response, OciError> {
    let (package, raw) = package_of(path)?;
    let digest = parse_digest(&raw, "DIGEST_INVALID")?;
    let Query(q) =
        query.map_err(|e| OciError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", e.body_text()))?;
    let mut manifests = Vec::new();
    let wanted = q
        .artifact_type
        .as_deref()
        .is_none_or(|t| t == oci::BUNDLE_MEDIA_TYPE);
    if wanted
        && let Lookup::Found(Named::Manifest(version)) = state
            .oci
            .lookup(state.store.as_ref(), &package, digest)
            .await?
    {
        let subject = release_artifact(&state, &package, &version)
            .await?
            .manifest
            .clone();
        manifests.extend(bundle_referrer(&state, &package, &subject).await?);
    }
    let mut resp = Body::from(oci::index(&manifests)).into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(oci::INDEX_MEDIA_TYPE),
    );
    if q.artifact_type.is_some() {
        resp.headers_mut().insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}

/// The descriptor of the proof-bundle artifact of a release manifest `subject` (§7.11.4),
/// keeping the artifact for by-digest reads. The package bundle is read from the store once per
/// log size and repository; a package whose bundle is over the bundle limits (413) or a log
/// being updated (503) has no referrer rather than a failing referrers answer.
async fn bundle_referrer(
    state: &AppState,
    package: &PackageName,
    subject: &Blob,
) -> Result<Option<oci::Descriptor>, OciError> {
    let repository = oci::repository(package);
    let current = state.view.latest().size;
    let (layer, size) = match state.oci.newest_bundle_layer(&repository, current) {
        Some(layer) => (layer, current),
        None => {
            let bundle = match package_bundle(state, package, Stamp::None, After::default()).await {
                Ok(b) => b,
                Err(e @ (ApiError::TooLarge(_) | ApiError::Unavailable(_))) => {
                    tracing::warn!(%package, error = %e, "no proof-bundle referrer");
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            };
            let size = gridreg_protocol::Note::parse(bundle.checkpoint.as_bytes())
                .ok()
                .and_then(|n| gridreg_protocol::Checkpoint::parse_body(&n.text).ok())
                .map(|c| c.size)
                .unwrap_or_default();
            let bytes = serde_json::to_vec(&bundle).map_err(|e| {
                OciError::from(ApiError::Internal(format!("serialising a bundle: {e}")))
            })?;
            (Blob::new(bytes), size)
        }
    };
    let manifest = oci::bundle_manifest(&layer, subject, size);
    let mut d = manifest.descriptor(oci::MANIFEST_MEDIA_TYPE);
    d.artifact_type = Some(oci::BUNDLE_MEDIA_TYPE.to_string());
    d.annotations = Some(vec![(
        "dev.gridreg.checkpoint.size".to_string(),
        size.to_string(),
    )]);
    state
        .oci
        .keep_bundle(&repository, size, BundleArtifact { manifest, layer });
    Ok(Some(d))
}

/// `GET /.well-known/wasm-pkg/registry.json`: how wkg finds this registry's OCI side.
async fn well_known(headers: HeaderMap) -> Response {
    Json(WasmPkgDiscovery {
        preferred_protocol: "oci".to_string(),
        oci: WasmPkgOci {
            registry: host(&headers),
            namespace_prefix: String::new(),
        },
    })
    .into_response()
}
