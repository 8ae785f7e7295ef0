//! The OCI read side (docs/protocol.md §7.11) as the router serves it: manifests derived from the
//! signed records, blobs per repository, tags with paging, referrers carrying a proof bundle
//! that verifies, the token dance of a private registry, and an OCI error for every bad input
//! and every push. Real OCI clients against a real server are in cli/tests/oci.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use common::*;
use gridreg_protocol::bundle::{Bundle, verify_bundle};
use gridreg_protocol::oci::{self, WasmKind};
use gridreg_protocol::{Digest, Note, PackageName, Record, SignedCheckpoint, VerifierKey};
use gridreg_registry::auth::{Scope, create_token};

backend_tests!(a_release_is_served_as_a_wasm_oci_artifact);

/// A registry with `acme:hello` 1.0.0, 1.1.0 and 1.2.0 (1.1.0 yanked) and `acme:other` 1.0.0.
async fn published(h: &Harness) {
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    let hello = fixture("hello.wasm");
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        h.publish(&alice, "acme:hello", v, &hello).await;
    }
    let y = yank(&h.app, &alice, "acme:hello", "1.1.0").await;
    assert_eq!(h.post_record(&y).await.status, StatusCode::OK);
    h.publish(&alice, "acme:other", "1.0.0", &fixture("converter.wasm"))
        .await;
}

/// Asserts an OCI error answer: this status, this code, a message.
fn assert_oci_error(r: &Reply, status: StatusCode, code: &str) {
    let j = r.json();
    assert_eq!(r.status, status, "{j}");
    assert_eq!(j["errors"][0]["code"], code, "{j}");
    assert!(
        j["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{j}"
    );
}

fn digest_header(r: &Reply) -> String {
    r.headers
        .get("docker-content-digest")
        .unwrap_or_else(|| panic!("no Docker-Content-Digest: {:?}", r.headers))
        .to_str()
        .unwrap()
        .to_string()
}

async fn a_release_is_served_as_a_wasm_oci_artifact(backend: Backend) {
    let h = harness_on(backend).await;
    published(&h).await;
    let hello = fixture("hello.wasm");

    // By tag: the manifest is exactly what the signed record derives to.
    let r = h.get("/v2/acme/hello/manifests/1.0.0").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], oci::MANIFEST_MEDIA_TYPE);
    let digest = digest_header(&r);
    assert_eq!(digest, Digest::of(&r.body).to_string());
    assert_eq!(r.headers["etag"], format!("\"{digest}\""));
    let info = h.get("/v1/packages/acme:hello/1.0.0").await.json();
    let note = Note::parse(info["record"].as_str().unwrap().as_bytes()).unwrap();
    let Record::Release(release) = Record::parse(&note.text).unwrap() else {
        panic!("not a release")
    };
    let derived = oci::release_artifact(&release, Some("alice"), WasmKind::Component);
    assert_eq!(r.body, derived.manifest.bytes);
    let manifest = r.json();
    assert_eq!(manifest["mediaType"], oci::MANIFEST_MEDIA_TYPE);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        manifest["layers"][0]["digest"],
        Digest::of(&hello).to_string()
    );
    assert_eq!(manifest["layers"][0]["size"], hello.len());

    // HEAD: the same headers, no body.
    let r = send(
        &h.app,
        Method::HEAD,
        "/v2/acme/hello/manifests/1.0.0",
        vec![],
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(digest_header(&r), digest);
    assert!(r.body.is_empty());

    // By digest: the same bytes; the config and the layer by digest.
    let r = h.get(&format!("/v2/acme/hello/manifests/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body, derived.manifest.bytes);
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let r = h
        .get(&format!("/v2/acme/hello/blobs/{config_digest}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(Digest::of(&r.body).to_string(), config_digest);
    let config = r.json();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip2");
    assert_eq!(config["created"], release.time.to_string());
    let imports: Vec<String> =
        serde_json::from_value(config["component"]["imports"].clone()).unwrap();
    assert_eq!(imports, release.imports);
    assert!(!imports.is_empty());
    let layer = format!("/v2/acme/hello/blobs/{}", Digest::of(&hello));
    let r = h.get(&layer).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, hello);
    assert_eq!(digest_header(&r), Digest::of(&hello).to_string());
    let r = send_with(
        &h.app,
        Method::GET,
        &layer,
        vec![],
        &[("range", "bytes=0-3")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, b"\0asm");

    // Blobs belong to repositories: acme:other's content is not acme:hello's.
    let other = format!(
        "/v2/acme/hello/blobs/{}",
        Digest::of(&fixture("converter.wasm"))
    );
    assert_oci_error(&h.get(&other).await, StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    let other_manifest = digest_header(&h.get("/v2/acme/other/manifests/1.0.0").await);
    assert_oci_error(
        &h.get(&format!("/v2/acme/hello/manifests/{other_manifest}"))
            .await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    );

    // Tags: versions not yanked, lexical, paged with Link.
    let r = h.get("/v2/acme/hello/tags/list").await;
    assert_eq!(r.json()["name"], "acme/hello");
    assert_eq!(r.json()["tags"], serde_json::json!(["1.0.0", "1.2.0"]));
    let r = h.get("/v2/acme/hello/tags/list?n=1").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["1.0.0"]));
    assert_eq!(
        r.headers["link"],
        "</v2/acme/hello/tags/list?n=1&last=1.0.0>; rel=\"next\""
    );
    let r = h.get("/v2/acme/hello/tags/list?n=1&last=1.0.0").await;
    assert_eq!(r.json()["tags"], serde_json::json!(["1.2.0"]));
    assert!(r.headers.get("link").is_none());
    for q in ["n=0", "last=9.9.9", "n=18446744073709551615"] {
        let r = h.get(&format!("/v2/acme/hello/tags/list?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.text());
        let expected = if q.starts_with("n=1") {
            serde_json::json!(["1.0.0", "1.2.0"])
        } else {
            serde_json::json!([])
        };
        assert_eq!(r.json()["tags"], expected, "{q}");
    }
    assert_oci_error(
        &h.get("/v2/acme/hello/tags/list?n=many").await,
        StatusCode::BAD_REQUEST,
        "PAGINATION_NUMBER_INVALID",
    );
    // A yanked version is still served by its exact tag (pins keep working).
    assert_eq!(
        h.get("/v2/acme/hello/manifests/1.1.0").await.status,
        StatusCode::OK
    );

    // Unknown names, tags, digests; malformed ones.
    for (uri, status, code) in [
        (
            "/v2/acme/nothing/manifests/1.0.0",
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        (
            "/v2/acme/nothing/tags/list",
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        (
            "/v2/acme/hello/manifests/9.9.9",
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/acme/hello/manifests/latest",
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/acme/hello/manifests/sha256:1234",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/v2/acme/hello/blobs/sha512:00",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/v2/acme/hello/blobs/..%2F..%2Flog.key",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/v2/ACME/hello/manifests/1.0.0",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "/v2/acme/hello/extra/manifests/1.0.0",
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
        (
            "/v2/acme/manifests/1.0.0",
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
        ),
    ] {
        assert_oci_error(&h.get(uri).await, status, code);
    }
    let zero = format!("sha256:{}", "0".repeat(64));
    assert_oci_error(
        &h.get(&format!("/v2/acme/hello/blobs/{zero}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    );

    // Every write through /v2/ is refused, pointing at `gridreg publish`.
    for (method, uri) in [
        (Method::POST, "/v2/acme/hello/blobs/uploads/"),
        (Method::PUT, "/v2/acme/hello/manifests/2.0.0"),
        (Method::DELETE, "/v2/acme/hello/manifests/1.0.0"),
        (
            Method::DELETE,
            &*format!("/v2/acme/hello/blobs/{}", Digest::of(&hello)),
        ),
        (Method::PATCH, "/v2/acme/hello/blobs/uploads/abc"),
    ] {
        let r = send(&h.app, method.clone(), uri, b"x".to_vec(), None).await;
        assert_oci_error(&r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
        assert!(
            r.text().contains("gridreg publish"),
            "{method} {uri}: {}",
            r.text()
        );
    }
    let (size, releases, blobs) = h.snapshot().await;
    assert_eq!(releases, 4);
    assert!(size > 0 && blobs == 2);

    // Discovery for wkg.
    let r = send_with(
        &h.app,
        Method::GET,
        "/.well-known/wasm-pkg/registry.json",
        vec![],
        &[("host", "127.0.0.1:8080")],
    )
    .await;
    assert_eq!(
        r.json(),
        serde_json::json!({"preferredProtocol": "oci", "oci": {"registry": "127.0.0.1:8080", "namespacePrefix": ""}})
    );
    let r = h.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({}));
}

/// The referrers of a release manifest list its proof bundle, which travels as an artifact
/// and verifies with the log key alone; any other digest has no referrers (200, empty).
#[tokio::test]
async fn a_release_refers_to_a_proof_bundle_that_verifies() {
    let h = harness().await;
    published(&h).await;
    let manifest = digest_header(&h.get("/v2/acme/hello/manifests/1.2.0").await);
    let r = h.get(&format!("/v2/acme/hello/referrers/{manifest}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.headers["content-type"], oci::INDEX_MEDIA_TYPE);
    let index = r.json();
    let listed = &index["manifests"][0];
    assert_eq!(listed["artifactType"], oci::BUNDLE_MEDIA_TYPE);
    let bundle_manifest = listed["digest"].as_str().unwrap();
    let r = h
        .get(&format!("/v2/acme/hello/manifests/{bundle_manifest}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(Digest::of(&r.body).to_string(), bundle_manifest);
    let m = r.json();
    assert_eq!(m["subject"]["digest"], manifest);
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = h.get(&format!("/v2/acme/hello/blobs/{layer}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(Digest::of(&r.body).to_string(), layer);
    let empty = m["config"]["digest"].as_str().unwrap();
    assert_eq!(
        h.get(&format!("/v2/acme/hello/blobs/{empty}")).await.body,
        b"{}"
    );

    // The bundle proves the package's state with nothing but the log key.
    let bundle: Bundle = serde_json::from_slice(&r.body).unwrap();
    let key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();
    let cp = SignedCheckpoint::verify(bundle.checkpoint.as_bytes(), key.name(), &key).unwrap();
    let proven = verify_bundle(
        &bundle,
        &cp.checkpoint,
        &key,
        &PackageName::parse("acme:hello").unwrap(),
    )
    .unwrap();
    let versions: Vec<String> = proven
        .releases
        .iter()
        .map(|r| r.release.version.to_string())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0", "1.2.0"]);
    assert_eq!(proven.yanks.len(), 1);
    // Unstamped: the log's signature alone, so replicas at one size serve the same bytes.
    assert_eq!(bundle.checkpoint, log_signed(&bundle.checkpoint));
    let again = h
        .get(&format!("/v2/acme/hello/referrers/{manifest}"))
        .await
        .json();
    assert_eq!(again, index);

    // Another repository's bundle is not served here; unknown subjects have no referrers.
    assert_eq!(
        h.get(&format!("/v2/acme/other/blobs/{layer}")).await.status,
        StatusCode::NOT_FOUND
    );
    let zero = format!("sha256:{}", "0".repeat(64));
    let r = h.get(&format!("/v2/acme/hello/referrers/{zero}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    let r = h
        .get(&format!(
            "/v2/acme/hello/referrers/{manifest}?artifactType=application/x-other"
        ))
        .await;
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    assert_eq!(r.headers["oci-filters-applied"], "artifactType");
    assert_oci_error(
        &h.get("/v2/acme/hello/referrers/nope").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    );
}

/// On a private registry `/v2/` answers 401 with a Bearer challenge; `/v2/token` turns Basic
/// credentials whose password is a gridreg token into the bearer token; a read token reads.
#[tokio::test]
async fn a_private_registry_challenges_and_accepts_its_tokens() {
    let (h, _admin) = private_with_hello().await;
    let store = h.registry.state.store.as_ref();

    let host = [("host", "registry.test:5000")];
    for uri in [
        "/v2/",
        "/v2/acme/hello/manifests/1.0.0",
        "/v2/acme/hello/tags/list",
    ] {
        let r = send_with(&h.app, Method::GET, uri, vec![], &host).await;
        assert_oci_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
        assert_eq!(
            r.headers["www-authenticate"],
            "Bearer realm=\"http://registry.test:5000/v2/token\",service=\"registry.test:5000\"",
            "{uri}"
        );
    }
    // A Host header that would break out of the challenge's quotes is not echoed.
    let r = send_with(
        &h.app,
        Method::GET,
        "/v2/",
        vec![],
        &[("host", "a\",b=\"c")],
    )
    .await;
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer realm=\"http://localhost/v2/token\",service=\"localhost\""
    );

    let token_uri = "/v2/token?scope=repository:acme/hello:pull&service=registry.test:5000";
    let r = h.get(token_uri).await;
    assert_oci_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let basic = |password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("anyone:{password}"))
        )
    };
    let wrong = basic("grt_0123456789abcdef_00");
    let r = send_with(
        &h.app,
        Method::GET,
        token_uri,
        vec![],
        &[("authorization", &wrong)],
    )
    .await;
    assert_oci_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = send_with(&h.app, Method::GET, "/v2/token?scope=nonsense", vec![], &[]).await;
    assert_oci_error(&r, StatusCode::BAD_REQUEST, "UNSUPPORTED");

    let (read, _) = create_token(store, Scope::Read, None).await.unwrap();
    let good = basic(&read);
    let r = send_with(
        &h.app,
        Method::GET,
        token_uri,
        vec![],
        &[("authorization", &good)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let bearer = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(r.json()["access_token"], bearer);
    for uri in [
        "/v2/",
        "/v2/acme/hello/manifests/1.0.0",
        "/v2/acme/hello/tags/list",
    ] {
        let r = send(&h.app, Method::GET, uri, vec![], Some(&bearer)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text());
    }
    // Basic straight to the registry works too (clients that skip the token endpoint).
    let r = send_with(
        &h.app,
        Method::GET,
        "/v2/acme/hello/tags/list",
        vec![],
        &[("authorization", &good)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // A revoked token no longer reads.
    let id = read.split('_').nth(1).unwrap();
    assert!(
        store
            .revoke_token(id, "2026-12-01T00:00:00Z")
            .await
            .unwrap()
    );
    let r = send(
        &h.app,
        Method::GET,
        "/v2/acme/hello/tags/list",
        vec![],
        Some(&bearer),
    )
    .await;
    assert_oci_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    // Discovery stays open: it says where the registry is, nothing more.
    assert_eq!(
        h.get("/.well-known/wasm-pkg/registry.json").await.status,
        StatusCode::OK
    );
}
