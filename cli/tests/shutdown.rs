//! Graceful shutdown of `gridreg serve` as a real process: SIGTERM while several clients stream
//! publishes (and while one publish is still uploading its body) must let every accepted request
//! finish, answer no 5xx, exit with status 0, and leave every acknowledged publish in the log
//! that a restart on the same data directory serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridreg_protocol::api::decode_hashes;
use gridreg_protocol::{Digest, SignedCheckpoint, SignerKey, merkle};

const ORIGIN: &str = "shutdown.test/log";

mod common;
use common::{
    claim, fixture_bytes as fixture, free_port, http, json, log_key, next_prev, read_answer,
    release, request_head,
};

fn start(data: &Path, port: u16) -> Child {
    common::start_serve(data, port, ORIGIN)
}

fn sigterm(server: &Child) {
    let pid = server.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success(), "kill -TERM {pid}: {status}");
}

/// Waits for the process to exit; kills and reaps it (then fails) if it does not in time.
fn wait_exit(server: &mut Child, within: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > within {
            let _ = server.kill();
            let _ = server.wait();
            panic!("the server did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the publishing clients saw.
#[derive(Default)]
struct Seen {
    /// (index, leaf, checkpoint) of every 200.
    acked: Vec<(u64, String, String)>,
    /// Every non-200 answer: (status, body).
    refused: Vec<(u16, String)>,
    /// Requests whose connection was refused (the listener was closed).
    refused_connect: usize,
    /// Leaves of requests connected but closed without an answer. Only a connection still in
    /// the listen backlog when the listener closed may end so; one the server had read would
    /// be an in-flight publish that shutdown dropped.
    dropped: Vec<String>,
}

#[test]
fn sigterm_finishes_in_flight_publishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = start(&data, port);
    let log_key = log_key(port);

    let alice = Arc::new(SignerKey::generate("alice").unwrap());
    let claim = claim(&alice, "acme");
    let (status, body) = http(port, "POST", "/v1/records", claim.as_bytes()).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let hello = Arc::new(fixture("hello.wasm"));
    let put = format!("/v1/content/{}", Digest::of(&hello));
    assert_eq!(http(port, "PUT", &put, &hello).unwrap().0, 201);

    // A publish whose head is sent now and whose body only after SIGTERM: a request that is
    // certainly in flight when shutdown starts.
    let slow_leaf = release(
        gridreg_protocol::Prev::None,
        &alice,
        "acme:slow",
        "1.0.0",
        &hello,
    );
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(request_head("POST", "/v1/records", slow_leaf.len()).as_bytes())
        .unwrap();
    // Also half the body, so the handler is reading it.
    let (first, rest) = slow_leaf.as_bytes().split_at(slow_leaf.len() / 2);
    slow.write_all(first).unwrap();
    slow.flush().unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (seen, alice, hello) = (seen.clone(), alice.clone(), hello.clone());
        workers.push(std::thread::spawn(move || {
            // Each worker publishes its own package, each release naming the one before.
            let package = format!("acme:w{w}");
            let mut prev = gridreg_protocol::Prev::None;
            for i in 0.. {
                let leaf = release(prev, &alice, &package, &format!("1.{i}.0"), &hello);
                let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
                    // The listener is closed: the server is shutting down.
                    seen.lock().unwrap().refused_connect += 1;
                    return;
                };
                conn.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let sent = conn
                    .write_all(request_head("POST", "/v1/records", leaf.len()).as_bytes())
                    .and_then(|()| conn.write_all(leaf.as_bytes()));
                let Some((status, body)) = sent.ok().and_then(|()| read_answer(&mut conn)) else {
                    seen.lock().unwrap().dropped.push(leaf);
                    return;
                };
                let mut s = seen.lock().unwrap();
                if status == 200 {
                    let j = json(&body);
                    prev = next_prev(j["index"].as_u64().unwrap(), &leaf);
                    s.acked.push((
                        j["index"].as_u64().unwrap(),
                        leaf,
                        j["checkpoint"].as_str().unwrap().to_string(),
                    ));
                } else {
                    s.refused
                        .push((status, String::from_utf8_lossy(&body).to_string()));
                    return;
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let acked_before_term = seen.lock().unwrap().acked.len();
    sigterm(&server);
    // The slow publisher finishes its upload after shutdown began.
    std::thread::sleep(Duration::from_millis(300));
    slow.write_all(rest).unwrap();
    let slow_answer = read_answer(&mut slow);
    let (exit, took) = wait_exit(&mut server, Duration::from_secs(20));
    for w in workers {
        w.join().unwrap();
    }
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();

    assert!(exit.success(), "exit after SIGTERM: {exit}");
    assert!(
        seen.refused.iter().all(|(status, _)| *status < 500),
        "5xx answers during shutdown: {:?}",
        seen.refused
    );
    assert!(
        seen.refused.is_empty(),
        "publishes refused during shutdown (expected each accepted one to finish): {:?}",
        seen.refused
    );
    assert!(
        acked_before_term > 10,
        "only {acked_before_term} publishes before SIGTERM"
    );
    let (slow_status, slow_body) = slow_answer.unwrap_or_else(|| {
        panic!("the publish uploading when SIGTERM came got no answer (exit took {took:?})")
    });
    assert_eq!(
        slow_status,
        200,
        "the in-flight publish: {}",
        String::from_utf8_lossy(&slow_body)
    );
    let slow_json = json(&slow_body);
    let mut acked = seen.acked;
    acked.push((
        slow_json["index"].as_u64().unwrap(),
        slow_leaf,
        slow_json["checkpoint"].as_str().unwrap().to_string(),
    ));
    eprintln!(
        "{} publishes acknowledged ({acked_before_term} before SIGTERM); after it {} connections refused, {} connected but unanswered; exit 0 {took:?} after the in-flight answer",
        acked.len(),
        seen.refused_connect,
        seen.dropped.len()
    );

    // Restart on the same data directory: every acknowledged publish is there, at its index,
    // with the same bytes, under a checkpoint consistent with every one the clients were given.
    let mut server = start(&data, port);
    let (status, cp) = http(port, "GET", "/v1/log/checkpoint", b"").unwrap();
    assert_eq!(status, 200);
    let now = SignedCheckpoint::verify(&cp, ORIGIN, &log_key).unwrap();
    let mut indexes: Vec<u64> = acked.iter().map(|(i, _, _)| *i).collect();
    indexes.sort_unstable();
    indexes.dedup();
    assert_eq!(
        indexes.len(),
        acked.len(),
        "two publishes acknowledged at one index"
    );
    for (index, leaf, checkpoint) in &acked {
        assert!(
            *index < now.size(),
            "index {index} beyond restarted size {}",
            now.size()
        );
        let path = format!("/v1/log/entries?start={index}&end={}", index + 1);
        let entries = json(&http(port, "GET", &path, b"").unwrap().1);
        assert_eq!(
            entries["entries"][0]["body"].as_str(),
            Some(leaf.as_str()),
            "entry {index} after restart"
        );
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
        let old = SignedCheckpoint::verify(checkpoint.as_bytes(), ORIGIN, &log_key).unwrap();
        if old.size() == now.size() {
            assert_eq!(old.root(), now.root());
        } else {
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
    }
    // A request that got no answer was never read, so its record is not in the log.
    let all = json(
        &http(
            port,
            "GET",
            &format!("/v1/log/entries?start=0&end={}", now.size()),
            b"",
        )
        .unwrap()
        .1,
    );
    let bodies: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies.len() as u64,
        now.size(),
        "one page holds the whole log"
    );
    for leaf in &seen.dropped {
        assert!(
            !bodies.contains(&leaf.as_str()),
            "a publish that got no answer during shutdown is in the log: shutdown dropped an in-flight request"
        );
    }
    sigterm(&server);
    let (exit, _) = wait_exit(&mut server, Duration::from_secs(20));
    assert!(exit.success(), "second exit after SIGTERM: {exit}");
}
