//! Ed25519 signer and verifier keys in the C2SP signed-note text forms (the Go `note` package):
//! verifier key `NAME+KEYID+BASE64(0x01||pub)`, signer key `PRIVATE+KEY+NAME+KEYID+BASE64(0x01||seed)`,
//! key id = first 4 bytes of SHA-256(NAME || 0x0A || 0x01 || pub).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use sha2::{Digest as _, Sha256};

/// The signed-note algorithm byte for Ed25519.
pub const ALG_ED25519: u8 = 0x01;

/// Longest key name we accept, in bytes. The spec sets no limit; names appear on every
/// signature line, so a bound keeps notes small.
pub const MAX_KEY_NAME_LEN: usize = 256;

/// Why a key was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("expected a key name, found an empty string")]
    EmptyName,
    #[error("key name is {0} bytes, longer than {MAX_KEY_NAME_LEN}")]
    NameTooLong(usize),
    #[error("expected a key name without `+` or whitespace, found `{0}`")]
    BadName(String),
    #[error("expected a verifier key `NAME+KEYID+BASE64`, found {0} `+`-separated parts")]
    VerifierShape(usize),
    #[error("expected a signer key `PRIVATE+KEY+NAME+KEYID+BASE64`, found something else")]
    SignerShape,
    #[error("expected a key id of 8 lowercase hex digits, found `{0}`")]
    BadKeyId(String),
    #[error("expected standard padded base64 key material, found `{0}`")]
    BadBase64(String),
    #[error("expected 33 bytes of key material (algorithm byte and 32-byte key), found {0}")]
    BadLength(usize),
    #[error("expected algorithm byte 0x{expected:02x}, found 0x{found:02x}")]
    UnknownAlgorithm { expected: u8, found: u8 },
    #[error("the public key is not a valid Ed25519 point")]
    BadPoint,
    #[error(
        "key id {found:08x} does not match the id {computed:08x} computed from the name and key"
    )]
    IdMismatch { found: u32, computed: u32 },
}

/// Computes the C2SP key id of an Ed25519 public key under `name`.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    key_id_for(ALG_ED25519, name, public)
}

/// The key id of a public key under `name` for the signature type `alg` (0x01 for note
/// signatures, 0x04 for tlog cosignatures): the first 4 bytes of SHA-256(name || 0x0A || alg ||
/// key).
pub(crate) fn key_id_for(alg: u8, name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', alg]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// How messages name a key: `NAME+KEYID` (the id as 8 lowercase hex digits), its text form
/// without the key material. The one place that spells it.
pub fn key_label(name: &str, id: u32) -> String {
    format!("{name}+{id:08x}")
}

/// Checks a key name as the signed-note spec requires: non-empty, no `+`, no Unicode whitespace.
pub fn check_key_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty() {
        return Err(KeyError::EmptyName);
    }
    if name.len() > MAX_KEY_NAME_LEN {
        return Err(KeyError::NameTooLong(name.len()));
    }
    if name.contains('+') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(KeyError::BadName(name.to_string()));
    }
    Ok(())
}

fn parse_id(s: &str) -> Result<u32, KeyError> {
    if s.len() != 8
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(KeyError::BadKeyId(s.to_string()));
    }
    u32::from_str_radix(s, 16).map_err(|_| KeyError::BadKeyId(s.to_string()))
}

/// Decodes `BASE64(alg || 32 bytes)`, requiring the algorithm byte `alg`.
pub(crate) fn parse_material_for(alg: u8, s: &str) -> Result<[u8; 32], KeyError> {
    let raw = B64
        .decode(s)
        .map_err(|_| KeyError::BadBase64(s.to_string()))?;
    if raw.len() != 33 {
        return Err(KeyError::BadLength(raw.len()));
    }
    if raw[0] != alg {
        return Err(KeyError::UnknownAlgorithm {
            expected: alg,
            found: raw[0],
        });
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&raw[1..]);
    Ok(out)
}

/// Splits `NAME+KEYID+BASE64(alg||public key)` and checks each part and the id: what a verifier
/// key of either signature type is made of.
pub(crate) fn parse_verifier_text(alg: u8, s: &str) -> Result<(&str, u32, VerifyingKey), KeyError> {
    // The base64 part may itself contain `+`; names and ids never do.
    let parts: Vec<&str> = s.splitn(3, '+').collect();
    if parts.len() != 3 {
        return Err(KeyError::VerifierShape(parts.len()));
    }
    check_key_name(parts[0])?;
    let id = parse_id(parts[1])?;
    let public = parse_material_for(alg, parts[2])?;
    let computed = key_id_for(alg, parts[0], &public);
    if computed != id {
        return Err(KeyError::IdMismatch {
            found: id,
            computed,
        });
    }
    let key = decompress(&public)?;
    Ok((parts[0], id, key))
}

/// Most points [`decompress`] remembers; past it, it starts again.
const MAX_REMEMBERED_POINTS: usize = 4096;

/// The Ed25519 point of a public key's 32 bytes, remembered per process: decompressing costs
/// about as much as a third of a signature verification, and a client proving a namespace
/// chain meets the same few keys in every namespace record, in its cache of verified signers
/// and in the chains it holds. The result depends on the bytes alone; refused points are not
/// remembered.
fn decompress(public: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    static POINTS: LazyLock<Mutex<HashMap<[u8; 32], VerifyingKey>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    if let Some(key) = POINTS.lock().ok().and_then(|p| p.get(public).copied()) {
        return Ok(key);
    }
    let key = VerifyingKey::from_bytes(public).map_err(|_| KeyError::BadPoint)?;
    if let Ok(mut points) = POINTS.lock() {
        if points.len() >= MAX_REMEMBERED_POINTS {
            points.clear();
        }
        points.insert(*public, key);
    }
    Ok(key)
}

/// Splits `PRIVATE+KEY+NAME+KEYID+BASE64(alg||seed)` and checks its shape, name and id text; the
/// caller derives the key and compares its id.
pub(crate) fn parse_signer_text(alg: u8, s: &str) -> Result<(&str, u32, [u8; 32]), KeyError> {
    let parts: Vec<&str> = s.splitn(5, '+').collect();
    if parts.len() != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
        return Err(KeyError::SignerShape);
    }
    check_key_name(parts[2])?;
    let id = parse_id(parts[3])?;
    let seed = parse_material_for(alg, parts[4])?;
    Ok((parts[2], id, seed))
}

/// The key line of a key file: the text without one final `\n` (or `\r\n`).
pub(crate) fn key_file_line(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

fn material_b64(bytes: &[u8; 32]) -> String {
    material_b64_for(ALG_ED25519, bytes)
}

/// Encodes `BASE64(alg || bytes)`.
pub(crate) fn material_b64_for(alg: u8, bytes: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(alg);
    raw.extend_from_slice(bytes);
    B64.encode(raw)
}

/// A public key that checks signatures, with the name and id that signature lines carry.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `NAME+KEYID+BASE64(0x01||pub)`, checking the id against the name and key.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, id, key) = parse_verifier_text(ALG_ED25519, s)?;
        Ok(Self {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// Builds a verifier key from a raw Ed25519 public key.
    pub fn from_public(name: &str, public: &[u8; 32]) -> Result<Self, KeyError> {
        check_key_name(name)?;
        let key = VerifyingKey::from_bytes(public).map_err(|_| KeyError::BadPoint)?;
        Ok(Self {
            name: name.to_string(),
            id: key_id(name, public),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// `NAME+KEYID`, for messages (see [`key_label`]).
    pub fn label(&self) -> String {
        key_label(&self.name, self.id)
    }

    /// Checks an Ed25519 signature over `msg`. Strict verification rejects malleable signatures
    /// and small-order keys, so one message has one valid signature per key.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}+{:08x}+{}",
            self.name,
            self.id,
            material_b64(&self.key.to_bytes())
        )
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

impl FromStr for VerifierKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A private key that signs notes. Its `Debug` output never shows the seed.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: u32,
    key: SigningKey,
}

impl SignerKey {
    /// Makes a new key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        Self::generate_with(name, &mut rand_core::OsRng)
    }

    /// Makes a new key from the given random source.
    pub fn generate_with(name: &str, rng: &mut impl CryptoRngCore) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        Self::from_seed(name, &seed)
    }

    /// Builds a signer key from a 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        Ok(Self {
            name: name.to_string(),
            id: key_id(name, &key.verifying_key().to_bytes()),
            key,
        })
    }

    /// Parses `PRIVATE+KEY+NAME+KEYID+BASE64(0x01||seed)`, checking the id against the derived
    /// public key.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let (name, id, seed) = parse_signer_text(ALG_ED25519, s)?;
        let key = Self::from_seed(name, &seed)?;
        if key.id != id {
            return Err(KeyError::IdMismatch {
                found: id,
                computed: key.id,
            });
        }
        Ok(key)
    }

    /// Parses the contents of a key file as `gridreg keygen` writes it: the key on one line,
    /// optionally followed by one newline.
    pub fn parse_key_file(text: &str) -> Result<Self, KeyError> {
        Self::parse(key_file_line(text))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Signs `msg` (Ed25519 is deterministic: same key and message, same signature).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The 32-byte seed, for deriving other keys from this one inside the crate.
    pub(crate) fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The secret text form, for writing to a key file. Kept apart from `Display` so a secret
    /// is never printed by accident through `{}`.
    pub fn to_secret_string(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            material_b64(&self.key.to_bytes())
        )
    }
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SignerKey({}, seed hidden)",
            key_label(&self.name, self.id)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// `decompress` remembers points: a key parsed again is the same key and still verifies;
    /// bytes that are no point are refused every time, not remembered.
    #[test]
    fn remembered_points_agree_and_bad_points_stay_refused() {
        let signer = SignerKey::from_seed("alice", &[3; 32]).unwrap();
        let text = signer.verifier().to_string();
        let first = VerifierKey::parse(&text).unwrap();
        let again = VerifierKey::parse(&text).unwrap();
        assert_eq!(first, again);
        assert_eq!(first, signer.verifier());
        let sig = signer.sign(b"text");
        assert!(again.verify(b"text", &sig));
        // The first 32-byte strings of one repeated byte that are not a point.
        let bad: Vec<[u8; 32]> = (0..=255u8)
            .map(|b| [b; 32])
            .filter(|p| VerifyingKey::from_bytes(p).is_err())
            .take(3)
            .collect();
        assert!(!bad.is_empty());
        for public in bad {
            let text = format!(
                "bad+{:08x}+{}",
                key_id_for(ALG_ED25519, "bad", &public),
                material_b64(&public)
            );
            for _ in 0..2 {
                assert_eq!(VerifierKey::parse(&text), Err(KeyError::BadPoint));
            }
        }
    }

    #[test]
    fn generate_roundtrip() {
        let s = SignerKey::generate("alice").unwrap();
        let text = s.to_secret_string();
        let back = SignerKey::parse(&text).unwrap();
        assert_eq!(
            SignerKey::parse_key_file(&format!("{text}\n"))
                .unwrap()
                .id(),
            s.id()
        );
        assert!(SignerKey::parse_key_file(&format!("{text}\n\n")).is_err());
        assert_eq!(back.to_secret_string(), text);
        let v = s.verifier();
        let parsed = VerifierKey::parse(&v.to_string()).unwrap();
        assert_eq!(parsed, v);
        let sig = s.sign(b"hi");
        assert!(v.verify(b"hi", &sig));
        assert!(!v.verify(b"ho", &sig));
        assert!(!format!("{s:?}").contains(&text[20..]));
    }

    #[test]
    fn a_label_is_the_text_form_without_the_key() {
        assert_eq!(key_label("alice", 0x1a2b), "alice+00001a2b");
        let v = SignerKey::generate("alice").unwrap().verifier();
        assert_eq!(v.label(), format!("alice+{:08x}", v.id()));
        assert!(v.to_string().starts_with(&format!("{}+", v.label())));
    }

    #[test]
    fn bad_names() {
        for bad in ["", "a+b", "a b", "a\tb", "a\u{2003}b"] {
            assert!(check_key_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_key_name(&"x".repeat(MAX_KEY_NAME_LEN + 1)).is_err());
        assert!(check_key_name("example.com/log42").is_ok());
    }
}
