//! Real OCI clients against a real `gridreg serve` on loopback (docs/protocol.md §7.11): skopeo
//! (Debian's package) and oras (PyPI `oras`, in a venv). scripts/test.sh installs both when
//! missing; these tests fail, never skip, without them. The `oci-client` + `oci-wasm` libraries
//! are driven from registry/tests/oci_clients.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use gridreg_protocol::Digest;

mod common;
use common::{Running, claim, fixture_bytes, free_port, http, next_prev, release, start_serve};

const ORIGIN: &str = "oci.test/log";

/// A registry on a free port holding `acme:hello` 1.0.0 and 1.1.0 (hello.wasm).
struct Published {
    dir: tempfile::TempDir,
    port: u16,
    _server: Running,
    hello: Vec<u8>,
    alice: gridreg_protocol::SignerKey,
    /// The head of `acme:hello`'s chain, for the next record.
    head: gridreg_protocol::Prev,
}

impl Published {
    fn start() -> Published {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let server = Running(start_serve(&dir.path().join("data"), port, ORIGIN));
        let alice = gridreg_protocol::SignerKey::generate("alice").unwrap();
        assert_eq!(
            http(
                port,
                "POST",
                "/v1/records",
                claim(&alice, "acme").as_bytes()
            )
            .unwrap()
            .0,
            200
        );
        let hello = fixture_bytes("hello.wasm");
        let put = format!("/v1/content/{}", Digest::of(&hello));
        assert_eq!(http(port, "PUT", &put, &hello).unwrap().0, 201);
        let mut prev = gridreg_protocol::Prev::None;
        for v in ["1.0.0", "1.1.0"] {
            let leaf = release(prev, &alice, "acme:hello", v, &hello);
            let (status, body) = http(port, "POST", "/v1/records", leaf.as_bytes()).unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let index = common::json(&body)["index"].as_u64().unwrap();
            prev = next_prev(index, &leaf);
        }
        Published {
            dir,
            port,
            _server: server,
            hello,
            alice,
            head: prev,
        }
    }

    fn image(&self, tail: &str) -> String {
        format!("127.0.0.1:{}/acme/hello{tail}", self.port)
    }

    /// The manifest bytes the registry serves for `tag`, and its digest.
    fn manifest(&self, tag: &str) -> (Vec<u8>, String) {
        let (status, body) = http(
            self.port,
            "GET",
            &format!("/v2/acme/hello/manifests/{tag}"),
            b"",
        )
        .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let digest = Digest::of(&body).to_string();
        (body, digest)
    }
}

/// The skopeo binary, which scripts/test.sh installs from Debian's packages when missing.
fn skopeo() -> Command {
    let found = Command::new("skopeo").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "this test needs skopeo (Debian package `skopeo`); scripts/test.sh installs it"
    );
    Command::new("skopeo")
}

fn run(mut c: Command) -> Vec<u8> {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn skopeo_lists_inspects_and_copies_keeping_digests() {
    let p = Published::start();
    let (manifest, digest) = p.manifest("1.0.0");
    let mut c = skopeo();
    c.args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{}", p.image("")));
    let tags = common::json(&run(c));
    assert_eq!(tags["Tags"], serde_json::json!(["1.0.0", "1.1.0"]));

    let mut c = skopeo();
    c.args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}", p.image(":1.0.0")));
    assert_eq!(run(c), manifest);

    let out = p.dir.path().join("copy");
    let mut c = skopeo();
    c.args([
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        "--preserve-digests",
    ])
    .arg(format!("docker://{}", p.image(":1.0.0")))
    .arg(format!("dir:{}", out.display()));
    run(c);
    let copied = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(copied, manifest);
    assert_eq!(Digest::of(&copied).to_string(), digest);
    let m = common::json(&manifest);
    let hex = |d: &serde_json::Value| {
        d.as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string()
    };
    let layer = std::fs::read(out.join(hex(&m["layers"][0]["digest"]))).unwrap();
    assert_eq!(layer, p.hello);
    let config = std::fs::read(out.join(hex(&m["config"]["digest"]))).unwrap();
    assert_eq!(
        Digest::of(&config).to_string(),
        m["config"]["digest"].as_str().unwrap()
    );
}

/// The Python of the venv holding PyPI `oras` (scripts/test.sh makes it).
fn oras_python() -> PathBuf {
    let python = std::env::var_os("GRIDREG_TEST_ORAS_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/gridreg-tools/oras-venv/bin/python"))
        })
        .unwrap();
    assert!(
        python.is_file(),
        "this test needs PyPI `oras` in a venv, expected its python at {} \
         (GRIDREG_TEST_ORAS_PYTHON overrides); scripts/test.sh makes it",
        python.display()
    );
    python
}

#[test]
fn oras_pulls_by_tag() {
    let p = Published::start();
    let out = p.dir.path().join("oras");
    let script = r#"
import sys, oras.client
host, target, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
client = oras.client.OrasClient(hostname=host, insecure=True)
print("\n".join(client.pull(target=target, outdir=outdir)))
"#;
    let mut c = Command::new(oras_python());
    c.args(["-c", script])
        .arg(format!("127.0.0.1:{}", p.port))
        .arg(p.image(":1.1.0"))
        .arg(&out);
    let printed = String::from_utf8(run(c)).unwrap();
    assert!(printed.trim().ends_with("hello.wasm"), "{printed}");
    assert_eq!(std::fs::read(out.join("hello.wasm")).unwrap(), p.hello);
}

/// The wkg binary (wasm-pkg-tools 0.16.1), which scripts/test.sh installs with cargo when missing.
fn wkg() -> Command {
    let binary = std::env::var_os("GRIDREG_TEST_WKG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/gridreg-tools/wkg/bin/wkg"))
        })
        .unwrap();
    assert!(
        binary.is_file(),
        "this test needs wkg 0.16.1, expected at {} (GRIDREG_TEST_WKG overrides); scripts/test.sh \
         installs it: cargo install --locked wkg@0.16.1 --root ~/.cache/gridreg-tools/wkg",
        binary.display()
    );
    Command::new(binary)
}

#[test]
fn wkg_gets_releases_through_discovery_and_skips_yanked() {
    let p = Published::start();
    // Yank 1.1.0: it leaves the tag list, so an unversioned get picks 1.0.0.
    let yank = gridreg_protocol::Record::Yank(gridreg_protocol::Yank {
        package: gridreg_protocol::PackageName::parse("acme:hello").unwrap(),
        prev: p.head,
        version: gridreg_protocol::name::parse_version("1.1.0").unwrap(),
        reason: "broken".into(),
        time: gridreg_protocol::Timestamp::now(),
    })
    .sign(&[&p.alice])
    .unwrap();
    assert_eq!(
        http(p.port, "POST", "/v1/records", yank.as_bytes())
            .unwrap()
            .0,
        200
    );

    // wkg finds the registry's OCI side through /.well-known/wasm-pkg/registry.json.
    let registry = format!("127.0.0.1:{}", p.port);
    let config = p.dir.path().join("wkg.toml");
    std::fs::write(
        &config,
        format!("default_registry = \"{registry}\"\n[registry.\"{registry}\".oci]\nprotocol = \"http\"\n"),
    )
    .unwrap();
    let get = |spec: &str, out: &str| {
        let mut c = wkg();
        c.arg("get")
            .arg("--config")
            .arg(&config)
            .arg("--cache")
            .arg(p.dir.path().join("wkg-cache"))
            .args([spec, "-o"])
            .arg(p.dir.path().join(out))
            .env("RUST_BACKTRACE", "0");
        c.output().unwrap()
    };
    for (spec, out, file) in [
        ("acme:hello@1.1.0", "exact/", "acme_hello@1.1.0.wasm"),
        ("acme:hello", "latest/", "acme_hello@1.0.0.wasm"),
    ] {
        let o = get(spec, out);
        assert!(
            o.status.success(),
            "wkg get {spec}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got = std::fs::read(p.dir.path().join(out).join(file)).unwrap();
        assert_eq!(got, p.hello, "{spec}");
    }
    let o = get("acme:nothing@1.0.0", "none/");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no repository acme/nothing"), "{err}");
}
