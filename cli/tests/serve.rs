//! `gridreg serve` as a real process: SIGKILL during a stream of publishes, then a restart whose
//! log must be consistent with every checkpoint seen before the crash and hold every
//! acknowledged publish; SIGTERM stops cleanly; `serve token` works on the data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridreg_protocol::api::decode_hashes;
use gridreg_protocol::{Digest, SignedCheckpoint, SignerKey, merkle};

const ORIGIN: &str = "crash.test/log";

mod common;
use common::{claim, fixture_bytes as fixture, free_port, http, json, log_key, next_prev, release};

fn start(data: &Path, port: u16) -> Child {
    common::start_serve(data, port, ORIGIN)
}

struct Seen {
    checkpoints: Vec<String>,
    acked: Vec<(u64, String)>,
}

#[test]
fn kill_9_during_publishes_keeps_every_served_checkpoint_and_ack() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = start(&data, port);
    let log_key = log_key(port);

    let alice = Arc::new(SignerKey::generate("alice").unwrap());
    let claim = claim(&alice, "acme");
    assert_eq!(
        http(port, "POST", "/v1/records", claim.as_bytes())
            .unwrap()
            .0,
        200
    );
    let hello = Arc::new(fixture("hello.wasm"));
    let put = format!("/v1/content/{}", Digest::of(&hello));
    assert_eq!(http(port, "PUT", &put, &hello).unwrap().0, 201);

    let seen = Arc::new(Mutex::new(Seen {
        checkpoints: Vec::new(),
        acked: Vec::new(),
    }));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (seen, alice, hello) = (seen.clone(), alice.clone(), hello.clone());
        workers.push(std::thread::spawn(move || {
            // Each worker publishes its own package, each release naming the one before.
            let package = format!("acme:w{w}");
            let mut prev = gridreg_protocol::Prev::None;
            for i in 0.. {
                let leaf = release(prev, &alice, &package, &format!("1.{i}.0"), &hello);
                let Some((status, body)) = http(port, "POST", "/v1/records", leaf.as_bytes())
                else {
                    return;
                };
                if status != 200 {
                    return;
                }
                let j = json(&body);
                prev = next_prev(j["index"].as_u64().unwrap(), &leaf);
                let mut s = seen.lock().unwrap();
                s.acked.push((j["index"].as_u64().unwrap(), leaf));
                s.checkpoints
                    .push(j["checkpoint"].as_str().unwrap().to_string());
                drop(s);
                if let Some((200, cp)) = http(port, "GET", "/v1/log/checkpoint", b"") {
                    seen.lock()
                        .unwrap()
                        .checkpoints
                        .push(String::from_utf8(cp).unwrap());
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    assert!(
        seen.acked.len() > 10,
        "only {} publishes before the kill",
        seen.acked.len()
    );

    let mut server = start(&data, port);
    let (status, cp) = http(port, "GET", "/v1/log/checkpoint", b"").unwrap();
    assert_eq!(status, 200);
    let now = SignedCheckpoint::verify(&cp, ORIGIN, &log_key).unwrap();
    // Every checkpoint served before the crash is a prefix of the tree after it.
    for text in &seen.checkpoints {
        let old = SignedCheckpoint::verify(text.as_bytes(), ORIGIN, &log_key).unwrap();
        assert!(
            old.size() <= now.size(),
            "served size {} > restarted size {}",
            old.size(),
            now.size()
        );
        if old.size() == now.size() {
            assert_eq!(old.root(), now.root());
            continue;
        }
        let path = format!(
            "/v1/log/proof/consistency?from={}&to={}",
            old.size(),
            now.size()
        );
        let p = json(&http(port, "GET", &path, b"").unwrap().1);
        let hashes: Vec<String> = serde_json::from_value(p["hashes"].clone()).unwrap();
        merkle::verify_consistency(
            &decode_hashes(&hashes).unwrap(),
            now.size(),
            now.root(),
            old.size(),
            old.root(),
        )
        .unwrap();
    }
    // Every acknowledged publish is in the log at its index, with the same bytes.
    for (index, leaf) in &seen.acked {
        let path = format!("/v1/log/proof/inclusion?index={index}&size={}", now.size());
        let p = json(&http(port, "GET", &path, b"").unwrap().1);
        let hashes: Vec<String> = serde_json::from_value(p["hashes"].clone()).unwrap();
        merkle::verify_inclusion(
            &decode_hashes(&hashes).unwrap(),
            now.size(),
            now.root(),
            *index,
            &merkle::leaf_hash(leaf.as_bytes()),
        )
        .unwrap();
    }
    // And the restarted server keeps appending on the same tree.
    let leaf = release(
        gridreg_protocol::Prev::None,
        &alice,
        "acme:after",
        "1.0.0",
        &hello,
    );
    let (status, body) = http(port, "POST", "/v1/records", leaf.as_bytes()).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["index"].as_u64().unwrap(), now.size());

    // SIGTERM stops it cleanly.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "exit after SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn token_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gridreg"))
            .arg("serve")
            .args(args)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    let out = run(&[
        "token",
        "create",
        "--scope",
        "publish",
        "--namespace",
        "acme",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert!(token.starts_with("grt_"), "{token}");
    let id = token.trim().split('_').nth(1).unwrap().to_string();
    let list = String::from_utf8(run(&["token", "list"]).stdout).unwrap();
    assert!(
        list.contains(&id) && list.contains("publish\tacme") && list.contains("live"),
        "{list}"
    );
    // The secret is never listed.
    assert!(!list.contains(token.trim().rsplit('_').next().unwrap()));
    assert!(run(&["token", "revoke", &id]).status.success());
    assert!(
        String::from_utf8(run(&["token", "list"]).stdout)
            .unwrap()
            .contains("revoked")
    );
    let again = run(&["token", "revoke", &id]);
    assert_eq!(again.status.code(), Some(2));
    let bad = run(&["token", "create", "--scope", "root"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn logs_to_a_pipe_are_plain_text() {
    use std::io::BufRead as _;
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(["serve", "--data"])
        .arg(data.path())
        .args(["--addr", &format!("127.0.0.1:{}", free_port())])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut seen = String::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("serving") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("serving"), "{seen}");
    assert!(
        !seen.contains('\u{1b}'),
        "ANSI escape codes in piped logs: {seen:?}"
    );
}
