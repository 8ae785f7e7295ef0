//! Many clients publishing different and identical versions at once: exactly one wins each
//! version, the log holds each winner once, and every answer's proof checks out. Each test runs
//! on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use common::*;
use gridreg_protocol::api::decode_hashes;
use gridreg_protocol::{Record, SignedCheckpoint, VerifierKey, merkle};

backend_tests!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    one_winner_per_version,
    racing_claims_have_one_owner,
);

async fn one_winner_per_version(backend: Backend) {
    let h = harness_on(backend).await;
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    let hello = fixture("hello.wasm");
    assert_eq!(h.put_content(&hello).await.status, StatusCode::CREATED);
    let log_key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();

    const VERSIONS: usize = 20;
    const CONTENDERS: usize = 5;
    let mut tasks = Vec::new();
    for v in 0..VERSIONS {
        for c in 0..CONTENDERS {
            // Each contender signs its own record (distinct time lines make distinct leaves) on
            // the package chain's head, and again on the new head whenever another record got
            // there first, as `gridreg publish` does.
            let hello = hello.clone();
            let alice = alice.clone();
            let app = h.app.clone();
            tasks.push(tokio::spawn(async move {
                let leaf = std::sync::Mutex::new(String::new());
                let r = post_chained(&app, "package acme:hello", |prev| {
                    let mut rec = release_record("acme:hello", &format!("1.{v}.0"), &hello);
                    rec.prev = prev;
                    rec.time =
                        gridreg_protocol::Timestamp::from_unix(1_700_000_000 + c as i64).unwrap();
                    let signed = Record::Release(rec).sign(&[&alice]).unwrap();
                    *leaf.lock().unwrap() = signed.clone();
                    signed
                })
                .await;
                let leaf = leaf.into_inner().unwrap();
                (v, leaf, r)
            }));
        }
    }
    let mut winners: BTreeMap<usize, Vec<(u64, String, serde_json::Value)>> = BTreeMap::new();
    for t in tasks {
        let (v, leaf, r) = t.await.unwrap();
        match r.status {
            StatusCode::OK => {
                let j = r.json();
                winners
                    .entry(v)
                    .or_default()
                    .push((j["index"].as_u64().unwrap(), leaf, j));
            }
            _ => r.assert_error(StatusCode::CONFLICT, "version_exists"),
        }
    }
    assert_eq!(winners.len(), VERSIONS);
    let mut indexes = BTreeSet::new();
    for (v, w) in &winners {
        assert_eq!(w.len(), 1, "version 1.{v}.0 won {} times", w.len());
        let (index, leaf, answer) = &w[0];
        assert!(indexes.insert(*index));
        let cp = SignedCheckpoint::verify(
            answer["checkpoint"].as_str().unwrap().as_bytes(),
            "gridreg.local/log",
            &log_key,
        )
        .unwrap();
        let proof: Vec<String> = serde_json::from_value(answer["proof"].clone()).unwrap();
        merkle::verify_inclusion(
            &decode_hashes(&proof).unwrap(),
            cp.size(),
            cp.root(),
            *index,
            &merkle::leaf_hash(leaf.as_bytes()),
        )
        .unwrap();
    }
    // The log holds the claim and exactly one entry per version, each batch ended by a map
    // entry (how many batches there were depends on timing), nothing else.
    let (size, releases, _) = h.snapshot().await;
    assert_eq!(releases, VERSIONS as u64);
    let entries = h.get("/v1/log/entries?start=0&end=1000").await.json();
    let bodies: Vec<&str> = entries["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies.len() as u64, size);
    assert!(bodies.last().unwrap().starts_with("gridreg/map/v1\n"));
    let records: Vec<&str> = bodies
        .iter()
        .copied()
        .filter(|b| !b.starts_with("gridreg/map/v1\n"))
        .collect();
    assert_eq!(records.len(), 1 + VERSIONS);
    let versions: Vec<String> = records
        .iter()
        .skip(1)
        .map(|body| {
            body.lines()
                .find_map(|l| l.strip_prefix("version "))
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: BTreeSet<_> = versions.iter().collect();
    assert_eq!(unique.len(), versions.len());
}

async fn racing_claims_have_one_owner(backend: Backend) {
    let h = harness_on(backend).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let app = h.app.clone();
        let k = key(&format!("k{i}"));
        tasks.push(tokio::spawn(async move {
            post_chained(&app, "namespace contested", |prev| {
                claim_at(prev, &k, "contested")
            })
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == StatusCode::OK {
            ok += 1;
        } else {
            r.assert_error(StatusCode::CONFLICT, "namespace_claimed");
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(h.snapshot().await.0, 2, "the claim and its map entry");
}
