//! The signed records that make up the log: release, namespace (claim / grant / revoke) and yank.
//! Bodies are the exact text of docs/protocol.md §4 "Records", parsed strictly (fields in order,
//! no duplicates, no unknown fields) and printed canonically, so `parse(print(r)) == r` and
//! `print(parse(b)) == b`.

use std::fmt;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::chain::{ChainKey, Prev};
use crate::key::VerifierKey;
use crate::name::{Namespace, PackageName, Version, parse_version};
use crate::note::{Note, NoteError};

/// Type line of a release record.
pub const RELEASE_V2: &str = "gridreg/release/v2";
/// Type line of a namespace record.
pub const NAMESPACE_V2: &str = "gridreg/namespace/v2";
/// Type line of a yank record.
pub const YANK_V2: &str = "gridreg/yank/v2";
/// Type lines of the first record format (no `prev`), refused with [`RecordError::Version1`].
pub const V1_TYPES: [&str; 3] = [
    "gridreg/release/v1",
    "gridreg/namespace/v1",
    "gridreg/yank/v1",
];

/// Most `import` (and, separately, `export`) lines a release may list.
pub const MAX_SURFACE_LINES: usize = 10_000;
/// Longest single value (an interface name, a yank reason), in bytes.
pub const MAX_VALUE_LEN: usize = 1024;

const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// Why a record body was rejected. `line` numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("expected a record body ending in a newline, found no final newline")]
    MissingFinalNewline,
    #[error(
        "line {line}: expected a record type ({RELEASE_V2}, {NAMESPACE_V2} or {YANK_V2}), found `{found}`"
    )]
    UnknownType { line: usize, found: String },
    #[error(
        "line 1: `{found}` is record format v1, which is no longer accepted: expected format v2 \
         (`{}` and a `prev` line); sign the record again with this version of gridreg",
        .found.replace("/v1", "/v2")
    )]
    Version1 { found: String },
    #[error("line {line}: expected `{expected} <value>`, found `{found}`")]
    UnexpectedField {
        line: usize,
        expected: String,
        found: String,
    },
    #[error("expected a `{expected}` line, found the end of the record")]
    MissingField { expected: String },
    #[error("line {line}: bad {field}: {reason}")]
    BadValue {
        line: usize,
        field: &'static str,
        reason: String,
    },
    #[error(
        "line {line}: {field} lines must be sorted and unique, found `{found}` after `{previous}`"
    )]
    Unsorted {
        line: usize,
        field: &'static str,
        found: String,
        previous: String,
    },
    #[error("a release lists more than {MAX_SURFACE_LINES} {field} lines")]
    TooManyLines { field: &'static str },
    #[error("expected a canonical record, found one that prints back differently")]
    NonCanonical,
    #[error("a claim must give the role owner, found role {0}")]
    ClaimNotOwner(Role),
    #[error("the signed note: {0}")]
    Note(#[from] NoteError),
}

/// A point in time, UTC, to the second, printed as `2026-11-21T19:56:57Z` (the only accepted form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Parses exactly `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() != 20 {
            return Err(format!("expected `YYYY-MM-DDTHH:MM:SSZ`, found `{s}`"));
        }
        PrimitiveDateTime::parse(s, TIME_FORMAT)
            .map(|t| Self(t.assume_utc()))
            .map_err(|e| format!("expected `YYYY-MM-DDTHH:MM:SSZ`, found `{s}`: {e}"))
    }

    /// The current time truncated to whole seconds (reads the clock; pure callers pass times in).
    pub fn now() -> Self {
        Self::from_unix(OffsetDateTime::now_utc().unix_timestamp())
            .unwrap_or(Self(OffsetDateTime::UNIX_EPOCH))
    }

    /// From seconds since the Unix epoch; only years 0000 to 9999 are representable.
    pub fn from_unix(secs: i64) -> Option<Self> {
        let t = OffsetDateTime::from_unix_timestamp(secs).ok()?;
        (0..=9999).contains(&t.year()).then_some(Self(t))
    }

    pub fn unix(&self) -> i64 {
        self.0.unix_timestamp()
    }
}

impl fmt::Display for Timestamp {
    /// `YYYY-MM-DDTHH:MM:SSZ`, written digit by digit: records print their time on every
    /// parse (the canonical-form check), where the `time` crate's formatter was a tenth of
    /// the cost of verifying a chain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        let year = u32::try_from(t.year()).map_err(|_| fmt::Error)?;
        if year > 9999 {
            return Err(fmt::Error);
        }
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u32::from(u8::from(t.month())));
        put(8, 2, u32::from(t.day()));
        put(11, 2, u32::from(t.hour()));
        put(14, 2, u32::from(t.minute()));
        put(17, 2, u32::from(t.second()));
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// A SHA-256 digest, printed `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(bytes).into())
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("expected `sha256:` and 64 lowercase hex digits, found `{s}`");
        let hex_part = s.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex_part.len() != 64
            || !hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.0, &mut hex).map_err(|_| fmt::Error)?;
        f.write_str("sha256:")?;
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

/// In JSON and TOML a digest is its text form, `sha256:<64 lowercase hex>`.
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A release: which bytes are version V of package P, and what they import and export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub package: PackageName,
    /// The package chain's head when signed.
    pub prev: Prev,
    pub version: Version,
    pub digest: Digest,
    pub size: u64,
    pub time: Timestamp,
    /// Import names, sorted and unique.
    pub imports: Vec<String>,
    /// Export names, sorted and unique.
    pub exports: Vec<String>,
}

/// What a namespace record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamespaceOp {
    /// Take an unclaimed namespace; signed by the key it names.
    Claim,
    /// Give a key a role; signed by a current owner.
    Grant,
    /// Take a key's role away; signed by a current owner.
    Revoke,
}

impl fmt::Display for NamespaceOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Claim => "claim",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
        })
    }
}

/// What a key may do in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Grant and revoke, and publish.
    Owner,
    /// Publish and yank only.
    Publish,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Owner => "owner",
            Self::Publish => "publish",
        })
    }
}

/// A change to who may act in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub namespace: Namespace,
    /// The namespace chain's head when signed.
    pub prev: Prev,
    pub op: NamespaceOp,
    pub key: VerifierKey,
    pub role: Role,
    pub time: Timestamp,
}

/// A yank: version V of P should no longer be picked by ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yank {
    pub package: PackageName,
    /// The package chain's head when signed.
    pub prev: Prev,
    pub version: Version,
    /// One line of free text without control characters.
    pub reason: String,
    pub time: Timestamp,
}

/// Any record the log holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Release(Release),
    Namespace(NamespaceRecord),
    Yank(Yank),
}

/// Walks the body line by line, holding the expected field order.
struct Lines<'a> {
    lines: Vec<&'a str>,
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The 1-based number of the line `pos` points at.
    fn line_no(&self) -> usize {
        self.pos + 1
    }

    /// Takes the next line, which must be `key value`.
    fn field(&mut self, key: &str) -> Result<&'a str, RecordError> {
        let Some(line) = self.lines.get(self.pos) else {
            return Err(RecordError::MissingField {
                expected: key.to_string(),
            });
        };
        match line.split_once(' ') {
            Some((k, v)) if k == key && !v.is_empty() => {
                self.pos += 1;
                Ok(v)
            }
            _ => Err(RecordError::UnexpectedField {
                line: self.pos + 1,
                expected: key.to_string(),
                found: line.to_string(),
            }),
        }
    }

    /// Takes every following `key value` line, checking they are sorted and unique.
    fn list(&mut self, key: &'static str) -> Result<Vec<String>, RecordError> {
        let mut out: Vec<String> = Vec::new();
        while let Some(line) = self.lines.get(self.pos) {
            let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix(' ')) else {
                break;
            };
            let line_no = self.line_no();
            check_token(v).map_err(|reason| RecordError::BadValue {
                line: line_no,
                field: key,
                reason,
            })?;
            if let Some(prev) = out.last()
                && prev.as_str() >= v
            {
                return Err(RecordError::Unsorted {
                    line: line_no,
                    field: key,
                    found: v.to_string(),
                    previous: prev.clone(),
                });
            }
            if out.len() == MAX_SURFACE_LINES {
                return Err(RecordError::TooManyLines { field: key });
            }
            out.push(v.to_string());
            self.pos += 1;
        }
        Ok(out)
    }

    fn end(&self) -> Result<(), RecordError> {
        match self.lines.get(self.pos) {
            None => Ok(()),
            Some(line) => Err(RecordError::UnexpectedField {
                line: self.line_no(),
                expected: "the end of the record".to_string(),
                found: line.to_string(),
            }),
        }
    }
}

/// An import or export name: non-empty, no whitespace, no control characters, bounded.
fn check_token(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_VALUE_LEN {
        return Err(format!(
            "expected 1 to {MAX_VALUE_LEN} bytes, found {}",
            v.len()
        ));
    }
    if let Some(c) = v.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "expected a name without spaces or control characters, found {c:?} in `{v}`"
        ));
    }
    Ok(())
}

/// A yank reason: one line, no control characters, no leading or trailing space (which would
/// not survive printing unambiguously), bounded.
fn check_reason(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_VALUE_LEN {
        return Err(format!(
            "expected 1 to {MAX_VALUE_LEN} bytes, found {}",
            v.len()
        ));
    }
    if let Some(c) = v.chars().find(|c| c.is_control()) {
        return Err(format!(
            "expected one line without control characters, found {c:?}"
        ));
    }
    if v.trim() != v {
        return Err("expected no leading or trailing whitespace".to_string());
    }
    Ok(())
}

/// Parses a non-negative decimal number with no sign and no leading zeros.
fn parse_u64(v: &str) -> Result<u64, String> {
    let canonical = !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && !(v.len() > 1 && v.starts_with('0'));
    if !canonical {
        return Err(format!(
            "expected a decimal number without leading zeros, found `{v}`"
        ));
    }
    v.parse::<u64>().map_err(|e| format!("`{v}`: {e}"))
}

fn value<T>(line: usize, field: &'static str, r: Result<T, String>) -> Result<T, RecordError> {
    r.map_err(|reason| RecordError::BadValue {
        line,
        field,
        reason,
    })
}

impl Record {
    /// Parses a record body (the text of a signed note, without signatures).
    pub fn parse(body: &str) -> Result<Self, RecordError> {
        let Some(inner) = body.strip_suffix('\n') else {
            return Err(RecordError::MissingFinalNewline);
        };
        let mut l = Lines {
            lines: inner.split('\n').collect(),
            pos: 1,
        };
        let kind = l.lines.first().copied().unwrap_or_default();
        if V1_TYPES.contains(&kind) {
            return Err(RecordError::Version1 {
                found: kind.to_string(),
            });
        }
        let rec = match kind {
            RELEASE_V2 => {
                let n = l.line_no();
                let package = value(
                    n,
                    "package",
                    PackageName::parse(l.field("package")?).map_err(|e| e.to_string()),
                )?;
                let n = l.line_no();
                let prev = value(n, "prev", Prev::parse(l.field("prev")?))?;
                let n = l.line_no();
                let version = value(
                    n,
                    "version",
                    parse_version(l.field("version")?).map_err(|e| e.to_string()),
                )?;
                let n = l.line_no();
                let digest = value(n, "digest", Digest::parse(l.field("digest")?))?;
                let n = l.line_no();
                let size = value(n, "size", parse_u64(l.field("size")?))?;
                let n = l.line_no();
                let time = value(n, "time", Timestamp::parse(l.field("time")?))?;
                let imports = l.list("import")?;
                let exports = l.list("export")?;
                Record::Release(Release {
                    package,
                    prev,
                    version,
                    digest,
                    size,
                    time,
                    imports,
                    exports,
                })
            }
            NAMESPACE_V2 => {
                let n = l.line_no();
                let namespace = value(
                    n,
                    "namespace",
                    Namespace::parse(l.field("namespace")?).map_err(|e| e.to_string()),
                )?;
                let n = l.line_no();
                let prev = value(n, "prev", Prev::parse(l.field("prev")?))?;
                let n = l.line_no();
                let op = match l.field("op")? {
                    "claim" => NamespaceOp::Claim,
                    "grant" => NamespaceOp::Grant,
                    "revoke" => NamespaceOp::Revoke,
                    other => {
                        return value(
                            n,
                            "op",
                            Err(format!("expected claim, grant or revoke, found `{other}`")),
                        );
                    }
                };
                let n = l.line_no();
                let key = value(
                    n,
                    "key",
                    VerifierKey::parse(l.field("key")?).map_err(|e| e.to_string()),
                )?;
                let n = l.line_no();
                let role = match l.field("role")? {
                    "owner" => Role::Owner,
                    "publish" => Role::Publish,
                    other => {
                        return value(
                            n,
                            "role",
                            Err(format!("expected owner or publish, found `{other}`")),
                        );
                    }
                };
                if op == NamespaceOp::Claim && role != Role::Owner {
                    return Err(RecordError::ClaimNotOwner(role));
                }
                let n = l.line_no();
                let time = value(n, "time", Timestamp::parse(l.field("time")?))?;
                Record::Namespace(NamespaceRecord {
                    namespace,
                    prev,
                    op,
                    key,
                    role,
                    time,
                })
            }
            YANK_V2 => {
                let n = l.line_no();
                let package = value(
                    n,
                    "package",
                    PackageName::parse(l.field("package")?).map_err(|e| e.to_string()),
                )?;
                let n = l.line_no();
                let prev = value(n, "prev", Prev::parse(l.field("prev")?))?;
                let n = l.line_no();
                let version = value(
                    n,
                    "version",
                    parse_version(l.field("version")?).map_err(|e| e.to_string()),
                )?;
                let n = l.line_no();
                let reason = l.field("reason")?;
                value(n, "reason", check_reason(reason))?;
                let n = l.line_no();
                let time = value(n, "time", Timestamp::parse(l.field("time")?))?;
                Record::Yank(Yank {
                    package,
                    prev,
                    version,
                    reason: reason.to_string(),
                    time,
                })
            }
            other => {
                return Err(RecordError::UnknownType {
                    line: 1,
                    found: other.to_string(),
                });
            }
        };
        l.end()?;
        // Values parsed leniently by a library (semver build metadata, for instance) must print
        // back to the same bytes, or the signed text and the record would disagree.
        let printed = rec.to_body();
        if printed != body {
            return Err(RecordError::NonCanonical);
        }
        Ok(rec)
    }

    /// Prints the canonical body, ending in a newline.
    pub fn to_body(&self) -> String {
        let mut out = String::with_capacity(512);
        match self {
            Record::Release(r) => {
                out.push_str(RELEASE_V2);
                out.push('\n');
                push(&mut out, "package", &r.package);
                push(&mut out, "prev", &r.prev);
                push(&mut out, "version", &r.version);
                push(&mut out, "digest", &r.digest);
                push(&mut out, "size", &r.size);
                push(&mut out, "time", &r.time);
                for i in &r.imports {
                    push(&mut out, "import", i);
                }
                for e in &r.exports {
                    push(&mut out, "export", e);
                }
            }
            Record::Namespace(n) => {
                out.push_str(NAMESPACE_V2);
                out.push('\n');
                push(&mut out, "namespace", &n.namespace);
                push(&mut out, "prev", &n.prev);
                push(&mut out, "op", &n.op);
                push(&mut out, "key", &n.key);
                push(&mut out, "role", &n.role);
                push(&mut out, "time", &n.time);
            }
            Record::Yank(y) => {
                out.push_str(YANK_V2);
                out.push('\n');
                push(&mut out, "package", &y.package);
                push(&mut out, "prev", &y.prev);
                push(&mut out, "version", &y.version);
                push(&mut out, "reason", &y.reason);
                push(&mut out, "time", &y.time);
            }
        }
        out
    }

    /// Checks that a record built in code is canonical (lists sorted and unique, values valid),
    /// so that signing it produces a body every reader accepts.
    pub fn validate(&self) -> Result<(), RecordError> {
        Self::parse(&self.to_body()).map(|_| ())
    }

    /// Signs the canonical body with the given keys and returns the signed note text: the exact
    /// bytes of a log leaf.
    pub fn sign(&self, signers: &[&crate::key::SignerKey]) -> Result<String, RecordError> {
        self.validate()?;
        Ok(Note::sign(&self.to_body(), signers)?.to_text())
    }

    /// Parses the record inside a signed note, without checking signatures.
    pub fn from_note(note: &Note) -> Result<Self, RecordError> {
        Self::parse(&note.text)
    }

    /// The package this record is about, for releases and yanks.
    pub fn package(&self) -> Option<&PackageName> {
        match self {
            Record::Release(r) => Some(&r.package),
            Record::Yank(y) => Some(&y.package),
            Record::Namespace(_) => None,
        }
    }

    /// The chain this record extends: its package's for releases and yanks, its namespace's
    /// for namespace records.
    pub fn chain(&self) -> ChainKey {
        match self {
            Record::Release(r) => ChainKey::Package(r.package.clone()),
            Record::Yank(y) => ChainKey::Package(y.package.clone()),
            Record::Namespace(n) => ChainKey::Namespace(n.namespace.clone()),
        }
    }

    /// The head of its chain this record names as the one before it.
    pub fn prev(&self) -> Prev {
        match self {
            Record::Release(r) => r.prev,
            Record::Yank(y) => y.prev,
            Record::Namespace(n) => n.prev,
        }
    }

    /// The namespace whose keys must authorise this record.
    pub fn namespace(&self) -> &Namespace {
        match self {
            Record::Release(r) => r.package.namespace(),
            Record::Yank(y) => y.package.namespace(),
            Record::Namespace(n) => &n.namespace,
        }
    }
}

fn push(out: &mut String, key: &str, v: &dyn fmt::Display) {
    use fmt::Write as _;
    out.push_str(key);
    out.push(' ');
    let _ = write!(out, "{v}");
    out.push('\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const VK: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    fn release_body() -> String {
        format!(
            "gridreg/release/v2\npackage acme:auth\nprev none\nversion 1.2.0\ndigest sha256:{}\nsize 123456\ntime 2026-11-21T19:56:57Z\nimport wasi:cli/stdout@0.2.6\nimport wasi:sockets/tcp@0.2.6\nexport neon:cybergrid/authenticator@0.1.0\n",
            "ab".repeat(32)
        )
    }

    #[test]
    fn timestamps_print_as_the_time_crate_formats_them() {
        // The hand-written printer must agree with the format the parser reads, at the edges of
        // the range and across it.
        let first: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
        let last: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for n in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span = (last - first) as u64 + 1;
            // Half the samples anywhere, half near the ends of the range.
            let offset = match n % 4 {
                0 | 1 => x % span,
                2 => x % 1_000_000,
                _ => span - 1 - x % 1_000_000,
            };
            let ts = Timestamp::from_unix(first + offset as i64).unwrap();
            let expected = ts.0.format(TIME_FORMAT).unwrap();
            assert_eq!(ts.to_string(), expected);
            assert_eq!(Timestamp::parse(&expected).unwrap(), ts);
        }
        assert_eq!(
            Timestamp::from_unix(last).unwrap().to_string(),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            Timestamp::from_unix(-62_167_219_200).unwrap().to_string(),
            "0000-01-01T00:00:00Z"
        );
    }

    #[test]
    fn all_three_roundtrip() {
        let bodies = [
            release_body(),
            format!("gridreg/namespace/v2\nnamespace acme\nprev none\nop grant\nkey {VK}\nrole publish\ntime 2026-11-21T19:56:57Z\n"),
            "gridreg/yank/v2\npackage acme:auth\nprev 4:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\nversion 1.2.0\nreason CVE-2026-1234: token check skipped\ntime 2026-11-21T19:56:57Z\n".to_string(),
        ];
        for b in bodies {
            let r = Record::parse(&b).unwrap();
            assert_eq!(r.to_body(), b);
            assert_eq!(Record::parse(&r.to_body()).unwrap(), r);
        }
    }

    #[test]
    fn v1_is_refused_by_name() {
        let v1 = "gridreg/namespace/v1\nnamespace acme\nop claim\n";
        let err = Record::parse(v1).unwrap_err();
        assert_eq!(
            err,
            RecordError::Version1 {
                found: "gridreg/namespace/v1".into()
            }
        );
        assert!(err.to_string().contains("gridreg/namespace/v2"), "{err}");
    }

    #[test]
    fn chain_and_prev_of_each_kind() {
        let r = Record::parse(&release_body()).unwrap();
        assert_eq!(r.chain().to_string(), "package acme:auth");
        assert_eq!(r.prev(), Prev::None);
        let y = Record::parse(&format!(
            "gridreg/yank/v2\npackage acme:auth\nprev 4:{}\nversion 1.2.0\nreason r\ntime 2026-11-21T19:56:57Z\n",
            "cd".repeat(32)
        ))
        .unwrap();
        assert_eq!(y.chain(), r.chain());
        assert_eq!(y.prev().head().unwrap().index, 4);
    }

    #[test]
    fn strictness() {
        let good = release_body();
        let cases: Vec<(String, &str)> = vec![
            (good.trim_end().to_string(), "final newline"),
            (good.replace("version 1.2.0\n", ""), "expected `version"),
            (good.replace("size 123456\n", "size 123456\nsize 1\n"), "expected `time"),
            (good.replace("size 123456\n", "size 0123456\n"), "leading zeros"),
            (good.replace("size 123456\n", "size +1\n"), "leading zeros"),
            (good.replace("2026-11-21T19:56:57Z", "2026-11-21T19:56:57+00:00"), "YYYY"),
            (good.replace("2026-11-21T19:56:57Z", "2026-11-21T19:56:57.5Z"), "YYYY"),
            (good.replace("2026-11-21T19:56:57Z", "2026-13-21T19:56:57Z"), "YYYY"),
            (good.replace("sha256:ab", "sha256:AB"), "lowercase hex"),
            (good.replace("import wasi:sockets", "import wasi:aaa"), "sorted and unique"),
            (good.replace("import wasi:sockets/tcp@0.2.6", "import wasi:cli/stdout@0.2.6"), "sorted and unique"),
            (good.replace("export", "import"), "sorted and unique"),
            (format!("{good}colour blue\n"), "the end of the record"),
            (format!("{good}import z:z/z\n"), "the end of the record"),
            (good.replace("version 1.2.0", "version 1.2"), "semver"),
            (good.replace("version 1.2.0", "version  1.2.0"), "semver"),
            (good.replace("package acme:auth", "package Acme:auth"), "kebab"),
            (good.replace("gridreg/release/v2", "gridreg/release/v3"), "record type"),
            (good.replace("gridreg/release/v2", "gridreg/release/v1"), "record format v1"),
            (good.replace("gridreg/release/v2\npackage acme:auth\nprev none\n", "gridreg/release/v1\npackage acme:auth\n"), "record format v1"),
            (good.replace("prev none\n", ""), "expected `prev"),
            (good.replace("prev none\n", "prev\n"), "expected `prev"),
            (good.replace("prev none", "prev 3"), "expected `none` or"),
            (good.replace("prev none", "prev 03:0000000000000000000000000000000000000000000000000000000000000000"), "expected `none` or"),
            (good.replace("prev none\nversion 1.2.0\n", "version 1.2.0\nprev none\n"), "expected `prev"),
            ("gridreg/namespace/v2\nnamespace acme\nprev none\nop claim\nkey x\nrole owner\ntime 2026-11-21T19:56:57Z\n".to_string(), "verifier key"),
            (format!("gridreg/namespace/v2\nnamespace acme\nprev none\nop claim\nkey {VK}\nrole publish\ntime 2026-11-21T19:56:57Z\n"), "claim must"),
            (format!("gridreg/namespace/v2\nnamespace acme\nprev none\nop steal\nkey {VK}\nrole owner\ntime 2026-11-21T19:56:57Z\n"), "claim, grant or revoke"),
            ("gridreg/yank/v2\npackage acme:auth\nprev 4:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\nversion 1.2.0\nreason bad\u{7}bell\ntime 2026-11-21T19:56:57Z\n".to_string(), "control"),
            ("gridreg/yank/v2\npackage acme:auth\nprev 4:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\nversion 1.2.0\nreason  padded\ntime 2026-11-21T19:56:57Z\n".to_string(), "whitespace"),
            ("gridreg/yank/v2\npackage acme:auth\nprev 4:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd\nversion 1.2.0\nreason \ntime 2026-11-21T19:56:57Z\n".to_string(), "expected `reason"),
        ];
        for (body, want) in cases {
            let err = Record::parse(&body).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{body:?}: got `{err}`, wanted it to mention `{want}`"
            );
        }
    }

    #[test]
    fn surface_bound() {
        let mut body = release_body().replace("export neon:cybergrid/authenticator@0.1.0\n", "");
        body = body.replace(
            "import wasi:cli/stdout@0.2.6\nimport wasi:sockets/tcp@0.2.6\n",
            "",
        );
        for i in 0..=MAX_SURFACE_LINES {
            body.push_str(&format!("import m{i:06}.f\n"));
        }
        let err = Record::parse(&body).unwrap_err();
        assert_eq!(err, RecordError::TooManyLines { field: "import" });
    }

    #[test]
    fn sign_and_read_back() {
        let k = crate::key::SignerKey::from_seed("alice", &[3; 32]).unwrap();
        let r = Record::parse(&release_body()).unwrap();
        let leaf = r.sign(&[&k]).unwrap();
        let note = Note::parse(leaf.as_bytes()).unwrap();
        assert_eq!(Record::from_note(&note).unwrap(), r);
        let mut unsorted = r.clone();
        if let Record::Release(rel) = &mut unsorted {
            rel.imports.reverse();
        }
        assert!(unsorted.sign(&[&k]).is_err());
    }
}
