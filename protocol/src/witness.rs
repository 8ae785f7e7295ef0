//! C2SP tlog-witness: the `add-checkpoint` request a log sends to a witness, and the witness's
//! decision over it (docs/protocol.md §7.13). Pure: the registry's witness server keeps the
//! state, does the durable write and signs; the registry's submitter builds requests.
//!
//! Request body: `old <size>\n`, up to 63 base64 consistency-proof lines, an empty line, then
//! the signed checkpoint. A witness cosigns only a checkpoint signed by a log key it was given,
//! whose `old` is exactly the size it last cosigned for that origin (else 409 with that size),
//! with a proof that the new tree extends the old one (else 422), and, at an unchanged size,
//! only the same root (else 409): so it never cosigns two roots for one size of one log.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::Checkpoint;
use crate::merkle::{Hash, MAX_PROOF_LEN, verify_consistency};
use crate::note::{self, KeySet, Note, NoteError};
use crate::tiles::canonical_decimal;

/// Most consistency-proof lines a request may carry (the spec's 63).
pub const MAX_PROOF_LINES: usize = MAX_PROOF_LEN - 1;
/// Largest request body a witness reads: the old line, 63 proof lines and a checkpoint with
/// its signatures.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;
/// The content type of a 409 body: the witness's size, in decimal, and a newline.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A parsed `add-checkpoint` body (the checkpoint's signatures not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent.
    pub checkpoint: Note,
}

impl AddCheckpoint {
    /// The request body for `checkpoint_note` (a signed note text) from `old` with `proof`.
    pub fn body(old: u64, proof: &[Hash], checkpoint_note: &str) -> String {
        let mut out = format!("old {old}\n");
        for h in proof {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(checkpoint_note);
        out
    }

    /// Parses a request body strictly: a canonical decimal `old`, proof lines of exactly one
    /// base64 hash each, at most [`MAX_PROOF_LINES`], then a signed note.
    pub fn parse(bytes: &[u8]) -> Result<Self, Refusal> {
        let bad = |m: String| Refusal::Malformed(m);
        if bytes.len() > MAX_REQUEST_LEN {
            return Err(bad(format!(
                "expected a body of at most {MAX_REQUEST_LEN} bytes, found {}",
                bytes.len()
            )));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| bad("expected a UTF-8 body, found other bytes".into()))?;
        let Some((first, mut rest)) = text.split_once('\n') else {
            return Err(bad(
                "expected a first line `old <size>`, found no newline".into()
            ));
        };
        let old = first
            .strip_prefix("old ")
            .and_then(canonical_decimal)
            .ok_or_else(|| {
                bad(format!(
                    "expected `old <size>` in decimal, found `{}`",
                    clip(first)
                ))
            })?;
        let mut proof = Vec::new();
        loop {
            let Some((line, tail)) = rest.split_once('\n') else {
                return Err(bad(
                    "expected an empty line between the proof and the checkpoint, found none"
                        .into(),
                ));
            };
            rest = tail;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!(
                    "expected at most {MAX_PROOF_LINES} consistency proof lines, found more"
                )));
            }
            let raw = B64
                .decode(line)
                .ok()
                .filter(|r| r.len() == 32 && B64.encode(r) == line)
                .ok_or_else(|| {
                    bad(format!(
                        "expected a base64 SHA-256 hash on proof line {}, found `{}`",
                        proof.len() + 1,
                        clip(line)
                    ))
                })?;
            let mut h = [0u8; 32];
            h.copy_from_slice(&raw);
            proof.push(h);
        }
        let checkpoint =
            Note::parse(rest.as_bytes()).map_err(|e| bad(format!("the checkpoint: {e}")))?;
        Ok(Self {
            old,
            proof,
            checkpoint,
        })
    }

    /// The checkpoint, verified under `keys` (the log keys the witness knows for its origin):
    /// signatures by other keys are ignored, and none verifying is [`Refusal::BadSignature`].
    pub fn verified_checkpoint(&self, keys: &KeySet) -> Result<Checkpoint, Refusal> {
        let text = self.checkpoint.to_text();
        let verified = match note::verify(text.as_bytes(), keys) {
            Ok(v) => v,
            Err(NoteError::NoVerifiedSignature { .. }) => {
                return Err(Refusal::BadSignature);
            }
            Err(e) => return Err(Refusal::Malformed(format!("the checkpoint: {e}"))),
        };
        Checkpoint::parse_body(verified.text())
            .map_err(|e| Refusal::Malformed(format!("the checkpoint: {e}")))
    }
}

/// What a witness last cosigned for one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub size: u64,
    pub root: Hash,
}

/// Why a witness does not cosign, with the HTTP status the protocol gives each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unknown log origin `{0}`")]
    UnknownOrigin(String),
    #[error("the checkpoint carries no valid signature by a log key this witness trusts")]
    BadSignature,
    #[error("old size {old} is larger than the checkpoint's size {size}")]
    OldTooLarge { old: u64, size: u64 },
    #[error("old size {old} is not the size {latest} this witness last cosigned")]
    SizeMismatch { old: u64, latest: u64 },
    #[error(
        "the checkpoint of size {size} has another root than the one this witness cosigned at that size"
    )]
    RootMismatch { size: u64, latest: u64 },
    #[error("the consistency proof from size {old} to {size} does not verify")]
    BadProof { old: u64, size: u64 },
}

impl Refusal {
    /// The HTTP status tlog-witness prescribes.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldTooLarge { .. } => 400,
            Refusal::BadSignature => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::SizeMismatch { .. } | Refusal::RootMismatch { .. } => 409,
            Refusal::BadProof { .. } => 422,
        }
    }

    /// For a 409: the size the witness holds, which the body carries.
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            Refusal::SizeMismatch { latest, .. } | Refusal::RootMismatch { latest, .. } => {
                Some(*latest)
            }
            _ => None,
        }
    }
}

/// The witness's decision for a verified checkpoint given what it last cosigned for the log
/// (`None`: never). `Ok` means: store `(checkpoint.size, checkpoint.root)` durably, then cosign.
pub fn judge(
    request: &AddCheckpoint,
    checkpoint: &Checkpoint,
    latest: Option<Latest>,
) -> Result<(), Refusal> {
    let size = checkpoint.size;
    if request.old > size {
        return Err(Refusal::OldTooLarge {
            old: request.old,
            size,
        });
    }
    let held = latest.map_or(0, |l| l.size);
    if request.old != held {
        return Err(Refusal::SizeMismatch {
            old: request.old,
            latest: held,
        });
    }
    match latest {
        Some(l) if l.size == size => {
            if l.root != checkpoint.root {
                return Err(Refusal::RootMismatch { size, latest: held });
            }
            if !request.proof.is_empty() {
                return Err(Refusal::BadProof { old: size, size });
            }
            Ok(())
        }
        Some(l) => verify_consistency(&request.proof, size, &checkpoint.root, l.size, &l.root)
            .map_err(|_| Refusal::BadProof { old: l.size, size }),
        None if request.proof.is_empty() => Ok(()),
        None => Err(Refusal::BadProof { old: 0, size }),
    }
}

/// Parses a 409 body: the size in decimal and a newline.
pub fn parse_size_body(body: &str) -> Option<u64> {
    canonical_decimal(body.strip_suffix('\n')?)
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::SignerKey;
    use crate::merkle::{append_leaves, leaf_hash, prove_consistency, tree_hash};

    struct Log {
        key: SignerKey,
        stored: Vec<Hash>,
        size: u64,
    }

    impl Log {
        fn new() -> Self {
            Log {
                key: SignerKey::from_seed("log.example", &[9; 32]).unwrap(),
                stored: Vec::new(),
                size: 0,
            }
        }
        fn grow(&mut self, n: u64) {
            let leaves: Vec<Hash> = (self.size..self.size + n)
                .map(|i| leaf_hash(&i.to_be_bytes()))
                .collect();
            let more = append_leaves(self.size, &leaves, &self.stored).unwrap();
            self.stored.extend(more);
            self.size += n;
        }
        fn root(&self, size: u64) -> Hash {
            tree_hash(size, &self.stored).unwrap()
        }
        fn request(&self, old: u64) -> AddCheckpoint {
            let proof = if old == 0 || old >= self.size {
                Vec::new()
            } else {
                prove_consistency(self.size, old, &self.stored).unwrap()
            };
            let note = Checkpoint::new("log.example", self.size, self.root(self.size))
                .sign(&[&self.key])
                .unwrap()
                .note;
            AddCheckpoint::parse(AddCheckpoint::body(old, &proof, &note).as_bytes()).unwrap()
        }
        fn keys(&self) -> KeySet {
            KeySet::from_keys([self.key.verifier()])
        }
    }

    fn run(req: &AddCheckpoint, keys: &KeySet, latest: Option<Latest>) -> Result<Latest, Refusal> {
        let cp = req.verified_checkpoint(keys)?;
        judge(req, &cp, latest)?;
        Ok(Latest {
            size: cp.size,
            root: cp.root,
        })
    }

    #[test]
    fn the_spec_example_body_parses() {
        let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let req = AddCheckpoint::parse(body.as_bytes()).unwrap();
        assert_eq!(req.old, 20_852_014);
        assert_eq!(req.proof.len(), 2);
        assert_eq!(req.checkpoint.signatures.len(), 1);
        // Round trip.
        assert_eq!(
            AddCheckpoint::body(req.old, &req.proof, &req.checkpoint.to_text()),
            body
        );
    }

    #[test]
    fn grows_then_refuses_rollback_fork_and_bad_proofs() {
        let mut log = Log::new();
        let keys = log.keys();
        log.grow(5);
        let first = run(&log.request(0), &keys, None).unwrap();
        assert_eq!(first.size, 5);
        // The same checkpoint again (a renewal) is cosigned again.
        assert_eq!(run(&log.request(5), &keys, Some(first)), Ok(first));
        log.grow(9);
        // A stale old size: 409 with the witness's size.
        let e = run(&log.request(0), &keys, Some(first)).unwrap_err();
        assert_eq!(e.status(), 409);
        assert_eq!(e.latest_size(), Some(5));
        let second = run(&log.request(5), &keys, Some(first)).unwrap();
        assert_eq!(second.size, 14);
        // A proof from a size the witness does not hold.
        assert_eq!(
            run(&log.request(3), &keys, Some(second))
                .unwrap_err()
                .status(),
            409
        );
        // A wrong proof line.
        let mut req = log.request(5);
        req.proof[0][0] ^= 1;
        assert_eq!(
            run(&req, &keys, Some(first)),
            Err(Refusal::BadProof { old: 5, size: 14 })
        );
        // A fork: another log with the same key, same size 14, other leaves.
        let mut fork = Log::new();
        let leaves: Vec<Hash> = (100..114u64).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        fork.stored = append_leaves(0, &leaves, &Vec::<Hash>::new()).unwrap();
        fork.size = 14;
        let e = run(&fork.request(14), &keys, Some(second)).unwrap_err();
        assert_eq!(
            e,
            Refusal::RootMismatch {
                size: 14,
                latest: 14
            }
        );
        // And from the witness's size 5 to a forked 14: the proof cannot verify.
        let e = run(&fork.request(5), &keys, Some(first)).unwrap_err();
        assert_eq!(e.status(), 422);
        // A rollback: a checkpoint smaller than the old size the client claims.
        let mut small = Log::new();
        small.grow(3);
        let e = run(&small.request(5), &keys, Some(first)).unwrap_err();
        assert_eq!(e, Refusal::OldTooLarge { old: 5, size: 3 });
        // Old 0 with a non-empty proof.
        let mut req = log.request(0);
        req.proof.push([0; 32]);
        assert_eq!(run(&req, &keys, None).unwrap_err().status(), 422);
    }

    #[test]
    fn unknown_keys_and_malformed_bodies() {
        let mut log = Log::new();
        log.grow(2);
        let other = KeySet::from_keys([SignerKey::from_seed("log.example", &[8; 32])
            .unwrap()
            .verifier()]);
        assert_eq!(
            run(&log.request(0), &other, None),
            Err(Refusal::BadSignature)
        );
        for bad in [
            "",
            "old 1",
            "old 01\n\nx\n",
            "old -1\n\n",
            "new 1\n\n",
            "old 1\nnot base64\n\n",
            "old 1\nAAAA\n\n",
            "old 1\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n",
            "old 0\n\nnot a note",
        ] {
            let e = AddCheckpoint::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}: {e}");
        }
        let many = format!(
            "old 1\n{}\n",
            "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n".repeat(64)
        );
        assert!(
            AddCheckpoint::parse(many.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("at most 63")
        );
        assert!(AddCheckpoint::parse(&vec![b'a'; MAX_REQUEST_LEN + 1]).is_err());
        assert_eq!(parse_size_body("17\n"), Some(17));
        assert_eq!(parse_size_body("017\n"), None);
        assert_eq!(parse_size_body("17"), None);
    }
}
