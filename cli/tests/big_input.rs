//! Huge inputs through the real binary: a 200 MB file of noise, a 200 MB valid module judged by a
//! size limit, and a file over the read cap. Each must end in a clear answer, never a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::Command;

const MB: usize = 1_000_000;

fn gridreg(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gridreg"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A valid core module: the header, then one custom section of `payload` bytes.
fn module_with_custom_section(payload: usize) -> Vec<u8> {
    let name = b"padding";
    let body_len = 1 + name.len() + payload;
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.push(0); // custom section id
    let mut n = body_len;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.resize(bytes.len() + payload, 0xab);
    bytes
}

#[test]
fn two_hundred_megabytes_of_noise_is_an_input_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noise.wasm");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut block = vec![0u8; MB];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        f.write_all(&block).unwrap();
    }
    drop(f);
    let (code, _, stderr) = gridreg(&["verify", path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = gridreg(&["inspect", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not a WebAssembly binary"), "{stderr}");
}

#[test]
fn a_two_hundred_megabyte_module_is_audited_and_judged_by_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.wasm");
    std::fs::write(&path, module_with_custom_section(200 * MB)).unwrap();
    let policy = dir.path().join("limit.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"limit\"\n\n[limits]\nmax_size = \"50MiB\"\n",
    )
    .unwrap();

    let (code, stdout, stderr) = gridreg(&[
        "verify",
        path.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["kind"], "module");
    assert!(report["size"].as_u64().unwrap() > 200 * MB as u64);
    assert_eq!(report["violations"][0]["rule"], "size-limit", "{report}");

    // Without a limit the same file passes: size alone is not an error.
    let (code, _, stderr) = gridreg(&["verify", path.to_str().unwrap(), "--policy", "default"]);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_file_over_the_read_cap_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.wasm");
    // Sparse: takes no disk space, but reports 1.5 GiB.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(3 << 29).unwrap();
    drop(f);
    let (code, _, stderr) = gridreg(&["inspect", path.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("larger than 1.0 GiB"), "{stderr}");
}
