//! C2SP tlog checkpoints (`ORIGIN\nSIZE\nBASE64(root)\n` plus optional extension lines, as a
//! signed note by the log's key), and the client's check of a new checkpoint against the last
//! one it trusted. A mismatch is a [`CheckpointError::Fork`] carrying both signed checkpoints and
//! the proof, so it can be shown to anyone as evidence that the log misbehaved.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::key::{SignerKey, VerifierKey};
use crate::merkle::{self, Hash};
use crate::note::{self, KeySet, Note, NoteError};

/// Most extension lines a checkpoint may carry.
pub const MAX_EXTENSIONS: usize = 16;
/// Longest origin line, in bytes.
pub const MAX_ORIGIN_LEN: usize = 256;

/// Why a checkpoint was rejected, or why a new one cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint note: {0}")]
    Note(#[from] NoteError),
    #[error("checkpoint line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("expected a checkpoint for origin `{expected}`, found origin `{found}`")]
    WrongOrigin { expected: String, found: String },
    #[error("checkpoint is not signed by the log key {0}")]
    NotSignedByLog(String),
    #[error("{0}")]
    Fork(Box<ForkEvidence>),
}

/// A tree head: the log's identity, its size and its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Opaque extension lines, each non-empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parses a checkpoint body (the note text).
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let bad = |line: usize, reason: String| CheckpointError::Malformed { line, reason };
        let Some(inner) = text.strip_suffix('\n') else {
            return Err(bad(0, "expected the body to end in a newline".to_string()));
        };
        let lines: Vec<&str> = inner.split('\n').collect();
        if lines.len() < 3 {
            return Err(bad(
                lines.len() + 1,
                format!(
                    "expected origin, size and root lines, found {} lines",
                    lines.len()
                ),
            ));
        }
        let origin = lines[0];
        if origin.is_empty() || origin.len() > MAX_ORIGIN_LEN {
            return Err(bad(
                1,
                format!(
                    "expected an origin of 1 to {MAX_ORIGIN_LEN} bytes, found {}",
                    origin.len()
                ),
            ));
        }
        let size_s = lines[1];
        let canonical = !size_s.is_empty()
            && size_s.bytes().all(|b| b.is_ascii_digit())
            && !(size_s.len() > 1 && size_s.starts_with('0'));
        let size = canonical
            .then(|| size_s.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                bad(
                    2,
                    format!("expected a tree size without leading zeros, found `{size_s}`"),
                )
            })?;
        let root_raw = B64.decode(lines[2]).map_err(|_| {
            bad(
                3,
                format!("expected a base64 root hash, found `{}`", lines[2]),
            )
        })?;
        let root: Hash = root_raw.as_slice().try_into().map_err(|_| {
            bad(
                3,
                format!(
                    "expected a 32-byte root hash, found {} bytes",
                    root_raw.len()
                ),
            )
        })?;
        let extensions: Vec<String> = lines[3..].iter().map(|s| s.to_string()).collect();
        if extensions.len() > MAX_EXTENSIONS {
            return Err(bad(
                4 + MAX_EXTENSIONS,
                format!("expected at most {MAX_EXTENSIONS} extension lines"),
            ));
        }
        if let Some(i) = extensions.iter().position(String::is_empty) {
            return Err(bad(
                4 + i,
                "expected a non-empty extension line".to_string(),
            ));
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// The note text: origin, size, base64 root, extension lines.
    pub fn to_body(&self) -> String {
        let mut out = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            out.push_str(e);
            out.push('\n');
        }
        out
    }

    /// Signs the checkpoint with the log key (and optionally witnesses' keys).
    pub fn sign(&self, signers: &[&SignerKey]) -> Result<SignedCheckpoint, CheckpointError> {
        let body = self.to_body();
        // Parsing our own output keeps the writer and the reader from ever disagreeing.
        let back = Self::parse_body(&body)?;
        let signed = Note::sign(&body, signers)?;
        Ok(SignedCheckpoint {
            checkpoint: back,
            note: signed.to_text(),
            signed,
        })
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} size {} root {}",
            self.origin,
            self.size,
            hex::encode(self.root)
        )
    }
}

/// A checkpoint together with the signed note it came in, which is what evidence must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub note: String,
    /// `note` parsed: its text and every signature line, verified or not (witnesses'
    /// cosignatures are checked by whoever knows their keys).
    signed: Note,
}

impl SignedCheckpoint {
    /// Parses a signed checkpoint and checks it is signed by `log_key` for `origin`. Other
    /// signatures (witnesses, a rotated key) are ignored.
    pub fn verify(
        note_text: &[u8],
        origin: &str,
        log_key: &VerifierKey,
    ) -> Result<Self, CheckpointError> {
        let keys = KeySet::from_keys([log_key.clone()]);
        let verified = match note::verify(note_text, &keys) {
            Ok(v) => v,
            Err(NoteError::NoVerifiedSignature { .. }) => {
                return Err(CheckpointError::NotSignedByLog(log_key.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        let checkpoint = Checkpoint::parse_body(verified.text())?;
        if checkpoint.origin != origin {
            return Err(CheckpointError::WrongOrigin {
                expected: origin.to_string(),
                found: checkpoint.origin,
            });
        }
        Ok(Self {
            checkpoint,
            note: verified.note.to_text(),
            signed: verified.note,
        })
    }

    /// The note parsed, with every signature line it carries.
    pub fn signed_note(&self) -> &Note {
        &self.signed
    }

    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }

    pub fn root(&self) -> &Hash {
        &self.checkpoint.root
    }
}

/// What kind of inconsistency was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkKind {
    /// Two signed checkpoints of the same size with different roots.
    SameSizeDifferentRoot,
    /// The new checkpoint is larger but the proof does not show the trusted one is its prefix.
    NotAnExtension,
    /// The new checkpoint is smaller but is not a prefix of the trusted one.
    NotAPrefix,
}

/// Both checkpoints, each signed by the log, and the proof that failed: together they show the
/// log signed two views of history that cannot both be true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkEvidence {
    pub kind: ForkKind,
    pub trusted: SignedCheckpoint,
    pub new: SignedCheckpoint,
    pub proof: Vec<Hash>,
}

impl fmt::Display for ForkEvidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ForkKind::SameSizeDifferentRoot => "two different roots for the same size",
            ForkKind::NotAnExtension => "the new checkpoint does not extend the trusted one",
            ForkKind::NotAPrefix => "the older checkpoint is not a prefix of the trusted one",
        };
        writeln!(f, "LOG FORK DETECTED: {what}; keep this evidence")?;
        writeln!(f, "trusted checkpoint:\n{}", self.trusted.note)?;
        writeln!(f, "new checkpoint:\n{}", self.new.note)?;
        write!(f, "proof ({} hashes):", self.proof.len())?;
        for h in &self.proof {
            write!(f, " {}", B64.encode(h))?;
        }
        Ok(())
    }
}

/// How a new checkpoint relates to the trusted one, when they agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The new checkpoint extends the trusted one: trust it from now on.
    Newer,
    /// Same size and root.
    Same,
    /// An older prefix of the trusted one: consistent, keep trusting the trusted one.
    Older,
}

/// Checks a new verified checkpoint against the last trusted one. `proof` is the consistency
/// proof between the smaller and the larger tree (empty when sizes are equal).
pub fn check_against_trusted(
    trusted: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: &[Hash],
) -> Result<Advance, CheckpointError> {
    if trusted.checkpoint.origin != new.checkpoint.origin {
        return Err(CheckpointError::WrongOrigin {
            expected: trusted.checkpoint.origin.clone(),
            found: new.checkpoint.origin.clone(),
        });
    }
    let fork = |kind| {
        CheckpointError::Fork(Box::new(ForkEvidence {
            kind,
            trusted: trusted.clone(),
            new: new.clone(),
            proof: proof.to_vec(),
        }))
    };
    let (t, n) = (&trusted.checkpoint, &new.checkpoint);
    if n.size == t.size {
        return if n.root == t.root && proof.is_empty() {
            Ok(Advance::Same)
        } else {
            Err(fork(ForkKind::SameSizeDifferentRoot))
        };
    }
    if n.size > t.size {
        merkle::verify_consistency(proof, n.size, &n.root, t.size, &t.root)
            .map(|()| Advance::Newer)
            .map_err(|_| fork(ForkKind::NotAnExtension))
    } else {
        merkle::verify_consistency(proof, t.size, &t.root, n.size, &n.root)
            .map(|()| Advance::Older)
            .map_err(|_| fork(ForkKind::NotAPrefix))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn body_strictness() {
        let good = "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let c = Checkpoint::parse_body(good).unwrap();
        assert_eq!(c.to_body(), good);
        let ext = format!("{good}ext one\n");
        assert_eq!(
            Checkpoint::parse_body(&ext).unwrap().extensions,
            vec!["ext one"]
        );
        for bad in [
            "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
            "example.com/log\n05\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "example.com/log\n-5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
            "example.com/log\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx=\n",
            "example.com/log\n5\n",
            "\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
        ] {
            assert!(Checkpoint::parse_body(bad).is_err(), "{bad:?}");
        }
        let many = format!("{good}{}", "e\n".repeat(MAX_EXTENSIONS + 1));
        assert!(Checkpoint::parse_body(&many).is_err());
    }
}
