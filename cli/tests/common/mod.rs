//! Helpers the process-level CLI tests share: free ports, starting `gridreg serve` and waiting
//! for a child to listen, killing children on drop, a minimal HTTP/1.1 client, signed releases,
//! and the s3s-fs S3 server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gridreg_protocol::{
    Digest, Namespace, NamespaceOp, NamespaceRecord, PackageName, Record, Release, Role, SignerKey,
    Timestamp, VerifierKey,
};

/// Whether the server has closed `s` (read gives end of stream or a reset) within `within`.
pub fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or similar before closing is fine; keep reading to the end.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A port nothing listens on right now, and never handed out before in this process.
///
/// The tests of one binary run in parallel threads, and each lets go of its port before the
/// child process binds it, so the kernel may give the same free port to two tests; one child
/// then fails to bind while the other answers its health check. Remembering what was handed out
/// closes that race within the binary.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until `child` listens on `port`; fails with `what` if it exits or takes over 60 s.
pub fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited ({status}) before listening on {addr}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what} did not listen on {addr} within 60 s");
}

/// A child process, killed (SIGKILL) and reaped on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts s3s-fs on a free port over `root`, with `bucket` created and the given credentials.
/// Returns the process and its endpoint URL. Fails (never skips) when s3s-fs is missing.
pub fn s3fs(root: &Path, bucket: &str, access_key: &str, secret_key: &str) -> (Running, String) {
    let binary = std::env::var_os("GRIDREG_TEST_S3FS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/gridreg-tools/bin/s3s-fs"))
        })
        .unwrap_or_else(|| PathBuf::from("s3s-fs"));
    assert!(
        binary.is_file(),
        "this test needs the s3s-fs server, expected at {} (GRIDREG_TEST_S3FS overrides the \
         path); scripts/test.sh installs it, or run: cargo install --locked s3s-fs@0.14.1 \
         --features binary --root ~/.cache/gridreg-tools",
        binary.display()
    );
    std::fs::create_dir_all(root.join(bucket)).unwrap();
    let port = free_port();
    let mut child = Command::new(&binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", access_key, "--secret-key", secret_key])
        .arg(root)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "s3s-fs");
    (Running(child), format!("http://127.0.0.1:{port}"))
}

/// Starts `gridreg serve` on `data` and `port` with `origin`, and waits until `/healthz` answers.
pub fn start_serve(data: &Path, port: u16, origin: &str) -> Child {
    start_serve_with(data, port, origin, &[])
}

/// [`start_serve`] with more `serve` flags (`--require-token`, ...).
pub fn start_serve_with(data: &Path, port: u16, origin: &str, flags: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(["serve", "--data"])
        .arg(data)
        .args(["--addr", &format!("127.0.0.1:{port}"), "--origin", origin])
        .args(flags)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("gridreg serve exited ({status}) before answering on port {port}");
        }
        if http(port, "GET", "/healthz", b"").is_some_and(|(s, _)| s == 200) {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not come up on port {port}");
}

/// The head of a one-shot HTTP/1.1 request with a body of `len` bytes.
pub fn request_head(method: &str, path: &str, len: usize) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    )
}

/// Reads a whole `connection: close` answer: `None` when the server closed or reset first.
pub fn read_answer(s: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let mut body = out[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Some((status, body))
}

/// A minimal HTTP/1.1 client: one request per connection. `None` when the server is gone.
pub fn http(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(request_head(method, path, body.len()).as_bytes())
        .ok()?;
    s.write_all(body).ok()?;
    read_answer(&mut s)
}

/// Undoes `transfer-encoding: chunked`.
pub fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = b.windows(2).position(|w| w == b"\r\n")?;
        let n = usize::from_str_radix(std::str::from_utf8(&b[..line]).ok()?.trim(), 16).ok()?;
        b = &b[line + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..n)?);
        b = b.get(n + 2..)?;
    }
}

/// Parses a JSON answer body.
pub fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap()
}

/// The bytes of `examples/wasm/NAME`.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../examples/wasm/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The log key the registry on `port` serves (`GET /v1/log/key`).
pub fn log_key(port: u16) -> VerifierKey {
    let (status, body) = http(port, "GET", "/v1/log/key", b"").unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    VerifierKey::parse(String::from_utf8(body).unwrap().trim()).unwrap()
}

/// `owner`'s self-signed claim of namespace `ns`, not claimed before (`prev none`).
pub fn claim(owner: &SignerKey, ns: &str) -> String {
    Record::Namespace(NamespaceRecord {
        namespace: Namespace::parse(ns).unwrap(),
        prev: gridreg_protocol::Prev::None,
        op: NamespaceOp::Claim,
        key: owner.verifier(),
        role: Role::Owner,
        time: Timestamp::now(),
    })
    .sign(&[owner])
    .unwrap()
}

/// A signed release of `package` at `version` for `bytes`, naming `prev` (the head of the
/// package's chain: `Prev::None` for its first release, then what [`next_prev`] says).
pub fn release(
    prev: gridreg_protocol::Prev,
    key: &SignerKey,
    package: &str,
    version: &str,
    bytes: &[u8],
) -> String {
    let audit = gridreg_verifier::audit(bytes).unwrap();
    Record::Release(Release {
        package: PackageName::parse(package).unwrap(),
        prev,
        version: gridreg_protocol::name::parse_version(version).unwrap(),
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        time: Timestamp::now(),
        imports: audit.imports.iter().map(|i| i.name.clone()).collect(),
        exports: audit.exports,
    })
    .sign(&[key])
    .unwrap()
}

/// The `prev` of the record after `leaf`, which the log accepted at `index`.
pub fn next_prev(index: u64, leaf: &str) -> gridreg_protocol::Prev {
    gridreg_protocol::Prev::Entry(gridreg_protocol::Head::of(index, leaf.as_bytes()))
}

/// One answer passing through a [`HostileProxy`].
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// What a hostile proxy does with an answer: `(request line "METHOD /path?query", upstream's
/// answer) -> the answer the client gets`.
pub type Rewrite = Box<dyn FnMut(&str, Answer) -> Answer + Send>;

/// A registry as an attacker in the middle (or a lying mirror) serves it: every request goes to
/// the real registry on `upstream`, and every answer passes through the current rewrite, which
/// the test swaps as it goes. One request per connection, answered with `connection: close`.
pub struct HostileProxy {
    pub port: u16,
    rewrite: std::sync::Arc<std::sync::Mutex<Rewrite>>,
}

impl HostileProxy {
    pub fn start(upstream: u16) -> HostileProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rewrite: std::sync::Arc<std::sync::Mutex<Rewrite>> =
            std::sync::Arc::new(std::sync::Mutex::new(Box::new(|_: &str, a: Answer| a)));
        let shared = rewrite.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || proxy_one(client, upstream, &shared));
            }
        });
        HostileProxy { port, rewrite }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, answers pass through `f`.
    pub fn set(&self, f: impl FnMut(&str, Answer) -> Answer + Send + 'static) {
        *self.rewrite.lock().unwrap() = Box::new(f);
    }

    /// From now on, answers pass unchanged.
    pub fn honest(&self) {
        self.set(|_, a| a);
    }
}

fn proxy_one(
    mut client: TcpStream,
    upstream: u16,
    rewrite: &std::sync::Mutex<Rewrite>,
) -> Option<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).ok()? == 0 {
            return None;
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
    client.read_exact(&mut body).ok()?;
    let request_line: String = head
        .lines()
        .next()?
        .rsplit_once(' ')
        .map(|(r, _)| r.to_string())?;
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    let forwarded: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:") && !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    up.write_all(format!("{forwarded}connection: close\r\n\r\n").as_bytes())
        .ok()?;
    up.write_all(&body).ok()?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let answer_head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = answer_head.split(' ').nth(1)?.parse().ok()?;
    let content_type = answer_head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let mut answer_body = raw[split + 4..].to_vec();
    if answer_head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        answer_body = dechunk(&answer_body)?;
    }
    let answer = (rewrite.lock().unwrap())(
        &request_line,
        Answer {
            status,
            content_type,
            body: answer_body,
        },
    );
    let out = format!(
        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    );
    client.write_all(out.as_bytes()).ok()?;
    client.write_all(&answer.body).ok()
}

/// A served checkpoint without its timestamp cosignature (docs/protocol.md §6.10), which the
/// registry renews every second: what stays the same while the log does.
pub fn log_signed(checkpoint: &str) -> String {
    checkpoint
        .split_inclusive('\n')
        .filter(|l| !l.contains("/timestamp "))
        .collect()
}
