//! `gridreg serve --blobs` as a real process: content in an S3-compatible bucket (a real s3s-fs
//! server on 127.0.0.1, credentials from the standard `AWS_*` variables) or under a chosen
//! directory, and clear start-up failures for a bad URL or wrong credentials.
//!
//! The S3 test needs s3s-fs (`scripts/test.sh` installs it; `GRIDREG_TEST_S3FS` names it) and
//! fails, never skips, without it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use gridreg_protocol::Digest;

const BUCKET: &str = "cli-blobs";
const ACCESS_KEY: &str = "cli-test-key";
const SECRET_KEY: &str = "cli-test-secret-0123456789";

mod common;
use common::{Running, free_port, wait_for_port};

fn s3fs(root: &Path) -> (Running, String) {
    common::s3fs(root, BUCKET, ACCESS_KEY, SECRET_KEY)
}

fn serve(data: &Path, blobs: &str, secret: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridreg"));
    cmd.args(["serve", "--data"])
        .arg(data)
        .args(["--blobs", blobs])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    cmd
}

fn start(mut cmd: Command) -> (Running, String) {
    let port = free_port();
    let mut child = cmd
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "gridreg serve");
    (Running(child), format!("http://127.0.0.1:{port}"))
}

fn put(base: &str, bytes: &[u8]) -> u16 {
    let url = format!("{base}/v1/content/{}", Digest::of(bytes));
    match ureq::put(&url).send_bytes(bytes) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(s, _)) => s,
        Err(e) => panic!("PUT {url}: {e}"),
    }
}

fn get(base: &str, bytes: &[u8], range: Option<&str>) -> (u16, Vec<u8>) {
    let url = format!("{base}/v1/content/{}", Digest::of(bytes));
    let mut req = ureq::get(&url);
    if let Some(r) = range {
        req = req.set("range", r);
    }
    let resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    (status, body)
}

fn hello() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/wasm/hello.wasm");
    std::fs::read(path).unwrap()
}

#[test]
fn serves_content_from_an_s3_bucket_with_env_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let (_s3, endpoint) = s3fs(&tmp.path().join("s3"));
    let url = format!("s3://{BUCKET}?endpoint={endpoint}&region=us-east-1");
    let data = tmp.path().join("data");
    let (_server, base) = start(serve(&data, &url, SECRET_KEY));

    let bytes = hello();
    assert_eq!(put(&base, &bytes), 201);
    assert_eq!(put(&base, &bytes), 200);
    let (status, body) = get(&base, &bytes, None);
    assert_eq!(status, 200);
    assert!(body == bytes);
    let (status, body) = get(&base, &bytes, Some("bytes=8-15"));
    assert_eq!(status, 206);
    assert!(body == bytes[8..16]);
    // The bytes are in the bucket, under their digest, and not under --data.
    let object = tmp
        .path()
        .join("s3")
        .join(BUCKET)
        .join("sha256")
        .join(hex::encode(Digest::of(&bytes).0));
    assert!(std::fs::read(&object).unwrap() == bytes);
    assert!(!data.join("blobs").exists());

    // A wrong secret stops the server at start with a message naming the bucket.
    let out: Output = serve(&tmp.path().join("data2"), &url, "wrong-secret")
        .args(["--addr", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(BUCKET) && stderr.contains("403"),
        "{stderr}"
    );
}

#[test]
fn file_blobs_go_to_the_named_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let blobs = tmp.path().join("elsewhere");
    let data = tmp.path().join("data");
    let (_server, base) = start(serve(
        &data,
        &format!("file://{}", blobs.display()),
        SECRET_KEY,
    ));
    let bytes = hello();
    assert_eq!(put(&base, &bytes), 201);
    let hex = hex::encode(Digest::of(&bytes).0);
    let file = blobs.join("sha256").join(&hex[..2]).join(&hex);
    assert!(std::fs::read(&file).unwrap() == bytes);
    assert!(!data.join("blobs").exists());
    let (status, body) = get(&base, &bytes, None);
    assert_eq!((status, body == bytes), (200, true));
}

#[test]
fn a_bad_blob_url_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["gs://bucket", "s3://B", "s3://ok-bucket?endpoint=ftp://x"] {
        let out = serve(&tmp.path().join("data"), bad, SECRET_KEY)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--blobs"), "{bad}: {stderr}");
    }
}
