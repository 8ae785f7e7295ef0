//! Human pages under `/`: the package list with a search form, a package's versions, one
//! release (record, audit, WIT) and the log's status. Server-rendered HTML with one inline
//! stylesheet, no JavaScript and no external assets; every piece of stored or requested text
//! goes through [`escape`], because package text, yank reasons, import names and WIT come
//! from publishers. Reads use the same store methods as the JSON endpoints, and the same
//! authentication middleware guards them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gridreg_protocol::name::parse_version;
use gridreg_protocol::{Note, PackageName, Record};
use serde::Deserialize;

use crate::state::AppState;
use crate::store::{Search, StoreError, VersionRow};

/// Most releases the package list reads (as the search endpoint).
const MAX_LISTED: u32 = super::packages::MAX_RESULTS;
/// How many of the newest log entries the log page shows.
pub const RECENT_ENTRIES: u64 = 50;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/packages/{package}", get(package))
        .route("/packages/{package}/{version}", get(release))
        .route("/log", get(log))
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query-string value (everything but RFC 3986 unreserved characters).
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:70rem;margin:1rem auto;\
padding:0 1rem;color:#1b1b1b}a{color:#0645ad}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
pre{background:#f5f5f5;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}\
code,pre{font-family:ui-monospace,monospace;font-size:.9em}.cap{display:inline-block;\
background:#eef;border-radius:3px;padding:0 .3rem;margin:0 .2rem .2rem 0}.yanked{color:#a00}\
nav a{margin-right:1rem}";

/// The pages' failures. Internal details are logged, never shown.
#[derive(Debug)]
enum PageError {
    BadRequest(String),
    NotFound(String),
    Internal(String),
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> Self {
        PageError::Internal(e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            PageError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            PageError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error on a page");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "internal error".to_string(),
                )
            }
        };
        page(
            status,
            title,
            &format!("<h1>{title}</h1>\n<p>{}</p>\n", escape(&message)),
        )
    }
}

/// A whole HTML document. `body` must already be escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · gridreg</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <nav><a href=\"/\">packages</a><a href=\"/log\">log</a></nav>\n{body}</body>\n</html>\n",
        escape(title)
    );
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // No scripts, frames or outside resources, even if escaping ever missed something.
            (
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
                ),
            ),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        html,
    )
        .into_response()
}

fn capabilities(classes: &[String]) -> String {
    let mut out = String::new();
    for c in classes {
        let _ = write!(
            out,
            "<a class=\"cap\" href=\"/?capability={}\">{}</a>",
            escape(&query_value(c)),
            escape(c)
        );
    }
    if out.is_empty() {
        out.push_str("<em>none</em>");
    }
    out
}

fn package_href(package: &str) -> String {
    format!("/packages/{}", escape(package))
}

fn release_href(package: &str, version: &str) -> String {
    format!("/packages/{}/{}", escape(package), escape(version))
}

/// The newest version by semver, preferring releases that are not yanked.
fn newest(rows: &[VersionRow]) -> Option<&VersionRow> {
    let key = |r: &&VersionRow| (!r.yanked, semver::Version::parse(&r.version).ok());
    rows.iter().max_by_key(key)
}

fn by_version_desc(rows: &mut [VersionRow]) {
    rows.sort_by(|a, b| {
        semver::Version::parse(&b.version)
            .ok()
            .cmp(&semver::Version::parse(&a.version).ok())
    });
}

fn package_from(raw: &str) -> Result<String, PageError> {
    PackageName::parse(raw)
        .map(|p| p.to_string())
        .map_err(|e| PageError::BadRequest(e.to_string()))
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[derive(Debug, Deserialize)]
struct IndexQuery {
    q: Option<String>,
    capability: Option<String>,
}

/// `GET /`: the registry, its log, a search form and the packages.
async fn index(
    State(state): State<AppState>,
    q: Result<Query<IndexQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(q) = q.map_err(|e| PageError::BadRequest(e.body_text()))?;
    let (text, capability) = (nonempty(q.q), nonempty(q.capability));
    let search = Search {
        q: text.clone(),
        capability: capability.clone(),
        imports: None,
        exports: None,
        limit: MAX_LISTED,
    };
    let hits = state.store.search(&search).await?;
    let read = hits.len();
    let mut packages: BTreeMap<String, Vec<VersionRow>> = BTreeMap::new();
    for hit in hits {
        packages.entry(hit.package).or_default().push(hit.row);
    }
    let latest = state.view.latest();

    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{origin}</h1>\n<p>Transparency log <code>{origin}</code>: \
         <a href=\"/log\">{size} entries</a>.</p>\n\
         <details><summary>Latest checkpoint</summary><pre>{cp}</pre></details>\n",
        origin = escape(&state.origin),
        size = latest.size,
        cp = escape(&latest.body),
    );
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/\">\n\
         <label>Package <input type=\"search\" name=\"q\" value=\"{}\"></label>\n\
         <label>Capability <input type=\"text\" name=\"capability\" value=\"{}\" \
         placeholder=\"network\"></label>\n<button type=\"submit\">Search</button>\n</form>\n",
        escape(text.as_deref().unwrap_or_default()),
        escape(capability.as_deref().unwrap_or_default()),
    );
    let filtered = text.is_some() || capability.is_some();
    let _ = writeln!(
        b,
        "<h2>{} package{}{}</h2>",
        packages.len(),
        if packages.len() == 1 { "" } else { "s" },
        if filtered { " matching" } else { "" },
    );
    if packages.is_empty() {
        b.push_str("<p>No packages.</p>\n");
    } else {
        let newest_label = if filtered {
            "Newest matching version"
        } else {
            "Newest version"
        };
        let _ = writeln!(
            b,
            "<table>\n<tr><th>Package</th><th>{newest_label}</th><th>Versions</th>\
             <th>Capabilities</th></tr>"
        );
        for (name, rows) in &packages {
            let Some(top) = newest(rows) else { continue };
            let _ = writeln!(
                b,
                "<tr><td><a href=\"{}\">{}</a></td><td><a href=\"{}\">{}</a>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                package_href(name),
                escape(name),
                release_href(name, &top.version),
                escape(&top.version),
                if top.yanked {
                    " <span class=\"yanked\">(yanked)</span>"
                } else {
                    ""
                },
                rows.len(),
                capabilities(&top.capabilities),
            );
        }
        b.push_str("</table>\n");
    }
    if read as u64 >= u64::from(MAX_LISTED) {
        let _ = writeln!(
            b,
            "<p>Showing the first {MAX_LISTED} releases; narrow the search to see others.</p>"
        );
    }
    Ok(page(StatusCode::OK, &state.origin, &b))
}

/// `GET /packages/{package}`: every version with digest, size, log index, yank and capabilities.
async fn package(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, PageError> {
    let Path(raw) = path.map_err(|e| PageError::BadRequest(e.body_text()))?;
    let package = package_from(&raw)?;
    let mut rows = state.store.versions(&package).await?;
    if rows.is_empty() {
        return Err(PageError::NotFound(format!("no package {package}")));
    }
    by_version_desc(&mut rows);
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{}</h1>\n<p>{} version{}. JSON: <a href=\"/v1/packages/{p}\">/v1/packages/{p}</a></p>\n\
         <table>\n<tr><th>Version</th><th>Digest</th><th>Size</th><th>Log index</th>\
         <th>Yanked</th><th>Capabilities</th></tr>\n",
        escape(&package),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        p = escape(&package),
    );
    for r in &rows {
        let yanked = if r.yanked {
            format!(
                "<span class=\"yanked\">yanked</span>{}",
                r.yank_reason
                    .as_deref()
                    .map(|reason| format!(": {}", escape(reason)))
                    .unwrap_or_default()
            )
        } else {
            "no".to_string()
        };
        let _ = writeln!(
            b,
            "<tr><td><a href=\"{}\">{}</a></td><td><code>{}</code></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            release_href(&package, &r.version),
            escape(&r.version),
            escape(&r.digest),
            r.size,
            r.log_index,
            yanked,
            capabilities(&r.capabilities),
        );
    }
    b.push_str("</table>\n");
    Ok(page(StatusCode::OK, &package, &b))
}

/// `GET /packages/{package}/{version}`: the signed record, log index, audit and WIT.
async fn release(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, PageError> {
    let Path((raw, version)) = path.map_err(|e| PageError::BadRequest(e.body_text()))?;
    let package = package_from(&raw)?;
    let version = parse_version(&version)
        .map_err(|e| PageError::BadRequest(e.to_string()))?
        .to_string();
    let release = crate::routes::wit::release_with_wit(&state, &package, &version).await;
    let Some(r) = release.map_err(|e| PageError::Internal(e.to_string()))? else {
        return Err(PageError::NotFound(format!(
            "no release {package}@{version}"
        )));
    };
    let audit: gridreg_verifier::Audit = serde_json::from_str(&r.audit_json)
        .map_err(|e| PageError::Internal(format!("stored audit of {package}@{version}: {e}")))?;
    let title = format!("{package}@{version}");
    // The same release as OCI clients see it (docs/protocol.md §7.11.3).
    let oci = crate::oci::derive(&version, &r.kind, &r.record)
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let name = gridreg_protocol::PackageName::parse(&package)
        .map_err(|e| PageError::BadRequest(e.to_string()))?;
    let repository = gridreg_protocol::oci::repository(&name);
    let manifest = oci.artifact.manifest.digest.to_string();
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<h1><a href=\"{}\">{}</a>@{}</h1>",
        package_href(&package),
        escape(&package),
        escape(&version)
    );
    if r.row.yanked {
        let _ = writeln!(
            b,
            "<p class=\"yanked\">Yanked{}</p>",
            r.row
                .yank_reason
                .as_deref()
                .map(|reason| format!(": {}", escape(reason)))
                .unwrap_or_default()
        );
    }
    let _ = write!(
        b,
        "<table>\n<tr><th>Kind</th><td>{kind}</td></tr>\n\
         <tr><th>Digest</th><td><code>{digest}</code> \
         (<a href=\"/v1/content/{digest}\">download</a>)</td></tr>\n\
         <tr><th>Size</th><td>{size} bytes</td></tr>\n\
         <tr><th>Log index</th><td>{index} (<a href=\"/v1/log/entries?start={index}&amp;end={next}\">entry</a>, \
         <a href=\"/v1/log/proof/inclusion?index={index}&amp;size={log_size}\">inclusion proof</a>)</td></tr>\n\
         <tr><th>Capabilities</th><td>{caps}</td></tr>\n\
         <tr><th>gridreg reference</th><td><code>{package}@{version}</code></td></tr>\n\
         <tr><th>OCI reference</th><td><code>{host}/{repository}:{version}</code></td></tr>\n\
         <tr><th>OCI manifest</th><td><code>{manifest}</code> \
         (<a href=\"/v2/{repository}/manifests/{manifest}\">manifest</a>)</td></tr>\n</table>\n",
        package = escape(&package),
        version = escape(&version),
        host = escape(&crate::routes::oci::host(&headers)),
        repository = escape(&repository),
        manifest = escape(&manifest),
        kind = match audit.kind {
            gridreg_verifier::Kind::Component => "component",
            gridreg_verifier::Kind::Module => "core module",
        },
        digest = escape(&r.row.digest),
        size = r.row.size,
        index = r.row.log_index,
        next = r.row.log_index.saturating_add(1),
        log_size = state
            .view
            .latest()
            .size
            .max(r.row.log_index.saturating_add(1)),
        caps = capabilities(&r.row.capabilities),
    );
    let _ = writeln!(b, "<h2>Imports ({})</h2>", audit.imports.len());
    if audit.imports.is_empty() {
        b.push_str("<p>None.</p>\n");
    } else {
        b.push_str("<table>\n<tr><th>Import</th><th>Class</th></tr>\n");
        for i in &audit.imports {
            let class = i.class.to_string();
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                escape(&i.name),
                capabilities(std::slice::from_ref(&class)),
            );
        }
        b.push_str("</table>\n");
    }
    let _ = writeln!(b, "<h2>Exports ({})</h2>", audit.exports.len());
    if audit.exports.is_empty() {
        b.push_str("<p>None.</p>\n");
    } else {
        b.push_str("<ul>\n");
        for e in &audit.exports {
            let _ = writeln!(b, "<li><code>{}</code></li>", escape(e));
        }
        b.push_str("</ul>\n");
    }
    let _ = writeln!(
        b,
        "<h2>Signed record</h2>\n<pre>{}</pre>",
        escape(&r.record)
    );
    b.push_str("<h2>WIT</h2>\n");
    match &r.wit {
        Some(wit) => {
            let _ = writeln!(b, "<pre>{}</pre>", escape(wit));
        }
        None => b.push_str("<p>No WIT: this is a core module.</p>\n"),
    }
    Ok(page(StatusCode::OK, &title, &b))
}

/// One line about a log entry, with a link to what it changed.
fn describe(index: u64, body: &[u8]) -> String {
    let record = Note::parse(body)
        .ok()
        .and_then(|note| Record::parse(&note.text).ok());
    match record {
        Some(Record::Release(r)) => {
            let (p, v) = (r.package.to_string(), r.version.to_string());
            format!(
                "release <a href=\"{}\">{}@{}</a>",
                release_href(&p, &v),
                escape(&p),
                escape(&v)
            )
        }
        Some(Record::Namespace(n)) => format!(
            "namespace <code>{}</code> {} {} <code>{}</code>",
            escape(&n.namespace.to_string()),
            escape(&n.op.to_string()),
            escape(&n.role.to_string()),
            escape(&n.key.to_string()),
        ),
        Some(Record::Yank(y)) => {
            let (p, v) = (y.package.to_string(), y.version.to_string());
            format!(
                "yank <a href=\"{}\">{}@{}</a>: {}",
                release_href(&p, &v),
                escape(&p),
                escape(&v),
                escape(&y.reason)
            )
        }
        None if let Some(entry) = Note::parse(body)
            .ok()
            .and_then(|note| gridreg_protocol::bundle::MapEntry::parse(&note.text).ok()) =>
        {
            format!(
                "map entry: head map root <code>{}</code> over the {} entries before it",
                hex::encode(&entry.root[..8]),
                entry.size
            )
        }
        None => {
            tracing::warn!(index, "log entry does not parse as a record");
            "unreadable entry".to_string()
        }
    }
}

/// `GET /log`: the latest checkpoint, the log key and the newest entries.
async fn log(State(state): State<AppState>) -> Result<Response, PageError> {
    let latest = state.view.latest();
    let start = latest.size.saturating_sub(RECENT_ENTRIES);
    let mut entries = state.store.entries(start, latest.size).await?;
    entries.reverse();
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Log <code>{origin}</code></h1>\n<p>{size} entries. Log key: <code>{key}</code></p>\n\
         <h2>Latest checkpoint</h2>\n<pre>{cp}</pre>\n<p>Machine-readable: \
         <a href=\"/v1/log/checkpoint\">checkpoint</a>, <a href=\"/v1/log/key\">key</a>, \
         <a href=\"/v1/log/entries?start={start}\">entries</a>; C2SP tiles under \
         <a href=\"/checkpoint\">/checkpoint</a> and <code>/tile/</code>.</p>\n",
        origin = escape(&state.origin),
        size = latest.size,
        key = escape(&state.log_key),
        cp = escape(&latest.body),
    );
    let witnesses = state.witnesses.report();
    if !witnesses.is_empty() {
        b.push_str(
            "<h2>Witnesses</h2>\n<table>\n<tr><th>Witness</th><th>Cosigned size</th>\
             <th>Behind by</th><th>Last submission</th></tr>\n",
        );
        for w in &witnesses {
            let cosigned = w.cosigned_size.unwrap_or(0);
            let _ = writeln!(
                b,
                "<tr><td><code>{}</code><br>{}</td><td>{}</td><td>{} entries</td><td>{}</td></tr>",
                escape(&w.name),
                escape(&w.url),
                w.cosigned_size
                    .map_or_else(|| "none yet".to_string(), |s| s.to_string()),
                latest.size.saturating_sub(cosigned),
                w.last_error.as_deref().map_or_else(
                    || "cosigned".to_string(),
                    |e| format!("failed: {}", escape(e))
                ),
            );
        }
        b.push_str("</table>\n");
    }
    let _ = writeln!(b, "<h2>Newest entries</h2>");
    if entries.is_empty() {
        b.push_str("<p>The log is empty.</p>\n");
    } else {
        b.push_str("<table>\n<tr><th>Index</th><th>Entry</th></tr>\n");
        for (index, body) in &entries {
            let _ = writeln!(
                b,
                "<tr><td><a href=\"/v1/log/entries?start={index}&amp;end={}\">{index}</a></td>\
                 <td>{}</td></tr>",
                index.saturating_add(1),
                describe(*index, body),
            );
        }
        b.push_str("</table>\n");
    }
    Ok(page(StatusCode::OK, "log", &b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        let hostile = "<script>alert('x')</script> & \"quoted\" </pre><img src=x onerror=y>";
        let out = escape(hostile);
        for bad in ['<', '>', '"', '\''] {
            assert!(!out.contains(bad), "{out}");
        }
        assert_eq!(
            escape("a<b>&\"'"),
            "a&lt;b&gt;&amp;&quot;&#39;",
            "each special character has its entity"
        );
        // Entities already in the text are escaped again, not trusted.
        assert_eq!(escape("&lt;"), "&amp;lt;");
        assert_eq!(escape("plain wit: package a:b;"), "plain wit: package a:b;");
    }

    #[test]
    fn escape_keeps_hostile_wit_inert() {
        let wit =
            "/// </pre><script>fetch('//evil')</script>\ninterface x { f: func() -> string; }\n";
        let out = escape(wit);
        assert!(
            !out.contains("</pre>") && !out.contains("<script>"),
            "{out}"
        );
        assert!(out.contains("&lt;/pre&gt;&lt;script&gt;"), "{out}");
        assert!(
            out.contains("interface x { f: func() -&gt; string; }"),
            "{out}"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("import:acme:ledger"), "import%3Aacme%3Aledger");
        assert_eq!(query_value("a b&c=\"d\""), "a%20b%26c%3D%22d%22");
        assert_eq!(query_value("network"), "network");
    }
}
