//! Three `gridreg serve` replicas as real processes on one PostgreSQL database and one S3 bucket
//! (s3s-fs), clients publishing through all of them at once with the real CLI while one replica
//! is killed -9 and restarted. Afterwards every acknowledged publish is in the log exactly once at
//! the index it was given, every client's stored checkpoint is consistent with the final tree
//! (`log verify`), and `log monitor` over the whole log reports nothing.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 (or `GRIDREG_TEST_POSTGRES`) and s3s-fs
//! (`GRIDREG_TEST_S3FS`; `scripts/test.sh` provides both); fails, never skips, without them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BUCKET: &str = "replicas";
const ACCESS_KEY: &str = "replica-test-key";
const SECRET_KEY: &str = "replica-test-secret-0123456789";
const ORIGIN: &str = "replicas.test/log";

mod common;
use common::{Running, free_port, wait_for_port};

fn s3fs(root: &Path) -> (Running, String) {
    common::s3fs(root, BUCKET, ACCESS_KEY, SECRET_KEY)
}

/// A throwaway database on the test PostgreSQL, dropped at the end.
struct Db {
    admin: String,
    name: String,
}

impl Db {
    fn create() -> Db {
        let admin = std::env::var("GRIDREG_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = format!("gridreg_replicas_{}", std::process::id());
        let db = Db { admin, name };
        db.admin_sql(&format!("DROP DATABASE IF EXISTS {}", db.name));
        db.admin_sql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    fn url(&self) -> String {
        let base = self
            .admin
            .rsplit_once('/')
            .map_or(self.admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }

    fn admin_sql(&self, sql: &str) {
        let (admin, sql) = (self.admin.clone(), sql.to_string());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection as _;
                let mut c = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "this test needs PostgreSQL at {admin} (scripts/test.sh starts it; \
                         GRIDREG_TEST_POSTGRES overrides the URL): {e}"
                        )
                    });
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .unwrap();
                let _ = c.close().await;
            });
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.admin_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

struct Replica {
    data: PathBuf,
    port: u16,
    process: Option<Running>,
}

struct Cluster {
    db_url: String,
    blobs: String,
    replicas: Vec<Replica>,
}

impl Cluster {
    fn start(&mut self, i: usize) {
        let r = &mut self.replicas[i];
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridreg"))
            .args(["serve", "--data"])
            .arg(&r.data)
            .args([
                "--addr",
                &format!("127.0.0.1:{}", r.port),
                "--origin",
                ORIGIN,
            ])
            .args(["--database-url", &self.db_url, "--blobs", &self.blobs])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(r.port, &mut child, "gridreg serve");
        r.process = Some(Running(child));
    }

    fn kill(&mut self, i: usize) {
        // Dropping kills with SIGKILL (Child::kill) and reaps.
        self.replicas[i].process = None;
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.replicas[i].port)
    }
}

fn gridreg(home: &Path, state: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(args)
        .current_dir(home)
        .env("GRIDREG_CONFIG", home.join("config.toml"))
        .env("GRIDREG_STATE_DIR", home.join(state))
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn three_replicas_survive_a_kill_and_agree_on_one_log() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let db = Db::create();
    let (_s3, endpoint) = s3fs(&tmp.path().join("s3"));
    let mut cluster = Cluster {
        db_url: db.url(),
        blobs: format!("s3://{BUCKET}?endpoint={endpoint}&region=us-east-1"),
        replicas: (0..3)
            .map(|i| Replica {
                data: tmp.path().join(format!("replica{i}")),
                port: free_port(),
                process: None,
            })
            .collect(),
    };
    // The first replica makes the log key; the others must sign with the same one.
    cluster.start(0);
    for i in 1..3 {
        std::fs::create_dir_all(&cluster.replicas[i].data).unwrap();
        std::fs::copy(
            cluster.replicas[0].data.join("log.key"),
            cluster.replicas[i].data.join("log.key"),
        )
        .unwrap();
        cluster.start(i);
    }

    let url0 = cluster.url(0);
    ok(
        &gridreg(&home, "setup", &["keygen", "--name", "alice"]),
        "keygen",
    );
    ok(
        &gridreg(
            &home,
            "setup",
            &[
                "namespace",
                "claim",
                "acme",
                "--key",
                "alice.key",
                "--registry",
                &url0,
            ],
        ),
        "claim",
    );
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm/hello.wasm");
    let hello = hello.to_str().unwrap().to_string();

    // Three publishers, one per replica, each with its own client state; replica 1 is killed
    // -9 part-way and restarted.
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let killed_at: Mutex<Option<usize>> = Mutex::default();
    let restarted_at: Mutex<Option<usize>> = Mutex::default();
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let per_client = 30;
    std::thread::scope(|s| {
        for (c, url) in urls.iter().enumerate() {
            let (acked, home, hello) = (acked.clone(), home.clone(), hello.clone());
            s.spawn(move || {
                for n in 0..per_client {
                    let version = format!("{c}.{n}.0");
                    let out = gridreg(
                        &home,
                        &format!("client{c}"),
                        &[
                            "publish",
                            &hello,
                            "--package",
                            "acme:hello",
                            "--version",
                            &version,
                            "--key",
                            "alice.key",
                            "--registry",
                            url,
                        ],
                    );
                    match out.status.code() {
                        Some(0) => {
                            let text = String::from_utf8_lossy(&out.stdout);
                            let index: u64 = text
                                .split("at log index ")
                                .nth(1)
                                .and_then(|t| t.split_whitespace().next())
                                .and_then(|t| t.parse().ok())
                                .unwrap_or_else(|| panic!("no log index in {text}"));
                            acked.lock().unwrap().insert(version, index);
                        }
                        // The killed replica is unreachable or drops the connection: an input
                        // error, never a verification failure.
                        Some(2) => {}
                        other => panic!(
                            "publish {version} via {url}: exit {other:?}\n{}",
                            String::from_utf8_lossy(&out.stderr)
                        ),
                    }
                }
            });
        }
        // Kill replica 1 under load, keep the others publishing, then bring it back while its
        // client is still publishing.
        let wait_for = |n: usize| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while acked.lock().unwrap().len() < n && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        wait_for(15);
        cluster.kill(1);
        killed_at
            .lock()
            .unwrap()
            .replace(acked.lock().unwrap().len());
        wait_for(35);
        cluster.start(1);
        restarted_at
            .lock()
            .unwrap()
            .replace(acked.lock().unwrap().len());
    });

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 2 * per_client,
        "too few publishes acknowledged: {}",
        acked.len()
    );

    // Every acknowledged publish is in the log exactly once, at the index it was given.
    let entries: serde_json::Value = ureq::get(&format!(
        "{}/v1/log/entries?start=0&end=100000",
        cluster.url(2)
    ))
    .call()
    .unwrap()
    .into_json()
    .unwrap();
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in entries["entries"].as_array().unwrap() {
        let body = e["body"].as_str().unwrap();
        if let Some(v) = body.lines().find_map(|l| l.strip_prefix("version ")) {
            seen.entry(v.to_string())
                .or_default()
                .push(e["index"].as_u64().unwrap());
        }
    }
    for (version, index) in &acked {
        assert_eq!(seen.get(version), Some(&vec![*index]), "version {version}");
    }
    let distinct: BTreeSet<&String> = seen.keys().collect();
    assert_eq!(distinct.len(), seen.len());

    // Every replica serves the same checkpoint (an idle replica follows the others within
    // about 50 ms); every client's stored view extends to it.
    let checkpoint = |i: usize| {
        common::log_signed(
            &ureq::get(&format!("{}/v1/log/checkpoint", cluster.url(i)))
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut checkpoints: Vec<String> = (0..3).map(checkpoint).collect();
    while !checkpoints.iter().all(|c| c == &checkpoints[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        checkpoints = (0..3).map(checkpoint).collect();
    }
    assert!(
        checkpoints.iter().all(|c| c == &checkpoints[0]),
        "{checkpoints:?}"
    );
    for (c, url) in urls.iter().enumerate() {
        let out = gridreg(
            &home,
            &format!("client{c}"),
            &["log", "verify", "--registry", url],
        );
        ok(&out, &format!("log verify for client {c}"));
    }

    // The whole log replays cleanly: every entry included, every signature and role valid,
    // every release's surface recomputed from the bytes in the bucket.
    let out = gridreg(
        &home,
        "monitor",
        &["log", "monitor", "--json", "--registry", &cluster.url(1)],
    );
    let report = ok(&out, "log monitor");
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(v["releases_audited"].as_u64().unwrap() as usize, seen.len());
}
