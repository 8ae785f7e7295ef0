//! Shared test harness: a registry over a real SQLite file in a temp dir, driven through the
//! router with `oneshot`, and helpers to build signed records from real fixtures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    missing_debug_implementations
)]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use gridreg_protocol::record::{NamespaceRecord, Release, Yank};
use gridreg_protocol::{
    Digest, Namespace, NamespaceOp, PackageName, Record, Role, SignerKey, Timestamp,
};
use gridreg_registry::{Config, Registry};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub app: Router,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub headers: axum::http::HeaderMap,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
    /// Asserts an error answer with this status and code.
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        let j = self.json();
        assert_eq!(self.status, status, "{j}");
        assert_eq!(j["error"]["code"], code, "{j}");
        assert!(
            j["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{j}"
        );
    }
}

pub async fn harness() -> Harness {
    harness_with(|_| {}).await
}

pub async fn harness_with(f: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    f(&mut config);
    let registry = Registry::open(&config).await.unwrap();
    let app = registry.router();
    Harness { dir, registry, app }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../examples/wasm/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Vec<u8>,
    token: Option<&str>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    Reply {
        status,
        body,
        headers,
    }
}

impl Harness {
    pub async fn get(&self, uri: &str) -> Reply {
        send(&self.app, Method::GET, uri, Vec::new(), None).await
    }
    pub async fn put_content(&self, bytes: &[u8]) -> Reply {
        let uri = format!("/v1/content/{}", Digest::of(bytes));
        send(&self.app, Method::PUT, &uri, bytes.to_vec(), None).await
    }
    pub async fn post_record(&self, leaf: &str) -> Reply {
        send(
            &self.app,
            Method::POST,
            "/v1/records",
            leaf.as_bytes().to_vec(),
            None,
        )
        .await
    }
    /// Log size, number of releases, number of blobs: what a rejection must not change.
    pub async fn snapshot(&self) -> (u64, u64, u64) {
        let s = &self.registry.state;
        (
            s.store.log_size().await.unwrap(),
            s.store.release_count().await.unwrap(),
            s.blobs.count().await.unwrap(),
        )
    }
    /// Uploads a fixture and publishes it, asserting success; returns the publish answer.
    pub async fn publish(
        &self,
        key: &SignerKey,
        package: &str,
        version: &str,
        bytes: &[u8],
    ) -> serde_json::Value {
        let r = self.put_content(bytes).await;
        assert!(r.status.is_success(), "{}", r.text());
        let r = self
            .post_record(&release(key, package, version, bytes))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }
}

pub fn key(name: &str) -> SignerKey {
    SignerKey::generate(name).unwrap()
}

/// A release record whose surface is the binary's own.
pub fn release_record(package: &str, version: &str, bytes: &[u8]) -> Release {
    let audit = gridreg_verifier::audit(bytes).unwrap();
    Release {
        package: PackageName::parse(package).unwrap(),
        version: semver::Version::parse(version).unwrap(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        time: Timestamp::now(),
        imports: audit.imports.iter().map(|i| i.name.clone()).collect(),
        exports: audit.exports.clone(),
    }
}

pub fn release(key: &SignerKey, package: &str, version: &str, bytes: &[u8]) -> String {
    Record::Release(release_record(package, version, bytes))
        .sign(&[key])
        .unwrap()
}

pub fn namespace_record(
    signer: &SignerKey,
    ns: &str,
    op: NamespaceOp,
    subject: &SignerKey,
    role: Role,
) -> String {
    Record::Namespace(NamespaceRecord {
        namespace: Namespace::parse(ns).unwrap(),
        op,
        key: subject.verifier(),
        role,
        time: Timestamp::now(),
    })
    .sign(&[signer])
    .unwrap()
}

pub fn claim(owner: &SignerKey, ns: &str) -> String {
    namespace_record(owner, ns, NamespaceOp::Claim, owner, Role::Owner)
}

pub fn yank(key: &SignerKey, package: &str, version: &str) -> String {
    Record::Yank(Yank {
        package: PackageName::parse(package).unwrap(),
        version: semver::Version::parse(version).unwrap(),
        reason: "broken build".into(),
        time: Timestamp::now(),
    })
    .sign(&[key])
    .unwrap()
}
