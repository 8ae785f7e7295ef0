//! Chains (docs/protocol.md §5): every record names the head of its chain, and the registry
//! appends it only if that is still the head. Each test is an attack that worked before chains
//! existed, driven through the HTTP API on SQLite and on PostgreSQL, with the answer that stops it
//! and proof that nothing was stored for it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use gridreg_protocol::{Digest, Head, NamespaceOp, Note, Prev, Role, SignerKey};

backend_tests!(
    a_replayed_grant_is_refused_anonymously,
    a_replayed_revoke_with_another_signature_line_is_refused,
    keys_that_share_name_and_id_are_two_keys_and_the_registry_restarts,
    a_chain_grows_only_at_its_head,
    record_format_v1_is_refused_by_name,
);

/// The head a record at `index` with the exact bytes `leaf` becomes.
fn head_of(index: u64, leaf: &str) -> Prev {
    Prev::Entry(Head::of(index, leaf.as_bytes()))
}

/// Claim `acme` (alice), grant bob publish, revoke him; then anyone POSTs the grant again, as
/// `GET /v1/namespaces/acme` serves it. The replay names a head that is long gone: 409
/// `stale_prev`, nothing appended, and bob still cannot publish.
async fn a_replayed_grant_is_refused_anonymously(backend: Backend) {
    let h = harness_on(backend).await;
    let (alice, bob) = (key("alice"), key("bob"));
    let hello = fixture("hello.wasm");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    let grant = namespace_record(
        &h.app,
        &alice,
        "acme",
        NamespaceOp::Grant,
        &bob,
        Role::Publish,
    )
    .await;
    let r = h.post_record(&grant).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let revoke = namespace_record(
        &h.app,
        &alice,
        "acme",
        NamespaceOp::Revoke,
        &bob,
        Role::Publish,
    )
    .await;
    let r = h.post_record(&revoke).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let revoke_index = r.json()["index"].as_u64().unwrap();

    // The grant exactly as the registry serves it.
    let served = h.get("/v1/namespaces/acme").await.json();
    let served_grant = served["records"][1]["body"].as_str().unwrap().to_string();
    assert_eq!(served_grant, grant);
    let before = h.snapshot().await;
    let r = send(
        &h.app,
        Method::POST,
        "/v1/records",
        served_grant.into_bytes(),
        None,
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "stale_prev");
    assert_eq!(
        r.json()["error"]["head"].as_str().unwrap(),
        head_of(revoke_index, &revoke).to_string(),
        "the answer names the head a record must extend now"
    );
    assert_eq!(h.snapshot().await, before, "the replay stored nothing");

    // Bob's key holds no role: his release is refused.
    assert!(h.put_content(&hello).await.status.is_success());
    h.post_record(&release(&h.app, &bob, "acme:hello", "1.0.0", &hello).await)
        .await
        .assert_error(StatusCode::FORBIDDEN, "not_authorised");
    assert_eq!(h.snapshot().await.0, before.0);
}

/// An old revoke re-posted with one more signature line is a different leaf with the same, stale
/// `prev`: refused, so it cannot lock out a publisher who was granted again since.
async fn a_replayed_revoke_with_another_signature_line_is_refused(backend: Backend) {
    let h = harness_on(backend).await;
    let (alice, bob, mallory) = (key("alice"), key("bob"), key("mallory"));
    let hello = fixture("hello.wasm");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    for op in [NamespaceOp::Grant, NamespaceOp::Revoke, NamespaceOp::Grant] {
        let r = h
            .post_record(&namespace_record(&h.app, &alice, "acme", op, &bob, Role::Publish).await)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{op}: {}", r.text());
    }
    let old_revoke = h.get("/v1/namespaces/acme").await.json()["records"][2]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(old_revoke.contains("op revoke"), "{old_revoke}");
    // Mallory adds her own signature line: a new leaf, alice's signature still valid.
    let note = Note::parse(old_revoke.as_bytes()).unwrap();
    let extra = Note::sign(&note.text, &[&mallory]).unwrap().to_text();
    let extra_line = extra.lines().last().unwrap();
    let respun = format!("{old_revoke}{extra_line}\n");
    assert_ne!(respun, old_revoke);
    assert!(Note::parse(respun.as_bytes()).is_ok());
    let before = h.snapshot().await;
    h.post_record(&respun)
        .await
        .assert_error(StatusCode::CONFLICT, "stale_prev");
    assert_eq!(h.snapshot().await, before);
    // Bob, granted again, still publishes.
    assert!(h.put_content(&hello).await.status.is_success());
    let r = h
        .post_record(&release(&h.app, &bob, "acme:hello", "1.0.0", &hello).await)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// Two signer keys named `eve` whose 4-byte key ids collide (found once by a birthday search over
/// the seeds SHA-256("gridreg-collision-N"); `protocol/src/note.rs` checks that they do).
fn colliding_keys() -> (SignerKey, SignerKey) {
    let seed = |n: u32| Digest::of(format!("gridreg-collision-{n}").as_bytes()).0;
    let k1 = SignerKey::from_seed("eve", &seed(34905)).unwrap();
    let k2 = SignerKey::from_seed("eve", &seed(47880)).unwrap();
    assert_eq!(k1.id(), k2.id());
    assert_ne!(k1.verifier(), k2.verifier());
    (k1, k2)
}

/// One key claims `acme` and grants the other, which shares its name and id. Both publish; the
/// registry restarts on the same store and both still publish (this used to stop `gridreg serve`
/// from starting: "two different keys share the name and id").
async fn keys_that_share_name_and_id_are_two_keys_and_the_registry_restarts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (config, _db) = backend.config(dir.path().join("data"));
    let (k1, k2) = colliding_keys();
    let hello = fixture("hello.wasm");
    let post = |app: axum::Router, leaf: String| async move {
        send(&app, Method::POST, "/v1/records", leaf.into_bytes(), None).await
    };
    {
        let registry = gridreg_registry::Registry::open(&config).await.unwrap();
        let app = registry.router();
        let uri = format!("/v1/content/{}", Digest::of(&hello));
        assert!(
            send(&app, Method::PUT, &uri, hello.clone(), None)
                .await
                .status
                .is_success()
        );
        let r = post(app.clone(), claim(&app, &k1, "acme").await).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let grant =
            namespace_record(&app, &k1, "acme", NamespaceOp::Grant, &k2, Role::Publish).await;
        let r = post(app.clone(), grant).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let r = post(
            app.clone(),
            release(&app, &k1, "acme:one", "1.0.0", &hello).await,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "k1: {}", r.text());
        let r = post(
            app.clone(),
            release(&app, &k2, "acme:two", "1.0.0", &hello).await,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "k2: {}", r.text());
        // The namespace lists two members under one name and id.
        let members = send(&app, Method::GET, "/v1/namespaces/acme", Vec::new(), None)
            .await
            .json()["members"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(members, 2);
        drop(app);
        registry.stop().await;
    }
    let registry = gridreg_registry::Registry::open(&config).await.unwrap();
    let app = registry.router();
    for (k, package) in [(&k1, "acme:one"), (&k2, "acme:two")] {
        let r = post(
            app.clone(),
            release(&app, k, package, "1.1.0", &hello).await,
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{package} after the restart: {}",
            r.text()
        );
    }
    // A third key of that name and id that the namespace never granted is still nobody.
    let stranger = key("eve");
    let r = post(
        app.clone(),
        release(&app, &stranger, "acme:one", "1.2.0", &hello).await,
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "not_authorised");
    drop(app);
    registry.stop().await;
}

/// Two releases of one package signed on the same head: the first lands, the second is told the
/// new head and lands once signed on it. A release, a yank or a namespace record naming any head
/// but the current one (an older one, one of another chain, an invented one) is refused.
async fn a_chain_grows_only_at_its_head(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    let hello = fixture("hello.wasm");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    assert!(h.put_content(&hello).await.status.is_success());
    let r = h.get("/v1/chains/package/acme:hello").await;
    assert_eq!(r.json()["head"], "none", "{}", r.text());

    let first = release_at(Prev::None, &alice, "acme:hello", "1.0.0", &hello);
    let second = release_at(Prev::None, &alice, "acme:hello", "1.1.0", &hello);
    let r = h.post_record(&first).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let first_head = head_of(r.json()["index"].as_u64().unwrap(), &first);
    let before = h.snapshot().await;
    let r = h.post_record(&second).await;
    r.assert_error(StatusCode::CONFLICT, "stale_prev");
    assert_eq!(r.json()["error"]["head"], first_head.to_string());
    assert_eq!(h.snapshot().await, before);
    assert_eq!(
        h.get("/v1/chains/package/acme:hello").await.json()["head"],
        first_head.to_string()
    );
    let second = release_at(first_head, &alice, "acme:hello", "1.1.0", &hello);
    let r = h.post_record(&second).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let second_head = head_of(r.json()["index"].as_u64().unwrap(), &second);

    // Stale, foreign and invented heads, for each kind of record.
    let namespace_head = h.get("/v1/chains/namespace/acme").await.json()["head"]
        .as_str()
        .unwrap()
        .to_string();
    let namespace_head = Prev::parse(&namespace_head).unwrap();
    let invented = Prev::Entry(Head {
        index: 1,
        leaf: [7; 32],
    });
    let before = h.snapshot().await;
    for prev in [first_head, namespace_head, invented, Prev::None] {
        for leaf in [
            release_at(prev, &alice, "acme:hello", "1.2.0", &hello),
            yank_at(prev, &alice, "acme:hello", "1.0.0"),
        ] {
            h.post_record(&leaf)
                .await
                .assert_error(StatusCode::CONFLICT, "stale_prev");
        }
    }
    for prev in [second_head, invented, Prev::None] {
        let grant = namespace_record_at(
            prev,
            &alice,
            "acme",
            NamespaceOp::Grant,
            &key("bob"),
            Role::Publish,
        );
        h.post_record(&grant)
            .await
            .assert_error(StatusCode::CONFLICT, "stale_prev");
    }
    assert_eq!(h.snapshot().await, before);
    // A taken version is reported as such, whatever its prev says.
    h.post_record(&release_at(
        Prev::None,
        &alice,
        "acme:hello",
        "1.0.0",
        &hello,
    ))
    .await
    .assert_error(StatusCode::CONFLICT, "version_exists");
    // The yank on the real head lands.
    let r = h
        .post_record(&yank_at(second_head, &alice, "acme:hello", "1.0.0"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Bad chain names are bad requests.
    for uri in [
        "/v1/chains/package/acme",
        "/v1/chains/namespace/Acme",
        "/v1/chains/package/a:b:c",
    ] {
        h.get(uri)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

/// A record of the first format (no `prev`) is refused before anything else, saying so.
async fn record_format_v1_is_refused_by_name(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    let v2 = claim_at(Prev::None, &alice, "acme");
    let v1 = v2
        .replacen("gridreg/namespace/v2", "gridreg/namespace/v1", 1)
        .replacen("prev none\n", "", 1);
    // Re-signed, so only the format is wrong.
    let body = &Note::parse(v1.as_bytes()).unwrap().text;
    let v1 = Note::sign(body, &[&alice]).unwrap().to_text();
    let r = h.post_record(&v1).await;
    r.assert_error(StatusCode::BAD_REQUEST, "malformed_record");
    assert!(r.text().contains("format v1"), "{}", r.text());
    assert_eq!(h.snapshot().await.0, 0);
}
