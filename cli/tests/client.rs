//! The client flows end to end: a real `gridreg serve` process on 127.0.0.1, the real CLI binary,
//! temporary directories for the server's data and the client's configuration, state and
//! lockfile. The tamper tests change the server's own files the way a compromised operator
//! could, then check that `pull --verify` stops at the check that should catch it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use gridreg_protocol::bundle::{MAP_ENTRY_TYPE, MapEntry};
use gridreg_protocol::map::HeadMap;
use gridreg_protocol::merkle::{Hash, append_leaves, leaf_hash, tree_hash};
use gridreg_protocol::{Checkpoint, Head, Note, Record, SignerKey};
use sqlx::Row as _;

const ORIGIN: &str = "client.test/log";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm")
        .join(name)
}

mod common;
use common::{Answer, HostileProxy, free_port, start_serve_with};

/// One server and one client home.
struct World {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
    /// Extra `gridreg serve` flags.
    serve_flags: Vec<&'static str>,
    /// Extra environment for client commands.
    env: Vec<(String, String)>,
}

impl World {
    fn new() -> World {
        World::with_flags(&[])
    }

    fn with_flags(flags: &[&'static str]) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        let mut w = World {
            dir,
            port: free_port(),
            server: None,
            serve_flags: flags.to_vec(),
            env: Vec::new(),
        };
        w.start();
        w
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn start(&mut self) {
        self.server = Some(start_serve_with(
            &self.data(),
            self.port,
            ORIGIN,
            &self.serve_flags,
        ));
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs the CLI as a user in `work/`, with this world's configuration and state.
    fn run_in(&self, cwd: &Path, state: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gridreg"))
            .args(args)
            .current_dir(cwd)
            .env("GRIDREG_CONFIG", self.dir.path().join("config.toml"))
            .env("GRIDREG_STATE_DIR", self.dir.path().join(state))
            .env("GRIDREG_REGISTRY", self.url())
            .env("HOME", self.dir.path())
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_in(&self.work(), "state", args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "gridreg {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must exit with `code`; returns stdout + stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "gridreg {args:?}:\n{text}");
        text
    }

    fn keygen(&self, name: &str) -> String {
        self.ok(&["keygen", "--name", name]).trim().to_string()
    }

    fn publish(&self, file: &str, package: &str, version: &str, key: &str) -> String {
        self.publish_with(file, package, version, key, &[])
    }

    fn publish_to(&self, registry: &str, file: &str, package: &str, version: &str, key: &str) {
        self.publish_with(file, package, version, key, &["--registry", registry]);
    }

    fn publish_with(
        &self,
        file: &str,
        package: &str,
        version: &str,
        key: &str,
        extra: &[&str],
    ) -> String {
        let f = fixture(file);
        let mut args = vec![
            "publish",
            f.to_str().unwrap(),
            "--package",
            package,
            "--version",
            version,
            "--key",
            key,
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    fn db<T>(&self, f: impl AsyncFnOnce(&sqlx::SqlitePool) -> T) -> T {
        let url = format!("sqlite://{}", self.data().join("registry.db").display());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                let out = f(&pool).await;
                pool.close().await;
                out
            })
    }

    /// What a compromised operator can do with the server's files: replace or drop log
    /// entries, recompute every map entry, the tree and a fresh checkpoint, signed with the log
    /// key, so the rewritten log is consistent in itself. The server is restarted on the result.
    fn rewrite_log(&mut self, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
        self.rewrite_log_with(edit, true);
    }

    /// [`World::rewrite_log`], recomputing the map entries or leaving them as `edit` made them
    /// (an operator that commits to a map the log does not give).
    fn rewrite_log_with(&mut self, edit: impl FnOnce(&mut Vec<Vec<u8>>), remap: bool) {
        self.stop();
        let key_text = std::fs::read_to_string(self.data().join("log.key")).unwrap();
        let key = SignerKey::parse_key_file(&key_text).unwrap();
        self.db(async |pool| {
            let rows = sqlx::query("SELECT body FROM entries ORDER BY idx")
                .fetch_all(pool)
                .await
                .unwrap();
            let mut leaves: Vec<Vec<u8>> = rows.iter().map(|r| r.get::<Vec<u8>, _>(0)).collect();
            let before = leaves.clone();
            edit(&mut leaves);
            let mut map = HeadMap::new();
            for (i, leaf) in leaves.iter_mut().enumerate() {
                if leaf.starts_with(format!("{MAP_ENTRY_TYPE}\n").as_bytes()) {
                    if !remap {
                        continue;
                    }
                    let entry = MapEntry {
                        size: i as u64,
                        root: map.root(),
                    };
                    *leaf = entry.sign(&key).unwrap().into_bytes();
                } else if let Ok(record) = Note::parse(leaf)
                    .map_err(drop)
                    .and_then(|n| Record::from_note(&n).map_err(drop))
                {
                    map.insert(&record.chain(), Head::of(i as u64, leaf))
                        .unwrap();
                }
            }
            let n = leaves.len() as i64;
            let mut tx = pool.begin().await.unwrap();
            for sql in [
                "DELETE FROM release_imports WHERE idx >= ?",
                "DELETE FROM release_exports WHERE idx >= ?",
            ] {
                sqlx::query(sql).bind(n).execute(&mut *tx).await.unwrap();
            }
            sqlx::query(
                "UPDATE releases SET yank_idx = NULL, yank_reason = NULL WHERE yank_idx >= ?",
            )
            .bind(n)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query("DELETE FROM releases WHERE idx >= ?")
                .bind(n)
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("DELETE FROM entries WHERE idx >= ?")
                .bind(n)
                .execute(&mut *tx)
                .await
                .unwrap();
            for (i, leaf) in leaves.iter().enumerate() {
                if before.get(i) != Some(leaf) {
                    sqlx::query("UPDATE entries SET body = ?, leaf = ? WHERE idx = ?")
                        .bind(leaf.clone())
                        .bind(leaf_hash(leaf).to_vec())
                        .bind(i as i64)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
            }
            let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
            let stored = append_leaves(0, &hashes, &Vec::<Hash>::new()).unwrap();
            let root = tree_hash(leaves.len() as u64, &stored).unwrap();
            sqlx::query("DELETE FROM hashes")
                .execute(&mut *tx)
                .await
                .unwrap();
            for (i, h) in stored.iter().enumerate() {
                sqlx::query("INSERT INTO hashes (idx, hash) VALUES (?, ?)")
                    .bind(i as i64)
                    .bind(h.to_vec())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            let cp = Checkpoint::new(ORIGIN, leaves.len() as u64, root)
                .sign(&[&key])
                .unwrap();
            sqlx::query("DELETE FROM checkpoints")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("INSERT INTO checkpoints (size, root, body) VALUES (?, ?, ?)")
                .bind(n)
                .bind(root.to_vec())
                .bind(cp.note.clone())
                .execute(&mut *tx)
                .await
                .unwrap();
            tx.commit().await.unwrap();
        });
        self.start();
    }

    /// The log index of a release, from the server's database.
    fn index_of(&self, package: &str, version: &str) -> usize {
        self.db(async |pool| {
            sqlx::query("SELECT idx FROM releases WHERE package = ? AND version = ?")
                .bind(package)
                .bind(version)
                .fetch_one(pool)
                .await
                .unwrap()
                .get::<i64, _>(0) as usize
        })
    }

    fn blob_path(&self, file: &str) -> PathBuf {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let digest = gridreg_protocol::Digest::of(&bytes).to_string();
        let hex = digest.strip_prefix("sha256:").unwrap();
        let found = walk(&self.data().join("blobs")).into_iter().find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(hex))
        });
        found.unwrap_or_else(|| panic!("no blob file for {digest}"))
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.stop();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Re-signs the release record at `leaf` with `key`, optionally changing its import lines.
fn resign(leaf: &[u8], key: &SignerKey, extra_import: Option<&str>) -> Vec<u8> {
    let note = Note::parse(leaf).unwrap();
    let Record::Release(mut r) = Record::from_note(&note).unwrap() else {
        panic!("not a release")
    };
    if let Some(i) = extra_import {
        r.imports.push(i.to_string());
        r.imports.sort();
    }
    Record::Release(r).sign(&[key]).unwrap().into_bytes()
}

fn read_key(w: &World, name: &str) -> SignerKey {
    SignerKey::parse_key_file(
        &std::fs::read_to_string(w.work().join(format!("{name}.key"))).unwrap(),
    )
    .unwrap()
}

/// A namespace with alice as owner and `hello` published as 1.0.0, 1.1.0, 1.2.0.
fn world_with_releases() -> World {
    let w = World::new();
    w.keygen("alice");
    let out = w.run(&["namespace", "claim", "acme", "--key", "alice.key"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // First contact pins the log key, loudly.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TRUST ON FIRST USE"), "{err}");
    assert!(err.contains(ORIGIN), "{err}");
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let out = w.publish("hello.wasm", "acme:hello", v, "alice.key");
        assert!(
            out.contains(&format!("published acme:hello@{v} at log index")),
            "{out}"
        );
    }
    w
}

#[test]
fn happy_path_publish_pull_verify_lock_yank_monitor() {
    let w = world_with_releases();
    let config = std::fs::read_to_string(w.dir.path().join("config.toml")).unwrap();
    assert!(
        config.contains(&format!("log_key = \"{ORIGIN}+")),
        "{config}"
    );

    // A range resolves to the newest, which is verified and locked.
    let out = w.ok(&["pull", "acme:hello@^1.1", "--verify", "-o", "hello.wasm"]);
    for check in [
        "digest",
        "signature",
        "authorisation",
        "inclusion",
        "checkpoint",
        "freshness",
        "consistency",
        "surface",
        "policy",
    ] {
        assert!(
            out.contains(&format!("ok {check}")),
            "missing {check}: {out}"
        );
    }
    assert!(out.contains("pulled acme:hello@1.2.0"), "{out}");
    // The OCI manifest digest, re-derived from the proven record, is the one OCI clients get.
    let (status, manifest) =
        common::http(w.port, "GET", "/v2/acme/hello/manifests/1.2.0", b"").unwrap();
    assert_eq!(status, 200);
    let oci = format!(
        "oci manifest {} (what OCI clients pull as acme/hello:1.2.0)",
        gridreg_protocol::Digest::of(&manifest)
    );
    assert!(out.contains(&oci), "expected `{oci}` in: {out}");
    // The timestamp key the log key names is pinned beside it.
    let config = std::fs::read_to_string(w.dir.path().join("config.toml")).unwrap();
    assert!(
        config.contains(&format!("timestamp_key = \"{ORIGIN}/timestamp+")),
        "{config}"
    );
    assert_eq!(
        std::fs::read(w.work().join("hello.wasm")).unwrap(),
        std::fs::read(fixture("hello.wasm")).unwrap()
    );
    let lock = std::fs::read_to_string(w.work().join("gridreg.lock")).unwrap();
    assert!(
        lock.contains("name = \"acme:hello\"") && lock.contains("version = \"1.2.0\""),
        "{lock}"
    );
    let digest =
        gridreg_protocol::Digest::of(&std::fs::read(fixture("hello.wasm")).unwrap()).to_string();
    assert!(lock.contains(&digest), "{lock}");

    // The pulled file passes the CI gate.
    w.ok(&["verify", "hello.wasm", "--policy", "default"]);

    // Yanked versions drop out of ranges; --locked keeps to the lockfile.
    w.ok(&[
        "yank",
        "acme:hello@1.2.0",
        "--reason",
        "broken build",
        "--key",
        "alice.key",
    ]);
    let out = w.ok(&["pull", "acme:hello@^1.1", "--verify", "-o", "hello.wasm"]);
    assert!(out.contains("pulled acme:hello@1.1.0"), "{out}");
    let lock = std::fs::read_to_string(w.work().join("gridreg.lock")).unwrap();
    assert!(lock.contains("version = \"1.1.0\""), "{lock}");
    let out = w.ok(&["pull", "acme:hello", "--locked", "--verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "1.1.0");
    assert_eq!(v["verified"], true);
    assert!(v["timings_ms"]["client_total"].as_f64().unwrap() > 0.0);
    let err = w.fails(1, &["pull", "acme:other", "--locked"]);
    assert!(err.contains("--locked: acme:other is not in"), "{err}");
    let err = w.fails(1, &["pull", "acme:hello@1.2.0", "--locked"]);
    assert!(err.contains("does not match"), "{err}");

    // Unknown packages and bad references are input errors.
    let err = w.fails(2, &["pull", "acme:nope", "--verify"]);
    assert!(err.contains("has no package acme:nope"), "{err}");
    let err = w.fails(2, &["pull", "Not A Ref"]);
    assert!(err.contains("is not a package reference"), "{err}");

    // Versions are immutable.
    let f = fixture("env-reader.wasm");
    let err = w.fails(
        2,
        &[
            "publish",
            f.to_str().unwrap(),
            "--package",
            "acme:hello",
            "--version",
            "1.0.0",
            "--key",
            "alice.key",
        ],
    );
    assert!(err.contains("1.0.0"), "{err}");

    // The log, checked from the client's side.
    let out = w.ok(&["log", "verify"]);
    assert!(
        out.contains("same as the stored checkpoint") || out.contains("consistent"),
        "{out}"
    );
    let out = w.ok(&["log", "monitor", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["findings"].as_array().unwrap().len(), 0, "{out}");
    assert_eq!(v["releases_audited"], 3);
    assert_eq!(v["grants"][0]["op"], "claim");
    let out = w.ok(&["namespace", "show", "acme"]);
    assert!(out.contains("owner") && out.contains("alice+"), "{out}");
}

#[test]
fn grants_revocations_and_drift() {
    let w = world_with_releases();
    let bob = w.keygen("bob");
    // bob cannot publish until granted; the registry says why.
    let f = fixture("hello.wasm");
    let err = w.fails(
        2,
        &[
            "publish",
            f.to_str().unwrap(),
            "--package",
            "acme:tool",
            "--version",
            "1.0.0",
            "--key",
            "bob.key",
        ],
    );
    assert!(
        err.contains("may publish") || err.contains("authoris"),
        "{err}"
    );
    w.ok(&[
        "namespace",
        "grant",
        "acme",
        "--key",
        "alice.key",
        "--to",
        &bob,
        "--role",
        "publish",
    ]);
    w.publish("hello.wasm", "acme:tool", "1.0.0", "bob.key");
    // Version 1.1 adds wasi:sockets.
    w.publish("tcp-client.wasm", "acme:tool", "1.1.0", "bob.key");
    w.ok(&[
        "namespace",
        "revoke",
        "acme",
        "--key",
        "alice.key",
        "--to",
        "bob.key",
        "--role",
        "publish",
    ]);
    let err = w.fails(
        2,
        &[
            "publish",
            f.to_str().unwrap(),
            "--package",
            "acme:tool",
            "--version",
            "1.2.0",
            "--key",
            "bob.key",
        ],
    );
    assert!(err.contains("bob"), "{err}");

    w.ok(&["pull", "acme:tool@1.0.0", "--verify", "-o", "tool.wasm"]);
    // A policy that allows the network but denies new capabilities against the locked version.
    let policy = w.work().join("drift.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"drift\"\n[capabilities]\nallow = [\"stdio\", \"environment\", \"exit\", \"clocks\", \"random\", \"io\", \"network\", \"filesystem\"]\ndefault = \"deny\"\n[drift]\nnew_capabilities = \"deny\"\n",
    )
    .unwrap();
    let err = w.fails(
        1,
        &[
            "pull",
            "acme:tool@1.1.0",
            "--verify",
            "--policy",
            "drift.toml",
            "-o",
            "tool.wasm",
        ],
    );
    assert!(
        err.contains("verification failed at check `policy`"),
        "{err}"
    );
    assert!(
        err.contains("new capability network") && err.contains("wasi:sockets/tcp@0.2.6"),
        "{err}"
    );
    // Nothing was written: the file and the lock still hold 1.0.0.
    let lock = std::fs::read_to_string(w.work().join("gridreg.lock")).unwrap();
    assert!(lock.contains("version = \"1.0.0\""), "{lock}");
    assert_eq!(
        std::fs::read(w.work().join("tool.wasm")).unwrap(),
        std::fs::read(fixture("hello.wasm")).unwrap()
    );

    // The monitor reports the grant, the revocation and the escalation, and exits 1.
    let out = w.run(&["log", "monitor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["capability-escalation"], "{v}");
    let ops: Vec<&str> = v["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["claim", "grant", "revoke"]);
}

#[test]
fn tampered_blob_is_caught_by_the_digest_check() {
    let mut w = world_with_releases();
    let blob = w.blob_path("hello.wasm");
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&blob, &bytes).unwrap();
    // The running server may still hold the good bytes in memory (it keeps small blobs after
    // reading them); after a restart it serves what is on disk.
    w.stop();
    w.start();
    let err = w.fails(1, &["pull", "acme:hello@1.0.0", "--verify", "-o", "x.wasm"]);
    assert!(
        err.contains("verification failed at check `digest`"),
        "{err}"
    );
    assert!(!w.work().join("x.wasm").exists());
    assert!(!w.work().join("gridreg.lock").exists());
    // Even without --verify the digest is checked.
    let err = w.fails(1, &["pull", "acme:hello@1.0.0", "-o", "x.wasm"]);
    assert!(err.contains("check `digest`"), "{err}");
}

#[test]
fn records_signed_by_the_wrong_keys_are_caught() {
    let mut w = world_with_releases();
    let bob = w.keygen("bob");
    w.keygen("mallory");
    w.ok(&[
        "namespace",
        "grant",
        "acme",
        "--key",
        "alice.key",
        "--to",
        &bob,
        "--role",
        "publish",
    ]);
    w.ok(&[
        "namespace",
        "revoke",
        "acme",
        "--key",
        "alice.key",
        "--to",
        "bob.key",
        "--role",
        "publish",
    ]);
    w.publish("hello.wasm", "acme:late", "1.0.0", "alice.key");
    w.publish("hello.wasm", "acme:never", "1.0.0", "alice.key");
    w.publish("hello.wasm", "acme:lies", "1.0.0", "alice.key");
    let late = w.index_of("acme:late", "1.0.0");
    let never = w.index_of("acme:never", "1.0.0");
    let lies = w.index_of("acme:lies", "1.0.0");
    let (alice, bob_key, mallory) = (
        read_key(&w, "alice"),
        read_key(&w, "bob"),
        read_key(&w, "mallory"),
    );
    // The operator rewrites the log: a release re-signed by revoked bob, one by never-granted
    // mallory, and one whose import lines claim a capability the bytes do not have.
    w.rewrite_log(|leaves| {
        leaves[late] = resign(&leaves[late], &bob_key, None);
        leaves[never] = resign(&leaves[never], &mallory, None);
        leaves[lies] = resign(&leaves[lies], &alice, Some("wasi:sockets/tcp@0.2.0"));
    });
    // A fresh client (no stored checkpoint) sees each lie at its own check.
    let fresh = |args: &[&str]| {
        let out = w.run_in(&w.work(), "fresh-state", args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fresh(&["pull", "acme:never@1.0.0", "--verify", "-o", "n.wasm"]);
    assert!(
        err.contains("check `authorisation`") && err.contains("mallory"),
        "{err}"
    );
    let err = fresh(&["pull", "acme:late@1.0.0", "--verify", "-o", "l.wasm"]);
    assert!(
        err.contains("check `authorisation`") && err.contains("bob"),
        "{err}"
    );
    let err = fresh(&["pull", "acme:lies@1.0.0", "--verify", "-o", "s.wasm"]);
    assert!(
        err.contains("check `surface`") && err.contains("wasi:sockets/tcp@0.2.0"),
        "{err}"
    );
    // The client that had seen the log before also sees that it was rewritten.
    let err = w.fails(1, &["pull", "acme:hello@1.0.0", "--verify", "-o", "h.wasm"]);
    assert!(
        err.contains("check `consistency`") && err.contains("FORK"),
        "{err}"
    );
    let evidence = walk(&w.dir.path().join("state/evidence"));
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    let text = std::fs::read_to_string(&evidence[0]).unwrap();
    assert!(
        text.contains("trusted checkpoint") && text.contains("new checkpoint"),
        "{text}"
    );
}

#[test]
fn a_shorter_log_is_a_rollback() {
    let mut w = world_with_releases();
    w.ok(&["log", "checkpoint"]);
    // The last record and the map entry after it.
    w.rewrite_log(|leaves| {
        leaves.truncate(leaves.len() - 2);
    });
    let err = w.fails(1, &["log", "verify"]);
    assert!(err.contains("ROLLBACK"), "{err}");
    let err = w.fails(1, &["pull", "acme:hello@1.0.0", "--verify", "-o", "h.wasm"]);
    assert!(
        err.contains("check `consistency`") && err.contains("ROLLBACK"),
        "{err}"
    );
}

/// A store whose log does not end in a map entry (written before map entries existed, or cut
/// by hand): `gridreg serve` starts and appends one, which is the very entry it had signed before
/// (a map entry is a function of the log, and Ed25519 signatures are deterministic), so a client
/// that trusted the old checkpoint sees the same tree, and bundles verify.
#[test]
fn a_log_without_a_final_map_entry_gets_one_at_start() {
    let mut w = world_with_releases();
    let before = w.ok(&["log", "checkpoint"]);
    w.rewrite_log(|leaves| {
        let last = leaves.pop().unwrap();
        assert!(last.starts_with(format!("{MAP_ENTRY_TYPE}\n").as_bytes()));
    });
    let after = w.ok(&["log", "checkpoint"]);
    let body = |cp: &str| cp.lines().take(3).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&after), body(&before), "the same tree again");
    let out = w.ok(&["pull", "acme:hello@1.2.0", "--verify", "-o", "h.wasm"]);
    assert!(out.contains("ok chain"), "{out}");
    let out = w.ok(&["log", "monitor"]);
    assert!(out.contains("no findings"), "{out}");
}

/// An operator with the log key commits to a map that is not the log's: one map entry names
/// a stale head for `acme:hello` (as if its newest release did not exist), the checkpoint
/// re-signed over it. A client alone cannot tell; `gridreg log monitor`, replaying the log,
/// reports the entry as `map-mismatch` and exits 1.
#[test]
fn the_monitor_recomputes_every_map_entry() {
    let mut w = world_with_releases();
    let newest = w.index_of("acme:hello", "1.2.0");
    let key =
        SignerKey::parse_key_file(&std::fs::read_to_string(w.data().join("log.key")).unwrap())
            .unwrap();
    let out = w.ok(&["log", "monitor"]);
    assert!(out.contains("no findings"), "{out}");
    w.rewrite_log_with(
        |leaves| {
            let mut map = HeadMap::new();
            for (i, leaf) in leaves.iter().enumerate().take(newest) {
                if let Ok(record) = Note::parse(leaf)
                    .map_err(drop)
                    .and_then(|n| Record::from_note(&n).map_err(drop))
                {
                    map.insert(&record.chain(), Head::of(i as u64, leaf))
                        .unwrap();
                }
            }
            // The map entry after the newest release, committing to the map before it.
            leaves[newest + 1] = MapEntry {
                size: newest as u64 + 1,
                root: map.root(),
            }
            .sign(&key)
            .unwrap()
            .into_bytes();
        },
        false,
    );
    let out = w.run_in(&w.work(), "fresh-monitor", &["log", "monitor"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("#{:<5} map-mismatch", newest + 1)),
        "{stdout}"
    );
}

/// The client that already trusts a larger tree is served a smaller checkpoint, signed by the
/// log key, fresh, and a true prefix of the trusted one: the registry (or a mirror) rolls the
/// client back to before a yank. It is refused at `consistency`, evidence is saved, and nothing
/// is written.
#[test]
fn an_older_checkpoint_that_is_a_prefix_is_a_rollback() {
    let w = world_with_releases();
    let proxy = HostileProxy::start(w.port);
    let via = proxy.url();
    let old = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let keep = old.clone();
    proxy.set(move |req, a: Answer| {
        if asks_bundle(req) {
            *keep.lock().unwrap() = String::from_utf8(a.body.clone()).unwrap();
        }
        a
    });
    w.ok(&["pull", "acme:hello@1.2.0", "--verify", "--registry", &via]);
    // The whole answer from before the yank: its checkpoint, map and chains all agree.
    let old = old.lock().unwrap().clone();
    assert!(old.contains(ORIGIN), "captured {old:?}");
    let old_checkpoint = serde_json::from_str::<serde_json::Value>(&old).unwrap()["checkpoint"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&[
        "yank",
        "acme:hello@1.2.0",
        "--reason",
        "broken",
        "--key",
        "alice.key",
    ]);
    w.ok(&["pull", "acme:hello@1.1.0", "--verify", "-o", "first.wasm"]);

    let replay = old.clone();
    proxy.set(move |req, a: Answer| {
        if asks_bundle(req) {
            Answer {
                body: replay.clone().into_bytes(),
                ..a
            }
        } else {
            a
        }
    });
    let err = w.fails(
        1,
        &[
            "pull",
            "acme:hello@1.1.0",
            "--verify",
            "-o",
            "rolled.wasm",
            "--registry",
            &via,
        ],
    );
    assert!(
        err.contains("check `consistency`") && err.contains("LOG ROLLBACK DETECTED"),
        "{err}"
    );
    assert!(!w.work().join("rolled.wasm").exists());
    let evidence = walk(&w.dir.path().join("state/evidence"));
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    let text = std::fs::read_to_string(&evidence[0]).unwrap();
    assert!(
        text.contains("rollback evidence") && text.contains(&old_checkpoint),
        "{text}"
    );
}

/// A mirror (or a registry) that stopped moving serves the checkpoint it captured earlier:
/// signed by the log key and consistent, but its timestamp ages. Past `max_age` it is refused at
/// `freshness`; a checkpoint whose timestamp line was stripped is refused too; the live
/// registry, which renews the timestamp, passes with the same limit.
#[test]
fn a_frozen_view_is_refused_at_freshness() {
    let w = world_with_releases();
    let proxy = HostileProxy::start(w.port);
    let via = proxy.url();
    let frozen = std::sync::Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
    let keep = frozen.clone();
    proxy.set(move |req, a: Answer| {
        if asks_bundle(req) {
            let mut f = keep.lock().unwrap();
            let body = f.get_or_insert_with(|| a.body.clone()).clone();
            return Answer { body, ..a };
        }
        a
    });
    w.ok(&["pull", "acme:hello@1.0.0", "--verify", "--registry", &via]);
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let err = w.fails(
        1,
        &[
            "pull",
            "acme:hello@1.0.0",
            "--verify",
            "-o",
            "frozen.wasm",
            "--registry",
            &via,
            "--max-age",
            "2s",
        ],
    );
    assert!(
        err.contains("check `freshness`") && err.contains("longer ago than max_age 2 s"),
        "{err}"
    );
    assert!(!w.work().join("frozen.wasm").exists());

    // The live registry renews its timestamp: the same limit passes.
    let out = w.ok(&["pull", "acme:hello@1.0.0", "--verify", "--max-age", "2s"]);
    assert!(out.contains("ok freshness"), "{out}");

    // Without the timestamp line, the checkpoint is not as the registry serves it.
    proxy.set(|req, a: Answer| {
        if !asks_bundle(req) {
            return a;
        }
        let mut v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        let text = v["checkpoint"].as_str().unwrap().to_string();
        let kept: String = text
            .split_inclusive('\n')
            .filter(|l| !l.contains("/timestamp "))
            .collect();
        v["checkpoint"] = serde_json::Value::String(kept);
        Answer {
            body: serde_json::to_vec(&v).unwrap(),
            ..a
        }
    });
    let err = w.fails(
        1,
        &["pull", "acme:hello@1.0.0", "--verify", "--registry", &via],
    );
    assert!(
        err.contains("check `freshness`") && err.contains("no cosignature"),
        "{err}"
    );
}

/// A cache or proxy in front of the registry says the content is there when the registry no
/// longer holds it (it deletes content no release names after its upload TTL): the record is
/// refused with `content_missing`, and `gridreg publish` uploads again and sends it again.
#[test]
fn publish_uploads_again_when_the_registry_no_longer_holds_the_content() {
    let w = world_with_releases();
    let proxy = HostileProxy::start(w.port);
    proxy.set(|req, a: Answer| {
        if req.starts_with("HEAD /v1/content/") {
            Answer { status: 200, ..a }
        } else {
            a
        }
    });
    let f = fixture("env-reader.wasm");
    let via = proxy.url();
    let out = w.run(&[
        "publish",
        f.to_str().unwrap(),
        "--package",
        "acme:env",
        "--version",
        "1.0.0",
        "--key",
        "alice.key",
        "--registry",
        &via,
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("uploading the content again"), "{stderr}");
    assert!(stdout.contains("published acme:env@1.0.0"), "{stdout}");
}

/// A hostile registry in front of the real one that rewrites `GET /v1/bundles/acme:hello` with
/// `edit` (the bundle's JSON), and a pull of `version` through it that must fail at `check` with
/// `expect` in the message and write nothing: no output file, no lockfile.
fn bundle_attack(
    w: &World,
    version: &str,
    edit: impl Fn(&mut serde_json::Value) + Send + 'static,
    check: &str,
    expect: &str,
) {
    let proxy = HostileProxy::start(w.port);
    proxy.set(move |req, a: Answer| {
        if !asks_bundle(req) || a.status != 200 {
            return a;
        }
        let mut v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        edit(&mut v);
        Answer {
            body: serde_json::to_vec(&v).unwrap(),
            ..a
        }
    });
    let reference = format!("acme:hello@{version}");
    let out = w.run(&[
        "pull",
        &reference,
        "--verify",
        "-o",
        "attacked.wasm",
        "--registry",
        &proxy.url(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("verification failed at check `{check}`")) && err.contains(expect),
        "expected check `{check}` with {expect:?}: {err}"
    );
    assert!(!w.work().join("attacked.wasm").exists());
    assert!(!w.work().join("gridreg.lock").exists());
}

/// docs/protocol.md §8.6.5: a client that proved a package keeps its chains and asks next time
/// only for the records above the heads it holds; a registry that answers with records at or
/// below a held head is refused at `chain` rather than trusted; a damaged held file is only a
/// lost shortcut.
#[test]
fn a_second_pull_fetches_only_the_records_above_the_held_heads() {
    let w = world_with_releases();
    let pull = |version: &str| -> serde_json::Value {
        let reference = format!("acme:hello@{version}");
        let out = w.ok(&["pull", &reference, "--verify", "-o", "h.wasm", "--json"]);
        serde_json::from_str(&out).unwrap()
    };
    let bundle = |v: &serde_json::Value| {
        (
            v["bundle"]["records_fetched"].as_u64().unwrap(),
            v["bundle"]["records"].as_u64().unwrap(),
            v["bundle"]["bytes"].as_u64().unwrap(),
        )
    };
    // First pull: the whole chains (3 releases, the claim).
    let (fetched, records, first_bytes) = bundle(&pull("1.0.0"));
    assert_eq!((fetched, records), (4, 4));
    let held = w
        .dir
        .path()
        .join("state/held")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("acme+hello");
    let text = std::fs::read_to_string(&held).unwrap();
    assert!(
        text.starts_with("gridreg held chains v1\npackage acme:hello\n"),
        "{text}"
    );
    assert_eq!(text.matches("\nentry ").count(), 4, "{text}");
    // Nothing new: nothing fetched.
    let (fetched, records, bytes) = bundle(&pull("1.0.0"));
    assert_eq!((fetched, records), (0, 4));
    assert!(bytes < first_bytes, "{bytes} >= {first_bytes}");
    // A new release and a grant: only those two.
    w.publish("hello.wasm", "acme:hello", "1.3.0", "alice.key");
    let bob = w.keygen("bob");
    w.ok(&[
        "namespace",
        "grant",
        "acme",
        "--key",
        "alice.key",
        "--to",
        &bob,
        "--role",
        "publish",
    ]);
    let v = pull("1.3.0");
    assert_eq!(bundle(&v).0, 2);
    assert_eq!(bundle(&v).1, 6);
    let text = w.ok(&["pull", "acme:hello@1.3.0", "--verify", "-o", "h.wasm"]);
    assert!(
        text.contains("4 package and 2 namespace records linked back to none (0 fetched, 6 held from an earlier pull)"),
        "{text}"
    );

    // A registry that ignores the held heads and serves the whole chains is refused: the
    // client does not take records at or below a head it holds from the registry.
    let upstream = w.port;
    let proxy = HostileProxy::start(w.port);
    proxy.set(move |req, a: Answer| {
        if !req.starts_with("GET /v1/bundles/acme:hello?") || a.status != 200 {
            return a;
        }
        let (_, whole) = common::http(upstream, "GET", "/v1/bundles/acme:hello", b"").unwrap();
        Answer { body: whole, ..a }
    });
    let err = w.fails(
        1,
        &[
            "pull",
            "acme:hello@1.3.0",
            "--verify",
            "-o",
            "x.wasm",
            "--registry",
            &proxy.url(),
        ],
    );
    assert!(
        err.contains("verification failed at check `chain`")
            && err.contains("expected only the records above"),
        "{err}"
    );
    assert!(!w.work().join("x.wasm").exists());

    // A damaged held file: ignored, the whole chains proven again, the file rewritten.
    std::fs::write(
        &held,
        "gridreg held chains v1\npackage acme:hello\nsize x\n",
    )
    .unwrap();
    let (fetched, records, _) = bundle(&pull("1.3.0"));
    assert_eq!((fetched, records), (6, 6));
    assert!(std::fs::read_to_string(&held).unwrap().contains("\nentry "));
}

/// Whether a request line (without the HTTP version) asks for the bundle of `acme:hello`,
/// whole or above held heads (`?package_after=..`).
fn asks_bundle(req: &str) -> bool {
    req.split('?').next() == Some("GET /v1/bundles/acme:hello")
}

/// The registry's signed record of `acme:hello@version`, as text and parsed.
fn served_release(w: &World, version: &str) -> (String, gridreg_protocol::record::Release) {
    let path = format!("/v1/packages/acme:hello/{version}");
    let (_, body) = common::http(w.port, "GET", &path, b"").unwrap();
    let served: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let leaf = served["record"].as_str().unwrap().to_string();
    let Record::Release(r) = Record::from_note(&Note::parse(leaf.as_bytes()).unwrap()).unwrap()
    else {
        panic!("not a release")
    };
    (leaf, r)
}

/// The records of one chain in a bundle (`package` or `namespace`).
fn chain_records<'a>(v: &'a mut serde_json::Value, chain: &str) -> &'a mut Vec<serde_json::Value> {
    v[chain]["records"].as_array_mut().unwrap()
}

/// Omitted revoke: bob is granted, publishes, is revoked; the registry leaves the revoke out of
/// the namespace chain. The map names the revoke as the chain's head: caught at `chain`.
#[test]
fn an_omitted_revoke_is_caught_at_chain() {
    let w = world_with_releases();
    let bob = w.keygen("bob");
    for op in ["grant", "revoke"] {
        w.ok(&[
            "namespace",
            op,
            "acme",
            "--key",
            "alice.key",
            "--to",
            &bob,
            "--role",
            "publish",
        ]);
    }
    bundle_attack(
        &w,
        "1.2.0",
        move |v| {
            let records = chain_records(v, "namespace");
            assert!(records[0]["body"].as_str().unwrap().contains("op revoke"));
            records.remove(0);
        },
        "chain",
        "chain namespace acme",
    );
    // `namespace show` proves the same chain: with the revoke left out it refuses to list.
    let honest = w.ok(&["namespace", "show", "acme"]);
    assert!(
        honest.contains("whole chain proven") && !honest.contains("bob+"),
        "{honest}"
    );
    let proxy = HostileProxy::start(w.port);
    proxy.set(|req, a: Answer| {
        if req != "GET /v1/namespaces/acme/bundle" {
            return a;
        }
        let mut v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        chain_records(&mut v, "namespace").remove(0);
        Answer {
            body: serde_json::to_vec(&v).unwrap(),
            ..a
        }
    });
    let err = w.fails(
        1,
        &["namespace", "show", "acme", "--registry", &proxy.url()],
    );
    assert!(
        err.contains("verification failed at check `chain`") && !err.contains("bob+"),
        "{err}"
    );
}

/// Omitted yank: the registry serves the package chain without the yank of 1.2.0, hoping a
/// range pull picks the yanked version. The yank is the proven head: caught at `chain`.
#[test]
fn an_omitted_yank_is_caught_at_chain() {
    let w = world_with_releases();
    w.ok(&[
        "yank",
        "acme:hello@1.2.0",
        "--key",
        "alice.key",
        "--reason",
        "broken",
    ]);
    bundle_attack(
        &w,
        "^1",
        |v| {
            let records = chain_records(v, "package");
            assert!(
                records[0]["body"]
                    .as_str()
                    .unwrap()
                    .starts_with("gridreg/yank/")
            );
            records.remove(0);
        },
        "chain",
        "chain package acme:hello",
    );
    // Honestly served, the range resolves to 1.1.0 on the client.
    let out = w.ok(&["pull", "acme:hello@^1", "--verify", "-o", "h.wasm"]);
    assert!(out.contains("pulled acme:hello@1.1.0"), "{out}");
    // The records whose signatures were verified are cached by leaf hash (keys once each), and
    // a pull that uses the cache proves the same.
    let cached = walk(&w.dir.path().join("state/verified"));
    assert_eq!(cached.len(), 1, "{cached:?}");
    let text = std::fs::read_to_string(&cached[0]).unwrap();
    assert!(
        text.starts_with("gridreg verified signers v1\nkey alice+"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| !l.starts_with("key ")).count(),
        1 + 5
    );
    let again = w.ok(&["pull", "acme:hello@^1", "--verify", "-o", "h.wasm"]);
    assert!(again.contains("pulled acme:hello@1.1.0"), "{again}");
}

/// Stale head: the registry proves the package chain with an old map proof (from before the
/// yank), against the newest map entry. The proof does not reach its root: caught at `head`.
#[test]
fn a_stale_head_is_caught_at_head() {
    let w = world_with_releases();
    let (_, before) = common::http(w.port, "GET", "/v1/bundles/acme:hello", b"").unwrap();
    let before: serde_json::Value = serde_json::from_slice(&before).unwrap();
    w.ok(&[
        "yank",
        "acme:hello@1.2.0",
        "--key",
        "alice.key",
        "--reason",
        "broken",
    ]);
    bundle_attack(
        &w,
        "^1",
        move |v| {
            v["package"] = before["package"].clone();
        },
        "head",
        "head of package acme:hello",
    );
}

/// Invented version: the registry adds a release record (validly signed by alice, never
/// logged) to the package chain. It is no record the proven head links to: caught at `chain`.
#[test]
fn an_invented_version_is_caught_at_chain() {
    let w = world_with_releases();
    let alice = read_key(&w, "alice");
    let (_, mut r) = served_release(&w, "1.2.0");
    r.version = semver::Version::new(9, 0, 0);
    let invented = Record::Release(r).sign(&[&alice]).unwrap();
    bundle_attack(
        &w,
        "9.0.0",
        move |v| {
            let head_index = v["package"]["records"][0]["index"].as_u64().unwrap();
            chain_records(v, "package").insert(
                0,
                serde_json::json!({"index": head_index + 1, "body": invented.clone()}),
            );
        },
        "chain",
        "chain package acme:hello",
    );
}

/// A fork of the chain: a second record naming the same `prev` as the real head (a release
/// signed by alice that the registry never sequenced), served in the head's place. The map
/// names the real head's leaf hash: caught at `chain`.
#[test]
fn a_forked_chain_is_caught_at_chain() {
    let w = world_with_releases();
    let alice = read_key(&w, "alice");
    let (leaf, mut r) = served_release(&w, "1.2.0");
    r.version = semver::Version::new(1, 3, 0);
    let sibling = Record::Release(r).sign(&[&alice]).unwrap();
    bundle_attack(
        &w,
        "1.3.0",
        move |v| {
            let records = chain_records(v, "package");
            assert_eq!(records[0]["body"].as_str().unwrap(), leaf);
            records[0]["body"] = serde_json::Value::String(sibling.clone());
        },
        "chain",
        "chain package acme:hello",
    );
}

/// Mix-and-match of chains: the registry serves another package's chain (with its valid map
/// proof) as this package's. The verifier derives the chain key from the request: `head`.
#[test]
fn another_packages_chain_is_caught_at_head() {
    let w = world_with_releases();
    w.publish("hello.wasm", "acme:other", "5.0.0", "alice.key");
    let (_, other) = common::http(w.port, "GET", "/v1/bundles/acme:other", b"").unwrap();
    let other: serde_json::Value = serde_json::from_slice(&other).unwrap();
    bundle_attack(
        &w,
        "5.0.0",
        move |v| {
            v["package"] = other["package"].clone();
        },
        "head",
        "head of package acme:hello",
    );
}

/// Mix-and-match: asked for 1.1.0, the registry serves the signed record of 1.0.0 (same bytes,
/// a valid signature, included in the log). Refused before anything is written.
#[test]
fn another_versions_record_is_refused() {
    let w = world_with_releases();
    let proxy = HostileProxy::start(w.port);
    let old = w.ok(&["pull", "acme:hello@1.0.0", "--verify", "-o", "old.wasm"]);
    assert!(old.contains("pulled acme:hello@1.0.0"), "{old}");
    let upstream = w.port;
    proxy.set(move |req, a: Answer| {
        if req != "GET /v1/packages/acme:hello/1.1.0" {
            return a;
        }
        let (_, body) =
            common::http(upstream, "GET", "/v1/packages/acme:hello/1.0.0", b"").unwrap();
        Answer { body, ..a }
    });
    let err = w.fails(
        1,
        &[
            "pull",
            "acme:hello@1.1.0",
            "--verify",
            "-o",
            "new.wasm",
            "--registry",
            &proxy.url(),
        ],
    );
    assert!(
        err.contains("check `signature`")
            && err.contains("the signed record is for acme:hello@1.0.0"),
        "{err}"
    );
    assert!(!w.work().join("new.wasm").exists());
}

#[test]
fn a_wrong_pinned_log_key_is_refused() {
    let w = world_with_releases();
    let other = SignerKey::generate(ORIGIN).unwrap().verifier().to_string();
    w.ok(&[
        "registry",
        "add",
        "pinned",
        &w.url(),
        "--log-key",
        &other,
        "--default",
    ]);
    let out = w.run(&["registry", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("* pinned"));
    let err = w.fails(
        1,
        &[
            "pull",
            "acme:hello@1.0.0",
            "--verify",
            "--registry",
            "pinned",
        ],
    );
    assert!(
        err.contains("check `checkpoint`") && err.contains("not signed by the log key"),
        "{err}"
    );
    let err = w.fails(1, &["log", "checkpoint", "--registry", "pinned"]);
    assert!(err.contains("not signed by the log key"), "{err}");
    w.ok(&["registry", "remove", "pinned"]);
    let err = w.fails(2, &["log", "checkpoint", "--registry", "pinned"]);
    assert!(err.contains("no registry named"), "{err}");
}

#[test]
fn run_and_compose_take_registry_references() {
    let w = world_with_releases();
    w.publish("converter.wasm", "acme:converter", "1.0.0", "alice.key");
    w.publish("processor.wasm", "acme:processor", "1.0.0", "alice.key");
    w.publish("tcp-client.wasm", "acme:tcp", "1.0.0", "alice.key");

    // run: pulled and verified first, then run under the same policy.
    let out = w.run(&["run", "acme:hello@^1", "--policy", "default"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from gridreg\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("verified acme:hello@1.2.0"));
    // A reference whose surface the policy refuses stops at the policy check, before wasmtime.
    let err = w.fails(1, &["run", "acme:tcp@1.0.0", "--policy", "default"]);
    assert!(
        err.contains("verification failed at check `policy`"),
        "{err}"
    );

    // compose: both parts by reference; the manifest names them.
    w.ok(&[
        "compose",
        "acme:processor@1.0.0",
        "--plug",
        "acme:converter@1.0.0",
        "-o",
        "app.wasm",
    ]);
    let manifest = std::fs::read_to_string(w.work().join("app.wasm.composition.json")).unwrap();
    assert!(
        manifest.contains("acme:processor@1.0.0") && manifest.contains("acme:converter@1.0.0"),
        "{manifest}"
    );
    let converter_digest =
        gridreg_protocol::Digest::of(&std::fs::read(fixture("converter.wasm")).unwrap())
            .to_string();
    assert!(manifest.contains(&converter_digest), "{manifest}");
    // Neither run nor compose writes the lockfile.
    assert!(!w.work().join("gridreg.lock").exists());
}

#[test]
fn private_registries_need_tokens_from_the_configuration() {
    let mut w = World::with_flags(&["--require-token"]);
    let token = |scope: &str| {
        let out = w.ok(&[
            "serve",
            "token",
            "create",
            "--data",
            w.data().to_str().unwrap(),
            "--scope",
            scope,
        ]);
        out.trim().to_string()
    };
    let (admin, publish, read) = (token("admin"), token("publish"), token("read"));
    w.keygen("alice");
    // No token: the registry refuses, and the client says so.
    let err = w.fails(2, &["namespace", "claim", "acme", "--key", "alice.key"]);
    assert!(err.contains("401"), "{err}");
    w.ok(&[
        "registry",
        "add",
        "private",
        &w.url(),
        "--token-env",
        "TEST_GRIDREG_TOKEN",
        "--default",
    ]);
    let err = w.fails(2, &["log", "checkpoint", "--registry", "private"]);
    assert!(err.contains("$TEST_GRIDREG_TOKEN is not set"), "{err}");
    // On a private registry a claim needs an admin token; publishing a publish token.
    let claim = [
        "namespace",
        "claim",
        "acme",
        "--key",
        "alice.key",
        "--registry",
        "private",
    ];
    w.env = vec![("TEST_GRIDREG_TOKEN".into(), publish.clone())];
    let err = w.fails(2, &claim);
    assert!(err.contains("403") && err.contains("admin"), "{err}");
    w.env = vec![("TEST_GRIDREG_TOKEN".into(), admin)];
    w.ok(&claim);
    w.env = vec![("TEST_GRIDREG_TOKEN".into(), publish)];
    w.publish_to("private", "hello.wasm", "acme:hello", "1.0.0", "alice.key");
    // A read token pulls but cannot publish.
    w.env = vec![("TEST_GRIDREG_TOKEN".into(), read)];
    w.ok(&[
        "pull",
        "acme:hello@1.0.0",
        "--verify",
        "--registry",
        "private",
        "-o",
        "h.wasm",
    ]);
    let f = fixture("hello.wasm");
    let err = w.fails(
        2,
        &[
            "publish",
            f.to_str().unwrap(),
            "--package",
            "acme:hello",
            "--version",
            "2.0.0",
            "--key",
            "alice.key",
            "--registry",
            "private",
        ],
    );
    assert!(err.contains("403"), "{err}");
}

#[test]
fn concurrent_runs_never_roll_the_stored_checkpoint_back() {
    let w = world_with_releases();
    let w = &w;
    let indexes: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                s.spawn(move || {
                    let out =
                        w.publish("hello.wasm", "acme:many", &format!("0.{i}.0"), "alice.key");
                    let at = out.split("at log index ").nth(1).unwrap();
                    at.split_whitespace()
                        .next()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The newest record's batch ends in the map entry right after it.
    let newest = indexes.iter().max().unwrap() + 2;
    let stored = walk(&w.dir.path().join("state/checkpoints"))
        .into_iter()
        .find(|p| p.extension().is_none_or(|e| e != "lock"))
        .unwrap();
    let text = std::fs::read_to_string(&stored).unwrap();
    let size: u64 = text.lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(size, newest, "{text}");
}

#[test]
fn content_downloads_are_cacheable_and_support_ranges() {
    let w = world_with_releases();
    let bytes = std::fs::read(fixture("hello.wasm")).unwrap();
    let digest = gridreg_protocol::Digest::of(&bytes).to_string();
    let url = format!("{}/v1/content/{digest}", w.url());
    // Twice: the second answer comes from memory and must be the same.
    for _ in 0..2 {
        let r = ureq::get(&url).call().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.header("etag"), Some(format!("\"{digest}\"").as_str()));
        assert!(r.header("cache-control").unwrap().contains("immutable"));
        assert_eq!(r.header("content-type"), Some("application/wasm"));
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
        assert_eq!(body, bytes);
    }
    let r = ureq::get(&url)
        .set("If-None-Match", &format!("\"{digest}\""))
        .call()
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = ureq::get(&url).set("Range", "bytes=4-11").call().unwrap();
    assert_eq!(r.status(), 206);
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
    assert_eq!(body, bytes[4..12]);
}

/// What the flaky proxy does with one `POST /v1/records`.
#[derive(Debug, Clone, Copy)]
enum Post {
    /// Answer 503 without passing it on: nothing is stored.
    Refuse,
    /// Pass it on, then answer 503 anyway: stored, but the client never hears so (a replica
    /// that crashed after its commit).
    LoseTheAnswer,
    /// Pass it on, then hang up without an answer: stored, and the connection lost.
    HangUp,
    Forward,
}

/// A proxy in front of the registry on `upstream` that passes every request through (one per
/// connection) except `POST /v1/records`, which it treats as `plan` says, in order (then
/// forwards). Returns its port.
fn flaky_proxy(upstream: u16, plan: Vec<Post>) -> u16 {
    use std::io::{Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let plan = std::sync::Mutex::new(plan.into_iter());
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            // The request: head, then a Content-Length body (the CLI sends no chunked bodies
            // on the paths this test takes).
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            while !buf.ends_with(b"\r\n\r\n") {
                if client.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                buf.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            client.read_exact(&mut body).unwrap();
            let action = if head.starts_with("POST /v1/records ") {
                plan.lock().unwrap().next().unwrap_or(Post::Forward)
            } else {
                Post::Forward
            };
            let message = r#"{"error":{"code":"unavailable","message":"the log could not be written (test)"}}"#;
            let busy = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{message}",
                message.len()
            );
            let busy = busy.as_bytes();
            if let Post::Refuse = action {
                let _ = client.write_all(busy);
                continue;
            }
            // Forward with `connection: close`, so the answer ends where the stream does.
            let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let head: String = head
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
                .map(|l| format!("{l}\r\n"))
                .collect();
            up.write_all(format!("{head}connection: close\r\n\r\n").as_bytes())
                .unwrap();
            up.write_all(&body).unwrap();
            let mut answer = Vec::new();
            let _ = up.read_to_end(&mut answer);
            let _ = match action {
                Post::LoseTheAnswer => client.write_all(busy),
                Post::HangUp => Ok(()),
                _ => client.write_all(&answer),
            };
        }
    });
    port
}

#[test]
fn publish_sends_again_after_503_or_no_answer_and_finds_a_record_that_landed_anyway() {
    let mut w = world_with_releases();
    let before = w.db(async |pool| {
        sqlx::query("SELECT count(*) FROM entries WHERE kind != 'map'")
            .fetch_one(pool)
            .await
            .unwrap()
            .get::<i64, _>(0)
    });
    let proxy = flaky_proxy(
        w.port,
        vec![
            // 1.3.0: refused once, then stored.
            Post::Refuse,
            Post::Forward,
            // 1.4.0: stored on the first try but answered 503; the second try is a conflict.
            Post::LoseTheAnswer,
            Post::Forward,
            // 1.5.0: refused three times: the CLI gives up with the registry's answer.
            Post::Refuse,
            Post::Refuse,
            Post::Refuse,
            // 1.6.0: stored, but the connection drops before the answer.
            Post::HangUp,
            Post::Forward,
        ],
    );
    w.env.push((
        "GRIDREG_REGISTRY".into(),
        format!("http://127.0.0.1:{proxy}"),
    ));
    let hello = fixture("hello.wasm");
    let publish_args = |version: &'static str| {
        [
            "publish",
            hello.to_str().unwrap(),
            "--package",
            "acme:hello",
            "--version",
            version,
            "--key",
            "alice.key",
        ]
    };
    // Succeeds; returns stdout and stderr.
    let publish = |w: &World, version: &'static str| {
        let out = w.run(&publish_args(version));
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        (stdout, stderr)
    };

    let (stdout, stderr) = publish(&w, "1.3.0");
    assert!(
        stderr.contains("503 unavailable")
            && stderr.contains("sending the record again in 1 s (attempt 2 of 3)"),
        "{stderr}"
    );
    assert!(
        stdout.contains("published acme:hello@1.3.0 at log index"),
        "{stdout}"
    );
    assert!(stdout.contains("verified: inclusion"), "{stdout}");

    let (stdout, stderr) = publish(&w, "1.4.0");
    assert!(
        stderr.contains("an earlier attempt was recorded after all, at log index"),
        "{stderr}"
    );
    assert!(
        stdout.contains("published acme:hello@1.4.0 at log index"),
        "{stdout}"
    );

    let out = w.run(&publish_args("1.5.0"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("attempt 3 of 3"), "{stderr}");
    assert!(
        stderr.contains("the log could not be written (test)"),
        "{stderr}"
    );

    let (stdout, stderr) = publish(&w, "1.6.0");
    assert!(
        stderr.contains("cannot reach the registry")
            && stderr.contains("sending the record again in 1 s (attempt 2 of 3)")
            && stderr.contains("an earlier attempt was recorded after all"),
        "{stderr}"
    );
    assert!(
        stdout.contains("published acme:hello@1.6.0 at log index"),
        "{stdout}"
    );

    // Each stored exactly once; the refused version not at all.
    w.stop();
    let (entries, versions) = w.db(async |pool| {
        let n = sqlx::query("SELECT count(*) FROM entries WHERE kind != 'map'")
            .fetch_one(pool)
            .await
            .unwrap()
            .get::<i64, _>(0);
        let v: Vec<String> =
            sqlx::query("SELECT version FROM releases WHERE version >= '1.3.0' ORDER BY version")
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect();
        (n, v)
    });
    assert_eq!(entries, before + 3);
    assert_eq!(versions, ["1.3.0", "1.4.0", "1.6.0"]);
}

/// Six `gridreg publish` processes release six versions of one package at the same moment. Each
/// signs on the package chain's head; all but one find it taken, sign again on the new head and
/// land. The log then holds one chain: each release names the one before it.
#[test]
fn concurrent_publishes_to_one_package_all_land_in_one_chain() {
    let w = World::new();
    w.keygen("alice");
    w.ok(&["namespace", "claim", "acme", "--key", "alice.key"]);
    let f = fixture("hello.wasm");
    let children: Vec<Child> = (0..6)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_gridreg"))
                .args(["publish", f.to_str().unwrap(), "--package", "acme:hello"])
                .args(["--version", &format!("1.{i}.0"), "--key", "alice.key"])
                .current_dir(w.work())
                .env("GRIDREG_CONFIG", w.dir.path().join("config.toml"))
                // Each publisher keeps its own trusted checkpoint, as separate machines would.
                .env("GRIDREG_STATE_DIR", w.dir.path().join(format!("state{i}")))
                .env("GRIDREG_REGISTRY", w.url())
                .env("HOME", w.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut resigned = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}{err}",
            String::from_utf8_lossy(&out.stdout)
        );
        resigned += err.matches("signing again on its new head").count();
    }
    // However the race went, the chain is whole.
    let rows: Vec<(i64, Vec<u8>)> = w.db(async |pool| {
        sqlx::query("SELECT idx, body FROM entries WHERE kind = 'release' ORDER BY idx")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<i64, _>(0), r.get::<Vec<u8>, _>(1)))
            .collect()
    });
    assert_eq!(rows.len(), 6);
    let mut prev = gridreg_protocol::Prev::None;
    for (idx, body) in &rows {
        let record = Record::from_note(&Note::parse(body).unwrap()).unwrap();
        assert_eq!(record.prev(), prev, "the release at {idx}");
        prev = gridreg_protocol::Prev::Entry(gridreg_protocol::Head::of(*idx as u64, body));
    }
    eprintln!("{resigned} signings again after another publisher landed first");
    let out = w.ok(&["pull", "acme:hello", "--verify", "-o", "latest.wasm"]);
    assert!(out.contains("acme:hello@1."), "{out}");
}
