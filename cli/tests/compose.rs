//! `gridreg compose` end to end: `processor` plugged with `converter` loses its converter import,
//! runs, and comes with a manifest; useless and ambiguous plugs are clear errors; a policy that the
//! composed surface violates fails the command and writes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn fixture(name: &str) -> String {
    format!(
        "{}/../examples/wasm/{name}.wasm",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn gridreg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(args)
        .env(
            "GRIDREG_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("gridreg-compose-cache"),
        )
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

fn sha256(path: &str) -> String {
    // The protocol's digest is the one truth; `gridreg inspect --json` would do too.
    let bytes = std::fs::read(path).unwrap();
    gridreg_protocol::Digest::of(&bytes).to_string()
}

#[test]
fn processor_plugged_with_converter_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("app.wasm");
    let out_s = out.to_str().unwrap();
    let (processor, converter) = (fixture("processor"), fixture("converter"));
    let o = gridreg(&["compose", &processor, "--plug", &converter, "-o", out_s]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains(&format!(
            "plugged {converter} satisfies neon:cybergrid/converter@0.1.0"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("composed component still imports:"),
        "{stdout}"
    );
    assert!(stdout.contains("wasi:cli/stdout@0.2.6  stdio"), "{stdout}");
    assert!(!stdout.contains("  neon:cybergrid/converter"), "{stdout}");

    // The composed component no longer imports the converter interface...
    let composed = std::fs::read(&out).unwrap();
    let audit = gridreg_verifier::audit(&composed).unwrap();
    assert!(audit.imports.iter().all(|i| !i.name.starts_with("neon:")));
    assert!(audit.exports.iter().any(|e| e.starts_with("wasi:cli/run@")));

    // ...and runs (processor's std start-up imports the environment, which `ci` allows).
    let o = gridreg(&["run", out_s, "--policy", "ci"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "100.00 EUR = 108.70 USD\n");

    // The manifest records every input with its digest and what it satisfied.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{out_s}.composition.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["format"], "gridreg/composition/v1");
    assert_eq!(manifest["output"]["digest"], audit.digest.to_string());
    assert_eq!(manifest["socket"]["reference"], processor.as_str());
    assert_eq!(manifest["socket"]["digest"], sha256(&processor));
    let plug = &manifest["plugs"][0];
    assert_eq!(plug["reference"], converter.as_str());
    assert_eq!(plug["digest"], sha256(&converter));
    assert_eq!(
        plug["satisfied"][0]["import"],
        "neon:cybergrid/converter@0.1.0"
    );
    let imports = manifest["output"]["imports"].as_array().unwrap();
    assert_eq!(imports.len(), audit.imports.len());
    assert!(imports.iter().all(|i| i["class"].is_string()));
}

#[test]
fn socket_alone_cannot_run() {
    let o = gridreg(&["run", &fixture("processor"), "--policy", "ci"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("neon:cybergrid/converter@0.1.0"), "{err}");
    assert!(err.contains("import:neon:cybergrid"), "{err}");
}

#[test]
fn useless_plug_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.wasm");
    let hello = fixture("hello");
    let o = gridreg(&[
        "compose",
        &fixture("processor"),
        "--plug",
        &hello,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "plug `{hello}` satisfies none of the socket's imports"
        )),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn ambiguous_plugs_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    // The same converter with a custom section appended: different bytes, same exports.
    let mut other = std::fs::read(fixture("converter")).unwrap();
    other.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
    let other_path = tmp.path().join("converter-copy.wasm");
    std::fs::write(&other_path, &other).unwrap();
    let out = tmp.path().join("x.wasm");
    let o = gridreg(&[
        "compose",
        &fixture("processor"),
        "--plug",
        &fixture("converter"),
        "--plug",
        other_path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("ambiguous plugs: the socket's import neon:cybergrid/converter@0.1.0"),
        "{err}"
    );
    assert!(!out.exists());

    let o = gridreg(&[
        "compose",
        &fixture("processor"),
        "--plug",
        &fixture("converter"),
        "--plug",
        &fixture("converter"),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("the same component was given twice"));
}

#[test]
fn policy_violation_fails_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("app.wasm");
    let o = gridreg(&[
        "compose",
        &fixture("processor"),
        "--plug",
        &fixture("converter"),
        "-o",
        out.to_str().unwrap(),
        "--policy",
        "strict",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("[capability-denied]"), "{err}");
    assert!(err.contains("wasi:cli/environment"), "{err}");
    assert!(
        err.contains("violates policy `strict`; nothing was written"),
        "{err}"
    );
    assert!(!out.exists());

    let o = gridreg(&[
        "compose",
        &fixture("processor"),
        "--plug",
        &fixture("converter"),
        "-o",
        out.to_str().unwrap(),
        "--policy",
        "ci",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(out.exists());
}

#[test]
fn an_unreachable_registry_for_a_reference_is_an_input_error() {
    let o = gridreg(&[
        "compose",
        "acme:app@1.0.0",
        "--plug",
        &fixture("converter"),
        "-o",
        "/nonexistent/x.wasm",
        "--registry",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("cannot reach the registry at http://127.0.0.1:9"),
        "{}",
        text(&o.stderr)
    );
}
