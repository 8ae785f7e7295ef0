//! Three replicas (each with its own router, sequencer and blob directory, all with the same log
//! key) on one PostgreSQL database, clients publishing through all of them at once, some racing
//! for the same versions through different replicas. Afterwards every acknowledged publish is in
//! the log exactly once, every checkpoint any client saw is signed by the log key and consistent
//! with the final tree, and every replica serves the same final checkpoint and proofs.
//!
//! PostgreSQL only: replicas need a shared database (SQLite is one process per data directory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Method, StatusCode};
use common::*;
use gridreg_protocol::api::decode_hashes;
use gridreg_protocol::{
    Hash, Head, Prev, Record, SignedCheckpoint, SignerKey, VerifierKey, merkle,
};
use gridreg_registry::Registry;

const ORIGIN: &str = "gridreg.local/log";

/// Checks every map entry of the log `bodies` against the head map recomputed from the records
/// before it (docs/protocol.md §6.9), and that the log ends in one; returns how many records
/// (entries that are not map entries) the log holds. Replicas that followed each other's
/// batches must have committed exactly these roots.
fn check_map_entries(bodies: &[String], log_key: &VerifierKey) -> usize {
    use gridreg_protocol::bundle::MapEntry;
    use gridreg_protocol::map::{HeadMap, MapKey};
    let mut map = HeadMap::new();
    let mut records = 0;
    for (i, body) in bodies.iter().enumerate() {
        let note = gridreg_protocol::Note::parse(body.as_bytes()).unwrap();
        match Record::from_note(&note) {
            Ok(record) => {
                records += 1;
                map.apply_keyed([(
                    MapKey::of(&record.chain()),
                    Head::of(i as u64, body.as_bytes()),
                )])
                .unwrap();
            }
            Err(_) => {
                let entry = MapEntry::verify(body.as_bytes(), log_key).unwrap();
                assert_eq!(entry.size, i as u64);
                assert_eq!(entry.root, map.root(), "the map entry at {i}");
            }
        }
    }
    assert!(
        MapEntry::verify(bodies.last().unwrap().as_bytes(), log_key).is_ok(),
        "the log ends in a map entry"
    );
    records
}
const REPLICAS: usize = 3;
const CLIENTS_PER_REPLICA: usize = 3;
const VERSIONS_PER_CLIENT: usize = 8;
const CONTESTED: usize = 6;

/// RFC 6962 MTH straight from the definition.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

async fn post(app: &Router, leaf: &str) -> Reply {
    send(
        app,
        Method::POST,
        "/v1/records",
        leaf.as_bytes().to_vec(),
        None,
    )
    .await
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Method::GET, uri, Vec::new(), None).await
}

/// Waits until every replica's view has caught up with the stored log size.
async fn settle(replicas: &[Registry]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = replicas[0].state.store.log_size().await.unwrap();
        if replicas
            .iter()
            .all(|r| r.state.view.latest().size == stored)
        {
            return stored;
        }
        assert!(
            Instant::now() < deadline,
            "replica views did not reach the stored size {stored}: {:?}",
            replicas
                .iter()
                .map(|r| r.state.view.latest().size)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` data directories holding one shared log key (as an operator would copy it), each a
/// config on the same database.
fn replica_configs(
    db: &TestDb,
    n: usize,
) -> (Vec<tempfile::TempDir>, Vec<gridreg_registry::Config>) {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let log_signer = SignerKey::generate(ORIGIN).unwrap();
    let configs = dirs
        .iter()
        .map(|d| {
            let data = d.path().join("data");
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(
                data.join("log.key"),
                format!("{}\n", log_signer.to_secret_string()),
            )
            .unwrap();
            let mut c = gridreg_registry::Config::new(data);
            c.database_url = Some(db.url.clone());
            c
        })
        .collect();
    (dirs, configs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_database_agree() {
    let db = TestDb::create();
    let (_dirs, configs) = replica_configs(&db, REPLICAS);
    // All three start at once on the empty database: one signs the empty tree, the others
    // serve that same checkpoint.
    let opened = futures_join(configs.iter().map(Registry::open)).await;
    let replicas: Vec<Registry> = opened.into_iter().map(|r| r.unwrap()).collect();
    let apps: Vec<Router> = replicas.iter().map(Registry::router).collect();
    let log_key = VerifierKey::parse(get(&apps[0], "/v1/log/key").await.text().trim()).unwrap();
    let cp0: BTreeSet<String> = replicas
        .iter()
        .map(|r| r.state.view.latest().body.clone())
        .collect();
    assert_eq!(cp0.len(), 1, "replicas started with different checkpoints");

    // Content goes to each replica's own blob directory.
    let hello = fixture("hello.wasm");
    for app in &apps {
        let uri = format!("/v1/content/{}", gridreg_protocol::Digest::of(&hello));
        let r = send(app, Method::PUT, &uri, hello.clone(), None).await;
        assert!(r.status.is_success(), "{}", r.text());
    }
    // Read your writes across replicas, with no pause: a claim through replica 0, a grant
    // through replica 1, and the grantee's release through replica 2.
    let alice = key("alice");
    let bob = key("bob");
    let r = post(&apps[0], &claim(&apps[0], &alice, "acme").await).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let grant = namespace_record(
        &apps[1],
        &alice,
        "acme",
        gridreg_protocol::NamespaceOp::Grant,
        &bob,
        gridreg_protocol::Role::Publish,
    )
    .await;
    let r = post(&apps[1], &grant).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = post(
        &apps[2],
        &release(&apps[2], &bob, "acme:early", "1.0.0", &hello).await,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let early = r.json();
    // A proof for that checkpoint from replica 0, which did not sequence it.
    let early_size = early["checkpoint"]
        .as_str()
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    let p = get(
        &apps[0],
        &format!("/v1/log/proof/inclusion?index=4&size={early_size}"),
    )
    .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text());
    assert_eq!(p.json()["hashes"], early["proof"]);

    // Every client publishes to the one package `acme:hello`, as `gridreg publish` does: signed
    // on the chain's head, and again on the new head when another record landed first.
    let leaf_for = {
        let (alice, hello) = (alice.clone(), hello.clone());
        move |prev: Prev, version: &str, seconds: i64| {
            let mut rec = release_record("acme:hello", version, &hello);
            rec.prev = prev;
            rec.time = gridreg_protocol::Timestamp::from_unix(1_700_000_000 + seconds).unwrap();
            Record::Release(rec).sign(&[&alice]).unwrap()
        }
    };

    // Watchers read checkpoints from every replica while the publishes run.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut watchers = Vec::new();
    for app in &apps {
        let (app, stop) = (app.clone(), stop.clone());
        watchers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seen.push(get(&app, "/v1/log/checkpoint").await.text());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        }));
    }

    let mut tasks = Vec::new();
    for (r, app) in apps.iter().enumerate() {
        for c in 0..CLIENTS_PER_REPLICA {
            let app = app.clone();
            let leaf_for = leaf_for.clone();
            let mut versions = Vec::new();
            for v in 0..VERSIONS_PER_CLIENT {
                // Distinct versions per client, plus contested ones every replica races for.
                versions.push((false, format!("{r}.{c}.{v}"), (r * 100 + c) as i64));
                if c == 0 && v < CONTESTED {
                    versions.push((true, format!("9.0.{v}"), r as i64));
                }
            }
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for (contested, version, seconds) in versions {
                    let leaf = Mutex::new(String::new());
                    let reply = post_chained(&app, "package acme:hello", |prev| {
                        let signed = leaf_for(prev, &version, seconds);
                        *leaf.lock().unwrap() = signed.clone();
                        signed
                    })
                    .await;
                    out.push((r, contested, leaf.into_inner().unwrap(), reply));
                }
                out
            }));
        }
    }
    let mut acked: Vec<(usize, u64, String, String)> = Vec::new();
    let mut contested_wins: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for (r, contested, leaf, reply) in t.await.unwrap() {
            if reply.status == StatusCode::OK {
                let j = reply.json();
                let cp = j["checkpoint"].as_str().unwrap().to_string();
                let index = j["index"].as_u64().unwrap();
                // The proof in the answer checks against the checkpoint in the answer.
                let signed = SignedCheckpoint::verify(cp.as_bytes(), ORIGIN, &log_key).unwrap();
                let proof: Vec<String> = serde_json::from_value(j["proof"].clone()).unwrap();
                merkle::verify_inclusion(
                    &decode_hashes(&proof).unwrap(),
                    signed.size(),
                    signed.root(),
                    index,
                    &merkle::leaf_hash(leaf.as_bytes()),
                )
                .unwrap();
                if contested {
                    let version = leaf
                        .lines()
                        .find_map(|l| l.strip_prefix("version "))
                        .unwrap()
                        .to_string();
                    *contested_wins.entry(version).or_default() += 1;
                }
                acked.push((r, index, leaf, cp));
            } else {
                assert!(contested, "an uncontested publish failed: {}", reply.text());
                reply.assert_error(StatusCode::CONFLICT, "version_exists");
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen: Vec<String> = Vec::new();
    for w in watchers {
        seen.extend(w.await.unwrap());
    }

    // Every contested version has exactly one winner; every uncontested publish landed.
    assert_eq!(contested_wins.len(), CONTESTED, "{contested_wins:?}");
    assert!(
        contested_wins.values().all(|&n| n == 1),
        "{contested_wins:?}"
    );
    let expected = REPLICAS * CLIENTS_PER_REPLICA * VERSIONS_PER_CLIENT + CONTESTED;
    assert_eq!(acked.len(), expected);
    let early_checkpoint = early["checkpoint"].as_str().unwrap().to_string();
    // Every replica took part.
    let through: BTreeSet<usize> = acked.iter().map(|a| a.0).collect();
    assert_eq!(through.len(), REPLICAS);

    // The final tree: every replica reaches it and serves the same checkpoint for it.
    let size = settle(&replicas).await;
    let finals: BTreeSet<String> = futures_join(
        apps.iter()
            .map(|a| async move { log_signed(&get(a, "/v1/log/checkpoint").await.text()) }),
    )
    .await
    .into_iter()
    .collect();
    assert_eq!(finals.len(), 1, "replicas serve different checkpoints");
    let final_text = finals.into_iter().next().unwrap();
    let final_cp = SignedCheckpoint::verify(final_text.as_bytes(), ORIGIN, &log_key).unwrap();
    assert_eq!(final_cp.size(), size);

    let mut bodies: Vec<String> = Vec::new();
    while (bodies.len() as u64) < size {
        let page = get(
            &apps[bodies.len() % REPLICAS],
            &format!("/v1/log/entries?start={}&end={size}", bodies.len()),
        )
        .await
        .json();
        let page = page["entries"].as_array().unwrap().clone();
        assert!(!page.is_empty());
        for e in page {
            assert_eq!(e["index"].as_u64().unwrap(), bodies.len() as u64);
            bodies.push(e["body"].as_str().unwrap().to_string());
        }
    }
    let leaves: Vec<Hash> = bodies
        .iter()
        .map(|b| merkle::leaf_hash(b.as_bytes()))
        .collect();
    assert_eq!(mth(&leaves), *final_cp.root());
    assert_eq!(check_map_entries(&bodies, &log_key), 3 + expected);
    // Each replica proves the package's whole chain from its own head map.
    for app in &apps {
        let r = get(app, "/v1/bundles/acme:hello").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let bundle: gridreg_protocol::bundle::Bundle = serde_json::from_slice(&r.body).unwrap();
        let cp = SignedCheckpoint::verify(bundle.checkpoint.as_bytes(), ORIGIN, &log_key).unwrap();
        let proven = gridreg_protocol::bundle::verify_bundle(
            &bundle,
            &cp.checkpoint,
            &log_key,
            &gridreg_protocol::PackageName::parse("acme:hello").unwrap(),
        )
        .unwrap();
        assert_eq!(proven.releases.len(), expected);
    }
    // Every replica serves the same OCI manifest for a release, and the same referrer bundle at
    // one log size (docs/protocol.md §7.11.3, §7.11.4).
    let version = "0.0.0";
    let mut manifests = BTreeSet::new();
    let mut referrers = BTreeSet::new();
    for app in &apps {
        let r = get(app, &format!("/v2/acme/hello/manifests/{version}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let digest = gridreg_protocol::Digest::of(&r.body);
        manifests.insert(r.body);
        let r = get(app, &format!("/v2/acme/hello/referrers/{digest}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        referrers.insert(r.body);
    }
    assert_eq!(manifests.len(), 1, "replicas disagree on the manifest");
    assert_eq!(
        referrers.len(),
        1,
        "replicas disagree on the referrers at one size"
    );

    // Every acknowledged publish is in the log exactly once, at the index it was given.
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for b in &bodies {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    for (_, index, leaf, _) in &acked {
        assert_eq!(&bodies[*index as usize], leaf);
        assert_eq!(counts[leaf.as_str()], 1);
    }
    let indexes: BTreeSet<u64> = acked.iter().map(|a| a.1).collect();
    assert_eq!(indexes.len(), acked.len());

    // Every checkpoint any client saw (publish answers and watchers, from every replica) is
    // signed by the log key, is the root of the final tree's prefix of its size, and has a
    // consistency proof to the final checkpoint from a replica it did not come from.
    let mut all_seen: BTreeSet<String> = seen.into_iter().collect();
    all_seen.extend(acked.iter().map(|a| a.3.clone()));
    all_seen.extend(cp0);
    all_seen.insert(early_checkpoint);
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    for (k, text) in all_seen.iter().enumerate() {
        let cp = SignedCheckpoint::verify(text.as_bytes(), ORIGIN, &log_key).unwrap();
        if let Some(previous) = roots.insert(cp.size(), *cp.root()) {
            assert_eq!(previous, *cp.root(), "two roots for size {}", cp.size());
        }
        assert_eq!(
            mth(&leaves[..cp.size() as usize]),
            *cp.root(),
            "size {}",
            cp.size()
        );
        if cp.size() == 0 || cp.size() == size {
            continue;
        }
        let proof = get(
            &apps[k % REPLICAS],
            &format!("/v1/log/proof/consistency?from={}&to={size}", cp.size()),
        )
        .await
        .json();
        let proof: Vec<String> = serde_json::from_value(proof["hashes"].clone()).unwrap();
        merkle::verify_consistency(
            &decode_hashes(&proof).unwrap(),
            size,
            final_cp.root(),
            cp.size(),
            cp.root(),
        )
        .unwrap();
    }
    assert!(all_seen.len() > 2, "too few checkpoints seen to mean much");

    // Inclusion proofs for the final tree agree across replicas.
    for (_, index, leaf, _) in acked.iter().step_by(7) {
        let uri = &format!("/v1/log/proof/inclusion?index={index}&size={size}");
        let answers: BTreeSet<String> =
            futures_join(apps.iter().map(|a| async move { get(a, uri).await.text() }))
                .await
                .into_iter()
                .collect();
        assert_eq!(answers.len(), 1);
        let p: serde_json::Value = serde_json::from_str(answers.first().unwrap()).unwrap();
        let p: Vec<String> = serde_json::from_value(p["hashes"].clone()).unwrap();
        merkle::verify_inclusion(
            &decode_hashes(&p).unwrap(),
            size,
            final_cp.root(),
            *index,
            &merkle::leaf_hash(leaf.as_bytes()),
        )
        .unwrap();
    }

    drop(apps);
    for r in replicas {
        r.stop().await;
    }
    drop(db);
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futs: Vec<_> = futs.map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    let mut futs: Vec<_> = futs.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, out) in futs.iter_mut().zip(outs.iter_mut()) {
            if let Some(fut) = f {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *out = Some(v);
                        *f = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().map(|o| o.unwrap()).collect()
}

/// One replica's sequencer is aborted in the middle of the load (a crash at whatever await it
/// was on, mid-transaction included) and a new replica starts on the same data directory and
/// database, while clients keep publishing through all three and retry through the restarted
/// one. Every acknowledged publish is in the log once at its index; a publish that was made
/// durable but never acknowledged is there once too; nothing is half-integrated (the stored
/// tree is the root of the stored leaves at every checkpoint a client saw).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_aborted_replica_loses_no_acknowledged_publish() {
    const VERSIONS: usize = 15;
    let db = TestDb::create();
    let (_dirs, configs) = replica_configs(&db, REPLICAS);
    let mut replicas: Vec<Option<Registry>> = Vec::new();
    for c in &configs {
        replicas.push(Some(Registry::open(c).await.unwrap()));
    }
    let slots: Vec<std::sync::Arc<std::sync::RwLock<Router>>> = replicas
        .iter()
        .map(|r| std::sync::Arc::new(std::sync::RwLock::new(r.as_ref().unwrap().router())))
        .collect();
    let current = |r: usize| slots[r].read().unwrap().clone();
    let log_key = VerifierKey::parse(get(&current(0), "/v1/log/key").await.text().trim()).unwrap();
    let alice = key("alice");
    assert_eq!(
        post(&current(0), &claim(&current(0), &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    let hello = fixture("hello.wasm");
    for r in 0..REPLICAS {
        let uri = format!("/v1/content/{}", gridreg_protocol::Digest::of(&hello));
        let reply = send(&current(r), Method::PUT, &uri, hello.clone(), None).await;
        assert!(reply.status.is_success(), "{}", reply.text());
    }

    // Replica 1 crashes once it has acknowledged a few publishes, so its clients (never idle)
    // have publishes in flight. The client that sees the sixth answer aborts it at once: a
    // trigger in this test's own task could run too late (here it was woken up to 250 ms after
    // being notified, with every core busy), when replica 1's clients were nearly done.
    let victim = Arc::new(Mutex::new(replicas[1].take()));
    let crashed = Arc::new(tokio::sync::Notify::new());
    let acked_by_1 = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (r, slot) in slots.iter().enumerate() {
        for c in 0..CLIENTS_PER_REPLICA {
            let slot = slot.clone();
            let (victim, crashed, acked_by_1) =
                (victim.clone(), crashed.clone(), acked_by_1.clone());
            // Each client publishes its own package's versions in turn, each release naming
            // the one before it (a package chain per client).
            let (alice, hello) = (alice.clone(), hello.clone());
            let package = format!("acme:p{r}x{c}");
            tasks.push(tokio::spawn(async move {
                // (leaf, acknowledged answer or None if its outcome was lost in the crash,
                // whether it had to be retried)
                let mut out: Vec<(String, Option<serde_json::Value>, bool)> = Vec::new();
                let mut prev = Prev::None;
                for v in 0..VERSIONS {
                    let leaf = release_at(prev, &alice, &package, &format!("1.0.{v}"), &hello);
                    let mut retried = false;
                    loop {
                        let app = slot.read().unwrap().clone();
                        let reply = post(&app, &leaf).await;
                        match reply.status {
                            StatusCode::OK => {
                                let index = reply.json()["index"].as_u64().unwrap();
                                prev = Prev::Entry(Head::of(index, leaf.as_bytes()));
                                out.push((leaf, Some(reply.json()), retried));
                                if r == 1 && acked_by_1.fetch_add(1, Ordering::SeqCst) == 5 {
                                    let registry = victim.lock().unwrap().take();
                                    if let Some(registry) = registry {
                                        registry.abort().await;
                                    }
                                    crashed.notify_one();
                                }
                                break;
                            }
                            // The crashed attempt made it durable without an answer.
                            StatusCode::CONFLICT if retried => {
                                reply.assert_error(StatusCode::CONFLICT, "version_exists");
                                prev = head(&app, &format!("package {package}")).await;
                                assert_eq!(
                                    prev.head().map(|h| h.leaf),
                                    Some(merkle::leaf_hash(leaf.as_bytes()))
                                );
                                out.push((leaf, None, retried));
                                break;
                            }
                            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INTERNAL_SERVER_ERROR => {
                                retried = true;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            other => panic!("unexpected {other}: {}", reply.text()),
                        }
                    }
                }
                out
            }));
        }
    }

    // Once replica 1 has crashed, start a new replica in its place.
    let store = replicas[0].as_ref().unwrap().state.store.clone();
    tokio::time::timeout(Duration::from_secs(30), crashed.notified())
        .await
        .expect("replica 1 never acknowledged 6 publishes");
    let crashed_at = store.log_size().await.unwrap();
    let restarted = Registry::open(&configs[1]).await.unwrap();
    *slots[1].write().unwrap() = restarted.router();
    replicas[1] = Some(restarted);

    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap());
    }
    let replicas: Vec<Registry> = replicas.into_iter().map(Option::unwrap).collect();
    let size = settle(&replicas).await;
    assert!(size > crashed_at, "nothing was published after the crash");

    let mut bodies: Vec<String> = Vec::new();
    while (bodies.len() as u64) < size {
        let page = get(
            &current(bodies.len() % REPLICAS),
            &format!("/v1/log/entries?start={}&end={size}", bodies.len()),
        )
        .await
        .json();
        for e in page["entries"].as_array().unwrap() {
            bodies.push(e["body"].as_str().unwrap().to_string());
        }
    }
    let leaves: Vec<Hash> = bodies
        .iter()
        .map(|b| merkle::leaf_hash(b.as_bytes()))
        .collect();
    let finals: BTreeSet<String> = futures_join((0..REPLICAS).map(|r| {
        let app = current(r);
        async move { log_signed(&get(&app, "/v1/log/checkpoint").await.text()) }
    }))
    .await
    .into_iter()
    .collect();
    assert_eq!(finals.len(), 1, "replicas serve different checkpoints");
    let final_cp =
        SignedCheckpoint::verify(finals.first().unwrap().as_bytes(), ORIGIN, &log_key).unwrap();
    assert_eq!(final_cp.size(), size);
    assert_eq!(mth(&leaves), *final_cp.root());
    assert_eq!(
        check_map_entries(&bodies, &log_key),
        1 + outcomes.len(),
        "every publish landed exactly once"
    );

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for b in &bodies {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    let mut unacknowledged = 0;
    let retried = outcomes.iter().filter(|o| o.2).count();
    for (leaf, answer, _) in &outcomes {
        assert_eq!(counts.get(leaf.as_str()), Some(&1), "{leaf}");
        let Some(answer) = answer else {
            unacknowledged += 1;
            continue;
        };
        let index = answer["index"].as_u64().unwrap();
        assert_eq!(&bodies[index as usize], leaf);
        let cp = SignedCheckpoint::verify(
            answer["checkpoint"].as_str().unwrap().as_bytes(),
            ORIGIN,
            &log_key,
        )
        .unwrap();
        assert_eq!(mth(&leaves[..cp.size() as usize]), *cp.root());
    }
    eprintln!(
        "crashed at size {crashed_at}; final size {size}; {retried} publishes retried, \
         {unacknowledged} of them durable but unacknowledged"
    );
    // The crash hit publishes in flight (the clients of replica 1 are never idle).
    assert!(retried > 0, "the crash interrupted no publish");

    // The routers hold the sequencers' senders: drop them before waiting for the sequencers.
    drop(slots);
    for r in replicas {
        r.stop().await;
    }
    drop(db);
}

/// The sequencer judges namespace policies with the policy text read for each batch: a policy
/// set through one replica refuses the very next publish through another, and removing it lets
/// the same release through, with nothing stored for the refused attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_set_through_one_replica_binds_the_others_at_once() {
    let db = TestDb::create();
    let (_dirs, configs) = replica_configs(&db, 2);
    let mut replicas = Vec::new();
    for c in &configs {
        replicas.push(Registry::open(c).await.unwrap());
    }
    let apps: Vec<Router> = replicas.iter().map(Registry::router).collect();
    let tcp = fixture("tcp-client.wasm");
    for app in &apps {
        let uri = format!("/v1/content/{}", gridreg_protocol::Digest::of(&tcp));
        let r = send(app, Method::PUT, &uri, tcp.clone(), None).await;
        assert!(r.status.is_success(), "{}", r.text());
    }
    let alice = key("alice");
    let r = post(&apps[0], &claim(&apps[0], &alice, "acme").await).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let store = replicas[0].state.store.as_ref();
    let (admin, _) =
        gridreg_registry::auth::create_token(store, gridreg_registry::auth::Scope::Admin, None)
            .await
            .unwrap();
    let policy = "[policy]\nname = \"no-network\"\n[capabilities]\ndeny = [\"network\"]\ndefault = \"allow\"\n";
    let r = send(
        &apps[0],
        Method::PUT,
        "/v1/namespaces/acme/policy",
        policy.into(),
        Some(&admin),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());

    let leaf = release(&apps[1], &alice, "acme:tcp", "1.0.0", &tcp).await;
    let size = store.log_size().await.unwrap();
    let r = post(&apps[1], &leaf).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "policy_violation");
    assert!(r.text().contains("no-network"), "{}", r.text());
    assert_eq!(store.log_size().await.unwrap(), size);
    assert_eq!(store.release_count().await.unwrap(), 0);

    let r = send(
        &apps[0],
        Method::DELETE,
        "/v1/namespaces/acme/policy",
        Vec::new(),
        Some(&admin),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = post(&apps[1], &leaf).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(store.release_count().await.unwrap(), 1);
    drop(apps);
    for r in replicas {
        r.stop().await;
    }
}
