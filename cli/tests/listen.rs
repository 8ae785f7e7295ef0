//! `gridreg run --listen` end to end: the real binary serves the example HTTP handlers on
//! loopback and real requests go through it: fresh instances, the time budget and memory cap,
//! the concurrency cap, the policy gate before start, graceful shutdown, and the composed
//! gateway (Rust gateway + Rust authenticator + a Rust or Python converter).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Running;

fn fixture(name: &str) -> String {
    format!(
        "{}/../examples/wasm/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// One compiled-code cache for this file, so each fixture is compiled once.
fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("gridreg-listen-cache")
}

fn gridreg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(args)
        .env("GRIDREG_CACHE_DIR", cache())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A running `gridreg run --listen`: its address and every stderr line so far.
struct Server {
    child: Running,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `gridreg run FILE --listen 127.0.0.1:0 ARGS...` and waits for its "serving" line.
    fn start(file: &str, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridreg"))
            .arg("run")
            .arg(file)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("GRIDREG_CACHE_DIR", cache())
            .env("NO_COLOR", "1")
            .env("GRIDREG_TEST_SECRET", "leaked")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split(" on http://").nth(1) {
                        let _ = tx.send(rest.trim_end_matches(|c| c != '/').to_string());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        // A Python service compiles for a while on a cold cache.
        let addr = match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the server did not start:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let addr: SocketAddr = addr.split('/').next().unwrap().parse().unwrap();
        Server {
            child: Running(child),
            addr,
            log,
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, &[], b"").expect("an answer")
    }

    /// One request on its own connection; `None` when the server closed or reset it.
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-length: {}\r\nconnection: close\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let (status, body) = common::read_answer(&mut s)?;
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no log line contains {needle:?}:\n{}", self.log());
    }

    fn child(&mut self) -> &mut Child {
        &mut self.child.0
    }
}

/// The body every guest failure gets: nothing of the guest's own in it.
const FAILED: &str = "internal server error";

#[test]
fn serves_hello_with_a_fresh_instance_per_request() {
    let server = Server::start(&fixture("http-hello"), &[]);
    assert_eq!(server.get("/"), (200, "hello from gridreg\n".to_string()));
    // Every request is a new instance: a counter in the guest's memory never passes 1.
    for _ in 0..5 {
        assert_eq!(server.get("/count"), (200, "calls: 1\n".to_string()));
    }
    let (status, body) = server
        .request("POST", "/echo", &[], b"a body read to its end")
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "a body read to its end"));
    assert_eq!(server.get("/nowhere").0, 404);
    // One access-log line per request: method, path, status, duration.
    let line = server.wait_log("GET /nowhere 404 ");
    assert!(line.ends_with("ms"), "{line}");
    server.wait_log("POST /echo 200 ");
}

#[test]
fn time_budget_memory_cap_and_traps_end_one_request_not_the_server() {
    let server = Server::start(
        &fixture("http-hello"),
        &["--timeout", "500ms", "--max-memory", "32MiB"],
    );
    let started = Instant::now();
    let (status, body) = server.get("/spin");
    assert_eq!(status, 500, "{body}");
    assert!(body.starts_with(FAILED), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an infinite loop was cut at the budget, not later: {:?}",
        started.elapsed()
    );
    server.wait_log("GET /spin 500");
    assert!(
        server
            .wait_log("GET /spin 500")
            .contains("time budget of 500ms exceeded")
    );
    assert_eq!(server.get("/").0, 200, "the next request succeeds");

    let (status, body) = server.get("/hog");
    assert_eq!(status, 500, "{body}");
    assert!(body.starts_with(FAILED), "{body}");
    assert!(
        server
            .wait_log("GET /hog 500")
            .contains("memory cap reached")
    );
    assert_eq!(server.get("/").0, 200);

    let (status, body) = server.get("/trap");
    assert_eq!(status, 500);
    // The guest's own words (a trap message, wasm backtrace) stay in the log.
    assert!(!body.contains("wasm"), "{body}");
    assert!(server.wait_log("GET /trap 500").contains("trapped"));
    assert_eq!(server.get("/count"), (200, "calls: 1\n".to_string()));
}

#[test]
fn a_guest_blocked_in_a_host_call_is_cut_too() {
    let server = Server::start(&fixture("http-hello"), &["--timeout", "300ms"]);
    let started = Instant::now();
    assert_eq!(server.get("/sleep?ms=10000").0, 500);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(server.wait_log("GET /sleep 500").contains("time budget"));
}

#[test]
fn five_hundred_concurrent_requests_get_200_or_503_never_a_crash() {
    let server = Server::start(
        &fixture("http-hello"),
        &["--max-concurrency", "16", "--queue-timeout", "100ms"],
    );
    let addr = server.addr;
    let statuses: Vec<Option<u16>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..500)
            .map(|_| {
                s.spawn(move || {
                    let mut c = TcpStream::connect(addr).ok()?;
                    c.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
                    c.write_all(
                        format!(
                            "GET /sleep?ms=100 HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .ok()?;
                    common::read_answer(&mut c).map(|(st, _)| st)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|s| **s == Some(200)).count();
    let busy = statuses.iter().filter(|s| **s == Some(503)).count();
    assert_eq!(ok + busy, 500, "only 200 and 503: {statuses:?}");
    // 500 requests of 100 ms on 16 instances take over 3 s; a 100 ms queue cannot hold them all.
    assert!(ok >= 16 && busy > 0, "{ok} answered, {busy} refused");
    assert_eq!(server.get("/").0, 200, "the server is still up");
}

#[test]
fn an_import_the_policy_denies_stops_the_server_before_it_starts() {
    // The hello handler imports only what wasi:http/proxy offers, so http-proxy serves it...
    let server = Server::start(&fixture("http-hello"), &["--policy", "http-proxy"]);
    assert_eq!(server.get("/").0, 200);
    drop(server);
    // ...and a policy that denies one of those imports (the clock) never starts it.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("no-clocks.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"no-clocks\"\nmode = \"enforce\"\n\n[capabilities]\n\
         allow = [\"io\", \"http-outgoing\", \"stdio\"]\ndeny = [\"clocks\"]\ndefault = \"deny\"\n",
    )
    .unwrap();
    let out = gridreg(&[
        "run",
        &fixture("http-hello"),
        "--listen",
        "127.0.0.1:0",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refuses to run"), "{err}");
    assert!(err.contains("wasi:clocks/monotonic-clock@0.2.12"), "{err}");
    assert!(!err.contains("serving"), "{err}");
}

#[test]
fn a_component_with_no_handler_and_no_run_is_exit_2() {
    let out = gridreg(&["run", &fixture("converter"), "--listen", "127.0.0.1:0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("does not export wasi:http/incoming-handler@0.2.x"),
        "{err}"
    );
    assert!(err.contains("neon:cybergrid/converter@0.1.0"), "{err}");
    // Without --listen it is neither a command nor a handler.
    let out = gridreg(&["run", &fixture("converter")]);
    assert_eq!(out.status.code(), Some(2));
    // Flags that make no sense for a server are refused, not ignored.
    let out = gridreg(&[
        "run",
        &fixture("http-hello"),
        "--listen",
        "127.0.0.1:0",
        "--",
        "arg",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = gridreg(&["run", &fixture("http-hello"), "--listen", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected HOST:PORT"));
}

#[test]
fn a_handler_without_listen_is_served_on_the_default_address() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(["run", &fixture("http-hello")])
        .env("GRIDREG_CACHE_DIR", cache())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // Either it serves there, or the port is taken on this machine and it says so.
    assert!(first.contains("127.0.0.1:8080"), "{first}");
}

#[test]
fn sigterm_answers_the_requests_in_flight_then_exits_0() {
    let mut server = Server::start(&fixture("http-hello"), &["--shutdown-timeout", "10s"]);
    let addr = server.addr;
    let in_flight = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(
            format!("GET /sleep?ms=1500 HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        common::read_answer(&mut c)
    });
    // Let the request reach the guest before the signal.
    std::thread::sleep(Duration::from_millis(400));
    let pid = server.child().id();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let answer = in_flight.join().unwrap();
    assert_eq!(
        answer.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())),
        Some((200, "slept 1500 ms\n".to_string())),
        "{}",
        server.log()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = server.child().try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("shutting down"));
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

/// `Authorization: Basic` for `user:token`.
fn basic(user_token: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_token)
    )
}

/// Composes the gateway with the authenticator and `converter`, into `dir`.
fn compose_gateway(dir: &Path, converter: &str) -> String {
    let out = dir.join(format!("service-{converter}.wasm"));
    let o = gridreg(&[
        "compose",
        &fixture("gateway"),
        "--plug",
        &fixture("authenticator"),
        "--plug",
        &fixture(converter),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out.to_str().unwrap().to_string()
}

/// The service's policy: http-proxy's classes plus the environment the authenticator reads.
fn gateway_policy() -> String {
    format!(
        "{}/../examples/gateway/policy.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A one-answer HTTP server on loopback, the upstream `/fetch` reaches when allowed.
fn upstream() -> (u16, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nupstream\n",
            );
        }
    });
    (port, h)
}

#[test]
fn the_composed_gateway_authenticates_converts_and_keeps_to_its_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let service = compose_gateway(dir.path(), "converter");
    let (up, up_thread) = upstream();
    let allowed = format!("127.0.0.1:{up}");
    let server = Server::start(
        &service,
        &[
            "--env",
            "AUTH_TOKEN=s3cret",
            "--allow-host",
            &allowed,
            "--policy",
            &gateway_policy(),
        ],
    );
    let good = basic("alice:s3cret");
    let path = "/convert?amount=100&from=EUR&to=USD";
    let (status, body) = server
        .request("GET", path, &[("authorization", &good)], b"")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"], serde_json::json!(108.70));
    assert_eq!(v["from"], "EUR");

    let bad = basic("alice:wrong");
    assert_eq!(
        server
            .request("GET", path, &[("authorization", &bad)], b"")
            .unwrap()
            .0,
        401
    );
    assert_eq!(server.get(path).0, 401, "no credentials");
    assert_eq!(server.get("/healthz").0, 200);

    // Outgoing HTTP: the allowed upstream answers; any other host is refused unsent.
    let fetch = format!("/fetch?url=http://127.0.0.1:{up}/x");
    let (status, body) = server
        .request("GET", &fetch, &[("authorization", &good)], b"")
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "upstream status 200\nupstream\n")
    );
    up_thread.join().unwrap();
    let other = common::free_port();
    let fetch = format!("/fetch?url=http://127.0.0.1:{other}/x");
    let (status, body) = server
        .request("GET", &fetch, &[("authorization", &good)], b"")
        .unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    server.wait_log(&format!(
        "an outgoing HTTP request to 127.0.0.1:{other} was denied"
    ));
}

#[test]
fn the_gateway_with_the_python_converter_serves_only_as_the_stubbed_build() {
    let dir = tempfile::tempdir().unwrap();
    let policy = gateway_policy();
    // CPython's runtime imports sockets and files: the service's policy refuses that build.
    let full = compose_gateway(dir.path(), "converter-py");
    let out = gridreg(&["run", &full, "--listen", "127.0.0.1:0", "--policy", &policy]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("wasi:sockets/tcp"), "{err}");
    assert!(err.contains("wasi:filesystem/types"), "{err}");

    // The stubbed build imports nothing, so the service needs only what the gateway and the
    // authenticator need; it converts exactly as the Rust converter does.
    let stub = compose_gateway(dir.path(), "converter-py-stub");
    let server = Server::start(&stub, &["--policy", &policy, "--env", "AUTH_TOKEN=s3cret"]);
    let good = basic("bob:s3cret");
    let (status, body) = server
        .request(
            "GET",
            "/convert?amount=100&from=EUR&to=USD",
            &[("authorization", &good)],
            b"",
        )
        .unwrap();
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["result"], serde_json::json!(108.70));
    let (status, _) = server
        .request(
            "GET",
            "/convert?amount=1&from=EUR&to=XXX",
            &[("authorization", &good)],
            b"",
        )
        .unwrap();
    assert_eq!(status, 422);
}

#[test]
fn the_python_components_audit_lists_what_wasm_tools_shows() {
    // examples/wasm/converter-py.imports.txt is `wasm-tools component wit` output's import lines,
    // written by examples/build-python.sh when it built the component.
    let expected: Vec<String> = std::fs::read_to_string(format!(
        "{}/../examples/wasm/converter-py.imports.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(expected.len(), 25);
    let out = gridreg(&["inspect", &fixture("converter-py"), "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut got: Vec<String> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn a_request_that_outlives_the_shutdown_deadline_does_not_hold_the_exit() {
    let mut server = Server::start(
        &fixture("http-hello"),
        &["--timeout", "60s", "--shutdown-timeout", "1s"],
    );
    let addr = server.addr;
    let spinning = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(format!("GET /spin HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        common::read_answer(&mut c)
    });
    std::thread::sleep(Duration::from_millis(400));
    let pid = server.child().id();
    let sent = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = server.child().try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM with a 1 s deadline"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        server.log().contains("the shutdown deadline passed"),
        "{}",
        server.log()
    );
    // The spinning request's connection is closed, not answered by the guest.
    assert_eq!(spinning.join().unwrap(), None);
}

/// Clients that send half a request head, or a head and half a body, and then nothing: the
/// heads are closed after the 10 s header deadline, a stalled body ends with its request's
/// time budget (a 500, not a held slot), and neither keeps other requests from an answer.
#[test]
fn slow_clients_are_cut_and_never_starve_the_others() {
    let server = Server::start(
        &fixture("http-hello"),
        &["--timeout", "2s", "--max-concurrency", "4"],
    );
    let addr = server.addr;
    let started = Instant::now();
    let mut heads: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nx-slow: ")
                .unwrap();
            s
        })
        .collect();
    let stalled: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                s.write_all(
                    format!("POST /echo HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1000\r\n\r\n")
                        .as_bytes(),
                )
                .unwrap();
                s.write_all(b"ten bytes.").unwrap();
                let sent = Instant::now();
                let answer = common::read_answer(&mut s);
                (answer, sent.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // With 300 heads open and 2 of 4 slots held by stalled bodies, others are answered at once.
    for _ in 0..5 {
        let asked = Instant::now();
        let (status, body) = server.get("/");
        assert_eq!(status, 200, "{body}\n{}", server.log());
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "a request took {:?} beside the slow clients",
            asked.elapsed()
        );
    }
    // The stalled bodies end with the 2 s budget (plus the 1 s grace for a guest blocked in a
    // host call): a 500 with the fixed body, the reason in the log.
    for t in stalled {
        let (answer, took) = t.join().unwrap();
        let (status, body) = answer.expect("the stalled request was answered");
        assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).starts_with(FAILED));
        assert!(took < Duration::from_secs(10), "answered after {took:?}");
    }
    assert!(server.log().contains("POST /echo 500"), "{}", server.log());

    // Every half-sent head is closed by the server after the header deadline.
    for s in &mut heads {
        let left = Duration::from_secs(16).saturating_sub(started.elapsed());
        assert!(
            common::closed_by_server(s, left.max(Duration::from_millis(100))),
            "a half-sent head was still open {:?} after it started",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "closed before the header deadline"
    );
    let (status, _) = server.get("/");
    assert_eq!(status, 200);
}
