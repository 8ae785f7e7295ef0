//! Clients that hold connections without finishing a request, against a real `gridreg serve`:
//! they are closed after the head deadline, they cannot keep `/healthz` from answering, and
//! they cannot keep the server from stopping past its shutdown deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::{closed_by_server, free_port, http, start_serve_with};

const ORIGIN: &str = "slow.test/log";

/// Opens `n` connections that each send half a request head and then nothing.
fn half_heads(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET /v1/log/checkpoint HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
                .unwrap();
            s
        })
        .collect()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn half_sent_heads_are_closed_and_never_starve_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server(start_serve_with(
        dir.path(),
        port,
        ORIGIN,
        &["--read-timeout", "1s", "--max-connections", "16"],
    ));
    // Every served slot taken, and some overflow slots.
    let started = Instant::now();
    let mut slow = half_heads(port, 24);
    std::thread::sleep(Duration::from_millis(200));

    // The liveness probe is answered, by the router, while the server is full.
    let (status, body) = http(port, "GET", "/healthz", b"").expect("healthz answered");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("\"ok\""));
    // Anything else is told to come back, not left waiting.
    let (status, body) = http(port, "GET", "/v1/log/checkpoint", b"").expect("answered");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("\"unavailable\""));

    // After the head deadline every slow connection has been closed by the server...
    for s in &mut slow {
        assert!(
            closed_by_server(s, Duration::from_secs(5)),
            "a half-sent head was still open {:?} after it started",
            started.elapsed()
        );
    }
    // ...and the server serves normally again.
    let (status, _) = http(port, "GET", "/v1/log/checkpoint", b"").expect("answered");
    assert_eq!(status, 200);
}

/// An upload that stops sending its body half-way is answered `400` after the read deadline
/// and its connection closed; nothing is stored.
#[test]
fn a_stalled_upload_is_refused_after_the_read_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server(start_serve_with(
        dir.path(),
        port,
        ORIGIN,
        &["--read-timeout", "1s"],
    ));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let path = format!("/v1/content/sha256:{}", "ab".repeat(32));
    s.write_all(
        format!("PUT {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    s.write_all(b"\0asm\x0d\0\x01\0").unwrap();
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("reading the upload"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    let (status, _) = http(port, "GET", &path, b"").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_head_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = Server(start_serve_with(
        dir.path(),
        port,
        ORIGIN,
        &["--read-timeout", "1s"],
    ));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    s.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // The answer is complete; the connection now idles, and must not idle forever.
    assert!(closed_by_server(&mut s, Duration::from_secs(5)));
}

#[test]
fn sigterm_with_stuck_clients_exits_within_the_shutdown_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server(start_serve_with(
        dir.path(),
        port,
        ORIGIN,
        &["--read-timeout", "60s", "--shutdown-timeout", "2s"],
    ));
    let _stuck = half_heads(port, 3);
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM with a 2 s shutdown deadline"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(1500),
        "exited after {took:?}: the stuck requests should have had their 2 s"
    );
    // New connections are refused once it has stopped listening.
    assert!(http(port, "GET", "/healthz", b"").is_none());
}
