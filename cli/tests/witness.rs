//! Witnesses and tiles end to end (docs/protocol.md §7.12, §7.13): real `gridreg witness serve`
//! and `gridreg serve` processes on loopback, the real CLI as clients with their own
//! configuration and state.
//!
//! - quorum: two registries, two witnesses; quorum 2 of 2 passes; one witness down, a client
//!   requiring 2 refuses at check `checkpoint` naming the missing witness, one requiring 1 passes;
//! - split view: two servers sharing one log key with different data; the witness cosigns the
//!   first and refuses the second, and a client that requires it refuses the second view
//!   without ever having seen the first;
//! - crash safety: `kill -9` while checkpoints are being cosigned; after the restart the witness
//!   holds an honest root at a size no smaller than any it cosigned, and refuses a fork there;
//! - tiles: `log monitor --tiles` reads and checks the log through tiles, and a tampered tile
//!   served by a lying mirror is caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gridreg_protocol::merkle::{Hash, append_leaves, leaf_hash, prove_consistency, tree_hash};
use gridreg_protocol::witness::AddCheckpoint;
use gridreg_protocol::{Checkpoint, CosignerKey, Note, SignerKey};

mod common;
use common::{HostileProxy, free_port, http, start_serve_with};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm")
        .join(name)
}

fn gridreg(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(args)
        .current_dir(dir)
        .env("GRIDREG_CONFIG", dir.join("config.toml"))
        .env("GRIDREG_STATE_DIR", dir.join("state"))
        .env("HOME", dir)
        .env("NO_COLOR", "1")
        .env_remove("GRIDREG_REGISTRY")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = gridreg(dir, args);
    assert!(
        out.status.success(),
        "gridreg {args:?} failed ({:?}):\n{}",
        out.status.code(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A witness: its cosigner key file and public key, data and port.
struct Witness {
    key_file: PathBuf,
    vkey: String,
    data: PathBuf,
    port: u16,
}

impl Witness {
    fn new(dir: &Path, name: &str) -> Witness {
        let key_file = dir.join(format!("{name}.key"));
        let vkey = ok(
            dir,
            &[
                "keygen",
                "--witness",
                "--name",
                name,
                "-o",
                key_file.to_str().unwrap(),
            ],
        )
        .trim()
        .to_string();
        assert!(CosignerKey::parse(&vkey).is_ok(), "{vkey}");
        Witness {
            key_file,
            vkey,
            data: dir.join(format!("{name}-data")),
            port: free_port(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `URL=KEY` for `gridreg serve --witness`.
    fn flag(&self) -> String {
        format!("{}={}", self.url(), self.vkey)
    }

    fn start(&self, logs: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridreg"));
        cmd.args(["witness", "serve", "--data"])
            .arg(&self.data)
            .arg("--key")
            .arg(&self.key_file)
            .args(["--addr", &format!("127.0.0.1:{}", self.port)]);
        for l in logs {
            cmd.args(["--log", l]);
        }
        let mut child = Proc(
            cmd.env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http(self.port, "GET", "/healthz", b"").is_some_and(|(s, _)| s == 200) {
                return child;
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("the witness exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the witness did not come up");
    }
}

/// A registry data dir with a log key made ahead, so witnesses can be given it before the
/// registry first starts.
struct Registry {
    data: PathBuf,
    port: u16,
    origin: String,
    log_key: String,
}

impl Registry {
    fn new(dir: &Path, name: &str, origin: &str) -> Registry {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let key = SignerKey::generate(origin).unwrap();
        std::fs::write(
            data.join("log.key"),
            format!("{}\n", key.to_secret_string()),
        )
        .unwrap();
        Registry {
            data,
            port: free_port(),
            origin: origin.to_string(),
            log_key: key.verifier().to_string(),
        }
    }

    /// Another data directory signing with the same log key: a second view of "the same" log.
    fn fork(&self, dir: &Path, name: &str) -> Registry {
        let data = dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(self.data.join("log.key"), data.join("log.key")).unwrap();
        Registry {
            data,
            port: free_port(),
            origin: self.origin.clone(),
            log_key: self.log_key.clone(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `ORIGIN=KEY` for `gridreg witness serve --log`.
    fn log_flag(&self) -> String {
        format!("{}={}", self.origin, self.log_key)
    }

    fn start(&self, witnesses: &[&Witness]) -> Proc {
        let flags: Vec<String> = witnesses
            .iter()
            .flat_map(|w| ["--witness".to_string(), w.flag()])
            .collect();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Proc(start_serve_with(
            &self.data,
            self.port,
            &self.origin,
            &flags,
        ))
    }

    fn metrics(&self) -> String {
        let (status, body) = http(self.port, "GET", "/metrics", b"").unwrap();
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }
}

/// A client home: its own configuration and state.
fn client(dir: &Path, name: &str) -> PathBuf {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    home
}

/// `registry add` for `reg` with the witnesses and quorum given.
fn add(home: &Path, name: &str, reg: &Registry, witnesses: &[&Witness], quorum: Option<usize>) {
    let mut args: Vec<String> = vec![
        "registry".into(),
        "add".into(),
        name.into(),
        reg.url(),
        "--log-key".into(),
        reg.log_key.clone(),
    ];
    for w in witnesses {
        args.push("--witness".into());
        args.push(w.vkey.clone());
    }
    if let Some(q) = quorum {
        args.push("--quorum".into());
        args.push(q.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(home, &args);
}

/// Claims `ns` with a new key and publishes hello.wasm as `ns:hello@version` through `registry`.
fn claim_and_publish(home: &Path, registry: &str, ns: &str, version: &str) {
    let key = format!("{ns}.key");
    if !home.join(&key).exists() {
        ok(home, &["keygen", "--name", ns, "-o", &key]);
        ok(
            home,
            &[
                "namespace",
                "claim",
                ns,
                "--key",
                &key,
                "--registry",
                registry,
            ],
        );
    }
    publish(home, registry, ns, version);
}

fn publish(home: &Path, registry: &str, ns: &str, version: &str) {
    let f = fixture("hello.wasm");
    ok(
        home,
        &[
            "publish",
            f.to_str().unwrap(),
            "--package",
            &format!("{ns}:hello"),
            "--version",
            version,
            "--key",
            &format!("{ns}.key"),
            "--registry",
            registry,
        ],
    );
}

fn pull(home: &Path, registry: &str, reference: &str) -> Output {
    gridreg(
        home,
        &[
            "pull",
            reference,
            "--verify",
            "--registry",
            registry,
            "-o",
            "out.wasm",
        ],
    )
}

/// Waits until `f` holds, for at most `secs` seconds.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_quorum_of_witnesses_over_two_registries() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w1 = Witness::new(d, "w1.test");
    let w2 = Witness::new(d, "w2.test");
    let a = Registry::new(d, "a", "a.test/log");
    let b = Registry::new(d, "b", "b.test/log");
    let logs = [a.log_flag(), b.log_flag()];
    let logs: Vec<&str> = logs.iter().map(String::as_str).collect();
    let _w1 = w1.start(&logs);
    let mut w2_proc = Some(w2.start(&logs));
    let _a = a.start(&[&w1, &w2]);
    let _b = b.start(&[&w1, &w2]);

    let strict = client(d, "strict");
    add(&strict, "a", &a, &[&w1, &w2], Some(2));
    add(&strict, "b", &b, &[&w1, &w2], None);
    let lenient = client(d, "lenient");
    add(&lenient, "a", &a, &[&w1, &w2], Some(1));

    claim_and_publish(&strict, "a", "acme", "1.0.0");
    claim_and_publish(&strict, "b", "bcme", "1.0.0");
    // The publish waited for both witnesses: quorum 2 of 2 passes at once.
    let out = pull(&strict, "a", "acme:hello@1.0.0");
    assert!(out.status.success(), "{}", text(&out));
    let out = pull(&strict, "b", "bcme:hello@1.0.0");
    assert!(out.status.success(), "{}", text(&out));
    let served =
        String::from_utf8(http(a.port, "GET", "/v1/log/checkpoint", b"").unwrap().1).unwrap();
    let note = Note::parse(served.as_bytes()).unwrap();
    for w in [&w1, &w2] {
        let key = CosignerKey::parse(&w.vkey).unwrap();
        assert!(key.cosigned_time(&note).is_ok(), "{served}");
    }
    assert!(
        a.metrics()
            .contains("gridreg_witness_lag_entries{witness=\"w1.test+")
    );

    // One witness down; the log grows past what it cosigned.
    drop(w2_proc.take());
    publish(&strict, "a", "acme", "1.1.0");
    let out = pull(&strict, "a", "acme:hello@1.1.0");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("verification failed at check `checkpoint`"),
        "{t}"
    );
    assert!(t.contains("witness quorum not met"), "{t}");
    assert!(t.contains("cosigned by: w1.test+"), "{t}");
    assert!(t.contains("no cosignature by w2.test+"), "{t}");
    let out = pull(&lenient, "a", "acme:hello@1.1.0");
    assert!(out.status.success(), "{}", text(&out));
    eventually(10, "the registry to report the witness failing", || {
        a.metrics()
            .contains("gridreg_witness_failing{witness=\"w2.test+")
            && a.metrics().lines().any(|l| {
                l.starts_with("gridreg_witness_failing{witness=\"w2.test+") && l.ends_with(" 1")
            })
    });

    // The log page says which witness lags and why.
    let (status, page) = http(a.port, "GET", "/log", b"").unwrap();
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("<h2>Witnesses</h2>"), "{page}");
    assert!(
        page.contains("w2.test+") && page.contains("failed: "),
        "{page}"
    );

    // Back up: it catches up from the size it holds (a 409 teaches the registry which) and
    // the strict client passes again.
    let _w2 = w2.start(&logs);
    eventually(90, "witness 2 to cosign the newest checkpoint", || {
        let served =
            String::from_utf8(http(a.port, "GET", "/v1/log/checkpoint", b"").unwrap().1).unwrap();
        let note = Note::parse(served.as_bytes()).unwrap();
        CosignerKey::parse(&w2.vkey)
            .unwrap()
            .cosigned_time(&note)
            .is_ok()
    });
    let out = pull(&strict, "a", "acme:hello@1.1.0");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_split_view_is_caught_by_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = Witness::new(d, "w.test");
    let honest = Registry::new(d, "honest", "split.test/log");
    let other = honest.fork(d, "other");
    let _w = w.start(&[&honest.log_flag()]);
    let _honest = honest.start(&[&w]);

    let alice = client(d, "alice");
    add(&alice, "r", &honest, &[&w], Some(1));
    claim_and_publish(&alice, "r", "acme", "1.0.0");
    let out = pull(&alice, "r", "acme:hello@1.0.0");
    assert!(out.status.success(), "{}", text(&out));

    // The same log key over other data: a longer history in which acme is someone else's.
    let _other = other.start(&[&w]);
    let bob = client(d, "bob");
    add(&bob, "r", &other, &[&w], Some(1));
    claim_and_publish(&bob, "r", "acme", "1.0.0");
    publish(&bob, "r", "acme", "2.0.0");
    // Bob never saw alice's view; the witness did, and did not cosign this one.
    let out = pull(&bob, "r", "acme:hello@2.0.0");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("verification failed at check `checkpoint`"),
        "{t}"
    );
    assert!(t.contains("no cosignature by w.test+"), "{t}");
    // The forked registry says why in its metrics, and the witness kept the evidence.
    assert!(
        other
            .metrics()
            .lines()
            .any(|l| l.starts_with("gridreg_witness_failing{") && l.ends_with(" 1")),
        "{}",
        other.metrics()
    );
    let url = format!("sqlite://{}", w.data.join("witness.db").display());
    let evidence: i64 = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            let n =
                sqlx::query_scalar("SELECT count(*) FROM evidence WHERE origin = 'split.test/log'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            pool.close().await;
            n
        });
    assert!(evidence >= 1, "the witness kept no evidence of the fork");
    // Alice's view is still the witnessed one.
    let out = pull(&alice, "r", "acme:hello@1.0.0");
    assert!(out.status.success(), "{}", text(&out));
}

/// A log made in the test, signing its own checkpoints.
struct TestLog {
    key: SignerKey,
    stored: Vec<Hash>,
    size: u64,
}

impl TestLog {
    fn new(key: SignerKey, salt: u8, n: u64) -> TestLog {
        let mut log = TestLog {
            key,
            stored: Vec::new(),
            size: 0,
        };
        log.grow(salt, n);
        log
    }

    fn grow(&mut self, salt: u8, n: u64) {
        let leaves: Vec<Hash> = (self.size..self.size + n)
            .map(|i| {
                let mut b = i.to_be_bytes().to_vec();
                b.push(salt);
                leaf_hash(&b)
            })
            .collect();
        let more = append_leaves(self.size, &leaves, &self.stored).unwrap();
        self.stored.extend(more);
        self.size += n;
    }

    fn root(&self, size: u64) -> Hash {
        tree_hash(size, &self.stored).unwrap()
    }

    /// The add-checkpoint body for size `size` from `old`.
    fn body(&self, old: u64, size: u64) -> String {
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            prove_consistency(size, old, &self.stored).unwrap()
        };
        let note = Checkpoint::new(self.key.name(), size, self.root(size))
            .sign(&[&self.key])
            .unwrap()
            .note;
        AddCheckpoint::body(old, &proof, &note)
    }
}

#[test]
fn the_witness_survives_kill_9_without_cosigning_two_roots() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = Witness::new(d, "crash.test");
    let key = SignerKey::from_seed("crash.test/log", &[5; 32]).unwrap();
    let log_flag = format!("crash.test/log={}", key.verifier());
    let honest = {
        let mut h = TestLog::new(key.clone(), 0, 1);
        h.grow(0, 4000);
        std::sync::Arc::new(h)
    };
    let fork = {
        let mut f = TestLog::new(key.clone(), 0, 1);
        f.grow(1, 4000);
        std::sync::Arc::new(f)
    };
    let cosigner = CosignerKey::parse(&w.vkey).unwrap();

    for round in 0..3u64 {
        let proc = w.start(&[&log_flag]);
        if round == 0 {
            // The honest log reaches the witness first; the fork (diverging at leaf 1) can then
            // never extend what the witness holds.
            let (status, answer) = http(
                w.port,
                "POST",
                "/add-checkpoint",
                honest.body(0, 10).as_bytes(),
            )
            .unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        }
        // Four threads race checkpoints up the honest log (each learns the witness's size from
        // 409s) while a fifth offers the fork; the witness is killed mid-flight.
        let port = w.port;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..5u64 {
            let (honest, fork, stop) = (honest.clone(), fork.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut acked: Vec<(u64, Hash)> = Vec::new();
                let mut old = 0u64;
                let mut size = 1 + t + round * 1000;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && size <= 4000 {
                    let log = if t == 4 { &fork } else { &honest };
                    let body = log.body(old, size.max(old));
                    let Some((status, answer)) =
                        http(port, "POST", "/add-checkpoint", body.as_bytes())
                    else {
                        break;
                    };
                    match status {
                        200 => {
                            acked.push((size.max(old), log.root(size.max(old))));
                            old = size.max(old);
                            size += 7;
                        }
                        409 => {
                            old = String::from_utf8_lossy(&answer).trim().parse().unwrap();
                            if old > size {
                                size = old;
                            }
                        }
                        _ => size += 1,
                    }
                }
                (t, acked)
            }));
        }
        std::thread::sleep(Duration::from_millis(300 + 200 * round));
        // kill -9: no shutdown, no chance to flush.
        drop(proc);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut max_acked = 0;
        for th in threads {
            let (t, acked) = th.join().unwrap();
            if t == 4 {
                assert!(acked.is_empty(), "the witness cosigned the fork: {acked:?}");
            } else {
                for (s, r) in &acked {
                    assert_eq!(*r, honest.root(*s));
                }
                max_acked = max_acked.max(acked.iter().map(|a| a.0).max().unwrap_or(0));
            }
        }
        // Restart: the witness holds at least what it acknowledged, and an honest root.
        let _proc = w.start(&[&log_flag]);
        let (status, answer) = http(
            w.port,
            "POST",
            "/add-checkpoint",
            honest.body(0, 1).as_bytes(),
        )
        .unwrap();
        let held: u64 = match status {
            409 => String::from_utf8_lossy(&answer).trim().parse().unwrap(),
            200 => 1,
            s => panic!("{s}: {}", String::from_utf8_lossy(&answer)),
        };
        assert!(
            held >= max_acked,
            "round {round}: holds {held} after acknowledging {max_acked}"
        );
        // The same size again is cosigned only with the honest root; the fork's is refused.
        let (status, answer) = http(
            w.port,
            "POST",
            "/add-checkpoint",
            honest.body(held, held).as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let line = String::from_utf8(answer).unwrap();
        let note_text = Checkpoint::new("crash.test/log", held, honest.root(held))
            .sign(&[&key])
            .unwrap()
            .note;
        let note = Note::parse(format!("{note_text}{line}").as_bytes()).unwrap();
        assert!(cosigner.cosigned_time(&note).is_ok());
        if held > 1 {
            let (status, _) = http(
                w.port,
                "POST",
                "/add-checkpoint",
                fork.body(held, held).as_bytes(),
            )
            .unwrap();
            assert_eq!(status, 409, "a second root at size {held}");
        }
    }
}

#[test]
fn log_monitor_reads_the_log_through_tiles_and_catches_a_bad_tile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let reg = Registry::new(d, "tiles", "tiles.test/log");
    let _r = reg.start(&[]);
    let home = client(d, "home");
    add(&home, "r", &reg, &[], None);
    claim_and_publish(&home, "r", "acme", "1.0.0");
    publish(&home, "r", "acme", "1.1.0");
    let out = ok(&home, &["log", "monitor", "--tiles", "--registry", "r"]);
    assert!(
        out.contains("tiles and entry bundles, every one checked"),
        "{out}"
    );
    assert!(out.contains("no findings"), "{out}");

    // A mirror that serves one level-0 tile with a hash changed.
    let proxy = HostileProxy::start(reg.port);
    let mirror = client(d, "mirror");
    let through_proxy = Registry {
        data: reg.data.clone(),
        port: proxy.port,
        origin: reg.origin.clone(),
        log_key: reg.log_key.clone(),
    };
    add(&mirror, "r", &through_proxy, &[], None);
    proxy.set(|line, mut a| {
        if line.starts_with("GET /tile/0/") && a.status == 200 {
            a.body[5] ^= 1;
        }
        a
    });
    let out = gridreg(&mirror, &["log", "monitor", "--tiles", "--registry", "r"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is not the one computed from the entries below it")
            || text(&out).contains("tile/0/000"),
        "{}",
        text(&out)
    );
    // Honest again: the same mirror passes.
    proxy.honest();
    let out = gridreg(&mirror, &["log", "monitor", "--tiles", "--registry", "r"]);
    assert!(out.status.success(), "{}", text(&out));
}
