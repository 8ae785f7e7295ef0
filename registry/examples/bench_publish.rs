//! Publish throughput with the real log: an in-process registry on a temp data dir (SQLite,
//! WAL, synchronous=FULL), C concurrent HTTP clients posting pre-signed release records of one
//! small uploaded component, each answered only once its batch is durable. Prints appends/s and
//! acknowledgement latency percentiles, and the slowest and median whole second of the run (so a
//! long run shows whether the rate holds as the log grows).
//!
//! `cargo run -p gridreg-registry --example bench_publish [--release] -- [RECORDS] [CLIENTS]`;
//! with `GRIDREG_BENCH_DATABASE_URL=postgres://...` the store is PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gridreg_protocol::record::{NamespaceRecord, Release};
use gridreg_protocol::{
    Digest, Namespace, NamespaceOp, PackageName, Prev, Record, Role, SignerKey, Timestamp,
};
use gridreg_registry::{Config, Registry};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The allocator of the `gridreg` binary, so the in-process server here allocates as `gridreg
/// serve` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let records: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let clients: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(64);
    let dir = tempfile::tempdir().unwrap();
    // GRIDREG_BENCH_DATABASE_URL=postgres://... measures the PostgreSQL store instead (the
    // database should be empty); GRIDREG_BENCH_REPLICAS=N (PostgreSQL only) runs N replicas on
    // it, each with its own data dir and the same log key, and clients spread over them.
    let database_url = std::env::var("GRIDREG_BENCH_DATABASE_URL").ok();
    let replicas: usize = std::env::var("GRIDREG_BENCH_REPLICAS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    assert!(
        replicas == 1 || database_url.is_some(),
        "replicas share a PostgreSQL database"
    );
    // GRIDREG_BENCH_WITNESSES=N: N in-process C2SP witnesses (docs/protocol.md §7.13) on
    // loopback, each given the log key, and the registry submitting to them; a publish then
    // waits for their cosignatures.
    let witness_count: usize = std::env::var("GRIDREG_BENCH_WITNESSES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut witness_targets = Vec::new();
    let mut witness_servers = Vec::new();
    if witness_count > 0 {
        let data0 = dir.path().join("data0");
        std::fs::create_dir_all(&data0).unwrap();
        let log_key = SignerKey::generate(gridreg_registry::server::DEFAULT_ORIGIN).unwrap();
        std::fs::write(
            data0.join("log.key"),
            format!("{}\n", log_key.to_secret_string()),
        )
        .unwrap();
        for i in 0..witness_count {
            use gridreg_registry::witness::server::{Witness, WitnessConfig};
            let key = gridreg_protocol::Cosigner::generate(&format!("w{i}.bench")).unwrap();
            // GRIDREG_BENCH_WITNESS_DIR puts the witnesses' databases elsewhere (a tmpfs: as
            // if on other machines, their fsyncs not queued behind the registry's).
            let witness_dir = std::env::var_os("GRIDREG_BENCH_WITNESS_DIR")
                .map_or_else(|| dir.path().to_path_buf(), std::path::PathBuf::from);
            let witness = Witness::open(WitnessConfig {
                data: witness_dir.join(format!("witness{i}-{}", std::process::id())),
                key,
                logs: vec![(log_key.name().to_string(), log_key.verifier())],
            })
            .await
            .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            witness_targets.push(gridreg_registry::witness::submit::WitnessTarget {
                url: format!("http://{}", listener.local_addr().unwrap()),
                key: witness.verifier(),
            });
            let router = witness.router();
            witness_servers.push((
                witness,
                tokio::spawn(async move { axum::serve(listener, router).await }),
            ));
        }
    }
    let mut addrs = Vec::new();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for r in 0..replicas {
        let data = dir.path().join(format!("data{r}"));
        if r > 0 {
            std::fs::create_dir_all(&data).unwrap();
            std::fs::copy(dir.path().join("data0/log.key"), data.join("log.key")).unwrap();
        }
        let mut config = Config::new(data);
        config.database_url = database_url.clone();
        config.witnesses = witness_targets.clone();
        let registry = Registry::open(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop_tx);
        servers.push(tokio::spawn(registry.serve(listener, async {
            let _ = stop_rx.await;
        })));
    }
    let addr = addrs[0];

    let key = SignerKey::generate("bench").unwrap();
    let claim = Record::Namespace(NamespaceRecord {
        namespace: Namespace::parse("bench").unwrap(),
        prev: Prev::None,
        op: NamespaceOp::Claim,
        key: key.verifier(),
        role: Role::Owner,
        time: Timestamp::now(),
    })
    .sign(&[&key])
    .unwrap();
    assert_eq!(
        http(addr, "POST", "/v1/records", claim.as_bytes()).await,
        200
    );
    let wasm = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/wasm/hello.wasm"
    ))
    .unwrap();
    let put = format!("/v1/content/{}", Digest::of(&wasm));
    // Each replica keeps its blobs in its own data dir here.
    for a in &addrs {
        assert_eq!(http(*a, "PUT", &put, &wasm).await, 201);
    }
    let audit = gridreg_verifier::audit(&wasm).unwrap();
    // Signing is the client's cost, so it happens before the clock starts. Each record is the
    // first release of its own package (`prev none`): many packages, as a registry sees them.
    let leaves: Arc<Vec<String>> = Arc::new(
        (0..records)
            .map(|i| {
                Record::Release(Release {
                    package: PackageName::parse(&format!("bench:p{i}")).unwrap(),
                    prev: Prev::None,
                    version: semver::Version::new(1, 0, 0),
                    digest: Digest::of(&wasm),
                    size: wasm.len() as u64,
                    time: Timestamp::now(),
                    imports: audit.imports.iter().map(|i| i.name.clone()).collect(),
                    exports: audit.exports.clone(),
                })
                .sign(&[&key])
                .unwrap()
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (leaves, next) = (leaves.clone(), next.clone());
        let addr = addrs[c % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= leaves.len() {
                    return lat;
                }
                let t = Instant::now();
                let status = http(addr, "POST", "/v1/records", leaves[i].as_bytes()).await;
                assert_eq!(status, 200);
                lat.push((t.elapsed(), start.elapsed()));
            }
        }));
    }
    let mut acks: Vec<(Duration, Duration)> = Vec::new();
    // Publishes acknowledged per replica: with a shared queue of work, a replica whose
    // sequencer got fewer turns on the lock answers fewer.
    let mut per_replica = vec![0usize; addrs.len()];
    for (c, t) in tasks.into_iter().enumerate() {
        let done = t.await.unwrap();
        per_replica[c % addrs.len()] += done.len();
        acks.extend(done);
    }
    let took = start.elapsed();
    // Acknowledgements per whole second of the run (the last, partial second left out).
    let mut per_second = vec![0u64; took.as_secs() as usize];
    for (_, at) in &acks {
        if let Some(n) = per_second.get_mut(at.as_secs() as usize) {
            *n += 1;
        }
    }
    let mut lat: Vec<Duration> = acks.iter().map(|(l, _)| *l).collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "replicas {replicas} ({}) witnesses {witness_count} records {records} clients {clients}: {:.0} appends/s over {:.2}s; ack latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        if database_url.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        records as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
    );
    if per_replica.len() > 1 {
        println!("appends per replica: {per_replica:?}");
    }
    if per_second.len() >= 10 {
        // The rate in each tenth of the run, in order: whether it holds as the log grows.
        let tenth = per_second.len() / 10;
        let tenths: Vec<String> = per_second
            .chunks(tenth)
            .take(10)
            .map(|c| format!("{}", c.iter().sum::<u64>() / c.len() as u64))
            .collect();
        println!("appends/s by tenth of the run: {}", tenths.join(" "));
    }
    if !per_second.is_empty() {
        let first = per_second[0];
        per_second.sort_unstable();
        println!(
            "per whole second ({} s): slowest {} appends, median {}, fastest {}, first {first}",
            per_second.len(),
            per_second[0],
            per_second[per_second.len() / 2],
            per_second[per_second.len() - 1],
        );
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM"))
    {
        println!(
            "peak RSS (server and clients in one process): {}",
            line.trim_start_matches("VmHWM:").trim()
        );
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for server in servers {
        server.await.unwrap().unwrap();
    }
}
