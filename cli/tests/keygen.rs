//! Runs the real `gridreg keygen` binary: file mode, refusal to overwrite, and that the printed
//! verifier key checks a note signed with the written signer key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use gridreg_protocol::note::{self, KeySet, Note};
use gridreg_protocol::{SignerKey, VerifierKey};

fn gridreg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gridreg"))
}

#[test]
fn writes_private_key_and_prints_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.key");
    let out = gridreg()
        .args(["keygen", "--name", "alice", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout must hold only the verifier key"
    );
    let verifier = VerifierKey::parse(stdout.trim_end()).unwrap();
    assert_eq!(verifier.name(), "alice");
    assert!(String::from_utf8_lossy(&out.stderr).contains("alice.key"));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let secret = std::fs::read_to_string(&path).unwrap();
    assert!(secret.starts_with("PRIVATE+KEY+alice+"));
    let signer = SignerKey::parse_key_file(&secret).unwrap();
    let signed = Note::sign("hello from alice\n", &[&signer])
        .unwrap()
        .to_text();
    let keys = KeySet::from_keys([verifier]);
    note::verify(signed.as_bytes(), &keys).unwrap();

    // A second run must not touch the existing key.
    let again = gridreg()
        .args(["keygen", "--name", "alice", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert!(again.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), secret);
}

#[test]
fn default_path_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = gridreg()
        .current_dir(dir.path())
        .args(["keygen", "--name", "ci-bot", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["name"], "ci-bot");
    assert_eq!(v["signer_key_file"], "ci-bot.key");
    let verifier = VerifierKey::parse(v["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(v["key_id"], format!("{:08x}", verifier.id()));
    let secret = std::fs::read_to_string(dir.path().join("ci-bot.key")).unwrap();
    assert_eq!(
        SignerKey::parse_key_file(&secret).unwrap().verifier(),
        verifier
    );
}

#[test]
fn bad_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = gridreg()
        .current_dir(dir.path())
        .args(["keygen", "--name", "a+b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a+b"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
