//! The store's commit contract, on SQLite and on PostgreSQL: a batch lands only on the log size
//! it was built on, a size never gets a second checkpoint, and a refused batch writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::*;
use gridreg_protocol::merkle;
use gridreg_registry::server::open_metadata;
use gridreg_registry::store::{
    Batch, CheckpointRow, Derived, EntryKind, Follow, NewEntry, NewRelease, Search, StageRequest,
    Store, StoreError,
};

backend_tests!(
    stale_batches_are_refused,
    concurrent_commits_serialise,
    releases_and_yanks_share_a_batch,
    stage_reads_versions_policies_and_the_log
);

/// A batch of namespace-kind leaves `start..start+n` (the store does not parse bodies), with
/// hashes and a checkpoint computed the way the sequencer does.
async fn batch(store: &Store, start: u64, n: u64, tag: &str) -> Batch {
    let leaves: Vec<Vec<u8>> = (start..start + n)
        .map(|i| format!("leaf {i} {tag}\n").into_bytes())
        .collect();
    let leaf_hashes: Vec<_> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
    let base = merkle::stored_hash_count(start);
    let hashes = gridreg_registry::log::with_hashes(store, base, &[], |r| {
        merkle::append_leaves(start, &leaf_hashes, r)
    })
    .await
    .unwrap();
    let root = gridreg_registry::log::with_hashes(store, base, &hashes, |r| {
        merkle::tree_hash(start + n, r)
    })
    .await
    .unwrap();
    Batch {
        start,
        entries: leaves
            .into_iter()
            .enumerate()
            .map(|(k, body)| NewEntry {
                index: start + k as u64,
                leaf: merkle::leaf_hash(&body),
                body,
                kind: EntryKind::Namespace,
                namespace: "acme".into(),
                chain: Some("namespace acme".into()),
                derived: Derived::Namespace,
            })
            .collect(),
        hash_start: base,
        hashes,
        checkpoint: CheckpointRow {
            size: start + n,
            root,
            body: format!("checkpoint {} {tag}\n", start + n),
        },
    }
}

/// RFC 6962 MTH straight from the definition, independent of the stored-hash layout.
fn mth(leaves: &[gridreg_protocol::Hash]) -> gridreg_protocol::Hash {
    match leaves.len() {
        0 => merkle::EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

async fn open(backend: Backend) -> (tempfile::TempDir, Arc<Store>, Option<TestDb>) {
    let dir = tempfile::tempdir().unwrap();
    let (config, db) = backend.config(dir.path().join("data"));
    let store = open_metadata(&config.data, config.database_url.as_deref())
        .await
        .unwrap();
    (dir, store, db)
}

async fn stale_batches_are_refused(backend: Backend) {
    let (_dir, store, _db) = open(backend).await;
    store.commit(batch(&store, 0, 0, "a").await).await.unwrap();
    let first = batch(&store, 0, 3, "a").await;
    // A second batch built on the same (empty) tree by "another sequencer".
    let rival = batch(&store, 0, 2, "b").await;
    store.commit(first).await.unwrap();
    let err = store.commit(rival).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: 0,
                found: 3
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("expected the log to hold 0 entries, found 3")
    );
    // Nothing of the rival landed.
    assert_eq!(store.log_size().await.unwrap(), 3);
    let cp = store.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!((cp.size, cp.body.as_str()), (3, "checkpoint 3 a\n"));
    let entries = store.entries(0, 10).await.unwrap();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|(_, b)| b.ends_with(b" a\n")));
    // The empty tree's checkpoint is never signed twice.
    let again = batch(&store, 0, 0, "c").await;
    assert!(store.commit(again).await.is_err());
    // A batch on the right size goes through, and the stored tree matches the signed root.
    let next = batch(&store, 3, 2, "a").await;
    let root = next.checkpoint.root;
    store.commit(next).await.unwrap();
    assert_eq!(store.log_size().await.unwrap(), 5);
    let all = store.entries(0, 5).await.unwrap();
    let leaves: Vec<_> = all.iter().map(|(_, b)| merkle::leaf_hash(b)).collect();
    assert_eq!(mth(&leaves), root);
    store.close().await;
}

/// Many sequencers racing on one store: each commit either lands on the size it was built on or
/// is refused whole, so the log grows by exactly the winners and every stored checkpoint's root
/// is the root of the stored leaves at its size.
async fn concurrent_commits_serialise(backend: Backend) {
    let (_dir, store, _db) = open(backend).await;
    store.commit(batch(&store, 0, 0, "x").await).await.unwrap();
    let mut landed = 0u64;
    for round in 0..5 {
        let size = store.log_size().await.unwrap();
        let mut tasks = Vec::new();
        for s in 0..4 {
            let b = batch(&store, size, 1 + s, &format!("r{round}s{s}")).await;
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let n = b.entries.len() as u64;
                (n, store.commit(b).await)
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                (n, Ok(())) => {
                    wins += 1;
                    landed += n;
                }
                (_, Err(StoreError::Conflict { expected, .. })) => assert_eq!(expected, size),
                // SQLite (one sequencer per data directory by design) refuses a racing writer
                // whose read snapshot went stale with SQLITE_BUSY_SNAPSHOT instead; it also
                // writes nothing, which the checks below verify.
                (_, Err(StoreError::Database(e)))
                    if backend == Backend::Sqlite && e.contains("database is locked") => {}
                (_, Err(e)) => panic!("expected a conflict, found {e}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
    assert_eq!(store.log_size().await.unwrap(), landed);
    let cp = store.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(cp.size, landed);
    let all = store.entries(0, landed).await.unwrap();
    let leaves: Vec<_> = all.iter().map(|(_, b)| merkle::leaf_hash(b)).collect();
    assert_eq!(mth(&leaves), cp.root);
    store.close().await;
}

/// `batch` with its entries' derived rows replaced (bodies stay placeholders).
async fn derived_batch(store: &Store, start: u64, derived: Vec<Derived>, tag: &str) -> Batch {
    let mut b = batch(store, start, derived.len() as u64, tag).await;
    for (e, d) in b.entries.iter_mut().zip(derived) {
        e.kind = match &d {
            Derived::Release(_) => EntryKind::Release,
            Derived::Yank { .. } => EntryKind::Yank,
            Derived::Namespace => EntryKind::Namespace,
            Derived::Map => EntryKind::Map,
        };
        if e.kind != EntryKind::Namespace {
            e.chain = Some("package acme:x".into());
        }
        e.derived = d;
    }
    b
}

fn release(version: &str, import: &str) -> Derived {
    Derived::Release(Box::new(NewRelease {
        package: "acme:x".into(),
        version: version.into(),
        digest: format!("sha256:{version}"),
        size: 10,
        kind: "component".into(),
        capabilities: vec!["stdio".into()],
        audit_json: "{}".into(),
        imports: vec![(import.into(), "stdio".into())],
        exports: vec!["wasi:cli/run@0.2.0".into()],
    }))
}

fn yank(version: &str, reason: &str) -> Derived {
    Derived::Yank {
        package: "acme:x".into(),
        version: version.into(),
        reason: reason.into(),
    }
}

/// One batch may release a version and yank it, and yank a version of an earlier batch; the
/// derived rows (versions, yank state, imports for search) come out as if applied in log order.
async fn releases_and_yanks_share_a_batch(backend: Backend) {
    let (_dir, store, _db) = open(backend).await;
    store.commit(batch(&store, 0, 0, "e").await).await.unwrap();
    let first = derived_batch(
        &store,
        0,
        vec![release("1.0.0", "wasi:cli/stdout@0.2.0")],
        "a",
    )
    .await;
    store.commit(first).await.unwrap();
    let second = derived_batch(
        &store,
        1,
        vec![
            release("1.1.0", "wasi:cli/stderr@0.2.0"),
            yank("1.1.0", "bad build"),
            yank("1.0.0", "CVE-1"),
            release("1.2.0", "wasi:cli/stdin@0.2.0"),
        ],
        "b",
    )
    .await;
    store.commit(second).await.unwrap();
    assert_eq!(store.log_size().await.unwrap(), 5);
    let versions = store.versions("acme:x").await.unwrap();
    let seen: Vec<(String, u64, bool, Option<String>)> = versions
        .into_iter()
        .map(|v| (v.version, v.log_index, v.yanked, v.yank_reason))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("1.0.0".into(), 0, true, Some("CVE-1".into())),
            ("1.1.0".into(), 1, true, Some("bad build".into())),
            ("1.2.0".into(), 4, false, None),
        ]
    );
    assert_eq!(
        store.release_state("acme:x", "1.2.0").await.unwrap(),
        Some(false)
    );
    assert_eq!(store.release_count().await.unwrap(), 3);
    let hits = store
        .search(&Search {
            imports: Some("wasi:cli/stderr".into()),
            limit: 10,
            ..Search::default()
        })
        .await
        .unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| h.row.version.as_str())
            .collect::<Vec<_>>(),
        vec!["1.1.0"]
    );
    store.close().await;
}

/// `Store::stage`, a sequencer's whole read before a batch: which of the batch's versions exist
/// (and whether yanked), the policies of its namespaces, and, when following other replicas,
/// the newest checkpoint with the namespace records from a given index up to it.
async fn stage_reads_versions_policies_and_the_log(backend: Backend) {
    use std::collections::HashMap;
    let (_dir, store, _db) = open(backend).await;
    store.commit(batch(&store, 0, 0, "e").await).await.unwrap();
    // Namespace records 0..3, releases and a yank 3..6, namespace records 6..8.
    store.commit(batch(&store, 0, 3, "a").await).await.unwrap();
    let derived = vec![
        release("1.0.0", "wasi:cli/stdout@0.2.0"),
        release("1.1.0", "wasi:cli/stdout@0.2.0"),
        yank("1.0.0", "CVE-1"),
    ];
    store
        .commit(derived_batch(&store, 3, derived, "b").await)
        .await
        .unwrap();
    store.commit(batch(&store, 6, 2, "c").await).await.unwrap();
    let policy = "[capabilities]\ndeny = [\"sockets\"]\n";
    store.set_policy("acme", Some(policy)).await.unwrap();

    let key = |v: &str| ("acme:x".to_string(), v.to_string());
    let req = StageRequest {
        versions: vec![key("1.0.0"), key("1.1.0"), key("2.0.0")],
        chains: vec![
            "namespace acme".into(),
            "package acme:x".into(),
            "package acme:never".into(),
        ],
        namespaces: vec!["acme".into(), "other".into()],
        follow: None,
    };
    let want_versions = HashMap::from([(key("1.0.0"), true), (key("1.1.0"), false)]);
    let want_policies = HashMap::from([("acme".to_string(), policy.to_string())]);
    // Each chain's head is its newest entry: the yank at 5 for the package, the last of batch
    // `c` for the namespace; a chain without entries has none.
    let bodies = store.entries(0, 8).await.unwrap();
    let head_at = |i: usize| gridreg_protocol::Head::of(i as u64, &bodies[i].1);
    let want_heads = HashMap::from([
        ("namespace acme".to_string(), head_at(7)),
        ("package acme:x".to_string(), head_at(5)),
    ]);

    let staged = store.stage(req.clone()).await.unwrap();
    assert_eq!(staged.versions, want_versions);
    assert_eq!(staged.policies, want_policies);
    assert_eq!(staged.heads, want_heads);
    assert_eq!(
        store.chain_head("package acme:x").await.unwrap(),
        Some(head_at(5))
    );
    assert_eq!(store.chain_head("package acme:never").await.unwrap(), None);
    assert!(staged.latest.is_none(), "not asked to follow");
    assert!(staged.namespace_entries.is_empty());

    let followed = store
        .stage(StageRequest {
            follow: Some(Follow {
                namespaces_from: 2,
                known_size: 3,
            }),
            ..req
        })
        .await
        .unwrap();
    assert_eq!(followed.versions, want_versions);
    assert_eq!(followed.policies, want_policies);
    assert_eq!(followed.heads, want_heads);
    let latest = followed.latest.unwrap();
    let stored = store.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(
        (latest.size, latest.root, &latest.body),
        (8, stored.root, &stored.body)
    );
    let all = store.entries(0, 8).await.unwrap();
    let want_entries: Vec<(u64, Vec<u8>)> = [2, 6, 7].iter().map(|&i| all[i].clone()).collect();
    assert_eq!(followed.namespace_entries, want_entries);

    // Following from the end: the checkpoint, no records; nothing asked, nothing read.
    let at_end = store
        .stage(StageRequest {
            follow: Some(Follow {
                namespaces_from: 8,
                known_size: 8,
            }),
            ..StageRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(at_end.latest.map(|c| c.size), Some(8));
    assert!(at_end.namespace_entries.is_empty());
    assert!(at_end.versions.is_empty() && at_end.policies.is_empty());
    store.close().await;
}
