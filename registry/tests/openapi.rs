//! The committed OpenAPI document (`registry/openapi.json`) must describe exactly the routes the
//! router serves: every route declared in `src/routes/*.rs` is in the document with the same
//! methods, every documented operation reaches a handler, and its documented error statuses
//! come back with the JSON error body (an HTML page for the human pages, which document that).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::*;

fn document() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn documented() -> BTreeSet<(String, String)> {
    let doc = document();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_some() {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

/// The `(method, path)` pairs declared with `.route("...", get(..).put(..))` in the sources.
fn declared() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/routes");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for chunk in src.split(".route(").skip(1) {
            let Some(rest) = chunk.trim_start().strip_prefix('"') else {
                continue;
            };
            let path = &rest[..rest.find('"').unwrap()];
            // The method router ends where the next route, or the routes function, ends.
            let end = chunk.find("\n}").unwrap_or(chunk.len());
            let methods = &chunk[..end];
            for method in ["get", "put", "post", "delete"] {
                let call = format!("{method}(");
                if methods.match_indices(&call).any(|(i, _)| {
                    i == 0
                        || !methods.as_bytes()[i - 1].is_ascii_alphanumeric()
                            && methods.as_bytes()[i - 1] != b'_'
                }) {
                    out.insert((method.to_string(), path.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn document_matches_the_declared_routes() {
    let declared = declared();
    assert!(declared.len() >= 15, "parsed too few routes: {declared:?}");
    let documented = documented();
    let missing: Vec<_> = declared.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&declared).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "openapi.json drifted from src/routes: undocumented {missing:?}, documented but not served {stale:?}"
    );
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let h = harness().await;
    for (method, path) in documented() {
        let uri = path
            .replace("{digest}", &format!("sha256:{}", "0".repeat(64)))
            .replace("{package}", "acme:nothing")
            .replace("{version}", "1.0.0")
            .replace("{namespace}", "acme");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = send(&h.app, method.clone(), &uri, Vec::new(), None).await;
        // The router's own misses are a bare 404 or a 405; a handler answers with a body.
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.body.is_empty()),
            "{method} {uri} has no handler"
        );
        // Any error status the handler gives is documented for that operation, with the JSON body.
        if !r.status.is_success() {
            let op = &document()["paths"][&path][method.as_str().to_lowercase()];
            assert!(
                op["responses"].get(r.status.as_str()).is_some(),
                "{method} {uri} answered {} which openapi.json does not list",
                r.status
            );
            // The human pages document (and answer) HTML error pages; the API, the JSON body.
            let response = &op["responses"][r.status.as_str()];
            if response["content"].get("text/html").is_some() {
                let content_type = r.headers["content-type"].to_str().unwrap();
                assert!(
                    content_type.starts_with("text/html"),
                    "{method} {uri} documents an HTML error page, answered {content_type}"
                );
            } else {
                assert!(r.json()["error"]["code"].is_string(), "{method} {uri}");
            }
        }
    }
}
