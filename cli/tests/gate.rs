//! The CI gate as CI runs it, against whichever build of `gridreg` this is: the full one
//! (`cargo test`) or the gate one (`cargo test -p gridreg --no-default-features --features gate`,
//! which scripts/test.sh runs too). `verify` over the real-component corpus (`$GRIDREG_CORPUS`,
//! fetched by scripts/fetch-corpus.sh) with its one line per file, the GitHub Actions annotations,
//! SARIF, and, in the gate build, the commands it leaves out: they exit 2 naming the full build.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real-component corpus; fails (never skips) when it is missing.
fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("GRIDREG_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("gridreg-corpus"));
    assert!(
        dir.join("numcodecs-identity.wasm").is_file(),
        "the real-component corpus is missing from {}: run `scripts/fetch-corpus.sh {}` \
         (scripts/test.sh does this) or set GRIDREG_CORPUS",
        dir.display(),
        dir.display()
    );
    dir
}

const CORPUS: &[&str] = &[
    "numcodecs-identity.wasm",
    "numcodecs-jpeg2000.wasm",
    "numcodecs-pco.wasm",
    "numcodecs-zfp.wasm",
    "numcodecs-zstd.wasm",
];

/// Runs `gridreg ARGS` from the repository root in a clean environment plus `env`.
fn gridreg(args: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gridreg"));
    cmd.args(args)
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        .env("GRIDREG_CONFIG", home.path().join("config.toml"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn corpus_args(dir: &Path) -> Vec<String> {
    CORPUS
        .iter()
        .map(|f| dir.join(f).to_str().unwrap().to_string())
        .collect()
}

/// `verify` over the corpus in the human format: one line per file with its verdict, the
/// violations under the one that fails, a total line, exit 1; no annotations outside GitHub.
#[test]
fn verify_corpus_one_line_per_file() {
    let dir = corpus_dir();
    let files = corpus_args(&dir);
    let mut args = vec!["verify"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--policy", "ci"]);
    let out = gridreg(&args, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));

    let summaries: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("5 files"))
        .collect();
    assert_eq!(summaries.len(), CORPUS.len(), "{stdout}");
    for (line, file) in summaries.iter().zip(&files) {
        let verdict = if file.ends_with("jpeg2000.wasm") {
            "FAIL "
        } else {
            "PASS "
        };
        assert!(
            line.starts_with(&format!("{verdict} {file}  (component, ")),
            "{line}"
        );
        assert!(line.contains("policy ci, capabilities: "), "{line}");
    }
    assert!(
        stdout.contains(
            "  error   capability-not-allowed import wasi:filesystem/preopens@0.2.6 (class filesystem)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("5 files: 4 passed, 0 warned, 1 failed, 0 unreadable\n"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("::"),
        "annotations outside GitHub Actions:\n{stdout}"
    );
}

/// Under GitHub Actions the human format adds one `::error` per violation, placed on the file
/// by its path relative to the workspace; JSON and SARIF stay exactly as they are.
#[test]
fn verify_github_annotations() {
    let dir = corpus_dir();
    let workspace = dir.parent().unwrap().to_str().unwrap().to_string();
    let jpeg = dir.join("numcodecs-jpeg2000.wasm");
    let jpeg = jpeg.to_str().unwrap();
    let zstd = dir.join("numcodecs-zstd.wasm");
    let zstd = zstd.to_str().unwrap();
    let relative = Path::new(jpeg).strip_prefix(&workspace).unwrap();
    let relative = relative.to_str().unwrap();
    let github = [("GITHUB_ACTIONS", "true"), ("GITHUB_WORKSPACE", &workspace)];

    let out = gridreg(&["verify", zstd, jpeg, "--policy", "ci"], &github);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let annotations: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(
        annotations,
        [
            format!(
                "::error file={relative},title=gridreg capability-not-allowed (policy ci)::import \
                 wasi:filesystem/preopens@0.2.6 (class filesystem) is not in [capabilities].allow \
                 and [capabilities].default is \"deny\""
            ),
            format!(
                "::error file={relative},title=gridreg capability-not-allowed (policy ci)::import \
                 wasi:filesystem/types@0.2.6 (class filesystem) is not in [capabilities].allow \
                 and [capabilities].default is \"deny\""
            ),
        ],
        "{stdout}"
    );
    // The per-file lines are still there, annotations or not.
    assert!(
        stdout.starts_with(&format!("PASS  {zstd}  (component, ")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("\nFAIL  {jpeg}  (component, ")),
        "{stdout}"
    );

    // Only `true` turns them on.
    let out = gridreg(
        &["verify", jpeg, "--policy", "ci"],
        &[("GITHUB_ACTIONS", "false")],
    );
    assert!(!text(&out.stdout).contains("::"));

    // Machine formats are never mixed with workflow commands.
    for format in ["json", "sarif"] {
        let out = gridreg(
            &["verify", jpeg, "--policy", "ci", "--format", format],
            &github,
        );
        assert_eq!(out.status.code(), Some(1));
        let stdout = text(&out.stdout);
        assert!(
            !stdout.contains("\n::") && !stdout.starts_with("::"),
            "{stdout}"
        );
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            assert_eq!(v["verdict"], "fail");
        } else {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(
                v["runs"][0]["results"].as_array().unwrap().len(),
                2,
                "{stdout}"
            );
        }
    }
}

/// A policy in warn mode does not fail the gate, so its findings are warnings; a file that could
/// not be read is an error; properties are escaped (`,` and `:` in a path).
#[test]
fn verify_github_annotations_warn_mode_errors_and_escaping() {
    let dir = corpus_dir();
    let tmp = tempfile::tempdir().unwrap();
    let odd = tmp.path().join("a,b:c.wasm");
    std::fs::copy(dir.join("numcodecs-jpeg2000.wasm"), &odd).unwrap();
    let policy = tmp.path().join("warn.toml");
    std::fs::write(
        &policy,
        "[policy]\nname = \"lenient\"\nmode = \"warn\"\n\n[capabilities]\n\
         allow = [\"stdio\", \"io\", \"logging\", \"random\", \"environment\", \"exit\", \"clocks\"]\n\
         default = \"deny\"\n",
    )
    .unwrap();
    let odd = odd.to_str().unwrap();
    let missing = tmp.path().join("missing.wasm");
    let missing = missing.to_str().unwrap();

    let out = gridreg(
        &["verify", odd, "--policy", policy.to_str().unwrap()],
        &[("GITHUB_ACTIONS", "true")],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let escaped = odd.replace(',', "%2C").replace(':', "%3A");
    let annotations: Vec<&str> = stdout.lines().filter(|l| l.starts_with("::")).collect();
    assert_eq!(annotations.len(), 2, "{stdout}");
    for a in &annotations {
        assert!(
            a.starts_with(&format!(
                "::warning file={escaped},title=gridreg capability-not-allowed (policy lenient)::import wasi:filesystem/"
            )),
            "{a}"
        );
    }

    let out = gridreg(&["verify", missing], &[("GITHUB_ACTIONS", "true")]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "\n::error file={},title=gridreg verify (not audited)::cannot read `{missing}`: ",
            missing.replace(':', "%3A")
        )),
        "{stdout}"
    );
}

/// The gate build leaves out `run`, `compose` and `serve`; each still parses, with any
/// arguments, `--help` included, and exits 2 naming the build that has it.
#[cfg(not(any(feature = "run", feature = "compose", feature = "serve")))]
#[test]
fn gate_build_names_the_full_build() {
    let cases: &[&[&str]] = &[
        &["run", "examples/wasm/hello.wasm"],
        &["run", "--help"],
        &["run", "app.wasm", "--policy", "ci", "--", "-x"],
        &["serve"],
        &["serve", "--data", "/nonexistent", "--addr", "127.0.0.1:0"],
        &["serve", "token", "list"],
        &["compose", "a.wasm", "--plug", "b.wasm", "-o", "c.wasm"],
    ];
    for args in cases {
        let out = gridreg(args, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "gridreg {args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "gridreg {args:?}");
        assert_eq!(
            stderr,
            format!(
                "error: `gridreg {}` is not in this build (the `gate` build); install the full \
                 build: cargo install --locked --path cli (in a clone of gridreg)\n",
                args[0]
            )
        );
    }

    let out = gridreg(&["--version"], &[]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "gridreg {} (gate build: without run, compose and serve)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let out = gridreg(&["--help"], &[]);
    let help = text(&out.stdout);
    for cmd in ["run", "compose", "serve"] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("no `{cmd}` in --help:\n{help}"));
        assert!(
            line.ends_with("[not in this build: the full build has it]"),
            "{line}"
        );
    }
    // What the gate is for is all there.
    for args in [
        &["inspect", "--help"][..],
        &["verify", "--help"],
        &["diff", "--help"],
        &["pull", "--help"],
        &["keygen", "--help"],
    ] {
        assert_eq!(gridreg(args, &[]).status.code(), Some(0), "{args:?}");
    }
}

/// The full build has every command and says nothing about builds in `--version`.
#[cfg(all(feature = "run", feature = "compose", feature = "serve"))]
#[test]
fn full_build_has_every_command() {
    let out = gridreg(&["--version"], &[]);
    assert_eq!(
        text(&out.stdout),
        format!("gridreg {}\n", env!("CARGO_PKG_VERSION"))
    );
    for cmd in ["run", "compose", "serve"] {
        let out = gridreg(&[cmd, "--help"], &[]);
        assert_eq!(out.status.code(), Some(0), "{cmd}");
        assert!(!text(&out.stdout).contains("not in this build"), "{cmd}");
    }
}
