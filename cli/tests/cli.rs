//! File-driven CLI tests: every `tests/cli/**/*.test` file holds `# RUN: args` (must exit 0) or
//! `# FAIL: args` (must exit non-zero) lines; the expected stdout and stderr sit beside it as
//! `NAME.stdout` / `NAME.stderr` (`NAME.N.stdout` when a file has several commands). A FAIL's
//! expected stderr starts with `exit status: N`. `BLESS=1 cargo test --test cli` rewrites the
//! expected files from what the commands print now; review the diff before committing.
//! `tests/cli/readme.test` documents the directives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn test_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            test_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "test") {
            out.push(path);
        }
    }
}

/// Splits a command line on spaces, keeping "double-quoted words" together.
fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    args.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        args.push(cur);
    }
    args
}

struct Directive {
    expect_success: bool,
    args: Vec<String>,
}

fn directives(text: &str) -> Vec<Directive> {
    text.lines()
        .filter_map(|l| {
            // Directives are `# RUN:` / `# FAIL:` exactly, so prose may mention them indented.
            let l = l.strip_prefix("# ")?;
            if let Some(rest) = l.strip_prefix("RUN:") {
                Some(Directive {
                    expect_success: true,
                    args: split_args(rest.trim()),
                })
            } else {
                l.strip_prefix("FAIL:").map(|rest| Directive {
                    expect_success: false,
                    args: split_args(rest.trim()),
                })
            }
        })
        .collect()
}

fn check_or_bless(path: &Path, actual: &str, bless: bool, failures: &mut Vec<String>) {
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected == actual {
        return;
    }
    if bless {
        if actual.is_empty() {
            let _ = std::fs::remove_file(path);
        } else {
            std::fs::write(path, actual).unwrap();
        }
        return;
    }
    failures.push(format!(
        "{} differs\n--- expected\n{expected}\n+++ actual\n{actual}",
        path.strip_prefix(repo_root()).unwrap_or(path).display()
    ));
}

#[test]
fn cli_files() {
    let root = repo_root();
    let mut files = Vec::new();
    test_files(&root.join("tests/cli"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .test files under tests/cli");
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let ds = directives(&text);
        assert!(
            !ds.is_empty(),
            "{} has no RUN: or FAIL: line",
            file.display()
        );
        let tmp = tempfile::tempdir().unwrap();
        let tmp_path = tmp.path().to_str().unwrap().to_string();
        for (n, d) in ds.iter().enumerate() {
            let args: Vec<String> = d
                .args
                .iter()
                .map(|a| a.replace("%TMP", &tmp_path))
                .collect();
            let out = Command::new(env!("CARGO_BIN_EXE_gridreg"))
                .args(&args)
                .current_dir(&root)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .env("HOME", &tmp_path)
                .env("NO_COLOR", "1")
                .env("GRIDREG_CONFIG", format!("{tmp_path}/config.toml"))
                .output()
                .unwrap();
            ran += 1;
            let code = out.status.code().unwrap_or(-1);
            let normalise = |b: &[u8]| String::from_utf8_lossy(b).replace(&tmp_path, "$TMP");
            let stdout = normalise(&out.stdout);
            let mut stderr = normalise(&out.stderr);
            let what = format!(
                "{} (command {}: gridreg {})",
                file.display(),
                n + 1,
                args.join(" ")
            );
            if d.expect_success && code != 0 {
                failures.push(format!(
                    "{what}: expected exit status 0, found {code}\nstderr:\n{stderr}"
                ));
                continue;
            }
            if !d.expect_success {
                if code == 0 {
                    failures.push(format!(
                        "{what}: expected a failure, found exit status 0\nstdout:\n{stdout}"
                    ));
                    continue;
                }
                stderr = format!("exit status: {code}\n{stderr}");
            }
            let base = file.with_extension("");
            let suffix = if ds.len() > 1 {
                format!(".{}", n + 1)
            } else {
                String::new()
            };
            let stem = base.to_str().unwrap();
            check_or_bless(
                Path::new(&format!("{stem}{suffix}.stdout")),
                &stdout,
                bless,
                &mut failures,
            );
            check_or_bless(
                Path::new(&format!("{stem}{suffix}.stderr")),
                &stderr,
                bless,
                &mut failures,
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} CLI commands failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{ran} CLI commands from {} files matched their expected output",
        files.len()
    );
}
