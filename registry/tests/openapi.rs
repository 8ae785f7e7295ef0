//! The committed OpenAPI document (`registry/openapi.json`) must describe exactly the routes the
//! router serves: every route declared in `src/routes/*.rs` is in the document with the same
//! methods, every documented operation reaches a handler, and its documented error statuses
//! come back with the JSON error body (an HTML page for the human pages, which document that).
//!
//! And it must describe the bodies: every JSON body it documents is a `protocol::api` type, whose
//! sample here must serialise to exactly the documented properties (the always-present ones
//! exactly the `required` ones), and every body the routes serve must fit its documented schema.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use common::*;
use gridreg_protocol::api::{
    ChainHead, ConsistencyProof, ErrorBody, ErrorCode, ErrorDetail, Health, InclusionProof,
    LogEntries, LogEntry, Member, NamespaceInfo, OciBase, OciErrorItem, OciErrors, OciTags,
    OciToken, PackageHit, PackageVersions, PublishResponse, ReleaseInfo, SearchResults, Stored,
    VersionInfo, WasmPkgDiscovery, WasmPkgOci,
};
use serde_json::Value;

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
            .replace("{namespace}", "acme")
            .replace("{name}", "nothing")
            .replace("{reference}", "1.0.0");
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
                let schema = &response["content"]["application/json"]["schema"];
                // The OCI side (docs/protocol.md §9.6) answers in the distribution spec's form.
                if schema_name(schema) == Some("OciErrors") {
                    assert!(r.json()["errors"][0]["code"].is_string(), "{method} {uri}");
                } else {
                    assert!(r.json()["error"]["code"].is_string(), "{method} {uri}");
                }
                let mut errors = Vec::new();
                check(&document(), schema, &r.json(), None, &uri, &mut errors);
                assert!(errors.is_empty(), "{method} {uri}: {errors:#?}");
            }
        }
    }
}

/// A sample of each documented JSON body, keyed by its schema's name in `components.schemas`,
/// built from the `protocol::api` type the routes serve: `full` with every optional field set,
/// `bare` with none. The struct literals name every field, so a field added to a type has to be
/// added here, and then fails the check until openapi.json documents it.
fn samples() -> Vec<(&'static str, Value, Value)> {
    fn json(v: impl serde::Serialize) -> Value {
        serde_json::to_value(v).unwrap()
    }
    let version = |full: bool| VersionInfo {
        version: "1.0.0".into(),
        digest: format!("sha256:{}", "ab".repeat(32)),
        size: 5,
        log_index: 1,
        yanked: full,
        yank_reason: full.then(|| "broken build".into()),
        capabilities: vec!["stdio".into()],
    };
    let entry = || LogEntry {
        index: 0,
        body: "gridreg/namespace/v2\n".into(),
    };
    let hashes = || vec!["AAAA".to_string()];
    let versions = |full: bool| PackageVersions {
        package: "acme:hello".into(),
        versions: vec![version(full)],
    };
    let search = |full: bool| SearchResults {
        packages: vec![PackageHit {
            name: "acme:hello".into(),
            versions: vec![version(full)],
        }],
    };
    let release = |full: bool| ReleaseInfo {
        package: "acme:hello".into(),
        info: version(full),
        record: "gridreg/release/v2\n".into(),
        audit: serde_json::json!({"kind": "component"}),
        wit: full.then(|| "package acme:hello;".into()),
    };
    let namespace = NamespaceInfo {
        namespace: "acme".into(),
        records: vec![entry()],
        members: vec![Member {
            key: "alice+00000000+AAAA".into(),
            role: "owner".into(),
        }],
    };
    let error = |full: bool| ErrorBody {
        error: ErrorDetail {
            code: ErrorCode::StalePrev,
            message: "the record names none as the head of package acme:hello".into(),
            head: full.then(|| format!("3:{}", "ab".repeat(32))),
        },
    };
    let same = |name: &'static str, v: Value| (name, v.clone(), v);
    vec![
        same(
            "Health",
            json(Health {
                log_size: 2,
                status: "ok".into(),
            }),
        ),
        same(
            "Stored",
            json(Stored {
                digest: format!("sha256:{}", "ab".repeat(32)),
                size: 5,
            }),
        ),
        same(
            "PublishResponse",
            json(PublishResponse {
                index: 1,
                checkpoint: "log.example\n".into(),
                proof: hashes(),
            }),
        ),
        same(
            "InclusionProof",
            json(InclusionProof {
                index: 1,
                size: 2,
                hashes: hashes(),
            }),
        ),
        same(
            "ConsistencyProof",
            json(ConsistencyProof {
                from: 1,
                to: 2,
                hashes: hashes(),
            }),
        ),
        same("LogEntry", json(entry())),
        same(
            "LogEntries",
            json(LogEntries {
                entries: vec![entry()],
            }),
        ),
        ("Version", json(version(true)), json(version(false))),
        ("Versions", json(versions(true)), json(versions(false))),
        ("SearchResults", json(search(true)), json(search(false))),
        ("Release", json(release(true)), json(release(false))),
        same("Namespace", json(namespace)),
        ("Error", json(error(true)), json(error(false))),
        ("Bundle", bundle(true), bundle(false)),
        (
            "NamespaceBundle",
            namespace_bundle(bundle(true)),
            namespace_bundle(bundle(false)),
        ),
        same("OciBase", json(OciBase {})),
        same(
            "OciErrors",
            json(OciErrors {
                errors: vec![OciErrorItem {
                    code: "MANIFEST_UNKNOWN".into(),
                    message: "no manifest 9.9.9 in repository acme/hello".into(),
                }],
            }),
        ),
        same(
            "OciTags",
            json(OciTags {
                name: "acme/hello".into(),
                tags: vec!["1.0.0".into()],
            }),
        ),
        same(
            "OciToken",
            json(OciToken {
                token: "grt_0123456789abcdef_00".into(),
                access_token: "grt_0123456789abcdef_00".into(),
            }),
        ),
        same(
            "WasmPkgDiscovery",
            json(WasmPkgDiscovery {
                preferred_protocol: "oci".into(),
                oci: WasmPkgOci {
                    registry: "registry.example:7411".into(),
                    namespace_prefix: String::new(),
                },
            }),
        ),
        same(
            "ChainHead",
            json(ChainHead {
                chain: "package acme:hello".into(),
                head: "none".into(),
                size: 2,
            }),
        ),
    ]
}

/// A bundle sample. Its proofs are member proofs; with `full`, the members only an
/// `absent_leaf` proof has are merged in, so every documented property of `MapProof` is seen
/// (each kind has a subset, docs/protocol.md §6.8.5); without, only the members every kind has.
fn bundle(full: bool) -> Value {
    use gridreg_protocol::bundle::{Bundle, ChainEvidence, Entry};
    use gridreg_protocol::{ChainKey, Head, HeadMap, Namespace, PackageName};
    let ns = Namespace::parse("acme").unwrap();
    let package = ChainKey::Package(PackageName::parse("acme:hello").unwrap());
    let namespace = ChainKey::Namespace(ns);
    let map = HeadMap::from_heads([
        (&package, Head::of(1, b"one")),
        (&namespace, Head::of(0, b"zero")),
    ])
    .unwrap();
    let evidence = |key: &ChainKey, index: u64| ChainEvidence {
        proof: map.prove(key),
        records: vec![Entry {
            index,
            body: "gridreg/release/v2\n".into(),
        }],
    };
    let b = Bundle {
        checkpoint: "log.example\n2\n=\n".into(),
        map_entry: "gridreg/map/v1\n".into(),
        map_inclusion: vec![[0; 32]],
        package: evidence(&package, 1),
        namespace: evidence(&namespace, 0),
    };
    let mut v = serde_json::to_value(b).unwrap();
    let absent =
        serde_json::to_value(map.prove(&ChainKey::Package(PackageName::parse("other:x").unwrap())))
            .unwrap();
    for chain in ["package", "namespace"] {
        let proof = v[chain]["proof"].as_object_mut().unwrap();
        if full {
            for member in ["other_key", "other_head"] {
                let x = absent
                    .get(member)
                    .cloned()
                    .unwrap_or_else(|| Value::String(String::new()));
                proof.insert(member.into(), x);
            }
        } else {
            proof.remove("head");
        }
    }
    v
}

/// The namespace bundle inside a bundle sample: the same members without the package chain.
fn namespace_bundle(mut bundle: Value) -> Value {
    bundle.as_object_mut().unwrap().remove("package");
    bundle
}

/// Follows `$ref`s to the schema itself, and merges an `allOf` into one object schema.
fn resolve(doc: &Value, schema: &Value) -> Value {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        return resolve(doc, &doc["components"]["schemas"][name]);
    }
    let Some(parts) = schema["allOf"].as_array() else {
        return schema.clone();
    };
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for part in parts.iter().map(|p| resolve(doc, p)) {
        if let Some(p) = part["properties"].as_object() {
            properties.extend(p.clone());
        }
        if let Some(r) = part["required"].as_array() {
            required.extend(r.iter().cloned());
        }
    }
    serde_json::json!({"type": "object", "properties": properties, "required": required})
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Checks `value` against `schema`, writing what does not fit into `errors`.
///
/// With `bare` (a sample, see [`samples`]) the properties must be exactly the documented ones
/// and the `required` ones exactly those `bare` still has. Without (a body a route served), it
/// may leave out what is not required, and nothing else.
fn check(
    doc: &Value,
    schema: &Value,
    value: &Value,
    bare: Option<&Value>,
    at: &str,
    errors: &mut Vec<String>,
) {
    let schema = resolve(doc, schema);
    let found = json_type(value);
    let allowed: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fits = |t: &&str| *t == found || (*t == "number" && found == "integer");
    if !allowed.is_empty() && !allowed.iter().any(fits) {
        errors.push(format!("{at}: expected {allowed:?}, found {found} {value}"));
        return;
    }
    if let Some(properties) = schema["properties"].as_object() {
        let documented: BTreeSet<String> = properties.keys().cloned().collect();
        let required: BTreeSet<String> = schema["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let served = keys(value);
        let undocumented: Vec<_> = served.difference(&documented).collect();
        if !undocumented.is_empty() {
            errors.push(format!(
                "{at}: expected only the documented properties {documented:?}, found also {undocumented:?}"
            ));
        }
        match bare {
            Some(bare) => {
                let missing: Vec<_> = documented.difference(&served).collect();
                if !missing.is_empty() {
                    errors.push(format!(
                        "{at}: expected the type to have the documented properties {missing:?}, found none"
                    ));
                }
                let always = keys(bare);
                if always != required {
                    errors.push(format!(
                        "{at}: expected `required` to list the properties always present, {always:?}, found {required:?}"
                    ));
                }
            }
            None => {
                let missing: Vec<_> = required.difference(&served).collect();
                if !missing.is_empty() {
                    errors.push(format!(
                        "{at}: expected the required properties {missing:?}, found them missing"
                    ));
                }
            }
        }
        for (name, child) in value.as_object().into_iter().flatten() {
            if let Some(child_schema) = properties.get(name) {
                let child_bare = bare.map(|b| b.get(name).unwrap_or(child));
                check(
                    doc,
                    child_schema,
                    child,
                    child_bare,
                    &format!("{at}.{name}"),
                    errors,
                );
            }
        }
    }
    if let (Some(items), Some(elements)) = (schema.get("items"), value.as_array()) {
        match bare {
            Some(bare) => match elements.first() {
                Some(first) => {
                    let bare_first = bare.get(0).unwrap_or(first);
                    check(
                        doc,
                        items,
                        first,
                        Some(bare_first),
                        &format!("{at}[0]"),
                        errors,
                    );
                }
                None => errors.push(format!(
                    "{at}: expected the sample to have an element to check the items by, found none"
                )),
            },
            None => {
                for (i, element) in elements.iter().enumerate() {
                    check(doc, items, element, None, &format!("{at}[{i}]"), errors);
                }
            }
        }
    }
}

/// The schema name a documented JSON body refers to.
fn schema_name(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()?
        .strip_prefix("#/components/schemas/")
}

#[test]
fn documented_bodies_are_the_protocol_types() {
    let doc = document();
    let samples = samples();
    let sampled: BTreeSet<&str> = samples.iter().map(|(name, _, _)| *name).collect();

    // Every JSON body an operation documents, request or response, names a sampled schema.
    let mut used = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut bodies: Vec<(String, &Value)> = Vec::new();
            if let Some(b) = op.get("requestBody") {
                bodies.push(("request".into(), b));
            }
            for (status, r) in op["responses"].as_object().into_iter().flatten() {
                bodies.push((status.clone(), r));
            }
            for (what, body) in bodies {
                let Some(schema) = body["content"].get("application/json") else {
                    continue;
                };
                let name = schema_name(&schema["schema"]);
                assert!(
                    name.is_some_and(|n| sampled.contains(n)),
                    "{method} {path} {what}: expected a JSON body named in components.schemas and sampled in this test, found {}",
                    schema["schema"]
                );
                used.extend(name);
            }
        }
    }
    let unused: Vec<_> = sampled.difference(&used).collect();
    let undocumented: Vec<_> = sampled
        .iter()
        .filter(|n| doc["components"]["schemas"].get(**n).is_none())
        .collect();
    assert!(
        undocumented.is_empty(),
        "expected a schema in openapi.json for every sample, found none for {undocumented:?}"
    );
    // `Version` and `LogEntry` are documented inside others; every other sample is a body.
    assert!(
        unused.iter().all(|n| ["Version", "LogEntry"].contains(*n)),
        "expected every sample to be a documented body, found unused {unused:?}"
    );

    let mut errors = Vec::new();
    for (name, full, bare) in &samples {
        let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
        check(&doc, &schema, full, Some(bare), name, &mut errors);
    }
    assert!(
        errors.is_empty(),
        "openapi.json and the protocol::api types disagree:\n{}",
        errors.join("\n")
    );
}

/// The documented schema of one operation's answer.
fn response_schema(doc: &Value, method: &str, path: &str, status: StatusCode) -> Value {
    let response = &doc["paths"][path][method]["responses"][status.as_str()];
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path}: expected openapi.json to document a JSON {status} answer, found none"
    );
    schema.clone()
}

#[tokio::test]
async fn served_bodies_fit_their_documented_schemas() {
    let h = harness().await;
    let doc = document();
    let alice = key("alice");
    let hello = fixture("hello.wasm");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    let mut served = vec![
        ("put", "/v1/content/{digest}", h.put_content(&hello).await),
        ("put", "/v1/content/{digest}", h.put_content(&hello).await),
        (
            "post",
            "/v1/records",
            h.post_record(&release(&h.app, &alice, "acme:hello", "1.0.0", &hello).await)
                .await,
        ),
    ];
    // A second version, yanked, so the optional fields show up too.
    h.put_content(&fixture("hog.wasm")).await;
    let hog = release(&h.app, &alice, "acme:hello", "1.1.0", &fixture("hog.wasm")).await;
    assert_eq!(h.post_record(&hog).await.status, StatusCode::OK);
    let y = h
        .post_record(&yank(&h.app, &alice, "acme:hello", "1.1.0").await)
        .await;
    assert_eq!(y.status, StatusCode::OK, "{}", y.text());
    for (path, uri) in [
        ("/healthz", "/healthz"),
        ("/v1/packages", "/v1/packages?q=hello"),
        ("/v1/packages/{package}", "/v1/packages/acme:hello"),
        (
            "/v1/packages/{package}/{version}",
            "/v1/packages/acme:hello/1.0.0",
        ),
        (
            "/v1/packages/{package}/{version}",
            "/v1/packages/acme:hello/1.1.0",
        ),
        ("/v1/namespaces/{namespace}", "/v1/namespaces/acme"),
        (
            "/v1/chains/namespace/{namespace}",
            "/v1/chains/namespace/acme",
        ),
        (
            "/v1/chains/package/{package}",
            "/v1/chains/package/acme:hello",
        ),
        ("/v1/bundles/{package}", "/v1/bundles/acme:hello"),
        ("/v1/bundles/{package}", "/v1/bundles/acme:absent"),
        (
            "/v1/namespaces/{namespace}/bundle",
            "/v1/namespaces/acme/bundle",
        ),
        (
            "/v1/chains/package/{package}",
            "/v1/chains/package/acme:none",
        ),
        ("/v2/", "/v2/"),
        ("/v2/token", "/v2/token"),
        (
            "/v2/{namespace}/{name}/tags/list",
            "/v2/acme/hello/tags/list",
        ),
        (
            "/.well-known/wasm-pkg/registry.json",
            "/.well-known/wasm-pkg/registry.json",
        ),
        ("/v1/log/entries", "/v1/log/entries?start=0"),
        (
            "/v1/log/proof/inclusion",
            "/v1/log/proof/inclusion?index=1&size=4",
        ),
        (
            "/v1/log/proof/consistency",
            "/v1/log/proof/consistency?from=1&to=4",
        ),
    ] {
        served.push(("get", path, h.get(uri).await));
    }
    let mut errors = Vec::new();
    for (method, path, reply) in &served {
        assert!(
            reply.status.is_success(),
            "{method} {path}: {}",
            reply.text()
        );
        let schema = response_schema(&doc, method, path, reply.status);
        check(&doc, &schema, &reply.json(), None, path, &mut errors);
    }
    assert!(errors.is_empty(), "{errors:#?}");
    // The yanked version's reason and a component's WIT were there to check.
    let versions = h.get("/v1/packages/acme:hello").await.json();
    assert!(
        versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["yank_reason"].is_string())
    );
    let release = h.get("/v1/packages/acme:hello/1.0.0").await.json();
    assert!(release["wit"].is_string(), "{release}");
}
