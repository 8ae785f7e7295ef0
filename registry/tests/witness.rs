//! The witness's HTTP answers exactly as C2SP tlog-witness gives them (docs/protocol.md
//! §7.13.1), on the router in process; the end-to-end tests with processes, registries and
//! `kill -9` are in cli/tests/witness.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use gridreg_protocol::merkle::{Hash, append_leaves, leaf_hash, prove_consistency, tree_hash};
use gridreg_protocol::witness::AddCheckpoint;
use gridreg_protocol::{Checkpoint, Cosigner, Note, SignerKey};
use gridreg_registry::witness::server::{Witness, WitnessConfig, WitnessError};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

struct Log {
    key: SignerKey,
    stored: Vec<Hash>,
}

impl Log {
    fn new(key: SignerKey, salt: u8, n: u64) -> Log {
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat()))
            .collect();
        Log {
            key,
            stored: append_leaves(0, &leaves, &Vec::<Hash>::new()).unwrap(),
        }
    }

    fn note(&self, size: u64) -> String {
        Checkpoint::new(
            self.key.name(),
            size,
            tree_hash(size, &self.stored).unwrap(),
        )
        .sign(&[&self.key])
        .unwrap()
        .note
    }

    fn body(&self, old: u64, size: u64) -> String {
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            prove_consistency(size, old, &self.stored).unwrap()
        };
        AddCheckpoint::body(old, &proof, &self.note(size))
    }
}

async fn post(app: &axum::Router, body: impl Into<Vec<u8>>) -> (StatusCode, String, String) {
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/add-checkpoint")
                .body(Body::from(body.into()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ct, String::from_utf8_lossy(&body).into_owned())
}

async fn witness(dir: &std::path::Path, log: &SignerKey) -> (Witness, Cosigner) {
    let key = Cosigner::from_seed("w.test", &[7; 32]).unwrap();
    let w = Witness::open(WitnessConfig {
        data: dir.to_path_buf(),
        key: key.clone(),
        logs: vec![(log.name().to_string(), log.verifier())],
    })
    .await
    .unwrap();
    (w, key)
}

#[tokio::test]
async fn answers_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::from_seed("log.test", &[1; 32]).unwrap();
    let log = Log::new(log_key.clone(), 0, 40);
    let (w, cosigner) = witness(dir.path(), &log_key).await;
    let app = w.router();

    // First contact: old 0, no proof; the answer is one cosignature line over the checkpoint.
    let (status, ct, body) = post(&app, log.body(0, 10)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(ct.starts_with("text/plain"));
    assert!(
        body.starts_with("\u{2014} w.test ") && body.ends_with('\n'),
        "{body}"
    );
    let note = Note::parse(format!("{}{body}", log.note(10)).as_bytes()).unwrap();
    assert!(cosigner.verifier().cosigned_time(&note).is_ok());

    // A stale old size: 409, text/x.tlog.size, the held size.
    let (status, ct, body) = post(&app, log.body(0, 20)).await;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (StatusCode::CONFLICT, "text/x.tlog.size", "10\n")
    );
    // From the held size with a proof: cosigned.
    assert_eq!(post(&app, log.body(10, 20)).await.0, StatusCode::OK);
    // Old size above the checkpoint's: 400.
    assert_eq!(
        post(&app, log.body(20, 20).replace("old 20", "old 30"))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    // A proof that does not verify: 422.
    let fork = Log::new(log_key.clone(), 1, 40);
    assert_eq!(
        post(&app, fork.body(20, 30)).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut bad = log.body(20, 30);
    let first_proof_line = bad.lines().nth(1).unwrap().to_string();
    let mut flipped = first_proof_line.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    bad = bad.replacen(&first_proof_line, std::str::from_utf8(&flipped).unwrap(), 1);
    assert_eq!(post(&app, bad).await.0, StatusCode::UNPROCESSABLE_ENTITY);
    // Another root at the held size: 409 with that size.
    let (status, _, body) = post(&app, fork.body(20, 20)).await;
    assert_eq!((status, body.as_str()), (StatusCode::CONFLICT, "20\n"));
    // The same checkpoint again is cosigned again (a renewal).
    assert_eq!(post(&app, log.body(20, 20)).await.0, StatusCode::OK);

    // Unknown origin: 404. Signed by another key for a known origin: 403.
    let other = Log::new(SignerKey::from_seed("other.test", &[2; 32]).unwrap(), 0, 5);
    assert_eq!(post(&app, other.body(0, 5)).await.0, StatusCode::NOT_FOUND);
    let impostor = Log::new(SignerKey::from_seed("log.test", &[3; 32]).unwrap(), 0, 40);
    assert_eq!(
        post(&app, impostor.body(20, 30)).await.0,
        StatusCode::FORBIDDEN
    );
    // Malformed: 400. Too long: 413.
    for bad in ["", "old 1\n", "old x\n\n", "hello"] {
        assert_eq!(post(&app, bad).await.0, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    assert_eq!(
        post(&app, vec![b'a'; 70_000]).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    // Nothing of that moved the witness off (20, the honest root), across a restart.
    drop(app);
    w.stop().await;
    let (w, _) = witness(dir.path(), &log_key).await;
    let app = w.router();
    let (status, _, body) = post(&app, log.body(0, 30)).await;
    assert_eq!((status, body.as_str()), (StatusCode::CONFLICT, "20\n"));
    assert_eq!(post(&app, log.body(20, 40)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn concurrent_requests_never_roll_the_witness_back() {
    // The race the spec warns of: a request for N checked, one for N+K checked and stored, then
    // N stored. Every request here names the size it read; the witness must refuse the stale.
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::from_seed("log.test", &[1; 32]).unwrap();
    let log = std::sync::Arc::new(Log::new(log_key.clone(), 0, 300));
    let (w, _) = witness(dir.path(), &log_key).await;
    let app = w.router();
    assert_eq!(post(&app, log.body(0, 1)).await.0, StatusCode::OK);
    let mut tasks = Vec::new();
    for size in 2..300u64 {
        let (app, log) = (app.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            (size, post(&app, log.body(1, size)).await.0)
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let (size, status) = t.await.unwrap();
        if status == StatusCode::OK {
            ok.push(size);
        } else {
            assert_eq!(status, StatusCode::CONFLICT);
        }
    }
    // All started from old 1: exactly one can have moved the witness from 1.
    assert_eq!(ok.len(), 1, "{ok:?}");
    let (status, _, body) = post(&app, log.body(0, 299)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body, format!("{}\n", ok[0]));
}

#[tokio::test]
async fn a_log_key_must_be_named_as_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let key = SignerKey::from_seed("log.test", &[1; 32]).unwrap();
    let err = Witness::open(WitnessConfig {
        data: dir.path().to_path_buf(),
        key: Cosigner::from_seed("w.test", &[7; 32]).unwrap(),
        logs: vec![("other.test".to_string(), key.verifier())],
    })
    .await
    .err()
    .unwrap();
    assert!(matches!(err, WitnessError::KeyNameMismatch { .. }), "{err}");
}
