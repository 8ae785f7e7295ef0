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
    half_heads_from("127.0.0.1", port, n)
}

/// [`half_heads`] from the loopback address `from` (any of 127.0.0.0/8).
fn half_heads_from(from: &str, port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect_from(from, port);
            s.write_all(b"GET /v1/log/checkpoint HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
                .unwrap();
            s
        })
        .collect()
}

/// A blocking connection to `port` on 127.0.0.1 from the local address `from`.
fn connect_from(from: &str, port: u16) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let s = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(([127, 0, 0, 1], port).into()).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// One `connection: close` GET from the local address `from`: the status and body.
fn get_from(from: &str, port: u16, path: &str) -> (u16, String) {
    let mut s = connect_from(from, port);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(common::request_head("GET", path, 0).as_bytes())
        .unwrap();
    let (status, body) = common::read_answer(&mut s).expect("an answer");
    (status, String::from_utf8_lossy(&body).into_owned())
}

struct Server(Child);

/// A `gridreg serve` with `flags` over a new data dir: the dir, its port, the server.
fn serve(flags: &[&str]) -> (tempfile::TempDir, u16, Server) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server(start_serve_with(dir.path(), port, ORIGIN, flags));
    (dir, port, server)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn half_sent_heads_are_closed_and_never_starve_healthz() {
    let (_dir, port, _server) = serve(&["--read-timeout", "1s", "--max-connections", "16"]);
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

/// One client holding connections open cannot take the served connections from another: past
/// its own cap its connections get the overflow answer while another address is served.
#[test]
fn one_client_cannot_hold_the_connections_of_all() {
    let (_dir, port, _server) = serve(&[
        "--max-connections",
        "16",
        "--max-connections-per-client",
        "4",
    ]);
    // One address holds its share of the served connections with half-sent heads...
    let mut slow = half_heads_from("127.0.0.2", port, 4);
    std::thread::sleep(Duration::from_millis(200));
    // ...so its next request gets the overflow answer, its liveness probe still answered...
    let (status, body) = get_from("127.0.0.2", port, "/v1/log/checkpoint");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"unavailable\""), "{body}");
    let (status, body) = get_from("127.0.0.2", port, "/healthz");
    assert_eq!(status, 200, "{body}");
    // ...and however many more it opens (here more than all served connections together,
    // filling the overflow), other clients are served as usual.
    slow.extend(half_heads_from("127.0.0.2", port, 20));
    std::thread::sleep(Duration::from_millis(200));
    for from in ["127.0.0.1", "127.0.0.3", "127.0.0.4"] {
        let (status, body) = get_from(from, port, "/v1/log/checkpoint");
        assert_eq!(status, 200, "from {from}: {body}");
        let (status, body) = get_from(from, port, "/healthz");
        assert_eq!(status, 200, "from {from}: {body}");
    }
}

/// With no per-client cap (behind a proxy) the same load fills the served connections.
#[test]
fn without_a_per_client_cap_one_address_fills_the_server() {
    let (_dir, port, _server) = serve(&[
        "--max-connections",
        "16",
        "--max-connections-per-client",
        "0",
    ]);
    let _slow = half_heads_from("127.0.0.2", port, 24);
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = get_from("127.0.0.3", port, "/v1/log/checkpoint");
    assert_eq!(status, 503, "{body}");
}

/// An upload that stops sending its body half-way is answered `400` after the read deadline
/// and its connection closed; nothing is stored.
#[test]
fn a_stalled_upload_is_refused_after_the_read_deadline() {
    let (_dir, port, _server) = serve(&["--read-timeout", "1s"]);
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
    let (_dir, port, _server) = serve(&["--read-timeout", "1s"]);
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
    let (_dir, port, mut server) = serve(&["--read-timeout", "60s", "--shutdown-timeout", "2s"]);
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
