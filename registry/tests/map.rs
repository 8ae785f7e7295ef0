//! The head map and bundles as the registry serves them (docs/protocol.md §6.8, §6.9, §8.6):
//! every checkpoint ends in a map entry whose root is the map of the log's chain heads, and
//! `GET /v1/bundles/{package}` proves a package's whole state, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::*;
use gridreg_protocol::bundle::{Bundle, MapEntry, verify_bundle, verify_bundle_after};
use gridreg_protocol::map::HeadMap;
use gridreg_protocol::{
    Head, NamespaceOp, Note, PackageName, Record, Role, SignedCheckpoint, VerifierKey,
};

backend_tests!(
    every_checkpoint_ends_in_a_map_entry_of_the_chain_heads,
    a_bundle_proves_releases_yanks_and_authorisation,
    a_bundle_proves_absence,
    a_bundle_names_a_bad_package_400,
    a_bundle_continues_above_held_heads,
);

/// A chain whose records come to more than a bundle carries (docs/protocol.md §7.7.4): 90
/// releases of ~200 KB records, about 18 MB. The registry refuses with 413 (it reads the chain in
/// chunks and stops at the budget, so it never holds more), and serves the namespace, which is
/// small, as before.
#[tokio::test]
async fn a_chain_over_the_byte_budget_is_refused_413() {
    let h = harness().await;
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    // 280 releases of ~61 KiB: past the 16 MiB a bundle may hold.
    for v in 0..280 {
        h.publish(
            &alice,
            "acme:big",
            &format!("1.0.{v}"),
            &module_with_long_imports(v),
        )
        .await;
    }
    h.get("/v1/bundles/acme:big")
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // A client that holds the chain up to a recent head is served what is above it (§8.6.5):
    // the budget bounds what is served, not the chain.
    let chain = h.get("/v1/chains/package/acme:big").await.json();
    let head_index: u64 = chain["head"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let recent = h
        .get(&format!(
            "/v1/bundles/acme:big?package_after={}:{}",
            head_index - 20,
            "0".repeat(64)
        ))
        .await;
    assert_eq!(recent.status, StatusCode::OK, "{}", recent.text());
    let served: Bundle = serde_json::from_slice(&recent.body).unwrap();
    assert!(
        (1..=20).contains(&served.package.records.len()),
        "{}",
        served.package.records.len()
    );
    assert!(
        served
            .package
            .records
            .iter()
            .all(|e| e.index > head_index - 20)
    );
    // The OCI referrers of its releases then list no bundle, rather than failing (§7.11.4).
    let manifest = h.get("/v2/acme/big/manifests/1.0.3").await;
    assert_eq!(manifest.status, StatusCode::OK);
    let digest = gridreg_protocol::Digest::of(&manifest.body);
    let r = h.get(&format!("/v2/acme/big/referrers/{digest}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
    assert_eq!(
        h.get("/v1/namespaces/acme/bundle").await.status,
        StatusCode::OK
    );
}

/// The registry's log key and its newest checkpoint, verified.
async fn checkpoint(h: &Harness) -> (VerifierKey, SignedCheckpoint) {
    let key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();
    let text = h.get("/v1/log/checkpoint").await.text();
    let cp = SignedCheckpoint::verify(text.as_bytes(), key.name(), &key).unwrap();
    (key, cp)
}

/// All entries of the log below `size`, as (index, body).
async fn entries(h: &Harness, size: u64) -> Vec<(u64, String)> {
    let page = h
        .get(&format!("/v1/log/entries?start=0&end={size}"))
        .await
        .json();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["body"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// After each accepted record the checkpoint covers it and one map entry, the last leaf, whose
/// size is its own index and whose root is the map of every chain's newest record before it,
/// recomputed here from the log alone.
async fn every_checkpoint_ends_in_a_map_entry_of_the_chain_heads(backend: Backend) {
    let h = harness_on(backend).await;
    let (alice, bob) = (key("alice"), key("bob"));
    let hello = fixture("hello.wasm");
    let mut records = vec![claim(&h.app, &alice, "acme").await];
    let r = h.post_record(&records[0]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["index"], 0);
    for version in ["1.0.0", "1.1.0"] {
        let answer = h.publish(&alice, "acme:hello", version, &hello).await;
        assert!(answer["index"].as_u64().is_some());
    }
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
    records.push(grant);
    let y = yank(&h.app, &alice, "acme:hello", "1.0.0").await;
    let r = h.post_record(&y).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Five records, each its own batch here: each followed by its map entry.
    let index = r.json()["index"].as_u64().unwrap();
    assert_eq!(index, 8, "records at 0, 2, 4, 6, 8; map entries between");

    let (key, cp) = checkpoint(&h).await;
    assert_eq!(cp.size(), index + 2);
    let log = entries(&h, cp.size()).await;
    assert_eq!(log.len() as u64, cp.size());
    let mut heads = Vec::new();
    let mut maps = 0;
    for (i, body) in &log {
        let note = Note::parse(body.as_bytes()).unwrap();
        match Record::from_note(&note) {
            Ok(record) => heads.push((record.chain(), Head::of(*i, body.as_bytes()))),
            Err(_) => {
                let entry = MapEntry::verify(body.as_bytes(), &key).unwrap();
                assert_eq!(entry.size, *i, "a map entry's size is its own index");
                let map = HeadMap::from_heads(heads.iter().map(|(k, h)| (k, *h))).unwrap();
                assert_eq!(entry.root, map.root(), "map entry at {i}");
                maps += 1;
            }
        }
    }
    assert_eq!(maps, 5);
    assert!(
        MapEntry::verify(log.last().unwrap().1.as_bytes(), &key).is_ok(),
        "the checkpoint's last leaf is a map entry"
    );
}

/// The bundle of a package verifies against the checkpoint it carries and proves every release
/// and yank, whoever signed them, and the namespace's history.
async fn a_bundle_proves_releases_yanks_and_authorisation(backend: Backend) {
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
    assert_eq!(h.post_record(&grant).await.status, StatusCode::OK);
    h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    h.publish(&bob, "acme:hello", "1.1.0", &hello).await;
    h.publish(&alice, "acme:other", "0.1.0", &hello).await;
    let y = yank(&h.app, &bob, "acme:hello", "1.1.0").await;
    assert_eq!(h.post_record(&y).await.status, StatusCode::OK);

    let r = h.get("/v1/bundles/acme:hello").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let bundle: Bundle = serde_json::from_slice(&r.body).unwrap();
    let key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();
    let cp = SignedCheckpoint::verify(bundle.checkpoint.as_bytes(), key.name(), &key).unwrap();
    assert!(
        bundle.checkpoint.lines().count() > cp.checkpoint.to_body().lines().count() + 2,
        "the bundle's checkpoint carries the timestamp cosignature"
    );
    let package = PackageName::parse("acme:hello").unwrap();
    let proven = verify_bundle(&bundle, &cp.checkpoint, &key, &package).unwrap();
    let versions: Vec<String> = proven
        .releases
        .iter()
        .map(|r| r.version().to_string())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert_eq!(proven.yanks.len(), 1);
    assert!(proven.releases[1].is_yanked());
    assert_eq!(
        proven
            .resolve(&gridreg_protocol::Requirement::Newest)
            .map(|r| r.version().to_string()),
        Some("1.0.0".to_string()),
        "newest skips the proven yank"
    );
    assert_eq!(bundle.package.records.len(), 3, "two releases and a yank");
    assert_eq!(bundle.namespace.records.len(), 2, "claim and grant");
    // The namespace alone, for `namespace show`: the same chain, proven the same way.
    let r = h.get("/v1/namespaces/acme/bundle").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let nb: gridreg_protocol::bundle::NamespaceBundle = serde_json::from_slice(&r.body).unwrap();
    let ncp = SignedCheckpoint::verify(nb.checkpoint.as_bytes(), key.name(), &key).unwrap();
    let ns = gridreg_protocol::Namespace::parse("acme").unwrap();
    let proven_ns =
        gridreg_protocol::bundle::verify_namespace_bundle(&nb, &ncp.checkpoint, &key, &ns).unwrap();
    assert_eq!(proven_ns.records, 2);
    assert_eq!(proven_ns.state.current(&ns).len(), 2, "alice and bob");
    h.get("/v1/namespaces/NOT_A_NS/bundle")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    // Another package's records never enter this bundle.
    assert!(
        bundle
            .package
            .records
            .iter()
            .all(|e| !e.body.contains("acme:other"))
    );
}

/// A package that was never published, in a namespace that exists or not: absence proofs and
/// no records, which verify as "nothing released".
async fn a_bundle_proves_absence(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    let key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();
    for (package, ns_records) in [("acme:nothing", 1), ("other:nothing", 0)] {
        let r = h.get(&format!("/v1/bundles/{package}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let bundle: Bundle = serde_json::from_slice(&r.body).unwrap();
        let cp = SignedCheckpoint::verify(bundle.checkpoint.as_bytes(), key.name(), &key).unwrap();
        let proven = verify_bundle(
            &bundle,
            &cp.checkpoint,
            &key,
            &PackageName::parse(package).unwrap(),
        )
        .unwrap();
        assert!(proven.releases.is_empty() && proven.package_head.is_none());
        assert_eq!(bundle.namespace.records.len(), ns_records, "{package}");
    }
}

/// docs/protocol.md §7.7.4 and §8.6.5: with `package_after` and `namespace_after` a bundle
/// carries only the records above those heads, and a client continuing from the chains it held
/// proves what the whole bundle proves.
async fn a_bundle_continues_above_held_heads(backend: Backend) {
    let h = harness_on(backend).await;
    let (alice, bob) = (key("alice"), key("bob"));
    let hello = fixture("hello.wasm");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    let key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();
    let package = PackageName::parse("acme:hello").unwrap();
    let fetch = |path: String| {
        let h = &h;
        let key = key.clone();
        async move {
            let r = h.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
            let bundle: Bundle = serde_json::from_slice(&r.body).unwrap();
            let cp =
                SignedCheckpoint::verify(bundle.checkpoint.as_bytes(), key.name(), &key).unwrap();
            (bundle, cp.checkpoint)
        }
    };
    let (first, cp) = fetch("/v1/bundles/acme:hello".to_string()).await;
    let held = verify_bundle(&first, &cp, &key, &package).unwrap().held;

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
    h.publish(&bob, "acme:hello", "1.1.0", &hello).await;
    let y = yank(&h.app, &alice, "acme:hello", "1.0.0").await;
    assert_eq!(h.post_record(&y).await.status, StatusCode::OK);

    let heads = |held: &gridreg_protocol::bundle::Held| {
        format!(
            "/v1/bundles/acme:hello?package_after={}&namespace_after={}",
            held.package_head.unwrap(),
            held.namespace_head.unwrap()
        )
    };
    let (after, cp) = fetch(heads(&held)).await;
    assert_eq!(after.package.records.len(), 2, "1.1.0 and the yank");
    assert_eq!(after.namespace.records.len(), 1, "the grant");
    let continued = verify_bundle_after(&after, &cp, &key, &package, &held, &|_| None).unwrap();
    let (whole, cp) = fetch("/v1/bundles/acme:hello".to_string()).await;
    let proven = verify_bundle(&whole, &cp, &key, &package).unwrap();
    assert_eq!(continued.releases, proven.releases);
    assert_eq!(continued.yanks, proven.yanks);
    assert_eq!(continued.held, proven.held);
    // At the newest heads: no records at all.
    let (none, _) = fetch(heads(&proven.held)).await;
    assert!(none.package.records.is_empty() && none.namespace.records.is_empty());
    // One parameter alone cuts one chain.
    let (one, _) = fetch(format!(
        "/v1/bundles/acme:hello?package_after={}",
        held.package_head.unwrap()
    ))
    .await;
    assert_eq!(
        (one.package.records.len(), one.namespace.records.len()),
        (2, 2)
    );
    for bad in [
        "package_after=7",
        "package_after=none",
        "namespace_after=01:00",
        &format!("package_after=1:{}", "A".repeat(64)),
    ] {
        h.get(&format!("/v1/bundles/acme:hello?{bad}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
}

async fn a_bundle_names_a_bad_package_400(backend: Backend) {
    let h = harness_on(backend).await;
    h.get("/v1/bundles/NotAName")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    // An empty log has no map entry to prove from yet.
    h.get("/v1/bundles/acme:x")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
}
