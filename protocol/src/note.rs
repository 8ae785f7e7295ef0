//! C2SP signed notes: UTF-8 text ending in `\n`, a blank line, then signature lines
//! `— NAME BASE64(keyid||signature)`. Signing with several keys, strict parsing, and verification
//! against a set of known keys (unknown signers are ignored, as the spec says).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::key::{SignerKey, VerifierKey, check_key_name, key_label};

/// Largest signed note we parse, in bytes. Records with long import lists stay well below it;
/// anything bigger is refused before any work is done on it.
pub const MAX_NOTE_LEN: usize = 256 * 1024;

/// Most signature lines a note may carry (the Go `note` package uses the same bound).
pub const MAX_SIGNATURES: usize = 100;

/// The prefix of every signature line: U+2014 EM DASH and a space.
pub const SIG_PREFIX: &str = "\u{2014} ";

/// Why a note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("note is {size} bytes, larger than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("note is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error(
        "note contains control character 0x{byte:02x} at offset {offset}; only newline is allowed"
    )]
    ControlChar { offset: usize, byte: u8 },
    #[error("expected the note text to end with a newline, found text without a final newline")]
    MissingFinalNewline,
    #[error("expected note text, found an empty text")]
    EmptyText,
    #[error("expected the note text to end with exactly one newline, found a trailing blank line")]
    TrailingBlankLine,
    #[error("expected a blank line between the note text and its signatures, found none")]
    MissingBlankLine,
    #[error("expected at least one signature line after the blank line, found none")]
    NoSignatures,
    #[error("note has {count} signatures, more than the limit of {max}")]
    TooManySignatures { count: usize, max: usize },
    #[error("signature line {line}: expected `— NAME BASE64`, found {reason}")]
    BadSignatureLine { line: usize, reason: String },
    #[error("signature line {line}: expected standard padded base64, found `{found}`")]
    BadBase64 { line: usize, found: String },
    #[error("signature line {line}: expected a key id and a signature, found only {len} bytes")]
    ShortSignature { line: usize, len: usize },
    #[error("signature by known key {key} does not verify")]
    InvalidSignature { key: String },
    #[error(
        "note has no valid signature from any of the {known} required keys (signed by: {signers})"
    )]
    NoVerifiedSignature { known: usize, signers: String },
    #[error("note is signed by {have} of the required keys, expected at least {need}")]
    BelowThreshold { have: usize, need: usize },
}

/// One signature line, undecoded beyond splitting off the key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub key_id: u32,
    /// The signature bytes after the 4-byte key id.
    pub sig: Vec<u8>,
}

impl Signature {
    /// The signature line: `— NAME BASE64(key id || signature)` and a newline.
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A parsed (not yet verified) signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in `\n`.
    pub text: String,
    pub signatures: Vec<Signature>,
}

/// Checks the rules shared by whole notes and note texts: size, UTF-8, no control characters.
fn check_bytes(bytes: &[u8]) -> Result<&str, NoteError> {
    if bytes.len() > MAX_NOTE_LEN {
        return Err(NoteError::TooLarge {
            size: bytes.len(),
            max: MAX_NOTE_LEN,
        });
    }
    let s = std::str::from_utf8(bytes).map_err(|e| NoteError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let control = |b: u8| (b < 0x20 && b != b'\n') || b == 0x7f;
    // A branch-free pass first (it vectorises; every leaf of a chain goes through here), and
    // the search for the offending byte only when there is one.
    if bytes.iter().fold(false, |found, &b| found | control(b))
        && let Some(offset) = bytes.iter().position(|&b| control(b))
    {
        return Err(NoteError::ControlChar {
            offset,
            byte: bytes[offset],
        });
    }
    Ok(s)
}

/// [`check_text`] for a prefix of bytes [`check_bytes`] already accepted: only the shape.
fn check_text_shape(text: &str) -> Result<(), NoteError> {
    if text.is_empty() {
        return Err(NoteError::EmptyText);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::MissingFinalNewline);
    }
    if text.ends_with("\n\n") || text == "\n" {
        return Err(NoteError::TrailingBlankLine);
    }
    Ok(())
}

/// Checks a text before it is signed: non-empty, ending in exactly one newline.
pub fn check_text(text: &str) -> Result<(), NoteError> {
    check_bytes(text.as_bytes())?;
    check_text_shape(text)
}

impl NoteError {
    /// The same error at signature line `line` of the note.
    fn at_line(self, line: usize) -> Self {
        match self {
            Self::BadSignatureLine { reason, .. } => Self::BadSignatureLine { line, reason },
            Self::BadBase64 { found, .. } => Self::BadBase64 { line, found },
            Self::ShortSignature { len, .. } => Self::ShortSignature { line, len },
            other => other,
        }
    }
}

impl Note {
    /// Parses a signed note without checking any signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, NoteError> {
        let s = check_bytes(bytes)?;
        if !s.ends_with('\n') {
            return Err(NoteError::MissingFinalNewline);
        }
        // The text ends at the last blank line: signature lines are never empty, so the last
        // "\n\n" is the separator even when the text itself has blank lines.
        let Some(split) = s.rfind("\n\n") else {
            return Err(NoteError::MissingBlankLine);
        };
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        check_text_shape(text)?;
        if sigs.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
        if lines.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: lines.len(),
                max: MAX_SIGNATURES,
            });
        }
        let mut signatures = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            // The line number is for the message only: counted when a line is refused.
            signatures
                .push(parse_sig_line(line).map_err(|e| {
                    e.at_line(text.bytes().filter(|&b| b == b'\n').count() + 2 + i)
                })?);
        }
        Ok(Self {
            text: text.to_string(),
            signatures,
        })
    }

    /// Prints the note: text, blank line, one line per signature.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 1 + 100 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out
    }

    /// Signs `text` with every key in `signers` and returns the note.
    pub fn sign(text: &str, signers: &[&SignerKey]) -> Result<Self, NoteError> {
        check_text(text)?;
        if signers.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        if signers.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: signers.len(),
                max: MAX_SIGNATURES,
            });
        }
        let signatures = signers
            .iter()
            .map(|k| Signature {
                name: k.name().to_string(),
                key_id: k.id(),
                sig: k.sign(text.as_bytes()).to_vec(),
            })
            .collect();
        let note = Self {
            text: text.to_string(),
            signatures,
        };
        let size = note.to_text().len();
        if size > MAX_NOTE_LEN {
            return Err(NoteError::TooLarge {
                size,
                max: MAX_NOTE_LEN,
            });
        }
        Ok(note)
    }

    /// Adds signatures by more keys to an existing note (witness co-signing, several publishers).
    /// A key that already signed is replaced rather than duplicated.
    pub fn add_signatures(&mut self, signers: &[&SignerKey]) -> Result<(), NoteError> {
        for k in signers {
            self.signatures
                .retain(|s| !(s.name == k.name() && s.key_id == k.id()));
            self.signatures.push(Signature {
                name: k.name().to_string(),
                key_id: k.id(),
                sig: k.sign(self.text.as_bytes()).to_vec(),
            });
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: self.signatures.len(),
                max: MAX_SIGNATURES,
            });
        }
        Ok(())
    }
}

/// Parses one signature line; errors carry line 0, which the caller replaces by
/// [`NoteError::at_line`].
fn parse_sig_line(line: &str) -> Result<Signature, NoteError> {
    let line_no = 0;
    let bad = |reason: &str| NoteError::BadSignatureLine {
        line: line_no,
        reason: reason.to_string(),
    };
    let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
        return Err(bad("a line that does not start with `— `"));
    };
    let Some((name, b64)) = rest.split_once(' ') else {
        return Err(bad("no space between name and signature"));
    };
    check_key_name(name).map_err(|_| bad("an invalid key name"))?;
    if b64.contains(' ') {
        return Err(bad("more than one space-separated field"));
    }
    let raw = B64.decode(b64).map_err(|_| NoteError::BadBase64 {
        line: line_no,
        found: b64.to_string(),
    })?;
    if raw.len() < 5 {
        return Err(NoteError::ShortSignature {
            line: line_no,
            len: raw.len(),
        });
    }
    Ok(Signature {
        name: name.to_string(),
        key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        sig: raw[4..].to_vec(),
    })
}

/// The keys a reader trusts for one purpose (a namespace's publishers, a log's key).
///
/// A key is its whole public key: the name and 4-byte id in a signature line are only a hint for
/// finding candidates. Two different keys that share a name and id (a birthday search finds such
/// a pair in seconds) are two members of the set, and a signature line naming that pair is checked
/// against each of them.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerifierKey>,
}

impl KeySet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set; exact duplicates are dropped.
    pub fn from_keys(keys: impl IntoIterator<Item = VerifierKey>) -> Self {
        let mut set = Self::new();
        for k in keys {
            set.insert(k);
        }
        set
    }

    /// Adds `key` unless the very same key is already in the set.
    pub fn insert(&mut self, key: VerifierKey) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// The keys a signature line with this name and id may be by.
    pub fn candidates<'a>(
        &'a self,
        name: &'a str,
        id: u32,
    ) -> impl Iterator<Item = &'a VerifierKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.id() == id && k.name() == name)
    }

    pub fn contains(&self, key: &VerifierKey) -> bool {
        self.keys.contains(key)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &VerifierKey> {
        self.keys.iter()
    }
}

/// A note with at least one valid signature from a known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    pub note: Note,
    /// Known keys whose signatures verified, in signature-line order, without repeats.
    pub verified_by: Vec<VerifierKey>,
    /// Signatures by keys the reader does not know; ignored, kept for display.
    pub unknown: Vec<Signature>,
}

impl VerifiedNote {
    pub fn text(&self) -> &str {
        &self.note.text
    }
}

/// Parses a note and checks its signatures against `known`. Signatures by unknown keys are
/// ignored; a signature by a known key that fails is an error (a known key never signs garbage,
/// so it means tampering); a note with no valid known signature is rejected.
pub fn verify(bytes: &[u8], known: &KeySet) -> Result<VerifiedNote, NoteError> {
    let note = Note::parse(bytes)?;
    let mut verified_by: Vec<VerifierKey> = Vec::new();
    let mut unknown = Vec::new();
    for s in &note.signatures {
        let mut candidates = known.candidates(&s.name, s.key_id).peekable();
        if candidates.peek().is_none() {
            if !unknown.contains(s) {
                unknown.push(s.clone());
            }
            continue;
        }
        // The line's name and id only narrow the search: the signature is by whichever
        // candidate it verifies under, and by none of them is tampering.
        match candidates.find(|k| k.verify(note.text.as_bytes(), &s.sig)) {
            Some(k) => {
                if !verified_by.contains(k) {
                    verified_by.push(k.clone());
                }
            }
            None => {
                return Err(NoteError::InvalidSignature {
                    key: key_label(&s.name, s.key_id),
                });
            }
        }
    }
    if verified_by.is_empty() {
        let mut signers = String::new();
        for (i, s) in note.signatures.iter().enumerate() {
            if i > 0 {
                signers.push_str(", ");
            }
            signers.push_str(&key_label(&s.name, s.key_id));
        }
        return Err(NoteError::NoVerifiedSignature {
            known: known.len(),
            signers,
        });
    }
    Ok(VerifiedNote {
        note,
        verified_by,
        unknown,
    })
}

/// Like [`verify`], and also requires valid signatures by at least `threshold` distinct keys of
/// `known` (a policy's `[signers] threshold`). A threshold of 0 is treated as 1: an unsigned note
/// is never accepted.
pub fn verify_threshold(
    bytes: &[u8],
    known: &KeySet,
    threshold: usize,
) -> Result<VerifiedNote, NoteError> {
    let need = threshold.max(1);
    let v = match verify(bytes, known) {
        Ok(v) => v,
        Err(NoteError::NoVerifiedSignature { .. }) => {
            return Err(NoteError::BelowThreshold { have: 0, need });
        }
        Err(e) => return Err(e),
    };
    if v.verified_by.len() < need {
        return Err(NoteError::BelowThreshold {
            have: v.verified_by.len(),
            need,
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn keys() -> (SignerKey, SignerKey) {
        (
            SignerKey::from_seed("alice", &[1; 32]).unwrap(),
            SignerKey::from_seed("bob", &[2; 32]).unwrap(),
        )
    }

    #[test]
    fn sign_parse_verify_two_keys() {
        let (a, b) = keys();
        let note = Note::sign("hello\nworld\n", &[&a, &b]).unwrap();
        let text = note.to_text();
        assert_eq!(Note::parse(text.as_bytes()).unwrap(), note);
        let only_a = KeySet::from_keys([a.verifier()]);
        let v = verify(text.as_bytes(), &only_a).unwrap();
        assert_eq!(v.verified_by, vec![a.verifier()]);
        assert_eq!(v.unknown.len(), 1);
        let none = KeySet::new();
        assert!(matches!(
            verify(text.as_bytes(), &none),
            Err(NoteError::NoVerifiedSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes_have_precise_errors() {
        let (a, _) = keys();
        let good = Note::sign("hello\n", &[&a]).unwrap().to_text();
        let sig_line = good.split_once("\n\n").unwrap().1.to_string();
        type Check = fn(&NoteError) -> bool;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (b"hello\n".to_vec(), |e| {
                matches!(e, NoteError::MissingBlankLine)
            }),
            (b"hello\n\n".to_vec(), |e| {
                matches!(e, NoteError::NoSignatures)
            }),
            (good.trim_end().as_bytes().to_vec(), |e| {
                matches!(e, NoteError::MissingFinalNewline)
            }),
            (format!("hel\u{1}lo\n\n{sig_line}").into_bytes(), |e| {
                matches!(e, NoteError::ControlChar { offset: 3, .. })
            }),
            (
                [b"hel\xfflo\n\n".as_slice(), sig_line.as_bytes()].concat(),
                |e| matches!(e, NoteError::NotUtf8 { offset: 3 }),
            ),
            ("hello\n\n\u{2014} alice !!!!\n".as_bytes().to_vec(), |e| {
                matches!(e, NoteError::BadBase64 { line: 3, .. })
            }),
            (b"hello\n\n- alice AAAAAAAA\n".to_vec(), |e| {
                matches!(e, NoteError::BadSignatureLine { line: 3, .. })
            }),
            ("hello\n\n\u{2014} alice AAAA\n".as_bytes().to_vec(), |e| {
                matches!(e, NoteError::ShortSignature { .. })
            }),
            (
                format!("hello\n\n{sig_line}unexpected\n").into_bytes(),
                |e| matches!(e, NoteError::BadSignatureLine { line: 4, .. }),
            ),
            (
                format!("hello\n\n{}", sig_line.repeat(MAX_SIGNATURES + 1)).into_bytes(),
                |e| matches!(e, NoteError::TooManySignatures { .. }),
            ),
            (vec![b'a'; MAX_NOTE_LEN + 1], |e| {
                matches!(e, NoteError::TooLarge { .. })
            }),
        ];
        for (bytes, want) in cases {
            let err = Note::parse(&bytes).unwrap_err();
            assert!(
                want(&err),
                "{:?} gave {err:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert!(
            Note::parse(format!("hello\n\n{}", sig_line.repeat(MAX_SIGNATURES)).as_bytes()).is_ok()
        );
    }

    #[test]
    fn threshold() {
        let (a, b) = keys();
        let both = KeySet::from_keys([a.verifier(), b.verifier()]);
        let one = Note::sign("x\n", &[&a]).unwrap().to_text();
        // The same signature twice still counts once.
        let twice = format!("{one}{}", one.split_once("\n\n").unwrap().1);
        let two = Note::sign("x\n", &[&a, &b]).unwrap().to_text();
        assert!(verify_threshold(one.as_bytes(), &both, 1).is_ok());
        assert!(verify_threshold(one.as_bytes(), &both, 0).is_ok());
        assert_eq!(
            verify_threshold(twice.as_bytes(), &both, 2).unwrap_err(),
            NoteError::BelowThreshold { have: 1, need: 2 }
        );
        assert_eq!(
            verify_threshold(two.as_bytes(), &both, 2)
                .unwrap()
                .verified_by
                .len(),
            2
        );
        assert_eq!(
            verify_threshold(two.as_bytes(), &KeySet::new(), 0).unwrap_err(),
            NoteError::BelowThreshold { have: 0, need: 1 }
        );
    }

    #[test]
    fn sign_rejects_bad_text() {
        let (a, _) = keys();
        assert_eq!(
            Note::sign("abc", &[&a]),
            Err(NoteError::MissingFinalNewline)
        );
        assert_eq!(Note::sign("", &[&a]), Err(NoteError::EmptyText));
        assert_eq!(
            Note::sign("abc\n\n", &[&a]),
            Err(NoteError::TrailingBlankLine)
        );
        assert_eq!(Note::sign("abc\n", &[]), Err(NoteError::NoSignatures));
    }

    #[test]
    fn tampered_known_signature_is_an_error() {
        let (a, _) = keys();
        let text = Note::sign("hello\n", &[&a]).unwrap().to_text();
        let tampered = text.replace("hello", "jello");
        let set = KeySet::from_keys([a.verifier()]);
        assert!(matches!(
            verify(tampered.as_bytes(), &set),
            Err(NoteError::InvalidSignature { .. })
        ));
    }

    /// Two signer keys named `eve` whose key ids collide (`088fd954`), found once by a birthday
    /// search over the seeds SHA-256("gridreg-collision-N"); see docs/protocol.md §3.
    pub(crate) fn colliding_keys() -> (SignerKey, SignerKey) {
        use sha2::Digest as _;
        let seed = |n: u32| -> [u8; 32] {
            sha2::Sha256::digest(format!("gridreg-collision-{n}").as_bytes()).into()
        };
        (
            SignerKey::from_seed("eve", &seed(34905)).unwrap(),
            SignerKey::from_seed("eve", &seed(47880)).unwrap(),
        )
    }

    #[test]
    fn keys_sharing_name_and_id_are_two_keys() {
        let (k1, k2) = colliding_keys();
        let (v1, v2) = (k1.verifier(), k2.verifier());
        assert_ne!(v1, v2);
        assert_eq!((v1.name(), v1.id()), (v2.name(), v2.id()));
        assert_eq!(v1.id(), 0x088f_d954);
        let set = KeySet::from_keys([v1.clone(), v2.clone(), v1.clone()]);
        assert_eq!(set.len(), 2);
        // Each key's signature is attributed to that key, whichever comes first in the set.
        let by2 = Note::sign("hello\n", &[&k2]).unwrap().to_text();
        assert_eq!(
            verify(by2.as_bytes(), &set).unwrap().verified_by,
            vec![v2.clone()]
        );
        let by1 = Note::sign("hello\n", &[&k1]).unwrap().to_text();
        assert_eq!(
            verify(by1.as_bytes(), &set).unwrap().verified_by,
            vec![v1.clone()]
        );
        // Knowing only the other key of the pair, the signature is not accepted.
        let only1 = KeySet::from_keys([v1.clone()]);
        assert!(matches!(
            verify(by2.as_bytes(), &only1),
            Err(NoteError::InvalidSignature { .. })
        ));
        // Both signing: both verified, in line order.
        let both = Note::sign("hello\n", &[&k1, &k2]).unwrap().to_text();
        assert_eq!(
            verify(both.as_bytes(), &set).unwrap().verified_by,
            vec![v1, v2]
        );
    }
}
