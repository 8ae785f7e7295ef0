//! The audit over five real third-party components (numcodecs codecs, MPL-2.0, from PyPI wheels),
//! listed in `tests/corpus/MANIFEST.tsv` and fetched by `scripts/fetch-corpus.sh` into
//! `$GRIDREG_CORPUS` (default `$TMPDIR/gridreg-corpus`, where the script puts them when that
//! variable is not set). The expected surfaces were cross-checked with
//! `wasm-tools component wit` 1.262.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use gridreg_verifier::{Kind, audit, audit_serial, wit_text};

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

/// (file, sha256 from tests/corpus/MANIFEST.tsv)
const FILES: &[(&str, &str)] = &[
    (
        "numcodecs-identity.wasm",
        "f506245d5712f354d43f13ec192dbe422951214cbe030f7ebe4e4f4a5b38c1c5",
    ),
    (
        "numcodecs-zfp.wasm",
        "a17c7f6812099443a3b538377b0519aef165fd279ca048d6e251020bbc7842e5",
    ),
    (
        "numcodecs-zstd.wasm",
        "e3a0771fd8b10c1eacd8157c8c630619e31e92255b1aeef1b88336d93d48013f",
    ),
    (
        "numcodecs-pco.wasm",
        "8fa802595d6e6e324c0e21e5bca66b3a6bcb14709ba7ee1ff4d354f63cfaa90d",
    ),
    (
        "numcodecs-jpeg2000.wasm",
        "b0c8c6cc0f34d7c013b227f596a678971ca37e4f46addf7d258f9bb7bd9f49ee",
    ),
];

const SMALL_SURFACE: &[(&str, &str)] = &[
    ("wasi:cli/stderr@0.2.6", "stdio"),
    ("wasi:io/error@0.2.6", "io"),
    ("wasi:io/streams@0.2.6", "io"),
    ("wasi:logging/logging", "logging"),
    ("wasi:random/random@0.2.6", "random"),
];

const JPEG2000_SURFACE: &[(&str, &str)] = &[
    ("wasi:cli/environment@0.2.6", "environment"),
    ("wasi:cli/exit@0.2.6", "exit"),
    ("wasi:cli/stderr@0.2.6", "stdio"),
    ("wasi:cli/stdin@0.2.6", "stdio"),
    ("wasi:cli/stdout@0.2.6", "stdio"),
    ("wasi:cli/terminal-input@0.2.6", "stdio"),
    ("wasi:cli/terminal-output@0.2.6", "stdio"),
    ("wasi:cli/terminal-stderr@0.2.6", "stdio"),
    ("wasi:cli/terminal-stdin@0.2.6", "stdio"),
    ("wasi:cli/terminal-stdout@0.2.6", "stdio"),
    ("wasi:clocks/wall-clock@0.2.6", "clocks"),
    ("wasi:filesystem/preopens@0.2.6", "filesystem"),
    ("wasi:filesystem/types@0.2.6", "filesystem"),
    ("wasi:io/error@0.2.6", "io"),
    ("wasi:io/streams@0.2.6", "io"),
    ("wasi:logging/logging", "logging"),
    ("wasi:random/random@0.2.6", "random"),
];

// docs/protocol.md §10.1 "Capability classes" (import names and their classes, export
// names, the `sha256:<hex>` digest of §1.2 "Encodings"), the names a release lists in
// §4.1 "Release records"
#[test]
fn every_corpus_component_shows_its_imports_exports_and_digest() {
    let dir = corpus_dir();
    for (file, sha) in FILES {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let a = audit(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(a.kind, Kind::Component, "{file}");
        assert_eq!(a.size, bytes.len() as u64);
        assert_eq!(
            a.digest.to_string(),
            format!("sha256:{sha}"),
            "{file}: digest differs from the manifest's sha256"
        );
        let expected = if *file == "numcodecs-jpeg2000.wasm" {
            JPEG2000_SURFACE
        } else {
            SMALL_SURFACE
        };
        let got: Vec<(&str, &str)> = a
            .imports
            .iter()
            .map(|i| (i.name.as_str(), i.class.as_str()))
            .collect();
        assert_eq!(got, expected, "{file}: imports");
        assert_eq!(
            a.exports,
            vec!["numcodecs:abc/codec@0.1.1".to_string()],
            "{file}: exports"
        );
        assert!(
            a.producers
                .iter()
                .any(|p| p.field == "language" && p.name == "Rust"),
            "{file}: producers {:?}",
            a.producers
        );
        let wit = wit_text(&bytes).unwrap();
        assert!(
            wit.contains("export numcodecs:abc/codec@0.1.1;"),
            "{file}: WIT lacks the export:\n{wit}"
        );
        assert!(
            wit.contains("import wasi:logging/logging;"),
            "{file}: WIT lacks the logging import"
        );
    }
}

#[test]
fn any_prefix_of_a_real_component_is_an_error_not_a_panic() {
    let bytes = std::fs::read(corpus_dir().join("numcodecs-identity.wasm")).unwrap();
    let full = audit(&bytes).unwrap();
    // A spread of cut points, including inside the header and near the end.
    let mut cuts: Vec<usize> = (0..64).collect();
    cuts.extend((1..80).map(|i| bytes.len() * i / 80));
    cuts.push(bytes.len() - 1);
    for cut in cuts {
        match audit(&bytes[..cut]) {
            // A prefix that ends on a section boundary can be a valid (smaller) component: then it
            // must not claim anything the whole does not have.
            Ok(part) => assert!(
                part.imports.iter().all(|i| full.imports.contains(i)),
                "cut {cut}"
            ),
            Err(err) if cut >= 8 => {
                assert!(err.offset().is_some_and(|o| o <= cut), "cut {cut}: {err}")
            }
            Err(_) => {}
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let bytes = std::fs::read(corpus_dir().join("numcodecs-zfp.wasm")).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..120 {
        // xorshift: a fixed, reproducible sequence of positions and values
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut copy = bytes.clone();
        let pos = (state % copy.len() as u64) as usize;
        copy[pos] ^= (state >> 32) as u8 | 1;
        // Either outcome is fine; what matters is an answer instead of a panic, and the same
        // answer (the error with the lowest offset) whether bodies are validated on one thread
        // or on every core.
        let pooled = format!("{:?}", audit(&copy));
        assert_eq!(
            pooled,
            format!("{:?}", audit_serial(&copy)),
            "flip at {pos}"
        );
    }
}

#[test]
fn serial_and_parallel_audits_agree() {
    for (file, _) in FILES {
        let bytes = std::fs::read(corpus_dir().join(file)).unwrap();
        let pooled = audit(&bytes).unwrap();
        let serial = audit_serial(&bytes).unwrap();
        assert_eq!(
            serde_json::to_string(&pooled).unwrap(),
            serde_json::to_string(&serial).unwrap(),
            "{file}"
        );
    }
}
