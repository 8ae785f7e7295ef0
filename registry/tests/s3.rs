//! The registry with its blobs in a real S3-compatible server: `s3s-fs` (installed by
//! `scripts/test.sh` into `~/.cache/gridreg-tools`, path in `GRIDREG_TEST_S3FS`), started per test
//! on a free 127.0.0.1 port over a temporary root, with an access key and secret so every request
//! is SigV4-signed as with AWS S3. Uploads (good, wrong digest, small and multipart-sized),
//! downloads whole and by range, a real publish, and two replicas sharing one bucket.
//!
//! These tests fail (never skip) when s3s-fs is missing, saying how to install it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::*;
use gridreg_protocol::Digest;
use gridreg_registry::blob::s3::{MEMORY_UPLOAD_MAX, PART_SIZE};
use gridreg_registry::blob::{BlobLocation, S3Credentials};
use gridreg_registry::{Config, Registry};

const BUCKET: &str = "gridreg-test";
const ACCESS_KEY: &str = "gridreg-test-key";
const SECRET_KEY: &str = "gridreg-test-secret-0123456789";
const INSTALL: &str =
    "cargo install --locked s3s-fs@0.14.1 --features binary --root ~/.cache/gridreg-tools";

/// The s3s-fs binary: `GRIDREG_TEST_S3FS`, else where scripts/test.sh installs it.
fn s3fs_binary() -> PathBuf {
    let path = std::env::var_os("GRIDREG_TEST_S3FS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/gridreg-tools/bin/s3s-fs"))
        })
        .unwrap_or_else(|| PathBuf::from("s3s-fs"));
    assert!(
        path.is_file(),
        "the S3 tests need the s3s-fs server, expected at {} (GRIDREG_TEST_S3FS overrides \
         the path); scripts/test.sh installs it, or run: {INSTALL}",
        path.display()
    );
    path
}

/// A running s3s-fs over a temporary root holding one bucket; killed on drop.
struct S3Server {
    child: Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        let binary = s3fs_binary();
        let root = tempfile::tempdir().unwrap();
        // A bucket in s3s-fs is a directory under its root.
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&binary)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(root.path())
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return S3Server {
                        child,
                        root,
                        endpoint: format!("http://{addr}"),
                    };
                }
                if let Some(status) = child.try_wait().unwrap() {
                    // Most likely the port was taken between picking and binding: try another.
                    eprintln!("s3s-fs exited ({status}) before listening on {addr}; retrying");
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("s3s-fs did not listen on {addr} within 10 s");
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("s3s-fs could not start on a free port in 5 attempts");
    }

    fn location(&self) -> BlobLocation {
        BlobLocation::S3 {
            bucket: BUCKET.into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            credentials: Some(S3Credentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
            }),
        }
    }

    /// Every blob in the bucket (`sha256/...`), as keys relative to it (what s3s-fs really
    /// stores); the log's static resources beside them are [`S3Server::static_files`].
    fn bucket_files(&self) -> Vec<String> {
        self.all_files()
            .into_iter()
            .filter(|f| f.starts_with("sha256/"))
            .collect()
    }

    /// The log's tiles and checkpoint in the bucket (docs/protocol.md §7.12.5).
    fn static_files(&self) -> Vec<String> {
        self.all_files()
            .into_iter()
            .filter(|f| f == "checkpoint" || f.starts_with("tile/"))
            .collect()
    }

    /// Every file in the bucket.
    fn all_files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let bucket = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        walk(&bucket, &bucket, &mut out);
        out.sort();
        out
    }

    /// Files s3s-fs keeps for multipart uploads in progress, at its root: `.upload-<id>.json`,
    /// `.upload_id-<id>.part-<n>` and the upload's metadata.
    fn pending_parts(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("upload"))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn blob_key(bytes: &[u8]) -> String {
    format!("sha256/{}", hex::encode(Digest::of(bytes).0))
}

/// Deterministic incompressible-looking bytes (xorshift), `n` long.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // WebAssembly's magic first: the registry hosts nothing else.
    let magic = b"\0asm";
    let n = out.len().min(magic.len());
    out[..n].copy_from_slice(&magic[..n]);
    out
}

/// A SQLite registry whose blobs are in `s3`.
async fn harness_s3(s3: &S3Server) -> Harness {
    let location = s3.location();
    harness_with(Backend::Sqlite, move |c| c.blobs = Some(location)).await
}

async fn get_with(h: &Harness, uri: &str, headers: &[(&str, &str)]) -> Reply {
    common::send_with(&h.app, Method::GET, uri, Vec::new(), headers).await
}

fn header(r: &Reply, name: &str) -> String {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn uploads_are_checked_before_they_reach_the_bucket() {
    let s3 = S3Server::start();
    let h = harness_s3(&s3).await;
    let hello = fixture("hello.wasm");

    // Wrong digest, small (buffered) and large (multipart): rejected, nothing left behind.
    let other = format!("/v1/content/{}", Digest::of(b"something else"));
    let r = send(&h.app, Method::PUT, &other, hello.clone(), None).await;
    r.assert_error(StatusCode::BAD_REQUEST, "digest_mismatch");
    let big_wrong = noise(MEMORY_UPLOAD_MAX + 3 * 1024 * 1024, 7);
    let r = send(&h.app, Method::PUT, &other, big_wrong, None).await;
    r.assert_error(StatusCode::BAD_REQUEST, "digest_mismatch");
    assert_eq!(h.snapshot().await.2, 0);
    // The abandoned multipart upload is aborted in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(s3.bucket_files().is_empty() && s3.pending_parts().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "a rejected upload left {:?} in the bucket and parts {:?}",
            s3.bucket_files(),
            s3.pending_parts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Good uploads land under their digest only: created, then idempotent.
    let r = h.put_content(&hello).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["size"], hello.len() as u64);
    let r = h.put_content(&hello).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let big = noise(MEMORY_UPLOAD_MAX + 5 * 1024 * 1024 + 17, 11);
    let r = h.put_content(&big).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut want = vec![blob_key(&hello), blob_key(&big)];
    want.sort();
    assert_eq!(s3.bucket_files(), want, "only content-addressed objects");
    assert!(s3.pending_parts().is_empty(), "{:?}", s3.pending_parts());
    assert_eq!(h.snapshot().await.2, 2);
    // The object holds exactly the bytes (read from s3s-fs's own storage).
    let on_disk = std::fs::read(s3.root.path().join(BUCKET).join(blob_key(&big))).unwrap();
    assert!(on_disk == big, "stored object differs from the upload");
}

#[tokio::test]
async fn too_large_uploads_leave_nothing() {
    let s3 = S3Server::start();
    let location = s3.location();
    // A limit past the in-memory size and one whole part, so an upload that fits goes multipart.
    let limit = (MEMORY_UPLOAD_MAX + PART_SIZE + 1024 * 1024) as u64;
    let h = harness_with(Backend::Sqlite, move |c| {
        c.blobs = Some(location);
        c.max_blob_size = limit;
    })
    .await;
    // No Content-Length: the route counts the streamed bytes (here one frame) and refuses them.
    // (A writer dropped after its multipart upload began is covered by the wrong-digest test.)
    let big = noise(limit as usize + 1024 * 1024, 13);
    h.put_content(&big)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(s3.bucket_files().is_empty() && s3.pending_parts().is_empty()) {
        assert!(
            Instant::now() < deadline,
            "a refused upload left {:?} in the bucket and parts {:?}",
            s3.bucket_files(),
            s3.pending_parts()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.snapshot().await, (0, 0, 0));
    // Just under the limit is fine.
    let fits = noise(limit as usize, 17);
    assert_eq!(h.put_content(&fits).await.status, StatusCode::CREATED);
    assert_eq!(s3.bucket_files(), vec![blob_key(&fits)]);
}

#[tokio::test]
async fn downloads_whole_and_by_range() {
    let s3 = S3Server::start();
    let h = harness_s3(&s3).await;
    let hello = fixture("hello.wasm");
    let big = noise(MEMORY_UPLOAD_MAX + 1024 * 1024 + 5, 3);
    assert_eq!(h.put_content(&hello).await.status, StatusCode::CREATED);
    assert_eq!(h.put_content(&big).await.status, StatusCode::CREATED);

    for bytes in [&hello, &big] {
        let uri = format!("/v1/content/{}", Digest::of(bytes));
        let etag = format!("\"{}\"", Digest::of(bytes));
        let size = bytes.len();
        // Whole (small ones from memory after the first time, large ones streamed).
        for _ in 0..2 {
            let r = h.get(&uri).await;
            assert_eq!(r.status, StatusCode::OK);
            assert!(
                r.body == *bytes,
                "whole body differs ({} bytes)",
                r.body.len()
            );
            assert_eq!(header(&r, "content-type"), "application/wasm");
            assert_eq!(header(&r, "etag"), etag);
            assert_eq!(header(&r, "accept-ranges"), "bytes");
            assert!(header(&r, "cache-control").contains("immutable"));
            assert_eq!(header(&r, "content-length"), size.to_string());
        }
        // Ranges: bounded, open-ended, suffix.
        for (spec, want) in [
            ("bytes=100-199", 100..200),
            (&format!("bytes={}-", size - 10) as &str, size - 10..size),
            ("bytes=-25", size - 25..size),
            (&format!("bytes=5-{}", size + 1000) as &str, 5..size),
        ] {
            let r = get_with(&h, &uri, &[("range", spec)]).await;
            assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{spec}");
            assert!(r.body == bytes[want.clone()], "{spec}: wrong bytes");
            assert_eq!(
                header(&r, "content-range"),
                format!("bytes {}-{}/{size}", want.start, want.end - 1),
                "{spec}"
            );
            assert_eq!(header(&r, "content-length"), want.len().to_string());
            assert_eq!(header(&r, "etag"), etag);
            assert_eq!(header(&r, "content-type"), "application/wasm");
        }
        let r = get_with(&h, &uri, &[("range", &format!("bytes={size}-"))]).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(header(&r, "content-range"), format!("bytes */{size}"));
        // A stale If-Range gets the whole blob.
        let r = get_with(
            &h,
            &uri,
            &[("range", "bytes=0-9"), ("if-range", "\"sha256:stale\"")],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.len(), size);
        // A cached copy is confirmed without a body.
        let r = get_with(&h, &uri, &[("if-none-match", &etag)]).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert!(r.body.is_empty());
        assert_eq!(header(&r, "etag"), etag);
    }
    let missing = format!("/v1/content/{}", Digest::of(b"never uploaded"));
    h.get(&missing)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn publishes_a_component_and_reads_it_back() {
    let s3 = S3Server::start();
    let h = harness_s3(&s3).await;
    let alice = key("alice");
    let hello = fixture("hello.wasm");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    // Publishing before the upload names missing content.
    h.post_record(&release(&h.app, &alice, "acme:hello", "1.0.0", &hello).await)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "content_missing");
    let answer = h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    assert_eq!(answer["index"], 2, "after the claim and its map entry");
    let r = h.get("/v1/packages/acme:hello/1.0.0").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let release = r.json();
    assert_eq!(release["digest"], Digest::of(&hello).to_string());
    let r = h.get(&format!("/v1/content/{}", Digest::of(&hello))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == hello);
    assert_eq!(s3.bucket_files(), vec![blob_key(&hello)]);

    // A record whose size disagrees with the stored object is refused.
    let tcp = fixture("tcp-client.wasm");
    assert_eq!(h.put_content(&tcp).await.status, StatusCode::CREATED);
    let mut record = release_record("acme:tcp", "1.0.0", &tcp);
    record.size += 1;
    let signed = gridreg_protocol::Record::Release(record)
        .sign(&[&alice])
        .unwrap();
    h.post_record(&signed)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "size_mismatch");
}

/// docs/protocol.md §7.12.5: the bucket holds the log's tiles, entry bundles and checkpoint, byte
/// for byte what the registry serves at the same paths, so a CDN in front of the bucket is a tile
/// server; full tiles are written once, partial ones for the newest checkpoint.
#[tokio::test]
async fn the_bucket_holds_the_tiles_a_cdn_serves() {
    let s3 = S3Server::start();
    let h = harness_s3(&s3).await;
    let size = claim_until(&h, 260).await;
    let bundle = format!("tile/entries/001.p/{}", size - 256);
    let want = [
        "checkpoint".to_string(),
        "tile/0/000".to_string(),
        format!("tile/0/001.p/{}", size - 256),
        "tile/1/000.p/1".to_string(),
        "tile/entries/000".to_string(),
        bundle.clone(),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    while !want.iter().all(|w| s3.static_files().contains(w)) {
        assert!(Instant::now() < deadline, "{:?}", s3.static_files());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bucket = s3.root.path().join(BUCKET);
    for path in &want[1..] {
        let served = h.get(&format!("/{path}")).await;
        assert_eq!(served.status, StatusCode::OK, "{path}");
        assert!(
            std::fs::read(bucket.join(path)).unwrap() == served.body,
            "{path} differs"
        );
    }
    let cp = std::fs::read_to_string(bucket.join("checkpoint")).unwrap();
    assert_eq!(
        log_signed(&cp),
        log_signed(&h.get("/checkpoint").await.text())
    );
    // The full level-0 tile is written once: its file stays as it was while the log grows.
    let first = std::fs::metadata(bucket.join("tile/0/000"))
        .unwrap()
        .modified()
        .unwrap();
    let size = claim_until(&h, size + 6).await;
    let newer = format!("tile/entries/001.p/{}", size - 256);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s3.static_files().contains(&newer) {
        assert!(Instant::now() < deadline, "{:?}", s3.static_files());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::metadata(bucket.join("tile/0/000"))
            .unwrap()
            .modified()
            .unwrap(),
        first
    );
    // Blobs are still only the content-addressed objects.
    assert!(s3.bucket_files().is_empty());
}

/// Two replicas on one PostgreSQL database and one bucket: content uploaded through one is
/// served, counted and publishable through the other, and never stored twice.
#[tokio::test]
async fn replicas_share_one_bucket() {
    let s3 = S3Server::start();
    let db = TestDb::create();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let data = dir.path().join("data");
        if i > 0 {
            // Replicas sign with one log key, copied as an operator would.
            std::fs::create_dir_all(&data).unwrap();
            std::fs::copy(
                dirs[0].path().join("data").join("log.key"),
                data.join("log.key"),
            )
            .unwrap();
        }
        let mut config = Config::new(data);
        config.database_url = Some(db.url.clone());
        config.blobs = Some(s3.location());
        replicas.push(Registry::open(&config).await.unwrap());
    }
    let (a, b) = (replicas[0].router(), replicas[1].router());
    let alice = key("alice");
    let hello = fixture("hello.wasm");
    let uri = format!("/v1/content/{}", Digest::of(&hello));

    let r = send(&a, Method::PUT, &uri, hello.clone(), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // B sees A's upload: downloads it, and answers a re-upload as already stored.
    let r = send(&b, Method::GET, &uri, Vec::new(), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == hello);
    let r = send(&b, Method::PUT, &uri, hello.clone(), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(replicas[1].state.blobs.count().await.unwrap(), 1);

    // Publish through B what was uploaded through A; read it back through A.
    let r = send(
        &b,
        Method::POST,
        "/v1/records",
        claim(&b, &alice, "acme").await.into_bytes(),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let r = send(
        &b,
        Method::POST,
        "/v1/records",
        release(&b, &alice, "acme:hello", "1.0.0", &hello)
            .await
            .into_bytes(),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // And the other way round, with a blob large enough for a multipart upload.
    let big = noise(MEMORY_UPLOAD_MAX + 2 * 1024 * 1024, 5);
    let big_uri = format!("/v1/content/{}", Digest::of(&big));
    let r = send(&b, Method::PUT, &big_uri, big.clone(), None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = send(&a, Method::GET, &big_uri, Vec::new(), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body == big);
    let mut want = vec![blob_key(&hello), blob_key(&big)];
    want.sort();
    assert_eq!(s3.bucket_files(), want);
    assert_eq!(replicas[0].state.blobs.count().await.unwrap(), 2);

    // A's view reaches B's publish, and A serves the release.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = send(
            &a,
            Method::GET,
            "/v1/packages/acme:hello/1.0.0",
            Vec::new(),
            None,
        )
        .await;
        if r.status == StatusCode::OK {
            assert_eq!(r.json()["digest"], Digest::of(&hello).to_string());
            break;
        }
        assert!(Instant::now() < deadline, "replica A never saw B's publish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop((a, b));
    for r in replicas {
        r.stop().await;
    }
    drop(db);
}

/// Uploads no release names are deleted from the bucket once older than the TTL; named ones
/// stay (docs: registry/src/gc.rs).
#[tokio::test]
async fn unnamed_uploads_leave_the_bucket() {
    let s3 = S3Server::start();
    let h = harness_s3(&s3).await;
    let state = &h.registry.state;
    let alice = key("alice");
    h.post_record(&claim(&h.app, &alice, "acme").await).await;
    let hello = fixture("hello.wasm");
    h.publish(&alice, "acme:hello", "1.0.0", &hello).await;
    let unnamed = noise(64 * 1024, 23);
    assert_eq!(h.put_content(&unnamed).await.status, StatusCode::CREATED);
    let mut both = vec![blob_key(&hello), blob_key(&unnamed)];
    both.sort();
    assert_eq!(s3.bucket_files(), both);
    // The bucket keeps modification times in whole seconds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let n = gridreg_registry::gc::collect(&state.store, &state.blobs, &state.pins, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(s3.bucket_files(), vec![blob_key(&hello)]);
    assert_eq!(
        h.get(&format!("/v1/content/{}", Digest::of(&unnamed)))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_wrong_bucket_or_key_fails_at_start() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("data"));
    let BlobLocation::S3 {
        endpoint, region, ..
    } = s3.location()
    else {
        unreachable!()
    };
    config.blobs = Some(BlobLocation::S3 {
        bucket: BUCKET.into(),
        endpoint: endpoint.clone(),
        region: region.clone(),
        credentials: Some(S3Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: "not-the-secret".into(),
        }),
    });
    let e = Registry::open(&config).await.unwrap_err().to_string();
    eprintln!("wrong secret: {e}");
    assert!(
        e.contains("blob store") && e.contains(BUCKET) && e.contains("403"),
        "{e}"
    );
    config.blobs = Some(BlobLocation::S3 {
        bucket: "no-such-bucket".into(),
        endpoint,
        region,
        credentials: Some(S3Credentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        }),
    });
    let e = Registry::open(&config).await.unwrap_err().to_string();
    eprintln!("wrong bucket: {e}");
    assert!(e.contains("no-such-bucket"), "{e}");
}

#[test]
fn blob_urls_parse() {
    assert_eq!(
        BlobLocation::parse("file:///srv/blobs").unwrap(),
        BlobLocation::Dir(PathBuf::from("/srv/blobs"))
    );
    assert_eq!(
        BlobLocation::parse("s3://my-bucket?endpoint=http://127.0.0.1:9000&region=eu-west-1")
            .unwrap(),
        BlobLocation::S3 {
            bucket: "my-bucket".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            region: Some("eu-west-1".into()),
            credentials: None,
        }
    );
    assert_eq!(
        BlobLocation::parse("s3://b.example?endpoint=https%3A%2F%2Fs3.example.com").unwrap(),
        BlobLocation::S3 {
            bucket: "b.example".into(),
            endpoint: Some("https://s3.example.com".into()),
            region: None,
            credentials: None,
        }
    );
    for bad in [
        "",
        "/srv/blobs",
        "file://",
        "s3://",
        "s3://UPPER",
        "s3://ok-bucket?endpoint=ftp://x",
        "s3://ok-bucket?secret=1",
        "s3://ok-bucket?region=",
        "s3://ok-bucket?endpoint=%zz",
        "gs://bucket",
    ] {
        assert!(BlobLocation::parse(bad).is_err(), "{bad}");
    }
}
