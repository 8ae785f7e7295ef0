//! Witness throughput (docs/protocol.md §7.13): an in-process `gridreg witness` on a temp data
//! dir (SQLite, WAL, synchronous=FULL) served on loopback, and C clients, each the log of its own
//! origin, growing it by one entry at a time and submitting every checkpoint with its
//! consistency proof. Every cosignature is one signature check, one proof check and a durable
//! write (shared by the requests that arrive together). Prints cosignatures/s and latency.
//!
//! `cargo run -p gridreg-registry --release --example bench_witness -- [SECONDS] [CLIENTS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use gridreg_protocol::merkle::{Hash, append_leaves, leaf_hash, prove_consistency, tree_hash};
use gridreg_protocol::witness::AddCheckpoint;
use gridreg_protocol::{Checkpoint, Cosigner, SignerKey};
use gridreg_registry::listen::{self, Limits};
use gridreg_registry::witness::server::{Witness, WitnessConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One keep-alive connection; returns the status of each request.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn post(&mut self, path: &str, body: &[u8]) -> u16 {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        self.s.write_all(head.as_bytes()).await.unwrap();
        self.s.write_all(body).await.unwrap();
        // Read the head, then content-length bytes.
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_lowercase();
                let status: u16 = head[9..12].parse().unwrap();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while self.buf.len() < end + 4 + len {
                    self.read().await;
                }
                self.buf.drain(..end + 4 + len);
                return status;
            }
            self.read().await;
        }
    }

    async fn read(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the witness closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<SignerKey> = (0..clients)
        .map(|i| SignerKey::generate(&format!("log{i}.bench")).unwrap())
        .collect();
    let witness = Witness::open(WitnessConfig {
        data: dir.path().to_path_buf(),
        key: Cosigner::generate("w.bench").unwrap(),
        logs: keys
            .iter()
            .map(|k| (k.name().to_string(), k.verifier()))
            .collect(),
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = witness.router();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(listen::serve(listener, router, Limits::default(), async {
        let _ = stop_rx.await;
    }));

    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for key in keys {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn {
                s: TcpStream::connect(addr).await.unwrap(),
                buf: Vec::new(),
            };
            let mut stored: Vec<Hash> = Vec::new();
            let mut size = 0u64;
            let mut lat = Vec::new();
            let mut client_time = Duration::ZERO;
            while Instant::now() < deadline {
                // The log's side: append one entry, sign the checkpoint, prove from the last.
                let t = Instant::now();
                let leaf = leaf_hash(format!("{} {size}", key.name()).as_bytes());
                let more = append_leaves(size, &[leaf], &stored).unwrap();
                stored.extend(more);
                let old = size;
                size += 1;
                let proof = if old == 0 {
                    Vec::new()
                } else {
                    prove_consistency(size, old, &stored).unwrap()
                };
                let note = Checkpoint::new(key.name(), size, tree_hash(size, &stored).unwrap())
                    .sign(&[&key])
                    .unwrap()
                    .note;
                let body = AddCheckpoint::body(old, &proof, &note);
                client_time += t.elapsed();
                let t = Instant::now();
                let status = conn.post("/add-checkpoint", body.as_bytes()).await;
                assert_eq!(status, 200);
                lat.push(t.elapsed());
            }
            (lat, client_time)
        }));
    }
    let mut lat = Vec::new();
    let mut client_time = Duration::ZERO;
    for t in tasks {
        let (l, c) = t.await.unwrap();
        lat.extend(l);
        client_time += c;
    }
    let n = lat.len();
    lat.sort();
    let pct = |p: f64| lat[((n as f64 * p) as usize).min(n - 1)];
    println!(
        "witness: {clients} logs, {secs} s: {n} cosignatures, {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; the clients' own signing and proving took {:.1} core-s of the run",
        n as f64 / secs as f64,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[n - 1].as_secs_f64() * 1e3,
        client_time.as_secs_f64()
    );
    let _ = stop_tx.send(());
    let _ = server.await;
    witness.stop().await;
}
