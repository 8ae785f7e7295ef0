//! The HTTP API against a real SQLite file and a real PostgreSQL database (each test runs on
//! both, as `name::sqlite` and `name::postgres`): the happy path end to end, with the client-side
//! checks a puller makes, and every rejection with proof that nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use gridreg_protocol::api::decode_hashes;
use gridreg_protocol::merkle;
use gridreg_protocol::{Digest, NamespaceOp, Prev, Role, SignedCheckpoint, VerifierKey};
use gridreg_registry::auth::{Scope, create_token};

backend_tests!(
    publish_fetch_and_verify_hello,
    upload_rejections_store_nothing,
    record_rejections_change_nothing,
    namespace_policy_is_enforced,
    private_registry_needs_tokens,
    log_endpoints_refuse_bad_questions,
    entry_pages_are_bounded_by_bytes,
    unnamed_uploads_are_collected,
    pending_uploads_are_capped_until_a_release_names_them,
    restart_keeps_the_log_and_refuses_another_origin,
);

// docs/protocol.md §7.4 "Log endpoints", §7.5 "Content endpoints", §7.6 "Publishing", §7.7
// "Package endpoints": the bodies a publish and its reads return.
async fn publish_fetch_and_verify_hello(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    let hello = fixture("hello.wasm");

    // The empty log already has a signed checkpoint.
    let origin = "gridreg.local/log";
    let log_key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();
    let cp0 = h.get("/v1/log/checkpoint").await;
    assert_eq!(cp0.status, StatusCode::OK);
    let cp0 = SignedCheckpoint::verify(&cp0.body, origin, &log_key).unwrap();
    assert_eq!(cp0.size(), 0);

    let r = h.post_record(&claim(&h.app, &alice, "acme").await).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["index"], 0);

    let up = h.put_content(&hello).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text());
    assert_eq!(up.json()["size"], hello.len() as u64);
    // Idempotent.
    assert_eq!(h.put_content(&hello).await.status, StatusCode::OK);

    let leaf = release(&h.app, &alice, "acme:hello", "1.0.0", &hello).await;
    let r = h.post_record(&leaf).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer = r.json();
    // The claim at 0, its batch's map entry at 1 (docs/protocol.md §6.9), the release at 2.
    assert_eq!(answer["index"], 2);

    // The client's checks: checkpoint signed by the log, inclusion of the exact leaf bytes.
    let cp = SignedCheckpoint::verify(
        answer["checkpoint"].as_str().unwrap().as_bytes(),
        origin,
        &log_key,
    )
    .unwrap();
    assert_eq!(cp.size(), 4, "the release and the map entry after it");
    let proof: Vec<String> = serde_json::from_value(answer["proof"].clone()).unwrap();
    let proof = decode_hashes(&proof).unwrap();
    merkle::verify_inclusion(
        &proof,
        cp.size(),
        cp.root(),
        2,
        &merkle::leaf_hash(leaf.as_bytes()),
    )
    .unwrap();
    // A different leaf does not verify with that proof.
    let other = release(&h.app, &alice, "acme:hello", "1.0.1", &hello).await;
    assert!(
        merkle::verify_inclusion(
            &proof,
            cp.size(),
            cp.root(),
            2,
            &merkle::leaf_hash(other.as_bytes())
        )
        .is_err()
    );

    // Same proof from the proof endpoint, and a consistency proof from the claim's checkpoint.
    let p = h.get("/v1/log/proof/inclusion?index=2&size=4").await.json();
    assert_eq!(p["hashes"], answer["proof"]);
    let c = h.get("/v1/log/proof/consistency?from=2&to=4").await.json();
    let c: Vec<String> = serde_json::from_value(c["hashes"].clone()).unwrap();
    let entries = h.get("/v1/log/entries?start=0&end=10").await.json();
    let bodies: Vec<String> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies.len(), 4);
    assert_eq!(bodies[2], leaf);
    assert!(bodies[1].starts_with("gridreg/map/v1\n") && bodies[3].starts_with("gridreg/map/v1\n"));
    let leaves: Vec<_> = bodies[..2]
        .iter()
        .map(|b| merkle::leaf_hash(b.as_bytes()))
        .collect();
    let root2 = merkle::node_hash(&leaves[0], &leaves[1]);
    merkle::verify_consistency(&decode_hashes(&c).unwrap(), 4, cp.root(), 2, &root2).unwrap();

    // The bytes come back, whole and by range.
    let got = h.get(&format!("/v1/content/{}", Digest::of(&hello))).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.headers["content-type"], "application/wasm");
    assert_eq!(got.body, hello);
    let ranged = send(
        &h.app,
        Method::GET,
        &format!("/v1/content/{}", Digest::of(&hello)),
        Vec::new(),
        None,
    )
    .await;
    assert_eq!(ranged.body, hello);
    let req = axum::http::Request::get(format!("/v1/content/{}", Digest::of(&hello)))
        .header("range", "bytes=0-7")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(h.app.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    let part = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&part[..], &hello[..8]);

    // Package pages.
    let v = h.get("/v1/packages/acme:hello").await.json();
    assert_eq!(v["versions"][0]["version"], "1.0.0");
    assert_eq!(v["versions"][0]["log_index"], 2);
    assert_eq!(v["versions"][0]["yanked"], false);
    // The WIT is extracted on the release's first read, not at publish, then kept in its row.
    let stored = h.registry.state.store.release("acme:hello", "1.0.0");
    assert_eq!(stored.await.unwrap().unwrap().wit, None);
    let rel = h.get("/v1/packages/acme:hello/1.0.0").await.json();
    let stored = h.registry.state.store.release("acme:hello", "1.0.0");
    assert_eq!(
        stored.await.unwrap().unwrap().wit.as_deref(),
        rel["wit"].as_str()
    );
    assert_eq!(h.get("/v1/packages/acme:hello/1.0.0").await.json(), rel);
    assert_eq!(rel["record"], leaf);
    assert_eq!(rel["audit"]["kind"], "component");
    assert_eq!(rel["digest"], Digest::of(&hello).to_string());
    assert!(
        rel["wit"].as_str().unwrap().contains("wasi:cli/run"),
        "{}",
        rel["wit"]
    );

    // Search by import prefix, export, capability and text.
    let s = h.get("/v1/packages?imports=wasi:cli/stdout").await.json();
    assert_eq!(s["packages"][0]["name"], "acme:hello");
    let s = h.get("/v1/packages?exports=wasi:cli/run").await.json();
    assert_eq!(s["packages"].as_array().unwrap().len(), 1);
    let s = h.get("/v1/packages?imports=wasi:sockets").await.json();
    assert_eq!(s["packages"].as_array().unwrap().len(), 0);
    let s = h.get("/v1/packages?capability=stdio").await.json();
    assert_eq!(s["packages"].as_array().unwrap().len(), 1);
    let s = h.get("/v1/packages?capability=network").await.json();
    assert_eq!(s["packages"].as_array().unwrap().len(), 0);
    let s = h.get("/v1/packages?q=hel").await.json();
    assert_eq!(s["packages"].as_array().unwrap().len(), 1);

    // Namespace page.
    let ns = h.get("/v1/namespaces/acme").await.json();
    assert_eq!(ns["records"][0]["index"], 0);
    assert_eq!(ns["members"][0]["role"], "owner");

    // Yank, and the version stays taken.
    let r = h
        .post_record(&yank(&h.app, &alice, "acme:hello", "1.0.0").await)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v = h.get("/v1/packages/acme:hello").await.json();
    assert_eq!(v["versions"][0]["yanked"], true);
    let before = h.snapshot().await;
    h.post_record(&release(&h.app, &alice, "acme:hello", "1.0.0", &hello).await)
        .await
        .assert_error(StatusCode::CONFLICT, "version_exists");
    h.post_record(&yank(&h.app, &alice, "acme:hello", "1.0.0").await)
        .await
        .assert_error(StatusCode::CONFLICT, "already_yanked");
    assert_eq!(h.snapshot().await, before);

    // Health and metrics.
    assert_eq!(h.get("/healthz").await.json()["log_size"], 6);
    let m = h.get("/metrics").await.text();
    assert!(m.contains("gridreg_log_size 6"), "{m}");
    assert!(m.contains("gridreg_publishes_total 3"), "{m}");
    assert!(
        m.contains("gridreg_rejections_total{code=\"version_exists\"} 1"),
        "{m}"
    );
}

// docs/protocol.md §7.5.1 and §7.2 "Errors": refused uploads and their error codes.
async fn upload_rejections_store_nothing(backend: Backend) {
    let h = harness_with(backend, |c| c.max_blob_size = 20_000).await;
    let hello = fixture("hello.wasm");
    let before = h.snapshot().await;

    // Digest mismatch.
    let wrong = format!("/v1/content/{}", Digest::of(b"something else"));
    send(&h.app, Method::PUT, &wrong, hello.clone(), None)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "digest_mismatch");
    // Too large.
    let big = fixture("tcp-client.wasm");
    h.put_content(&big)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // Bytes that are not WebAssembly are not hosted, whatever digest they come under.
    for junk in [&b"#!/bin/sh\nrm -rf /\n"[..], b"\0as", b""] {
        let path = format!("/v1/content/{}", Digest::of(junk));
        let r = send(&h.app, Method::PUT, &path, junk.to_vec(), None).await;
        r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_wasm");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("expected WebAssembly")),
            "{}",
            r.json()
        );
    }
    // Bad digest spellings never reach the file system.
    for bad in [
        "sha256:abc",
        "sha256:..%2F..%2Fetc",
        "md5:00",
        &format!("sha256:{}", "AB".repeat(32)),
    ] {
        send(
            &h.app,
            Method::PUT,
            &format!("/v1/content/{bad}"),
            hello.clone(),
            None,
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    assert_eq!(h.snapshot().await, before);
    // Nothing is left in the temp directory either.
    let tmp = h.dir.path().join("data/blobs/tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
    // Unknown content is a 404 with the JSON body.
    h.get(&format!("/v1/content/{}", Digest::of(b"nope")))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

// docs/protocol.md §7.6 "Publishing" and §5.4 "Refusals": each refusal's status and code.
async fn record_rejections_change_nothing(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    let bob = key("bob");
    let carol = key("carol");
    let hello = fixture("hello.wasm");
    let tcp = fixture("tcp-client.wasm");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    assert_eq!(h.put_content(&tcp).await.status, StatusCode::CREATED);
    // WebAssembly's magic, then garbage: hosted, and refused when a release names it.
    let junk = b"\0asm definitely not wasm".to_vec();
    assert_eq!(h.put_content(&junk).await.status, StatusCode::CREATED);

    let before = h.snapshot().await;
    let check = |r: common::Reply, status, code: &str| r.assert_error(status, code);

    // Malformed record text.
    check(
        h.post_record("hello\n").await,
        StatusCode::BAD_REQUEST,
        "malformed_record",
    );
    let unsigned = "gridreg/namespace/v1\nnamespace acme\n";
    check(
        h.post_record(unsigned).await,
        StatusCode::BAD_REQUEST,
        "malformed_record",
    );
    let body = release(&h.app, &alice, "acme:hello", "2.0.0", &hello).await;
    let tampered = body.replacen("version 2.0.0", "version 2.0.1", 1);
    check(
        h.post_record(&tampered).await,
        StatusCode::FORBIDDEN,
        "bad_signature",
    );

    // Content not uploaded.
    let mut rec = release_record("acme:hello", "2.0.0", &hello);
    rec.digest = Digest::of(b"never uploaded");
    let leaf = gridreg_protocol::Record::Release(rec)
        .sign(&[&alice])
        .unwrap();
    check(
        h.post_record(&leaf).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "content_missing",
    );

    // Size mismatch.
    let mut rec = release_record("acme:hello", "2.0.0", &hello);
    rec.size += 1;
    let leaf = gridreg_protocol::Record::Release(rec)
        .sign(&[&alice])
        .unwrap();
    check(
        h.post_record(&leaf).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "size_mismatch",
    );

    // Invalid wasm.
    let rec = gridreg_protocol::Release {
        package: "acme:junk".parse().unwrap(),
        prev: Prev::None,
        version: semver::Version::new(1, 0, 0),
        digest: Digest::of(&junk),
        size: junk.len() as u64,
        time: gridreg_protocol::Timestamp::now(),
        imports: vec![],
        exports: vec![],
    };
    let leaf = gridreg_protocol::Record::Release(rec)
        .sign(&[&alice])
        .unwrap();
    check(
        h.post_record(&leaf).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_wasm",
    );

    // Import lines that lie: tcp-client without its socket imports.
    let mut rec = release_record("acme:tcp", "1.0.0", &tcp);
    rec.imports.retain(|i| !i.starts_with("wasi:sockets/"));
    let leaf = gridreg_protocol::Record::Release(rec)
        .sign(&[&alice])
        .unwrap();
    let r = h.post_record(&leaf).await;
    check(r, StatusCode::UNPROCESSABLE_ENTITY, "surface_mismatch");
    // An export that is not there.
    let mut rec = release_record("acme:tcp", "1.0.0", &tcp);
    rec.exports.push("wasi:http/incoming-handler@0.2.0".into());
    rec.exports.sort();
    let leaf = gridreg_protocol::Record::Release(rec)
        .sign(&[&alice])
        .unwrap();
    check(
        h.post_record(&leaf).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "surface_mismatch",
    );

    // Duplicate version.
    check(
        h.post_record(&release(&h.app, &alice, "acme:hello", "1.0.0", &hello).await)
            .await,
        StatusCode::CONFLICT,
        "version_exists",
    );

    // Unauthorised signer.
    check(
        h.post_record(&release(&h.app, &bob, "acme:hello", "2.0.0", &hello).await)
            .await,
        StatusCode::FORBIDDEN,
        "not_authorised",
    );
    // The refusal names the index the record would have had, never an impossible one.
    let refused = h
        .post_record(&release(&h.app, &bob, "acme:hello", "2.0.1", &hello).await)
        .await
        .json();
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    let next = h.get("/healthz").await.json()["log_size"].as_u64().unwrap();
    assert!(
        message.contains(&format!("at log index {next},")),
        "{message}"
    );
    // A namespace nobody claimed.
    check(
        h.post_record(&release(&h.app, &alice, "other:hello", "1.0.0", &hello).await)
            .await,
        StatusCode::FORBIDDEN,
        "not_authorised",
    );
    // Claiming a claimed namespace.
    check(
        h.post_record(&claim(&h.app, &bob, "acme").await).await,
        StatusCode::CONFLICT,
        "namespace_claimed",
    );
    // A claim signed by someone other than the claimed key.
    let forged = namespace_record(
        &h.app,
        &bob,
        "free",
        NamespaceOp::Claim,
        &carol,
        Role::Owner,
    )
    .await;
    check(
        h.post_record(&forged).await,
        StatusCode::FORBIDDEN,
        "not_authorised",
    );
    assert_eq!(h.snapshot().await, before);

    // Grant bob publish; then a grant by bob (not an owner) is refused.
    let grant = namespace_record(
        &h.app,
        &alice,
        "acme",
        NamespaceOp::Grant,
        &bob,
        Role::Publish,
    )
    .await;
    assert_eq!(h.post_record(&grant).await.status, StatusCode::OK);
    let before = h.snapshot().await;
    let by_bob = namespace_record(
        &h.app,
        &bob,
        "acme",
        NamespaceOp::Grant,
        &carol,
        Role::Publish,
    )
    .await;
    check(
        h.post_record(&by_bob).await,
        StatusCode::FORBIDDEN,
        "not_owner",
    );
    assert_eq!(h.snapshot().await, before);

    // Bob publishes, is revoked, and his next release is refused.
    h.publish(&bob, "acme:hello", "1.1.0", &hello).await;
    let revoke = namespace_record(
        &h.app,
        &alice,
        "acme",
        NamespaceOp::Revoke,
        &bob,
        Role::Publish,
    )
    .await;
    assert_eq!(h.post_record(&revoke).await.status, StatusCode::OK);
    let before = h.snapshot().await;
    check(
        h.post_record(&release(&h.app, &bob, "acme:hello", "1.2.0", &hello).await)
            .await,
        StatusCode::FORBIDDEN,
        "not_authorised",
    );
    // Revoking the last owner.
    let last = namespace_record(
        &h.app,
        &alice,
        "acme",
        NamespaceOp::Revoke,
        &alice,
        Role::Owner,
    )
    .await;
    check(
        h.post_record(&last).await,
        StatusCode::CONFLICT,
        "namespace_conflict",
    );
    // Yank of a version that does not exist.
    check(
        h.post_record(&yank(&h.app, &alice, "acme:hello", "9.9.9").await)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(h.snapshot().await, before);
    assert_eq!(
        h.get("/v1/packages/acme:hello").await.json()["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

// docs/protocol.md §7.8 "Namespace endpoints": a namespace policy judges releases.
async fn namespace_policy_is_enforced(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    let policy = "[policy]\nname = \"no-network\"\n[capabilities]\ndeny = [\"network\"]\ndefault = \"allow\"\n";
    // Setting a policy needs an admin token.
    send(
        &h.app,
        Method::PUT,
        "/v1/namespaces/acme/policy",
        policy.into(),
        None,
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    let store = h.registry.state.store.as_ref();
    let (publish_token, _) = create_token(store, Scope::Publish, None).await.unwrap();
    send(
        &h.app,
        Method::PUT,
        "/v1/namespaces/acme/policy",
        policy.into(),
        Some(&publish_token),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    let (admin, _) = create_token(store, Scope::Admin, None).await.unwrap();
    send(
        &h.app,
        Method::PUT,
        "/v1/namespaces/acme/policy",
        b"[policy\n".to_vec(),
        Some(&admin),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    let r = send(
        &h.app,
        Method::PUT,
        "/v1/namespaces/acme/policy",
        policy.into(),
        Some(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());

    let tcp = fixture("tcp-client.wasm");
    assert_eq!(h.put_content(&tcp).await.status, StatusCode::CREATED);
    let before = h.snapshot().await;
    h.post_record(&release(&h.app, &alice, "acme:tcp", "1.0.0", &tcp).await)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "policy_violation");
    assert_eq!(h.snapshot().await, before);
    // A component the policy allows goes through.
    h.publish(&alice, "acme:hello", "1.0.0", &fixture("hello.wasm"))
        .await;
}

// docs/protocol.md §7.3 "Authentication and scopes".
async fn private_registry_needs_tokens(backend: Backend) {
    let h = harness_with(backend, |c| c.require_token = true).await;
    let store = h.registry.state.store.as_ref();
    let alice = key("alice");
    h.get("/v1/log/checkpoint")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(h.get("/healthz").await.status, StatusCode::OK);
    let (read, _) = create_token(store, Scope::Read, None).await.unwrap();
    let (publish, _) = create_token(store, Scope::Publish, Some("acme".into()))
        .await
        .unwrap();
    let (admin, admin_row) = create_token(store, Scope::Admin, None).await.unwrap();
    let get = |t: &str| {
        let (app, t) = (h.app.clone(), t.to_string());
        async move { send(&app, Method::GET, "/v1/log/checkpoint", vec![], Some(&t)).await }
    };
    assert_eq!(get(&read).await.status, StatusCode::OK);
    get("grt_0000000000000000_00")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    // A wrong secret for a real id.
    let forged = format!("{}x", &read[..read.len() - 1]);
    get(&forged)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    let post = |body: String, t: String| {
        let app = h.app.clone();
        async move {
            send(
                &app,
                Method::POST,
                "/v1/records",
                body.into_bytes(),
                Some(&t),
            )
            .await
        }
    };
    // Claims need admin on a private registry; publishing needs publish in that namespace.
    post(claim_at(Prev::None, &alice, "acme"), publish.clone())
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        post(claim_at(Prev::None, &alice, "acme"), admin.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        post(claim_at(Prev::None, &alice, "other"), admin.clone())
            .await
            .status,
        StatusCode::OK
    );
    let hello = fixture("hello.wasm");
    let uri = format!("/v1/content/{}", Digest::of(&hello));
    send(&h.app, Method::PUT, &uri, hello.clone(), Some(&read))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        send(&h.app, Method::PUT, &uri, hello.clone(), Some(&publish))
            .await
            .status,
        StatusCode::CREATED
    );
    post(
        release_at(Prev::None, &alice, "other:hello", "1.0.0", &hello),
        publish.clone(),
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        post(
            release_at(Prev::None, &alice, "acme:hello", "1.0.0", &hello),
            publish.clone()
        )
        .await
        .status,
        StatusCode::OK
    );

    // Revocation takes effect at once.
    assert!(
        store
            .revoke_token(&admin_row.id, "2026-11-21T00:00:00Z")
            .await
            .unwrap()
    );
    get(&admin)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

// docs/protocol.md §7.4 "Log endpoints": bounds on proofs and pages.
async fn log_endpoints_refuse_bad_questions(backend: Backend) {
    let h = harness_on(backend).await;
    for uri in [
        "/v1/log/proof/inclusion?index=0&size=1",
        "/v1/log/proof/inclusion?index=x&size=1",
        "/v1/log/proof/consistency?from=2&to=1",
        "/v1/log/entries?start=5&end=1",
        "/v1/log/entries",
        "/v1/packages/NotAName",
        "/v1/packages/acme:x/not-semver",
    ] {
        h.get(uri)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    h.get("/v1/packages/acme:x")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    h.get("/v1/namespaces/acme")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        h.get("/v1/log/entries?start=0").await.json()["entries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

// docs/protocol.md §7.4.3: a page ends once its bodies reach 4 MiB; the pages still cover the
// range without gaps. The hostile-load issue made one page of 77 MB this way.
async fn entry_pages_are_bounded_by_bytes(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    h.post_record(&claim(&h.app, &alice, "acme").await).await;
    for v in 0..80 {
        let module = module_with_long_imports(v);
        h.publish(&alice, "acme:big", &format!("1.0.{v}"), &module)
            .await;
    }
    let size = h.get("/healthz").await.json()["log_size"].as_u64().unwrap();
    assert_eq!(size, 162, "81 records, each with its batch's map entry");
    let mut next = 0;
    let mut pages = 0;
    while next < size {
        let page = h
            .get(&format!("/v1/log/entries?start={next}&end={size}"))
            .await
            .json();
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty(), "an empty page at {next}");
        let bytes: usize = entries
            .iter()
            .map(|e| e["body"].as_str().unwrap().len())
            .sum();
        let last = entries.last().unwrap()["body"].as_str().unwrap().len();
        assert!(
            bytes - last < 4 * 1024 * 1024,
            "a page of {bytes} bytes went past the budget before its last entry"
        );
        for e in entries {
            assert_eq!(e["index"].as_u64().unwrap(), next);
            next += 1;
        }
        pages += 1;
    }
    assert!(pages >= 2, "80 records of ~61 KiB came in {pages} page(s)");
}

// From the hostile-load issue: bytes uploaded and never named by a release were served forever.
// Content no release names is deleted once older than the upload TTL; content a publish in
// progress names is left alone until it is answered.
async fn unnamed_uploads_are_collected(backend: Backend) {
    use gridreg_registry::gc;
    let h = harness_with(backend, |c| {
        c.upload_ttl = std::time::Duration::from_secs(1)
    })
    .await;
    let state = &h.registry.state;
    let alice = key("alice");
    h.post_record(&claim(&h.app, &alice, "acme").await).await;
    let named = fixture("hello.wasm");
    h.publish(&alice, "acme:hello", "1.0.0", &named).await;
    let unnamed = fixture("env-reader.wasm");
    let in_flight = fixture("tcp-client.wasm");
    for b in [&unnamed, &in_flight] {
        assert_eq!(h.put_content(b).await.status, StatusCode::CREATED);
    }
    let url = |b: &[u8]| format!("/v1/content/{}", Digest::of(b));
    let pin = state.pins.pin(Digest::of(&in_flight)).unwrap();
    // Object stores keep times in whole seconds.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let ttl = std::time::Duration::ZERO;
    let n = gc::collect(&state.store, &state.blobs, &state.pins, ttl)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(h.get(&url(&named)).await.status, StatusCode::OK);
    assert_eq!(h.get(&url(&unnamed)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get(&url(&in_flight)).await.status, StatusCode::OK);
    drop(pin);
    gc::collect(&state.store, &state.blobs, &state.pins, ttl)
        .await
        .unwrap();
    assert_eq!(h.get(&url(&in_flight)).await.status, StatusCode::NOT_FOUND);

    // The registry's own collector runs with the configured TTL (1 s here, looking every 1 s).
    assert_eq!(h.put_content(&unnamed).await.status, StatusCode::CREATED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.get(&url(&unnamed)).await.status == StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "an unnamed upload outlived its 1 s TTL by 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(h.get(&url(&named)).await.status, StatusCode::OK);
}

async fn restart_keeps_the_log_and_refuses_another_origin(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (config, _db) = backend.config(dir.path().join("data"));
    let alice = key("alice");
    let cp = {
        let registry = gridreg_registry::Registry::open(&config).await.unwrap();
        let app = registry.router();
        let r = send(
            &app,
            Method::POST,
            "/v1/records",
            claim(&app, &alice, "acme").await.into_bytes(),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        drop(app);
        let cp = registry.state.view.latest();
        registry.stop().await;
        cp
    };
    let registry = gridreg_registry::Registry::open(&config).await.unwrap();
    assert_eq!(registry.state.view.latest().body, cp.body);
    // The namespace state was rebuilt: a second claim is refused.
    let app = registry.router();
    send(
        &app,
        Method::POST,
        "/v1/records",
        claim(&app, &key("bob"), "acme").await.into_bytes(),
        None,
    )
    .await
    .assert_error(StatusCode::CONFLICT, "namespace_claimed");
    drop(app);
    registry.stop().await;
    let mut other = config.clone();
    other.origin = "elsewhere.example/log".into();
    let err = gridreg_registry::Registry::open(&other).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("belongs to the log `gridreg.local/log`"),
        "{err}"
    );
}

// docs/protocol.md §7.5: bytes uploaded and not yet named by a release are capped per uploader.
async fn pending_uploads_are_capped_until_a_release_names_them(backend: Backend) {
    let hello = fixture("hello.wasm");
    let env = fixture("env-reader.wasm");
    let tcp = fixture("tcp-client.wasm");
    // Room for two of the three at once, whichever are pending.
    let cap = (env.len() + hello.len().max(tcp.len())) as u64;
    let h = harness_with(backend, |c| {
        c.max_pending_uploads_per_client = cap;
        c.max_pending_uploads = cap * 4;
    })
    .await;
    let alice = key("alice");
    h.post_record(&claim(&h.app, &alice, "acme").await).await;
    assert_eq!(h.put_content(&hello).await.status, StatusCode::CREATED);
    assert_eq!(h.put_content(&env).await.status, StatusCode::CREATED);
    let before = h.snapshot().await;
    let r = h.put_content(&tcp).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "upload_quota");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!("the limit is {cap} bytes per client")),
        "{message}"
    );
    // Nothing of the refused upload was kept.
    assert_eq!(h.snapshot().await, before);
    let tmp = h.dir.path().join("data/blobs/tmp");
    if tmp.exists() {
        assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
    }
    // Content already stored costs nothing to upload again.
    assert_eq!(h.put_content(&hello).await.status, StatusCode::OK);
    // A release naming an upload frees its share.
    h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    assert_eq!(h.put_content(&tcp).await.status, StatusCode::CREATED);
    // And the collector's pass frees what it passed over.
    h.registry
        .state
        .uploads
        .forget_before(std::time::Instant::now());
    assert_eq!(
        h.registry
            .state
            .uploads
            .pending(&gridreg_registry::uploads::Uploader::Unknown),
        (0, 0)
    );
}

/// Over a real listener: each client address has its own share, and all of them together are
/// capped too; a declared length over the share is refused before its body is read.
#[tokio::test]
async fn pending_uploads_are_capped_per_client_address_and_in_all() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let mut config = gridreg_registry::server::Config::new(dir.path().join("data"));
    config.max_pending_uploads_per_client = 1000;
    config.max_pending_uploads = 1500;
    let registry = gridreg_registry::server::Registry::open(&config)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(registry.serve(listener, async {
        let _ = stopped.await;
    }));
    // A 600-byte module: the magic, the version and a custom section of filler.
    let blob = |n: u8| {
        let mut b = b"\0asm\x01\0\0\0\0\xd0\x04\x01x".to_vec();
        b.resize(600, n);
        b
    };
    let put = |from: &'static str, body: Vec<u8>| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = socket.connect(addr).await.unwrap();
        let head = format!(
            "PUT /v1/content/{} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            Digest::of(&body),
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let _ = s.write_all(&body).await;
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status: u16 = answer[9..12].parse().unwrap();
        (status, answer)
    };
    let (status, answer) = put("127.0.0.1", blob(1)).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = put("127.0.0.1", blob(2)).await;
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("client address 127.0.0.1"), "{answer}");
    assert!(answer.contains("upload_quota"), "{answer}");
    // Another address has its own share...
    let (status, answer) = put("127.0.0.2", blob(3)).await;
    assert_eq!(status, 201, "{answer}");
    // ...until all pending uploads together reach the total.
    let (status, answer) = put("127.0.0.3", blob(4)).await;
    assert_eq!(status, 429, "{answer}");
    assert!(answer.contains("the registry holds 1200 bytes"), "{answer}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
