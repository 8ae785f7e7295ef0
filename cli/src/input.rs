//! Reading inputs named on the command line: a path, or `-` for standard input, with a size cap so
//! a huge file is refused with a clear message instead of exhausting memory.

use std::io::Read;
use std::sync::mpsc;

use anyhow::{Context, bail};
use gridreg_protocol::Digest;
use gridreg_verifier::{Audit, AuditError, audit_with_digest};
use sha2::{Digest as _, Sha256};

/// The most a command reads into memory from one input. Components in the wild are a few MB; the
/// largest sandboxes are tens of MB.
pub const MAX_INPUT: u64 = 1 << 30;

/// One input file, read whole.
#[derive(Debug)]
pub struct Input {
    /// How to name it in messages and reports: the path as given, or `<stdin>`.
    pub name: String,
    pub bytes: Vec<u8>,
    /// The digest of `bytes`, computed while reading.
    pub digest: Digest,
}

/// Read in pieces of this size so hashing one piece overlaps reading the next.
const CHUNK: usize = 1 << 20;

pub fn read(path: &str) -> anyhow::Result<Input> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        if bytes.len() as u64 > MAX_INPUT {
            bail!(
                "standard input is larger than {}, the most gridreg reads",
                human_size(MAX_INPUT)
            );
        }
        let digest = Digest::of(&bytes);
        return Ok(Input {
            name: "<stdin>".to_string(),
            bytes,
            digest,
        });
    }
    let len = check_file(path)?;
    let (bytes, digest) =
        read_hashing(path, len).with_context(|| format!("cannot read `{path}`"))?;
    Ok(Input {
        name: path.to_string(),
        bytes,
        digest,
    })
}

/// Checks `path` is a file gridreg will read whole; returns its length.
fn check_file(path: &str) -> anyhow::Result<u64> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read `{path}`"))?;
    if meta.is_dir() {
        bail!("`{path}` is a directory: expected a .wasm file");
    }
    if meta.len() > MAX_INPUT {
        bail!(
            "`{path}` is {}: larger than {}, the most gridreg reads",
            human_size(meta.len()),
            human_size(MAX_INPUT)
        );
    }
    Ok(meta.len())
}

/// Reads `path` and audits it, hashing alongside validation rather than alongside the read:
/// validation is the long part, so the digest costs next to nothing (`verify`'s path).
pub fn read_audited(path: &str) -> anyhow::Result<(Input, Result<Audit, AuditError>)> {
    if path == "-" {
        let input = read(path)?;
        let audit = audit_with_digest(&input.bytes, input.digest);
        return Ok((input, audit));
    }
    let len = check_file(path)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read `{path}`"))?;
    if bytes.len() as u64 > MAX_INPUT {
        bail!(
            "`{path}` grew past {} while it was read",
            human_size(MAX_INPUT)
        );
    }
    // `audit` hashes on one rayon thread while the other validates.
    let audit = gridreg_verifier::audit(&bytes);
    let digest = match &audit {
        Ok(a) => a.digest,
        Err(_) => Digest::of(&bytes),
    };
    Ok((
        Input {
            name: path.to_string(),
            bytes,
            digest,
        },
        audit,
    ))
}

/// Reads `len` bytes of `path` while a second thread hashes each piece already read, so the digest
/// costs next to nothing on top of the read (the audit then skips hashing: `audit_with_digest`).
fn read_hashing(path: &str, len: u64) -> std::io::Result<(Vec<u8>, Digest)> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    let digest = std::thread::scope(|scope| -> std::io::Result<Digest> {
        let (tx, rx) = mpsc::channel::<&[u8]>();
        let hasher = scope.spawn(move || {
            let mut h = Sha256::new();
            for piece in rx {
                h.update(piece);
            }
            Digest(h.finalize().into())
        });
        for piece in bytes.chunks_mut(CHUNK) {
            file.read_exact(piece).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    std::io::Error::other("the file shrank while it was being read")
                }
                _ => e,
            })?;
            // The hasher only ever sees pieces that are fully read and never written again.
            let _ = tx.send(&*piece);
        }
        drop(tx);
        hasher
            .join()
            .map_err(|_| std::io::Error::other("the hashing thread failed"))
    })?;
    Ok((bytes, digest))
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}
