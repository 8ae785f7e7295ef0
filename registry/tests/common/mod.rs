//! Shared test harness: a registry over a real SQLite file in a temp dir, or over a throwaway
//! database on the real PostgreSQL at 127.0.0.1:5432 ([`Backend`]), driven through the router
//! with `oneshot`, and helpers to build signed records from real fixtures.
//!
//! [`backend_tests!`] turns `async fn name(backend: Backend)` into `name::sqlite` and
//! `name::postgres` tests. The PostgreSQL ones fail (never skip) when the server is not
//! reachable; `GRIDREG_TEST_POSTGRES` overrides the admin URL
//! (default `postgres://postgres@127.0.0.1:5432/postgres`).
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
    Digest, Namespace, NamespaceOp, PackageName, Prev, Record, Role, SignerKey, Timestamp,
};
use gridreg_registry::{Config, Registry};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// Which metadata store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn name(backend: Backend)` once per backend, as `name::sqlite` and
/// `name::postgres`. An optional leading `#[tokio::test(...)]` attribute picks the runtime.
#[macro_export]
macro_rules! backend_tests {
    (#[$attr:meta] $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[$attr]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[$attr]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(#[tokio::test] $($name),*);
    };
}

/// The admin connection the PostgreSQL tests create their databases through.
pub fn postgres_admin_url() -> String {
    std::env::var("GRIDREG_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A throwaway PostgreSQL database, dropped (with its connections) when this is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

fn with_admin<T>(
    f: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error> + Send + 'static,
) -> Result<T, String>
where
    T: Send + 'static,
{
    // A thread with its own runtime, so this works from Drop and from any test runtime.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            use sqlx::Connection as _;
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
                format!(
                    "PostgreSQL is not reachable at {admin}: {e} \
                     (scripts/test.sh starts it; GRIDREG_TEST_POSTGRES overrides the URL)"
                )
            })?;
            let out = f(&mut conn).await.map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok(out)
        })
    })
    .join()
    .map_err(|_| "the PostgreSQL admin thread panicked".to_string())?
}

impl TestDb {
    /// Creates `gridreg_test_<random>`; panics with a clear message if PostgreSQL is down.
    pub fn create() -> TestDb {
        let mut raw = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
        let name = format!("gridreg_test_{}", hex::encode(raw));
        let create = format!("CREATE DATABASE {name}");
        with_admin(async move |c| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                .execute(&mut *c)
                .await
                .map(|_| ())
        })
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
        let admin = postgres_admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = with_admin(async move |c| {
            sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                .execute(&mut *c)
                .await
                .map(|_| ())
        }) {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

impl Backend {
    /// A registry config over `data` for this backend, and the database it uses (if any).
    pub fn config(self, data: std::path::PathBuf) -> (Config, Option<TestDb>) {
        let mut config = Config::new(data);
        match self {
            Backend::Sqlite => (config, None),
            Backend::Postgres => {
                let db = TestDb::create();
                config.database_url = Some(db.url.clone());
                (config, Some(db))
            }
        }
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub app: Router,
    /// Dropped last, after the registry's connections.
    pub db: Option<TestDb>,
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

/// A SQLite registry (for tests that are not about the store).
pub async fn harness() -> Harness {
    harness_on(Backend::Sqlite).await
}

pub async fn harness_on(backend: Backend) -> Harness {
    harness_with(backend, |_| {}).await
}

pub async fn harness_with(backend: Backend, f: impl FnOnce(&mut Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, db) = backend.config(dir.path().join("data"));
    f(&mut config);
    let registry = Registry::open(&config).await.unwrap();
    let app = registry.router();
    Harness {
        dir,
        registry,
        app,
        db,
    }
}

/// A core module importing 60 functions with 1,000-byte names: its release record is about
/// 61 KiB, near the 65,535-byte limit of a log entry (docs/protocol.md §4.6; the hostile-load
/// issue used 250 such imports, when records could be 256 KiB).
pub fn module_with_long_imports(salt: usize) -> Vec<u8> {
    let mut wat = String::from("(module");
    for i in 0..60 {
        let name = format!("{salt:04}-{i:04}-{}", "x".repeat(990));
        wat.push_str(&format!(" (import \"m\" \"{name}\" (func))"));
    }
    wat.push(')');
    wat::parse_str(&wat).unwrap()
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
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .as_deref()
        .map(|b| ("authorization", b))
        .into_iter()
        .collect();
    send_with(app, method, uri, body, &headers).await
}

/// [`send`] with any request headers.
pub async fn send_with(
    app: &Router,
    method: Method,
    uri: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
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
        let leaf = release(&self.app, key, package, version, bytes).await;
        let r = self.post_record(&leaf).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()
    }
}

/// Claims fresh namespaces (`ns0`, `ns1`, ..., each its own batch: the claim and a map entry)
/// until the log holds at least `size` entries; returns the size reached.
pub async fn claim_until(h: &Harness, size: u64) -> u64 {
    let mut n = h.registry.state.view.latest().size;
    while h.registry.state.view.latest().size < size {
        let k = key(&format!("k{n}"));
        let r = h
            .post_record(&claim(&h.app, &k, &format!("ns{n}")).await)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        n += 1;
    }
    h.registry.state.view.latest().size
}

/// A private registry (`--require-token`) holding `acme:hello@1.0.0` (hello.wasm), published
/// with an admin token; returns the harness and that token.
pub async fn private_with_hello() -> (Harness, String) {
    let h = harness_with(Backend::Sqlite, |c| c.require_token = true).await;
    let store = h.registry.state.store.as_ref();
    let (admin, _) =
        gridreg_registry::auth::create_token(store, gridreg_registry::auth::Scope::Admin, None)
            .await
            .unwrap();
    let alice = key("alice");
    let hello = fixture("hello.wasm");
    let put = format!("/v1/content/{}", Digest::of(&hello));
    let r = send(&h.app, Method::PUT, &put, hello.clone(), Some(&admin)).await;
    assert!(r.status.is_success(), "{}", r.text());
    for leaf in [
        claim_at(Prev::None, &alice, "acme"),
        release_at(Prev::None, &alice, "acme:hello", "1.0.0", &hello),
    ] {
        let r = send(
            &h.app,
            Method::POST,
            "/v1/records",
            leaf.into_bytes(),
            Some(&admin),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    (h, admin)
}

pub fn key(name: &str) -> SignerKey {
    SignerKey::generate(name).unwrap()
}

/// A release record whose surface is the binary's own, first of its package's chain.
pub fn release_record(package: &str, version: &str, bytes: &[u8]) -> Release {
    let audit = gridreg_verifier::audit(bytes).unwrap();
    Release {
        package: PackageName::parse(package).unwrap(),
        prev: Prev::None,
        version: semver::Version::parse(version).unwrap(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        time: Timestamp::now(),
        imports: audit.imports.iter().map(|i| i.name.clone()).collect(),
        exports: audit.exports.clone(),
    }
}

/// The head of `chain` (`namespace acme`, `package acme:hello`) as the registry on `app`
/// reports it: the `prev` a signer names, as `gridreg publish` asks for it.
pub async fn head(app: &Router, chain: &str) -> Prev {
    let (kind, name) = chain.split_once(' ').unwrap();
    let r = send(
        app,
        Method::GET,
        &format!("/v1/chains/{kind}/{name}"),
        Vec::new(),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    Prev::parse(r.json()["head"].as_str().unwrap()).unwrap()
}

/// Posts a record of `chain` as `gridreg publish` does: signed (by `sign`) on the head the
/// registry reports, and signed again on the new head whenever another record of the chain
/// landed first (`stale_prev`). Returns the first other answer.
pub async fn post_chained(app: &Router, chain: &str, sign: impl Fn(Prev) -> String) -> Reply {
    for _ in 0..1000 {
        let leaf = sign(head(app, chain).await);
        let r = send(app, Method::POST, "/v1/records", leaf.into_bytes(), None).await;
        if r.status != StatusCode::CONFLICT || r.json()["error"]["code"] != "stale_prev" {
            return r;
        }
    }
    panic!("{chain}: 1000 signings in a row named a stale head");
}

/// A signed release of `package@version` for `bytes`, naming `prev`.
pub fn release_at(
    prev: Prev,
    key: &SignerKey,
    package: &str,
    version: &str,
    bytes: &[u8],
) -> String {
    let mut r = release_record(package, version, bytes);
    r.prev = prev;
    Record::Release(r).sign(&[key]).unwrap()
}

/// A signed release on the package chain's current head on `app`.
pub async fn release(
    app: &Router,
    key: &SignerKey,
    package: &str,
    version: &str,
    bytes: &[u8],
) -> String {
    let prev = head(app, &format!("package {package}")).await;
    release_at(prev, key, package, version, bytes)
}

/// A signed namespace record naming `prev`.
pub fn namespace_record_at(
    prev: Prev,
    signer: &SignerKey,
    ns: &str,
    op: NamespaceOp,
    subject: &SignerKey,
    role: Role,
) -> String {
    Record::Namespace(NamespaceRecord {
        namespace: Namespace::parse(ns).unwrap(),
        prev,
        op,
        key: subject.verifier(),
        role,
        time: Timestamp::now(),
    })
    .sign(&[signer])
    .unwrap()
}

/// A signed namespace record on the namespace chain's current head on `app`.
pub async fn namespace_record(
    app: &Router,
    signer: &SignerKey,
    ns: &str,
    op: NamespaceOp,
    subject: &SignerKey,
    role: Role,
) -> String {
    let prev = head(app, &format!("namespace {ns}")).await;
    namespace_record_at(prev, signer, ns, op, subject, role)
}

/// `owner`'s self-signed claim of `ns`, first of the namespace's chain.
pub fn claim_at(prev: Prev, owner: &SignerKey, ns: &str) -> String {
    namespace_record_at(prev, owner, ns, NamespaceOp::Claim, owner, Role::Owner)
}

/// `owner`'s claim of `ns` on the chain's current head on `app` (`none` unless claimed already).
pub async fn claim(app: &Router, owner: &SignerKey, ns: &str) -> String {
    namespace_record(app, owner, ns, NamespaceOp::Claim, owner, Role::Owner).await
}

/// A signed yank naming `prev`.
pub fn yank_at(prev: Prev, key: &SignerKey, package: &str, version: &str) -> String {
    Record::Yank(Yank {
        package: PackageName::parse(package).unwrap(),
        prev,
        version: semver::Version::parse(version).unwrap(),
        reason: "broken build".into(),
        time: Timestamp::now(),
    })
    .sign(&[key])
    .unwrap()
}

/// A signed yank on the package chain's current head on `app`.
pub async fn yank(app: &Router, key: &SignerKey, package: &str, version: &str) -> String {
    let prev = head(app, &format!("package {package}")).await;
    yank_at(prev, key, package, version)
}

/// A served checkpoint without its timestamp cosignature (docs/protocol.md §6.10), which the
/// registry renews every second: what stays the same while the log does.
pub fn log_signed(checkpoint: &str) -> String {
    checkpoint
        .split_inclusive('\n')
        .filter(|l| !l.contains("/timestamp "))
        .collect()
}
