//! Helpers the process-level CLI tests share: free ports, waiting for a child to listen,
//! killing children on drop, and the s3s-fs S3 server.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
