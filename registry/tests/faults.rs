//! Store faults through the real router and sequencer: a [`Log`] that wraps a real SQLite
//! log and fails `commit` or `read_hashes` on command. A publish whose batch cannot be made
//! durable answers a 5xx with the JSON error body and no internals, changes nothing (log size,
//! checkpoint, packages, namespace state), and once the fault clears the next publish succeeds
//! on a log whose root still matches its leaves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::Router;
use axum::http::{Method, StatusCode};
use common::*;
use gridreg_protocol::api::decode_hashes;
use gridreg_protocol::{Digest, Hash, SignedCheckpoint, SignerKey, VerifierKey, merkle};
use gridreg_registry::blob::files::FileBlobStore;
use gridreg_registry::metrics::Metrics;
use gridreg_registry::paths::DataDir;
use gridreg_registry::sequencer::Sequencer;
use gridreg_registry::store::{
    Batch, BatchRows, BoxFuture, Log, StageRequest, Staged, Store, StoreError, sqlite,
};
use gridreg_registry::{AppState, Shared};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const ORIGIN: &str = "faults.test/log";
/// Carried by every injected error; must never reach a client.
const MARKER: &str = "injected-fault-7c1e";

/// A real SQLite log whose `commit` and `read_hashes` fail while their switch is on.
struct Faulty {
    inner: Arc<dyn Log>,
    fail_commit: AtomicBool,
    fail_read_hashes: AtomicBool,
    commits: AtomicU64,
}

impl Faulty {
    fn injected(what: &str) -> StoreError {
        StoreError::Database(format!(
            "{MARKER}: {what} failed (/var/lib/secret/registry.db)"
        ))
    }
}

impl Log for Faulty {
    fn size(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.size()
    }
    fn read_hashes(
        &self,
        indexes: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<(u64, Hash)>, StoreError>> {
        if self.fail_read_hashes.load(Ordering::SeqCst) {
            return Box::pin(async { Err(Faulty::injected("read_hashes")) });
        }
        self.inner.read_hashes(indexes)
    }
    fn stage<'a>(
        &'a self,
        req: &'a StageRequest,
    ) -> BoxFuture<'a, Result<Option<Staged>, StoreError>> {
        self.inner.stage(req)
    }
    fn commit<'a>(
        &'a self,
        batch: &'a Batch,
        rows: BatchRows,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        if self.fail_commit.load(Ordering::SeqCst) {
            return Box::pin(async { Err(Faulty::injected("commit")) });
        }
        self.inner.commit(batch, rows)
    }
}

/// A registry assembled by hand over the faulty store: the real sequencer, blob store and router.
struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    faults: Arc<Faulty>,
    app: Router,
    log_key: VerifierKey,
    _sequencer: JoinHandle<()>,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("data"));
    std::fs::create_dir_all(data.root()).unwrap();
    let store = sqlite::open(&data.database()).await.unwrap();
    let faults = Arc::new(Faulty {
        inner: store.log(),
        fail_commit: AtomicBool::new(false),
        fail_read_hashes: AtomicBool::new(false),
        commits: AtomicU64::new(0),
    });
    let store = Arc::new(store.with_log(faults.clone()));
    let key = SignerKey::generate(ORIGIN).unwrap();
    let log_key = key.verifier();
    let timestamp = Arc::new(gridreg_registry::timestamp::Timestamper::new(&key).unwrap());
    let metrics = Arc::new(Metrics::new());
    let (sequencer, view) = Sequencer::open(store.clone(), key, ORIGIN.into(), metrics.clone())
        .await
        .unwrap();
    let (submit, rx) = mpsc::channel(64);
    let task = tokio::spawn(sequencer.run(rx));
    let state = AppState::new(Shared {
        store: store.clone(),
        blobs: Arc::new(FileBlobStore::open(data).await.unwrap()),
        pins: Arc::default(),
        audits: Arc::new(gridreg_registry::audits::Audits::new(
            gridreg_registry::audits::DEFAULT_AUDIT_MEMORY,
        )),
        view,
        metrics,
        submit,
        origin: ORIGIN.into(),
        log_key: log_key.to_string().into(),
        timestamp,
        max_blob_size: gridreg_registry::server::DEFAULT_MAX_BLOB_SIZE,
        require_token: false,
        oci: Arc::default(),
        witnesses: Arc::default(),
        tiles: Arc::default(),
        uploads: Arc::default(),
    });
    Rig {
        _dir: dir,
        store,
        faults,
        app: gridreg_registry::routes::app(state),
        log_key,
        _sequencer: task,
    }
}

/// RFC 6962 Merkle tree hash, computed independently of the registry's stored hashes.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => merkle::EMPTY_ROOT,
        1 => leaves[0],
        n => {
            // The largest power of two below n.
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            merkle::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

impl Rig {
    async fn get(&self, uri: &str) -> Reply {
        send(&self.app, Method::GET, uri, Vec::new(), None).await
    }
    async fn post(&self, leaf: &str) -> Reply {
        send(
            &self.app,
            Method::POST,
            "/v1/records",
            leaf.as_bytes().to_vec(),
            None,
        )
        .await
    }
    async fn upload(&self, bytes: &[u8]) {
        let uri = format!("/v1/content/{}", Digest::of(bytes));
        let r = send(&self.app, Method::PUT, &uri, bytes.to_vec(), None).await;
        assert!(r.status.is_success(), "{}", r.text());
    }
    /// Everything a failed publish must leave alone.
    async fn state(&self) -> (u64, u64, String, serde_json::Value) {
        (
            self.store.log_size().await.unwrap(),
            self.store.release_count().await.unwrap(),
            log_signed(&self.get("/v1/log/checkpoint").await.text()),
            self.get("/v1/packages").await.json(),
        )
    }
    /// The served checkpoint verifies, and its root is the tree hash of the served leaves.
    async fn check_log(&self) -> SignedCheckpoint {
        let cp = self.get("/v1/log/checkpoint").await;
        let cp = SignedCheckpoint::verify(&cp.body, ORIGIN, &self.log_key).unwrap();
        let entries = self
            .get(&format!("/v1/log/entries?start=0&end={}", cp.size()))
            .await
            .json();
        let leaves: Vec<Hash> = entries["entries"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, e)| {
                assert_eq!(e["index"], i as u64);
                merkle::leaf_hash(e["body"].as_str().unwrap().as_bytes())
            })
            .collect();
        assert_eq!(leaves.len() as u64, cp.size());
        assert_eq!(&mth(&leaves), cp.root(), "root does not match the leaves");
        assert_eq!(self.store.log_size().await.unwrap(), cp.size());
        cp
    }
}

/// A 5xx with the JSON error body whose message shows nothing of the injected error.
fn assert_clean_5xx(r: &Reply) {
    let text = r.text();
    assert!(r.status.is_server_error(), "{}: {text}", r.status);
    let j = r.json();
    assert!(j["error"]["code"].is_string(), "{text}");
    assert!(j["error"]["message"].is_string(), "{text}");
    for leak in [MARKER, "secret", "database", "commit", "read_hashes"] {
        assert!(!text.contains(leak), "internals leaked ({leak}): {text}");
    }
}

#[tokio::test]
async fn failed_commit_answers_503_changes_nothing_and_recovers() {
    let rig = rig().await;
    let alice = key("alice");
    let hello = fixture("hello.wasm");
    assert_eq!(
        rig.post(&claim(&rig.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    rig.upload(&hello).await;
    let r = rig
        .post(&release(&rig.app, &alice, "acme:hello", "1.0.0", &hello).await)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let before = rig.state().await;
    let cp_before = rig.check_log().await;
    assert_eq!(
        cp_before.size(),
        4,
        "two records, each with its batch's map entry"
    );

    rig.faults.fail_commit.store(true, Ordering::SeqCst);
    let commits = rig.faults.commits.load(Ordering::SeqCst);
    let r = rig
        .post(&release(&rig.app, &alice, "acme:hello", "1.1.0", &hello).await)
        .await;
    assert_clean_5xx(&r);
    // Nothing was stored, so the answer says "try again": 503 with Retry-After, the
    // status a client or load balancer retries on, not a 500.
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1"),
        "{:?}",
        r.headers
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing of this record was stored"),
        "{}",
        r.text()
    );
    assert!(
        rig.faults.commits.load(Ordering::SeqCst) > commits,
        "the fault was never reached: the publish failed elsewhere"
    );
    // A claim that fails to commit must not linger in the namespace state either.
    let bob = key("bob");
    assert_clean_5xx(&rig.post(&claim(&rig.app, &bob, "beta").await).await);
    // A yank too.
    assert_clean_5xx(
        &rig.post(&yank(&rig.app, &alice, "acme:hello", "1.0.0").await)
            .await,
    );

    assert_eq!(
        rig.state().await,
        before,
        "a failed commit changed something"
    );
    rig.get("/v1/packages/acme:hello/1.1.0")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    rig.get("/v1/namespaces/beta")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let versions = rig.get("/v1/packages/acme:hello").await.json();
    assert_eq!(versions["versions"][0]["yanked"], false, "{versions}");

    // The fault clears: the same records go through, at the indexes the failed ones would
    // have had, on a tree consistent with the checkpoint served before the fault.
    rig.faults.fail_commit.store(false, Ordering::SeqCst);
    let r = rig
        .post(&release(&rig.app, &alice, "acme:hello", "1.1.0", &hello).await)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["index"], 4);
    let r = rig.post(&claim(&rig.app, &bob, "beta").await).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["index"], 6);
    let r = rig
        .post(&yank(&rig.app, &alice, "acme:hello", "1.0.0").await)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["index"], 8);

    let now = rig.check_log().await;
    assert_eq!(now.size(), 10);
    let p = rig
        .get(&format!(
            "/v1/log/proof/consistency?from={}&to={}",
            cp_before.size(),
            now.size()
        ))
        .await
        .json();
    let hashes: Vec<String> = serde_json::from_value(p["hashes"].clone()).unwrap();
    merkle::verify_consistency(
        &decode_hashes(&hashes).unwrap(),
        now.size(),
        now.root(),
        cp_before.size(),
        cp_before.root(),
    )
    .unwrap();
    let (size, releases, _, _) = rig.state().await;
    assert_eq!((size, releases), (10, 2));
    let versions = rig.get("/v1/packages/acme:hello").await.json();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
}

#[tokio::test]
async fn failed_hash_reads_answer_5xx_and_change_nothing() {
    let rig = rig().await;
    let alice = key("alice");
    let hello = fixture("hello.wasm");
    assert_eq!(
        rig.post(&claim(&rig.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    rig.upload(&hello).await;
    for v in ["1.0.0", "1.0.1", "1.0.2"] {
        let r = rig
            .post(&release(&rig.app, &alice, "acme:hello", v, &hello).await)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let before = rig.state().await;
    let cp_before = rig.check_log().await;

    rig.faults.fail_read_hashes.store(true, Ordering::SeqCst);
    let commits = rig.faults.commits.load(Ordering::SeqCst);
    // Integrating a leaf at size 8 needs stored hashes: the batch fails before commit.
    assert_clean_5xx(
        &rig.post(&release(&rig.app, &alice, "acme:hello", "2.0.0", &hello).await)
            .await,
    );
    assert_eq!(
        rig.faults.commits.load(Ordering::SeqCst),
        commits,
        "a batch that could not be integrated must not reach commit"
    );
    // Proofs need stored hashes too: a clean 5xx, not internals.
    assert_clean_5xx(&rig.get("/v1/log/proof/inclusion?index=1&size=8").await);
    assert_clean_5xx(&rig.get("/v1/log/proof/consistency?from=1&to=8").await);
    assert_eq!(rig.state().await, before);

    rig.faults.fail_read_hashes.store(false, Ordering::SeqCst);
    let leaf = release(&rig.app, &alice, "acme:hello", "2.0.0", &hello).await;
    let r = rig.post(&leaf).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["index"], 8);
    let now = rig.check_log().await;
    assert_eq!(now.size(), cp_before.size() + 2);
    let proof: Vec<String> = serde_json::from_value(answer["proof"].clone()).unwrap();
    merkle::verify_inclusion(
        &decode_hashes(&proof).unwrap(),
        now.size(),
        now.root(),
        8,
        &merkle::leaf_hash(leaf.as_bytes()),
    )
    .unwrap();
}

#[tokio::test]
async fn a_batch_of_concurrent_publishes_fails_whole() {
    let rig = Arc::new(rig().await);
    let alice = Arc::new(key("alice"));
    let hello = Arc::new(fixture("hello.wasm"));
    assert_eq!(
        rig.post(&claim(&rig.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    rig.upload(&hello).await;
    let before = rig.state().await;

    rig.faults.fail_commit.store(true, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (rig, alice, hello) = (rig.clone(), alice.clone(), hello.clone());
        tasks.push(tokio::spawn(async move {
            // One package each, so no record of the batch waits on another's chain head.
            let package = format!("acme:p{i}");
            rig.post(&release(&rig.app, &alice, &package, "1.0.0", &hello).await)
                .await
        }));
    }
    for t in tasks {
        assert_clean_5xx(&t.await.unwrap());
    }
    assert_eq!(rig.state().await, before);

    rig.faults.fail_commit.store(false, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (rig, alice, hello) = (rig.clone(), alice.clone(), hello.clone());
        tasks.push(tokio::spawn(async move {
            // One package each, so no record of the batch waits on another's chain head.
            let package = format!("acme:p{i}");
            rig.post(&release(&rig.app, &alice, &package, "1.0.0", &hello).await)
                .await
        }));
    }
    let mut indexes = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        indexes.push(r.json()["index"].as_u64().unwrap());
    }
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(indexes.len(), 16);
    // After the claim (0) and its map entry (1); each batch (how many depends on timing) ends
    // in its own map entry.
    assert!(indexes[0] >= 2, "{indexes:?}");
    let now = rig.check_log().await;
    assert!(*indexes.last().unwrap() < now.size() - 1, "{indexes:?}");
    assert!(
        (2 + 16 + 1..=2 + 16 + 16).contains(&now.size()),
        "{}",
        now.size()
    );
}

#[test]
fn independent_tree_hash_matches_known_shapes() {
    let leaves: Vec<Hash> = (0u8..7).map(|i| merkle::leaf_hash(&[i])).collect();
    let n = merkle::node_hash;
    let (a, b, c, d, e, f, g) = (
        leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], leaves[5], leaves[6],
    );
    let left = n(&n(&a, &b), &n(&c, &d));
    assert_eq!(mth(&leaves[..4]), left);
    assert_eq!(mth(&leaves[..5]), n(&left, &e));
    assert_eq!(mth(&leaves[..7]), n(&left, &n(&n(&e, &f), &g)));
    assert_eq!(mth(&leaves[..3]), n(&n(&a, &b), &c));
}
