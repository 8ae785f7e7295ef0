//! C2SP tlog-cosignature/v1 with Ed25519: a signature line on a checkpoint that says "as of this
//! time, this is the newest tree I have seen for this log" (docs/protocol.md §6.10).
//!
//! A registry's **timestamp key** adds one to the checkpoint it serves and renews it at least
//! every minute, so a client can tell a live registry from a frozen one or an old copy replayed
//! by a mirror. Witness cosignatures have the same form.
//!
//! - Key id: the first 4 bytes of SHA-256(name || 0x0A || 0x04 || public key); the verifier key
//!   is written `NAME+KEYID+BASE64(0x04 || public key)`, the signer key file
//!   `PRIVATE+KEY+NAME+KEYID+BASE64(0x04 || seed)`.
//! - Signature line: `— NAME BASE64(key id || timestamp as u64 big-endian || Ed25519 signature)`.
//! - Signed message: `cosignature/v1\ntime <decimal timestamp>\n` followed by the whole
//!   checkpoint body (origin, size, root and any extension lines, each ending in `\n`).

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::{CryptoRngCore, OsRng};

use crate::key::{
    KeyError, check_key_name, key_file_line, key_id_for, key_label, material_b64_for,
    parse_signer_text, parse_verifier_text,
};
use crate::note::{Note, Signature};

/// The signature-type byte of Ed25519 tlog cosignatures (key ids and verifier keys).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Largest timestamp a cosignature may carry (the spec's 2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// Why a checkpoint's cosignature by a given key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("the checkpoint carries no cosignature by {0}")]
    Missing(String),
    #[error(
        "cosignature by {key}: expected 72 bytes (timestamp and Ed25519 signature), found {found}"
    )]
    Length { key: String, found: usize },
    #[error("cosignature by {key}: timestamp {time} is larger than 2^63 - 1")]
    TimeTooLarge { key: String, time: u64 },
    #[error("cosignature by {key} does not verify over the checkpoint")]
    Invalid { key: String },
}

/// The message a cosignature signs.
fn signed_message(checkpoint_body: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{checkpoint_body}").into_bytes()
}

/// A private cosigning key. Its `Debug` output never shows the seed.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    id: u32,
    key: SigningKey,
}

impl Cosigner {
    /// Makes a new key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        Self::generate_with(name, &mut OsRng)
    }

    pub fn generate_with(name: &str, rng: &mut impl CryptoRngCore) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(name, &seed)
    }

    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        Ok(Self {
            name: name.to_string(),
            id: key_id_for(ALG_COSIGNATURE_V1, name, &key.verifying_key().to_bytes()),
            key,
        })
    }

    /// The cosigning key a registry derives from its log key: seed =
    /// SHA-256(`gridreg/timestamp-key/v1 seed\n` || log key seed). Replicas that share the log
    /// key share it without another secret file; clients never rely on how it was made, only on
    /// the log key's statement naming it ([`timestamp_key_statement`]).
    pub fn derived_from(log_key: &crate::SignerKey, name: &str) -> Result<Self, KeyError> {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(b"gridreg/timestamp-key/v1 seed\n");
        h.update(log_key.seed());
        let seed: [u8; 32] = h.finalize().into();
        Self::from_seed(name, &seed)
    }

    /// Parses `PRIVATE+KEY+NAME+KEYID+BASE64(0x04||seed)`, checking the id.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, id, seed) = parse_signer_text(ALG_COSIGNATURE_V1, s)?;
        let key = Self::from_seed(name, &seed)?;
        if key.id != id {
            return Err(KeyError::IdMismatch {
                found: id,
                computed: key.id,
            });
        }
        Ok(key)
    }

    /// Parses a key file: the key on one line, optionally followed by one newline.
    pub fn parse_key_file(text: &str) -> Result<Self, KeyError> {
        Self::parse(key_file_line(text))
    }

    /// The secret text form, for a key file (kept apart from any `Display`).
    pub fn to_secret_string(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            material_b64_for(ALG_COSIGNATURE_V1, &self.key.to_bytes())
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> CosignerKey {
        CosignerKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The cosignature line for `checkpoint_body` at `time` (seconds since the epoch, clamped
    /// to [`MAX_TIMESTAMP`]).
    pub fn cosign(&self, checkpoint_body: &str, time: u64) -> Signature {
        let time = time.min(MAX_TIMESTAMP);
        let sig = self.key.sign(&signed_message(checkpoint_body, time));
        let mut raw = Vec::with_capacity(72);
        raw.extend_from_slice(&time.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        Signature {
            name: self.name.clone(),
            key_id: self.id,
            sig: raw,
        }
    }

    /// Adds (or replaces) this key's cosignature on a signed checkpoint note.
    pub fn cosign_note(&self, note: &mut Note, time: u64) {
        let line = self.cosign(&note.text, time);
        note.signatures
            .retain(|s| !(s.name == self.name && s.key_id == self.id));
        note.signatures.push(line);
    }
}

impl fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cosigner({}, seed hidden)",
            key_label(&self.name, self.id)
        )
    }
}

/// A public cosigning key, `NAME+KEYID+BASE64(0x04||public key)`.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignerKey {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, id, key) = parse_verifier_text(ALG_COSIGNATURE_V1, s)?;
        Ok(Self {
            name: name.to_string(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// `NAME+KEYID`, for messages.
    pub fn label(&self) -> String {
        key_label(&self.name, self.id)
    }

    /// The newest time at which this key cosigned the note's checkpoint body. Lines by other
    /// keys are ignored; a line with this key's name and id that does not verify is skipped only
    /// if another one does (the id is a hint, and a colliding key may have signed too).
    pub fn cosigned_time(&self, note: &Note) -> Result<u64, CosignatureError> {
        let mut newest: Option<u64> = None;
        let mut first_error = None;
        for s in note
            .signatures
            .iter()
            .filter(|s| s.name == self.name && s.key_id == self.id)
        {
            match self.check(&note.text, &s.sig) {
                Ok(t) => newest = Some(newest.map_or(t, |n| n.max(t))),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (newest, first_error) {
            (Some(t), _) => Ok(t),
            (None, Some(e)) => Err(e),
            (None, None) => Err(CosignatureError::Missing(self.label())),
        }
    }

    fn check(&self, body: &str, raw: &[u8]) -> Result<u64, CosignatureError> {
        let key = self.label();
        let Ok(raw) = <&[u8; 72]>::try_from(raw) else {
            return Err(CosignatureError::Length {
                key,
                found: raw.len(),
            });
        };
        let (time, sig) = raw.split_at(8);
        let mut t = [0u8; 8];
        t.copy_from_slice(time);
        let time = u64::from_be_bytes(t);
        if time > MAX_TIMESTAMP {
            return Err(CosignatureError::TimeTooLarge { key, time });
        }
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return Err(CosignatureError::Invalid { key });
        };
        self.key
            .verify_strict(&signed_message(body, time), &sig)
            .map_err(|_| CosignatureError::Invalid { key })?;
        Ok(time)
    }
}

impl fmt::Display for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.id,
            material_b64_for(ALG_COSIGNATURE_V1, &self.key.to_bytes())
        )
    }
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerKey({self})")
    }
}

/// First line of the statement by which a log key names its registry's timestamp key.
pub const TIMESTAMP_KEY_STATEMENT: &str = "gridreg/timestamp-key/v1";

/// The note text by which the log key of `origin` vouches for `key` as its timestamp key
/// (docs/protocol.md §6.10): `gridreg/timestamp-key/v1`, the origin, the verifier key.
pub fn timestamp_key_statement(origin: &str, key: &CosignerKey) -> String {
    format!("{TIMESTAMP_KEY_STATEMENT}\n{origin}\n{key}\n")
}

/// Reads a statement made by [`timestamp_key_statement`] (its text, already verified under the
/// log key) for the log `origin`.
pub fn parse_timestamp_key_statement(text: &str, origin: &str) -> Result<CosignerKey, String> {
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .collect();
    match lines.as_slice() {
        [TIMESTAMP_KEY_STATEMENT, o, key] if *o == origin => {
            CosignerKey::parse(key).map_err(|e| format!("the timestamp key does not parse: {e}"))
        }
        [TIMESTAMP_KEY_STATEMENT, o, _] => Err(format!(
            "expected a timestamp key statement for origin `{origin}`, found one for `{o}`"
        )),
        _ => Err(format!(
            "expected three lines `{TIMESTAMP_KEY_STATEMENT}`, origin, verifier key; found {} lines",
            lines.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::SignerKey;
    use crate::checkpoint::{Checkpoint, SignedCheckpoint};

    fn checkpoint() -> (SignerKey, Note) {
        let log = SignerKey::from_seed("log.example", &[7; 32]).unwrap();
        let signed = Checkpoint::new("log.example", 5, [9; 32])
            .sign(&[&log])
            .unwrap();
        (log, Note::parse(signed.note.as_bytes()).unwrap())
    }

    /// The example line of C2SP tlog-cosignature: the 4-byte key id, then the timestamp
    /// 1679315147 big-endian, then 64 signature bytes.
    #[test]
    fn the_spec_example_line_splits_into_id_time_and_signature() {
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
        let text = format!(
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n{line}"
        );
        let note = Note::parse(text.as_bytes()).unwrap();
        let s = &note.signatures[0];
        assert_eq!(s.key_id, 0x8d66cf3f);
        assert_eq!(s.sig.len(), 72);
        let time = u64::from_be_bytes(s.sig[..8].try_into().unwrap());
        assert_eq!(time, 1_679_315_147);
    }

    #[test]
    fn keys_round_trip_and_use_the_cosignature_type_byte() {
        let c = Cosigner::from_seed("reg.example/timestamp", &[3; 32]).unwrap();
        let back = Cosigner::parse(&c.to_secret_string()).unwrap();
        assert_eq!(back.verifier(), c.verifier());
        let v = CosignerKey::parse(&c.verifier().to_string()).unwrap();
        assert_eq!(v, c.verifier());
        // The same public key as a note key (0x01) has another id and does not parse here.
        let note_key = SignerKey::from_seed("reg.example/timestamp", &[3; 32]).unwrap();
        assert_ne!(note_key.id(), c.verifier().id());
        assert!(matches!(
            CosignerKey::parse(&note_key.verifier().to_string()),
            Err(KeyError::UnknownAlgorithm {
                expected: 0x04,
                found: 0x01
            })
        ));
        assert!(!format!("{c:?}").contains(&c.to_secret_string()[30..]));
    }

    #[test]
    fn a_cosignature_carries_its_time_and_leaves_the_log_signature_valid() {
        let (log, mut note) = checkpoint();
        let c = Cosigner::from_seed("log.example/timestamp", &[4; 32]).unwrap();
        c.cosign_note(&mut note, 1_700_000_000);
        c.cosign_note(&mut note, 1_700_000_060);
        assert_eq!(note.signatures.len(), 2, "renewing replaces the line");
        let text = note.to_text();
        let parsed = Note::parse(text.as_bytes()).unwrap();
        assert_eq!(c.verifier().cosigned_time(&parsed), Ok(1_700_000_060));
        SignedCheckpoint::verify(text.as_bytes(), "log.example", &log.verifier()).unwrap();
    }

    #[test]
    fn a_cosignature_on_another_checkpoint_or_time_fails() {
        let (_, mut note) = checkpoint();
        let c = Cosigner::from_seed("log.example/timestamp", &[4; 32]).unwrap();
        c.cosign_note(&mut note, 1_700_000_000);
        let key = c.verifier();

        // Moved onto another checkpoint body.
        let mut other = note.clone();
        other.text = other.text.replace("\n5\n", "\n6\n");
        assert!(matches!(
            key.cosigned_time(&other),
            Err(CosignatureError::Invalid { .. })
        ));
        // A later time written over the signed one.
        let mut later = note.clone();
        later.signatures[1].sig[..8].copy_from_slice(&1_800_000_000u64.to_be_bytes());
        assert!(matches!(
            key.cosigned_time(&later),
            Err(CosignatureError::Invalid { .. })
        ));
        // Cut short.
        let mut short = note.clone();
        short.signatures[1].sig.truncate(64);
        assert!(matches!(
            key.cosigned_time(&short),
            Err(CosignatureError::Length { found: 64, .. })
        ));
        // Another key's cosignature is not this key's.
        let other_key = Cosigner::from_seed("log.example/timestamp", &[5; 32])
            .unwrap()
            .verifier();
        assert!(matches!(
            other_key.cosigned_time(&note),
            Err(CosignatureError::Missing(_))
        ));
    }

    #[test]
    fn the_timestamp_key_statement_names_origin_and_key() {
        let key = Cosigner::from_seed("log.example/timestamp", &[4; 32])
            .unwrap()
            .verifier();
        let text = timestamp_key_statement("log.example", &key);
        assert_eq!(parse_timestamp_key_statement(&text, "log.example"), Ok(key));
        assert!(
            parse_timestamp_key_statement(&text, "other.example")
                .unwrap_err()
                .contains("other.example")
        );
        assert!(
            parse_timestamp_key_statement("gridreg/timestamp-key/v1\n", "log.example").is_err()
        );
    }

    #[test]
    fn times_above_the_spec_limit_are_refused() {
        let (_, mut note) = checkpoint();
        let c = Cosigner::from_seed("log.example/timestamp", &[4; 32]).unwrap();
        c.cosign_note(&mut note, u64::MAX);
        assert_eq!(c.verifier().cosigned_time(&note), Ok(MAX_TIMESTAMP));
        note.signatures[1].sig[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            c.verifier().cosigned_time(&note),
            Err(CosignatureError::TimeTooLarge { .. })
        ));
    }
}
