//! Proof and tile endpoint latency at a large log: seeds a SQLite data dir with N log entries straight
//! through `Store::commit` (batches of 50,000, real stored hashes, one signed checkpoint per
//! batch), opens the registry on it, then C concurrent keep-alive clients ask for inclusion
//! proofs of random indexes, consistency proofs from random sizes to the full tree, random full
//! level-0 tiles and random full entry bundles (C2SP tlog-tiles, docs/protocol.md §7.12). Prints
//! p50/p99 per endpoint and the process's peak RSS.
//!
//! `cargo run --release -p gridreg-registry --example bench_proofs -- [ENTRIES] [REQUESTS] [CLIENTS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gridreg_protocol::merkle::{Hash, append_leaves, leaf_hash, tree_hash};
use gridreg_protocol::{Checkpoint, SignerKey};
use gridreg_registry::store::sqlite;
use gridreg_registry::store::{Batch, CheckpointRow, Derived, EntryKind, NewEntry};
use gridreg_registry::{Config, Registry};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const ORIGIN: &str = "bench.proofs/log";
const BATCH: u64 = 50_000;

/// Writes `entries` leaves into a fresh store under `data`, with the log key the server will use.
async fn seed(data: &std::path::Path, entries: u64) {
    std::fs::create_dir_all(data).unwrap();
    let key = SignerKey::generate(ORIGIN).unwrap();
    std::fs::write(
        data.join("log.key"),
        format!("{}\n", key.to_secret_string()),
    )
    .unwrap();
    let store = sqlite::open(&data.join("registry.db")).await.unwrap();
    store.set_meta("origin", ORIGIN).await.unwrap();
    let mut stored: Vec<Hash> = Vec::new();
    let mut size = 0u64;
    while size < entries {
        let n = BATCH.min(entries - size);
        let bodies: Vec<Vec<u8>> = (size..size + n)
            .map(|i| format!("bench entry {i}\n").into_bytes())
            .collect();
        let leaves: Vec<Hash> = bodies.iter().map(|b| leaf_hash(b)).collect();
        let hash_start = stored.len() as u64;
        let new = append_leaves(size, &leaves, &stored).unwrap();
        stored.extend(&new);
        let root = tree_hash(size + n, &stored).unwrap();
        let cp = Checkpoint::new(ORIGIN, size + n, root)
            .sign(&[&key])
            .unwrap();
        let entries = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| NewEntry {
                index: size + i as u64,
                leaf: leaf_hash(&body),
                body,
                kind: EntryKind::Release,
                namespace: "bench".to_string(),
                chain: Some(format!("package bench:p{}", size + i as u64)),
                derived: Derived::Namespace,
            })
            .collect();
        store
            .commit(Batch {
                start: size,
                entries,
                hash_start,
                hashes: new,
                checkpoint: CheckpointRow {
                    size: size + n,
                    root,
                    body: cp.note,
                },
            })
            .await
            .unwrap();
        size += n;
    }
    store.close().await;
}

/// One keep-alive HTTP/1.1 connection; returns the status of each GET.
struct Conn {
    r: BufReader<TcpStream>,
}

impl Conn {
    async fn get(&mut self, path: &str) -> u16 {
        let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        self.r.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).await.unwrap();
        let status: u16 = line[9..12].parse().unwrap();
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).await.unwrap();
        status
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let entries: u64 = args
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let requests: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t = Instant::now();
    seed(&data, entries).await;
    println!(
        "seeded {entries} entries in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let mut config = Config::new(&data);
    config.origin = ORIGIN.to_string();
    let registry = Registry::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(registry.serve(listener, async {
        let _ = stop_rx.await;
    }));

    // Tiles (docs/protocol.md §7.12): random full level-0 tiles (256 hashes) and entry bundles.
    let full_tiles = entries / 256;
    for kind in ["inclusion", "consistency", "tile", "bundle"] {
        if kind != "inclusion" && kind != "consistency" && full_tiles == 0 {
            continue;
        }
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Tiles and bundles already asked for, so first reads (from the store) and repeats
        // (from the registry's tile cache) are reported apart.
        let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for c in 0..clients {
            let next = next.clone();
            let seen = seen.clone();
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn {
                    r: BufReader::new(TcpStream::connect(addr).await.unwrap()),
                };
                // A cheap deterministic spread of indexes per client.
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1);
                let mut lat = Vec::new();
                let mut repeats = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < requests {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = x % entries;
                    let tile = |kind| {
                        let t = gridreg_protocol::tiles::Tile {
                            kind,
                            index: x % full_tiles.max(1),
                            width: 256,
                        };
                        format!("/{}", t.path())
                    };
                    let path = match kind {
                        "inclusion" => format!("/v1/log/proof/inclusion?index={i}&size={entries}"),
                        "consistency" => {
                            format!("/v1/log/proof/consistency?from={}&to={entries}", i.max(1))
                        }
                        "tile" => tile(gridreg_protocol::tiles::TileKind::Hashes { level: 0 }),
                        _ => tile(gridreg_protocol::tiles::TileKind::Entries),
                    };
                    let first = seen.lock().unwrap().insert(path.clone());
                    let t = Instant::now();
                    assert_eq!(conn.get(&path).await, 200, "{path}");
                    if first {
                        lat.push(t.elapsed());
                    } else {
                        repeats.push(t.elapsed());
                    }
                }
                (lat, repeats)
            }));
        }
        let mut lat: Vec<Duration> = Vec::new();
        let mut repeats: Vec<Duration> = Vec::new();
        for t in tasks {
            let (first, again) = t.await.unwrap();
            lat.extend(first);
            repeats.extend(again);
        }
        let took = start.elapsed();
        let total = lat.len() + repeats.len();
        let spread = |lat: &mut Vec<Duration>| {
            if lat.is_empty() {
                return "none".to_string();
            }
            lat.sort();
            let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
            format!(
                "{} reads, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                lat.len(),
                pct(0.50).as_secs_f64() * 1e3,
                pct(0.99).as_secs_f64() * 1e3,
                lat[lat.len() - 1].as_secs_f64() * 1e3,
            )
        };
        println!(
            "{kind} reads at {entries} entries, {clients} clients: {:.0} req/s; first reads: {}; repeats: {}",
            total as f64 / took.as_secs_f64(),
            spread(&mut lat),
            spread(&mut repeats),
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM"))
    {
        println!(
            "peak RSS (seeding, server and clients in one process): {}",
            line.trim_start_matches("VmHWM:").trim()
        );
    }
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
