//! Package bundles: the evidence for one package in one answer, and its verification against a
//! checkpoint (docs/protocol.md §6.9 "Map entries" and §8.6 "Package bundles").
//!
//! After every sequenced batch the log holds a [`MapEntry`], signed by the log key, naming the
//! root of the head map (docs/protocol.md §6.8) over every entry before it; it is the last leaf of each
//! checkpoint. A [`Bundle`] carries that entry with its inclusion proof, and for the package's
//! chain and its namespace's chain a map proof of the head and the records from the head back to
//! `prev none`. [`verify_bundle`] checks the entry against the checkpoint, each head against the
//! entry's root, each record against the leaf hash its successor (or the map) names, and replays
//! the namespace's authorisation over both chains. Only the map entry needs an inclusion proof:
//! once a head is proven, the `prev` hash links authenticate every record below it.
//!
//! The chain keys are always derived from the package asked for, never read from the bundle, so
//! a registry can neither leave out a record of either chain (a later revoke or yank), nor serve
//! an older head, nor invent or swap a record, without a verification error.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::chain::{ChainKey, Head};
use crate::checkpoint::Checkpoint;
use crate::key::{SignerKey, VerifierKey};
use crate::map::MapProof;
use crate::merkle::{self, Hash};
use crate::name::{self, Candidate, Namespace, PackageName, Reference, Requirement, Version};
use crate::namespace::NamespaceState;
use crate::note::{self, KeySet, MAX_NOTE_LEN, Note, NoteError};
use crate::record::{Digest, Record, Release};

/// The type line of a map entry.
pub const MAP_ENTRY_TYPE: &str = "gridreg/map/v1";

/// Most records a bundle may carry for one chain; a longer list is refused while reading JSON.
pub const MAX_CHAIN_RECORDS: usize = 10_000;

/// Why a map entry body or note was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapEntryError {
    #[error("map entry note: {0}")]
    Note(#[from] NoteError),
    #[error("map entry is not signed by the log key {0}")]
    NotSignedByLog(String),
    #[error("map entry line {line}: {reason}")]
    Malformed { line: usize, reason: String },
}

/// A map entry (docs/protocol.md §6.9): the head-map root over the log entries before it. `size`
/// is the entry's own log index, the number of entries it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapEntry {
    pub size: u64,
    pub root: Hash,
}

/// At most this many characters of a bad value are quoted in an error message.
const QUOTE_LEN: usize = 80;

/// `s` for an error message, cut at [`QUOTE_LEN`] characters.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LEN) {
        Some((cut, _)) => format!("`{}`…", &s[..cut]),
        None => format!("`{s}`"),
    }
}

impl MapEntry {
    /// The note text: `gridreg/map/v1`, `size N`, `root <base64>`, each ending in `\n`.
    pub fn to_body(&self) -> String {
        format!(
            "{MAP_ENTRY_TYPE}\nsize {}\nroot {}\n",
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a map entry body strictly: exactly the three lines of [`MapEntry::to_body`], a
    /// decimal size without leading zeros, and canonical padded base64 of exactly 32 bytes.
    pub fn parse(body: &str) -> Result<Self, MapEntryError> {
        let bad = |line: usize, reason: String| MapEntryError::Malformed { line, reason };
        let Some(inner) = body.strip_suffix('\n') else {
            return Err(bad(
                0,
                "expected a body ending in a newline, found no final newline".to_string(),
            ));
        };
        let lines: Vec<&str> = inner.split('\n').collect();
        if lines.len() != 3 {
            return Err(bad(
                if lines.len() < 3 { lines.len() + 1 } else { 4 },
                format!(
                    "expected exactly 3 lines (type, size, root), found {}",
                    lines.len()
                ),
            ));
        }
        if lines[0] != MAP_ENTRY_TYPE {
            return Err(bad(
                1,
                format!("expected `{MAP_ENTRY_TYPE}`, found {}", quote(lines[0])),
            ));
        }
        let size_text = lines[1].strip_prefix("size ").ok_or_else(|| {
            bad(
                2,
                format!("expected `size <decimal>`, found {}", quote(lines[1])),
            )
        })?;
        let canonical = !size_text.is_empty()
            && size_text.bytes().all(|b| b.is_ascii_digit())
            && !(size_text.len() > 1 && size_text.starts_with('0'));
        let size = canonical
            .then(|| size_text.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| {
                bad(
                    2,
                    format!(
                        "expected a decimal size without leading zeros, found {}",
                        quote(size_text)
                    ),
                )
            })?;
        let root_text = lines[2].strip_prefix("root ").ok_or_else(|| {
            bad(
                3,
                format!("expected `root <base64>`, found {}", quote(lines[2])),
            )
        })?;
        let root = parse_hash(root_text).map_err(|reason| bad(3, reason))?;
        Ok(Self { size, root })
    }

    /// Signs the entry with the log key and returns the signed note text: the exact leaf bytes.
    pub fn sign(&self, log_key: &SignerKey) -> Result<String, MapEntryError> {
        Ok(Note::sign(&self.to_body(), &[log_key])?.to_text())
    }

    /// Parses a signed map entry and checks that the log key signed it (other signatures are
    /// ignored, a failing signature by the log key is an error), as for a checkpoint (§6.6).
    pub fn verify(note_text: &[u8], log_key: &VerifierKey) -> Result<Self, MapEntryError> {
        let keys = KeySet::from_keys([log_key.clone()]);
        let verified = match note::verify(note_text, &keys) {
            Ok(v) => v,
            Err(NoteError::NoVerifiedSignature { .. }) => {
                return Err(MapEntryError::NotSignedByLog(log_key.to_string()));
            }
            Err(e) => return Err(e.into()),
        };
        Self::parse(verified.text())
    }
}

/// Decodes exactly 44 characters of canonical padded base64 into a 32-byte hash.
fn parse_hash(s: &str) -> Result<Hash, String> {
    if s.len() != 44 {
        return Err(format!(
            "expected base64 of 32 bytes (44 characters), found {} characters",
            s.len()
        ));
    }
    B64.decode(s)
        .ok()
        .and_then(|raw| Hash::try_from(raw.as_slice()).ok())
        .ok_or_else(|| format!("expected canonical base64 of 32 bytes, found {}", quote(s)))
}

// ---------------------------------------------------------------------------------------------
// The bundle

/// The evidence for one package, as one JSON answer (docs/protocol.md §8.6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    /// The signed checkpoint note. The caller verifies it (log key, origin, consistency with
    /// its trusted checkpoint) before calling [`verify_bundle`], which does not read it.
    #[serde(deserialize_with = "wire::note")]
    pub checkpoint: String,
    /// The signed map entry note: the checkpoint's last leaf.
    #[serde(deserialize_with = "wire::note")]
    pub map_entry: String,
    /// The map entry's inclusion proof in the checkpoint's tree (§6.3).
    #[serde(with = "wire::inclusion")]
    pub map_inclusion: Vec<Hash>,
    /// The chain `package <ns:name>` of the package asked for.
    pub package: ChainEvidence,
    /// The chain `namespace <ns>` of its namespace.
    pub namespace: ChainEvidence,
}

/// One chain's evidence. Which chain it is follows from its place in the [`Bundle`]; the
/// verifier derives the chain key from the package asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEvidence {
    /// Membership (the head) or absence of the chain in the map entry's map.
    pub proof: MapProof,
    /// The chain's records from the head back to the first (`prev none`), head first; empty
    /// when the chain is absent. At most [`MAX_CHAIN_RECORDS`].
    #[serde(deserialize_with = "wire::records")]
    pub records: Vec<Entry>,
}

/// The evidence for one namespace alone (docs/protocol.md §8.6.4): a [`Bundle`] without the
/// package chain, for a client that asks who holds which role in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceBundle {
    #[serde(deserialize_with = "wire::note")]
    pub checkpoint: String,
    #[serde(deserialize_with = "wire::note")]
    pub map_entry: String,
    #[serde(with = "wire::inclusion")]
    pub map_inclusion: Vec<Hash>,
    /// The chain `namespace <ns>`.
    pub namespace: ChainEvidence,
}

/// What a verified namespace bundle proves as of its checkpoint.
#[derive(Debug, Clone)]
pub struct VerifiedNamespace {
    pub checkpoint_size: u64,
    /// The namespace chain's head (`None`: the namespace is not claimed).
    pub head: Option<Head>,
    /// How many records the chain has.
    pub records: usize,
    /// The state after replaying the chain: who held which role at every index.
    pub state: NamespaceState,
}

/// One log entry: its index and exact leaf bytes (the signed note text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    #[serde(deserialize_with = "wire::note")]
    pub body: String,
}

/// Which check of docs/protocol.md §8.6.2 failed, with what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The map entry: its signature, its form, its size, its inclusion (step 1).
    #[error("map entry: {0}")]
    Map(String),
    /// A chain's map proof, or the head it names (step 2).
    #[error("head of {chain}: {message}")]
    Head { chain: String, message: String },
    /// A record of a chain: a broken link, a record of another chain, a missing or extra
    /// record, a repeated version, a yank of a version never released (steps 3 and 5).
    #[error("chain {chain}: {message}")]
    Chain { chain: String, message: String },
    /// A record that the namespace's state at its index does not authorise (step 4).
    #[error("authorisation in {chain}: {message}")]
    Authorisation { chain: String, message: String },
}

impl BundleError {
    /// The check's name as the CLI prints it: `map`, `head`, `chain` or `authorisation`.
    pub fn check(&self) -> &'static str {
        match self {
            Self::Map(_) => "map",
            Self::Head { .. } => "head",
            Self::Chain { .. } => "chain",
            Self::Authorisation { .. } => "authorisation",
        }
    }
}

/// A release of the verified package chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease {
    /// Its log index.
    pub index: u64,
    /// The exact leaf bytes (the signed release).
    pub leaf: Arc<str>,
    /// The parsed record: version, digest, size, time, imports and exports.
    pub release: Release,
    /// The keys whose signatures verified, of which at least one was authorised at `index`.
    pub signers: Vec<VerifierKey>,
    /// The log index of the yank of this version, if there is one.
    pub yanked_at: Option<u64>,
}

impl VerifiedRelease {
    pub fn version(&self) -> &Version {
        &self.release.version
    }

    pub fn digest(&self) -> &Digest {
        &self.release.digest
    }

    pub fn size(&self) -> u64 {
        self.release.size
    }

    pub fn is_yanked(&self) -> bool {
        self.yanked_at.is_some()
    }
}

/// A yank of the verified package chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedYank {
    pub index: u64,
    pub version: Version,
    pub reason: String,
    pub leaf: Arc<str>,
    pub signers: Vec<VerifierKey>,
}

/// What a verified bundle proves about a package as of the checkpoint.
#[derive(Debug, Clone)]
pub struct VerifiedPackage {
    pub package: PackageName,
    /// The size of the checkpoint the bundle was verified against.
    pub checkpoint_size: u64,
    /// The map entry's root.
    pub map_root: Hash,
    /// The package chain's head (`None`: no release or yank exists).
    pub package_head: Option<Head>,
    /// The namespace chain's head (`None`: the namespace is not claimed).
    pub namespace_head: Option<Head>,
    /// Every release, in log order.
    pub releases: Vec<VerifiedRelease>,
    /// Every yank, in log order.
    pub yanks: Vec<VerifiedYank>,
    /// The namespace's state after replaying both chains: who held which role at every index.
    pub namespace: NamespaceState,
    /// For every record of both chains walked in this bundle (not those continued from a
    /// [`Held`]), by leaf hash, the keys whose signatures verified: what a client caches to
    /// pass as `known` next time.
    pub record_signers: Vec<(Hash, Vec<VerifierKey>)>,
    /// How many records the package chain and the namespace chain have.
    pub package_records: usize,
    pub namespace_records: usize,
    /// Both chains as verified, to continue from next time ([`verify_bundle_after`]).
    pub held: Held,
}

/// What a client keeps of a package it verified, to verify the next bundle of it from the
/// records above these heads only (docs/protocol.md §8.6.5): the heads of both chains as of a
/// checkpoint, and every record of both chains with the keys whose signatures verified. As
/// trusted as the client's trusted checkpoint, and kept beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub package: PackageName,
    /// The size of the checkpoint the chains were verified against.
    pub checkpoint_size: u64,
    /// The package chain's head (`None`: no release or yank existed).
    pub package_head: Option<Head>,
    /// The namespace chain's head (`None`: the namespace was not claimed).
    pub namespace_head: Option<Head>,
    /// Every record of both chains, in increasing log index.
    pub entries: Vec<HeldEntry>,
}

/// One record a client verified: its index, exact leaf and verifying keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldEntry {
    pub index: u64,
    /// Shared with the verified release or yank it is, if it is one.
    pub leaf: Arc<str>,
    pub signers: Vec<VerifierKey>,
}

impl VerifiedPackage {
    /// The release of exactly `version`, yanked or not.
    pub fn release(&self, version: &Version) -> Option<&VerifiedRelease> {
        self.releases.iter().find(|r| r.version() == version)
    }

    /// Resolves a requirement over the verified releases by docs/protocol.md §2.4: exact
    /// selects even a yanked release; newest and ranges skip yanked ones (and newest skips
    /// pre-releases), taking the highest precedence.
    pub fn resolve(&self, requirement: &Requirement) -> Option<&VerifiedRelease> {
        let candidates: Vec<Candidate> = self
            .releases
            .iter()
            .map(|r| Candidate {
                version: r.version().clone(),
                yanked: r.is_yanked(),
            })
            .collect();
        let chosen = name::resolve(requirement, &candidates)?;
        self.release(&chosen.version)
    }

    /// [`VerifiedPackage::resolve`] for a reference; `None` when it names another package.
    pub fn resolve_reference(&self, reference: &Reference) -> Option<&VerifiedRelease> {
        if reference.package != self.package {
            return None;
        }
        self.resolve(&reference.requirement)
    }
}

/// The first 16 hex digits of a hash, enough to tell hashes apart in a message.
fn short(h: &Hash) -> String {
    hex::encode(&h[..8])
}

/// One record of a chain as the walk found it: log index, exact leaf bytes, and the note and
/// record parsed from them (parsed once, for the links and again never).
struct Walked<'a> {
    index: u64,
    body: &'a str,
    /// SHA-256(0x00 || body), checked against the link that named it.
    leaf: Hash,
    note: Note,
    record: Record,
}

/// Where a chain walk ends: at `prev none`, or at a head the client verified before (its
/// [`Held`] chains), below which it already holds every record.
#[derive(Debug, Clone, Copy)]
struct Stop {
    /// `None`: walk down to `prev none`.
    held: Option<Head>,
    /// The checkpoint size the held head was verified at, for messages.
    held_size: u64,
}

impl Stop {
    const NONE: Stop = Stop {
        held: None,
        held_size: 0,
    };
}

/// Docs/protocol.md §8.6.2 steps 2 and 3 for one chain: the head from the map proof, then the
/// records from the head back to `none`, or (§8.6.5) back to the head `stop` names. Returns the
/// head and the records walked, oldest first.
fn walk_chain<'a>(
    chain: &ChainKey,
    evidence: &'a ChainEvidence,
    root: &Hash,
    map_size: u64,
    stop: Stop,
) -> Result<(Option<Head>, Vec<Walked<'a>>), BundleError> {
    let head_err = |message: String| BundleError::Head {
        chain: chain.to_string(),
        message,
    };
    let chain_err = |message: String| BundleError::Chain {
        chain: chain.to_string(),
        message,
    };
    let lost = |found: String| {
        let held = stop.held.map(|h| format!("{}:{}", h.index, short(&h.leaf)));
        chain_err(format!(
            "expected the chain to pass through log index {} (the head this client verified at \
             log size {}), found {found}: the registry dropped or replaced records it served \
             before (a fork or a rollback of the chain)",
            held.unwrap_or_default(),
            stop.held_size
        ))
    };
    let head = evidence
        .proof
        .verify_head(root, chain)
        .map_err(|e| head_err(e.to_string()))?;
    let Some(head) = head else {
        if stop.held.is_some() {
            return Err(lost("the map proving the chain absent".to_string()));
        }
        if !evidence.records.is_empty() {
            return Err(chain_err(format!(
                "expected no records, the map proves the chain absent, found {} records",
                evidence.records.len()
            )));
        }
        return Ok((None, Vec::new()));
    };
    if head.index >= map_size {
        return Err(head_err(format!(
            "expected a head below the map entry's size {map_size}, found log index {}",
            head.index
        )));
    }
    if evidence.records.len() > MAX_CHAIN_RECORDS {
        return Err(chain_err(format!(
            "expected at most {MAX_CHAIN_RECORDS} records, found {}",
            evidence.records.len()
        )));
    }
    let mut expected = Some(head);
    let mut walked = Vec::with_capacity(evidence.records.len());
    let mut served = evidence.records.iter().enumerate();
    loop {
        if let (Some(want), Some(held)) = (expected, stop.held) {
            if want == held {
                // Every record below is one this client verified before.
                if let Some((position, entry)) = served.next() {
                    return Err(chain_err(format!(
                        "expected only the records above log index {} (the head this client \
                         verified at log size {}), found {} more starting with log index {}",
                        held.index,
                        stop.held_size,
                        evidence.records.len() - position,
                        entry.index
                    )));
                }
                break;
            }
            if want.index <= held.index {
                return Err(lost(format!("a link to log index {want}")));
            }
        }
        let Some((position, entry)) = served.next() else {
            break;
        };
        let Some(want) = expected else {
            return Err(chain_err(format!(
                "expected no record after the first one (log index {}, prev none), found {} more starting with log index {}",
                walked.last().map_or(head.index, |w: &Walked<'_>| w.index),
                evidence.records.len() - position,
                entry.index
            )));
        };
        if entry.index != want.index {
            return Err(chain_err(format!(
                "record {position}: expected log index {}, found log index {}",
                want.index, entry.index
            )));
        }
        let found = merkle::leaf_hash(entry.body.as_bytes());
        if found != want.leaf {
            return Err(chain_err(format!(
                "record {position} (log index {}): expected leaf hash {}, found {}",
                entry.index,
                short(&want.leaf),
                short(&found)
            )));
        }
        let parsed = Note::parse(entry.body.as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|n| {
                Record::from_note(&n)
                    .map(|r| (n, r))
                    .map_err(|e| e.to_string())
            });
        let (note, record) = parsed.map_err(|e| {
            chain_err(format!(
                "record {position} (log index {}): expected a signed record, found: {e}",
                entry.index
            ))
        })?;
        let of = record.chain();
        if &of != chain {
            return Err(chain_err(format!(
                "record {position} (log index {}): expected a record of {chain}, found a record of {of}",
                entry.index
            )));
        }
        expected = record.prev().head();
        if let Some(prev) = expected
            && prev.index >= entry.index
        {
            return Err(chain_err(format!(
                "record {position} (log index {}): expected a prev below its own index, found prev {prev}",
                entry.index
            )));
        }
        walked.push(Walked {
            leaf: found,
            index: entry.index,
            body: &entry.body,
            note,
            record,
        });
    }
    match (expected, stop.held) {
        (Some(want), Some(held)) if want == held => {}
        (None, Some(_)) => return Err(lost("the chain's first record (prev none)".to_string())),
        (Some(missing), held) => {
            let down_to = held.map_or("prev none".to_string(), |h| {
                format!("log index {} (the head this client verified)", h.index)
            });
            return Err(chain_err(format!(
                "expected the records down to {down_to}, found the last served record naming log index {} ({}) as its prev",
                missing.index,
                short(&missing.leaf)
            )));
        }
        (None, None) => {}
    }
    walked.reverse();
    Ok((Some(head), walked))
}

/// Docs/protocol.md §8.6.2 step 1: the map entry, signed by the log key, is the checkpoint's
/// last leaf and names its own index as its size.
fn verify_map_entry(
    map_entry: &str,
    map_inclusion: &[Hash],
    checkpoint: &Checkpoint,
    log_key: &VerifierKey,
) -> Result<MapEntry, BundleError> {
    let Some(entry_index) = checkpoint.size.checked_sub(1) else {
        return Err(BundleError::Map(
            "expected a checkpoint ending in a map entry, found the empty tree".to_string(),
        ));
    };
    let entry = MapEntry::verify(map_entry.as_bytes(), log_key)
        .map_err(|e| BundleError::Map(e.to_string()))?;
    if entry.size != entry_index {
        return Err(BundleError::Map(format!(
            "expected size {entry_index} (the checkpoint's size {} less one), found size {}",
            checkpoint.size, entry.size
        )));
    }
    merkle::verify_inclusion(
        map_inclusion,
        checkpoint.size,
        &checkpoint.root,
        entry_index,
        &merkle::leaf_hash(map_entry.as_bytes()),
    )
    .map_err(|e| BundleError::Map(e.to_string()))?;
    Ok(entry)
}

/// Verifies a namespace bundle for `namespace` against a checkpoint the caller has already
/// verified, by docs/protocol.md §8.6.4: steps 1 to 4 of §8.6.2 for the namespace chain alone.
pub fn verify_namespace_bundle(
    bundle: &NamespaceBundle,
    checkpoint: &Checkpoint,
    log_key: &VerifierKey,
    namespace: &Namespace,
) -> Result<VerifiedNamespace, BundleError> {
    let entry = verify_map_entry(
        &bundle.map_entry,
        &bundle.map_inclusion,
        checkpoint,
        log_key,
    )?;
    let chain = ChainKey::Namespace(namespace.clone());
    let (head, walked) = walk_chain(
        &chain,
        &bundle.namespace,
        &entry.root,
        entry.size,
        Stop::NONE,
    )?;
    let mut state = NamespaceState::new();
    for w in &walked {
        state
            .apply_parsed_known(w.index, w.body.as_bytes(), &w.note, &w.record, None)
            .map_err(|e| BundleError::Authorisation {
                chain: chain.to_string(),
                message: e.to_string(),
            })?;
    }
    Ok(VerifiedNamespace {
        checkpoint_size: checkpoint.size,
        head,
        records: walked.len(),
        state,
    })
}

/// Verifies a bundle for `package` against a checkpoint the caller has already verified
/// (signed by `log_key`, consistent with what it trusts), by docs/protocol.md §8.6.2. On success
/// every release and yank of the package, and its namespace's authorisation history, are
/// proven as of that checkpoint.
pub fn verify_bundle(
    bundle: &Bundle,
    checkpoint: &Checkpoint,
    log_key: &VerifierKey,
    package: &PackageName,
) -> Result<VerifiedPackage, BundleError> {
    verify_bundle_known(bundle, checkpoint, log_key, package, &|_| None)
}

/// [`verify_bundle`] with the keys already known to have signed some records, by leaf hash (a
/// client's cache of records it verified before): those records' signatures are not verified
/// again (their bytes still are, by the chain's hashes). Every other step is the same.
pub fn verify_bundle_known(
    bundle: &Bundle,
    checkpoint: &Checkpoint,
    log_key: &VerifierKey,
    package: &PackageName,
    known: &dyn Fn(&Hash) -> Option<Vec<VerifierKey>>,
) -> Result<VerifiedPackage, BundleError> {
    prove(bundle, checkpoint, log_key, package, None, known)
}

/// [`verify_bundle_known`] continuing from the chains a client verified before (docs/protocol.md
/// §8.6.5): the bundle carries only the records above the heads `held` names (what the
/// registry serves for `?package_after=..&namespace_after=..`), each chain must lead down to
/// its held head exactly, and the held records are replayed from `held` without hashing or
/// verifying their signatures again. A chain that no longer passes through its held head (a
/// record dropped or replaced since) fails the `chain` check, and so does a held state newer
/// than the checkpoint or of another package. The result is what [`verify_bundle_known`] would
/// prove from the whole chains.
pub fn verify_bundle_after(
    bundle: &Bundle,
    checkpoint: &Checkpoint,
    log_key: &VerifierKey,
    package: &PackageName,
    held: &Held,
    known: &dyn Fn(&Hash) -> Option<Vec<VerifierKey>>,
) -> Result<VerifiedPackage, BundleError> {
    let package_chain = ChainKey::Package(package.clone());
    if &held.package != package {
        return Err(BundleError::Chain {
            chain: package_chain.to_string(),
            message: format!(
                "expected held chains of {package}, found those of {}",
                held.package
            ),
        });
    }
    if held.checkpoint_size > checkpoint.size {
        return Err(BundleError::Chain {
            chain: package_chain.to_string(),
            message: format!(
                "expected held chains verified at a log size up to the checkpoint's {}, found \
                 log size {}",
                checkpoint.size, held.checkpoint_size
            ),
        });
    }
    prove(bundle, checkpoint, log_key, package, Some(held), known)
}

/// Steps 1 to 5 of docs/protocol.md §8.6.2, from scratch or continuing from `held`.
fn prove(
    bundle: &Bundle,
    checkpoint: &Checkpoint,
    log_key: &VerifierKey,
    package: &PackageName,
    held: Option<&Held>,
    known: &dyn Fn(&Hash) -> Option<Vec<VerifierKey>>,
) -> Result<VerifiedPackage, BundleError> {
    // Step 1: the map entry is the checkpoint's last leaf.
    let entry = verify_map_entry(
        &bundle.map_entry,
        &bundle.map_inclusion,
        checkpoint,
        log_key,
    )?;

    // Steps 2 and 3: each chain, from the key derived from the request, down to `prev none`
    // or to the head held for it.
    let package_chain = ChainKey::Package(package.clone());
    let namespace_chain = ChainKey::Namespace(package.namespace().clone());
    let stop = |head: Option<Head>| Stop {
        held: head,
        held_size: held.map_or(0, |h| h.checkpoint_size),
    };
    let (namespace_head, namespace_records) = walk_chain(
        &namespace_chain,
        &bundle.namespace,
        &entry.root,
        entry.size,
        stop(held.and_then(|h| h.namespace_head)),
    )?;
    let (package_head, package_records) = walk_chain(
        &package_chain,
        &bundle.package,
        &entry.root,
        entry.size,
        stop(held.and_then(|h| h.package_head)),
    )?;

    // Steps 4 and 5: replay both chains in log order: first what is held (verified before,
    // all below the held checkpoint's size), then the new records.
    let mut walked: Vec<(Walked<'_>, &ChainKey)> = namespace_records
        .into_iter()
        .map(|w| (w, &namespace_chain))
        .chain(package_records.into_iter().map(|w| (w, &package_chain)))
        .collect();
    walked.sort_by_key(|(w, _)| w.index);
    if let Some(pair) = walked.windows(2).find(|p| p[0].0.index == p[1].0.index) {
        return Err(BundleError::Chain {
            chain: package_chain.to_string(),
            message: format!(
                "expected each log index in one chain, found log index {} in both {} and {}",
                pair[0].0.index, namespace_chain, package_chain
            ),
        });
    }
    let mut replay = Replay::new(
        &package_chain,
        held.map_or(0, |h| h.entries.len()) + walked.len(),
    );
    if let Some(held) = held {
        for e in &held.entries {
            replay.held(e, &namespace_chain, &package_chain)?;
        }
    }
    for (w, chain) in walked {
        let cached = known(&w.leaf);
        replay.walked(w, chain, cached.as_deref())?;
    }
    let Replay {
        state,
        releases,
        yanks,
        record_signers,
        entries,
        package_records,
        ..
    } = replay;
    Ok(VerifiedPackage {
        package: package.clone(),
        checkpoint_size: checkpoint.size,
        map_root: entry.root,
        package_head,
        namespace_head,
        releases,
        yanks,
        namespace: state,
        record_signers,
        namespace_records: entries.len() - package_records,
        package_records,
        held: Held {
            package: package.clone(),
            checkpoint_size: checkpoint.size,
            package_head,
            namespace_head,
            entries,
        },
    })
}

/// The replay of steps 4 and 5 over both chains' records in log order.
struct Replay<'c> {
    package_chain: &'c ChainKey,
    state: NamespaceState,
    releases: Vec<VerifiedRelease>,
    yanks: Vec<VerifiedYank>,
    by_version: BTreeMap<Version, usize>,
    /// The signers of the records verified in this call (not of the held ones).
    record_signers: Vec<(Hash, Vec<VerifierKey>)>,
    /// Every record replayed, for the next [`Held`].
    entries: Vec<HeldEntry>,
    /// How many of them are of the package chain.
    package_records: usize,
}

impl<'c> Replay<'c> {
    fn new(package_chain: &'c ChainKey, records: usize) -> Self {
        Self {
            package_chain,
            state: NamespaceState::new(),
            releases: Vec::new(),
            yanks: Vec::new(),
            by_version: BTreeMap::new(),
            record_signers: Vec::new(),
            entries: Vec::with_capacity(records),
            package_records: 0,
        }
    }

    /// A held record: verified before, its signers known; parsed and applied again, not
    /// hashed or signature-checked.
    fn held(
        &mut self,
        e: &HeldEntry,
        namespace_chain: &ChainKey,
        package_chain: &ChainKey,
    ) -> Result<(), BundleError> {
        let held_err = |message: String| BundleError::Chain {
            chain: package_chain.to_string(),
            message: format!("held record at log index {}: {message}", e.index),
        };
        let note = Note::parse(e.leaf.as_bytes()).map_err(|x| held_err(x.to_string()))?;
        let record = Record::from_note(&note).map_err(|x| held_err(x.to_string()))?;
        let chain = record.chain();
        if &chain != namespace_chain && &chain != package_chain {
            return Err(held_err(format!("a record of {chain}")));
        }
        let chain = if &chain == package_chain {
            package_chain
        } else {
            namespace_chain
        };
        self.apply(
            e.index,
            e.leaf.clone(),
            (note, record),
            chain,
            Some(&e.signers),
            None,
        )
    }

    /// A record walked in this bundle.
    fn walked(
        &mut self,
        w: Walked<'_>,
        chain: &ChainKey,
        cached: Option<&[VerifierKey]>,
    ) -> Result<(), BundleError> {
        self.apply(
            w.index,
            Arc::from(w.body),
            (w.note, w.record),
            chain,
            cached,
            Some(w.leaf),
        )
    }

    fn apply(
        &mut self,
        index: u64,
        body: Arc<str>,
        (note, record): (Note, Record),
        chain: &ChainKey,
        known: Option<&[VerifierKey]>,
        fresh: Option<Hash>,
    ) -> Result<(), BundleError> {
        let signers = self
            .state
            .apply_parsed_known(index, body.as_bytes(), &note, &record, known)
            .map_err(|e| BundleError::Authorisation {
                chain: chain.to_string(),
                message: e.to_string(),
            })?;
        if let Some(leaf) = fresh {
            self.record_signers.push((leaf, signers.clone()));
        }
        self.entries.push(HeldEntry {
            index,
            leaf: body.clone(),
            signers: signers.clone(),
        });
        let package_chain = self.package_chain;
        if chain == package_chain {
            self.package_records += 1;
        }
        let chain_err = |message: String| BundleError::Chain {
            chain: package_chain.to_string(),
            message,
        };
        match record {
            Record::Namespace(_) => {}
            Record::Release(release) => {
                if let Some(&earlier) = self.by_version.get(&release.version) {
                    return Err(chain_err(format!(
                        "expected each version released once, found {} at log index {} and {index}",
                        release.version, self.releases[earlier].index
                    )));
                }
                self.by_version
                    .insert(release.version.clone(), self.releases.len());
                self.releases.push(VerifiedRelease {
                    index,
                    leaf: body,
                    release,
                    signers,
                    yanked_at: None,
                });
            }
            Record::Yank(yank) => {
                let Some(&at) = self.by_version.get(&yank.version) else {
                    return Err(chain_err(format!(
                        "log index {index}: expected a yank of a version released earlier in the chain, found a yank of {}",
                        yank.version
                    )));
                };
                let target = &mut self.releases[at];
                if let Some(earlier) = target.yanked_at {
                    return Err(chain_err(format!(
                        "expected each version yanked at most once, found {} yanked at log index {earlier} and {index}",
                        yank.version
                    )));
                }
                target.yanked_at = Some(index);
                self.yanks.push(VerifiedYank {
                    index,
                    version: yank.version,
                    reason: yank.reason,
                    leaf: body,
                    signers,
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for MapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "map entry size {} root {}",
            self.size,
            hex::encode(self.root)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// Bounded readers for the bundle's JSON form: notes of at most [`MAX_NOTE_LEN`] bytes, at
/// most [`merkle::MAX_PROOF_LEN`] inclusion hashes and [`MAX_CHAIN_RECORDS`] records.
mod wire {
    use super::*;

    struct NoteText;

    impl Visitor<'_> for NoteText {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a signed note of at most {MAX_NOTE_LEN} bytes")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
            self.visit_string(s.to_string())
        }

        fn visit_string<E: de::Error>(self, s: String) -> Result<String, E> {
            if s.len() > MAX_NOTE_LEN {
                return Err(E::custom(format!(
                    "expected a signed note of at most {MAX_NOTE_LEN} bytes, found {} bytes",
                    s.len()
                )));
            }
            Ok(s)
        }
    }

    pub fn note<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        d.deserialize_string(NoteText)
    }

    struct WireHash(Hash);

    impl<'de> Deserialize<'de> for WireHash {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Hash;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("base64 of 32 bytes")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<Hash, E> {
                    parse_hash(s).map_err(E::custom)
                }
            }
            d.deserialize_str(V).map(WireHash)
        }
    }

    pub mod inclusion {
        use super::*;

        pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(hashes.iter().map(|h| B64.encode(h)))
        }

        struct Hashes;

        impl<'de> Visitor<'de> for Hashes {
            type Value = Vec<Hash>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "an array of at most {} base64 hashes",
                    merkle::MAX_PROOF_LEN
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Hash>, A::Error> {
                let mut out = Vec::new();
                while let Some(WireHash(h)) = seq.next_element()? {
                    if out.len() == merkle::MAX_PROOF_LEN {
                        return Err(de::Error::custom(format!(
                            "expected at most {} inclusion hashes, found more",
                            merkle::MAX_PROOF_LEN
                        )));
                    }
                    out.push(h);
                }
                Ok(out)
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
            d.deserialize_seq(Hashes)
        }
    }

    struct Records;

    impl<'de> Visitor<'de> for Records {
        type Value = Vec<Entry>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {MAX_CHAIN_RECORDS} log entries")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Entry>, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = seq.next_element::<Entry>()? {
                if out.len() == MAX_CHAIN_RECORDS {
                    return Err(de::Error::custom(format!(
                        "expected at most {MAX_CHAIN_RECORDS} records in a chain, found more"
                    )));
                }
                out.push(entry);
            }
            Ok(out)
        }
    }

    pub fn records<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Entry>, D::Error> {
        d.deserialize_seq(Records)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::BTreeMap;

    use super::*;
    use crate::chain::Prev;
    use crate::map::HeadMap;
    use crate::name::Namespace;
    use crate::record::{NamespaceOp, NamespaceRecord, Role, Timestamp, Yank};

    const ORIGIN: &str = "log.example";

    fn key(name: &str, seed: u8) -> SignerKey {
        SignerKey::from_seed(name, &[seed; 32]).unwrap()
    }

    fn alice() -> SignerKey {
        key("alice", 3)
    }

    fn bob() -> SignerKey {
        key("bob", 5)
    }

    fn log_key() -> SignerKey {
        key(ORIGIN, 4)
    }

    fn pkg(s: &str) -> PackageName {
        PackageName::parse(s).unwrap()
    }

    fn time() -> Timestamp {
        Timestamp::parse("2026-11-21T19:56:57Z").unwrap()
    }

    fn ns_op(op: NamespaceOp, k: &SignerKey, role: Role) -> Record {
        Record::Namespace(NamespaceRecord {
            namespace: Namespace::parse("acme").unwrap(),
            prev: Prev::None,
            op,
            key: k.verifier(),
            role,
            time: time(),
        })
    }

    fn release(package: &str, version: &str, digest_seed: &[u8]) -> Record {
        Record::Release(Release {
            package: pkg(package),
            prev: Prev::None,
            version: Version::parse(version).unwrap(),
            digest: Digest::of(digest_seed),
            size: digest_seed.len() as u64,
            time: time(),
            imports: vec!["wasi:cli/stdout@0.2.6".to_string()],
            exports: vec![],
        })
    }

    fn yank(package: &str, version: &str) -> Record {
        Record::Yank(Yank {
            package: pkg(package),
            prev: Prev::None,
            version: Version::parse(version).unwrap(),
            reason: "broken build".to_string(),
            time: time(),
        })
    }

    fn with_prev(mut record: Record, prev: Prev) -> Record {
        match &mut record {
            Record::Release(r) => r.prev = prev,
            Record::Yank(y) => y.prev = prev,
            Record::Namespace(n) => n.prev = prev,
        }
        record
    }

    /// A map entry as the registry appends it, and the checkpoint whose last leaf it is.
    struct Seal {
        map: HeadMap,
        checkpoint: Checkpoint,
    }

    /// A real log: leaves, the stored RFC 6962 hashes, each chain's head, and the seals (map
    /// entries) appended so far. It does not enforce §5 or §4.7 itself, so that a test can
    /// play a lying registry; [`Log::push`] follows them, [`Log::push_raw`] need not.
    struct Log {
        leaves: Vec<String>,
        stored: Vec<Hash>,
        heads: BTreeMap<ChainKey, Head>,
        seals: Vec<Seal>,
    }

    impl Log {
        fn new() -> Self {
            Self {
                leaves: Vec::new(),
                stored: Vec::new(),
                heads: BTreeMap::new(),
                seals: Vec::new(),
            }
        }

        fn append(&mut self, leaf: String) -> u64 {
            let index = self.leaves.len() as u64;
            let new =
                merkle::append_leaves(index, &[merkle::leaf_hash(leaf.as_bytes())], &self.stored)
                    .unwrap();
            self.stored.extend(new);
            self.leaves.push(leaf);
            index
        }

        /// Appends `record` on its chain's head, signed by `by`; returns its index.
        fn push(&mut self, record: Record, by: &[&SignerKey]) -> u64 {
            let prev = Prev::after(self.heads.get(&record.chain()).copied());
            self.push_raw(with_prev(record, prev), by, true)
        }

        /// Appends `record` as it is; makes it its chain's head only if `advance`.
        fn push_raw(&mut self, record: Record, by: &[&SignerKey], advance: bool) -> u64 {
            let leaf = record.sign(by).unwrap();
            let chain = record.chain();
            let head = Head::of(self.leaves.len() as u64, leaf.as_bytes());
            let index = self.append(leaf);
            if advance {
                self.heads.insert(chain, head);
            }
            index
        }

        /// Appends a map entry over the current heads (honestly: size = its own index) and
        /// returns the seal's number.
        fn seal(&mut self) -> usize {
            let map = HeadMap::from_heads(self.heads.iter().map(|(k, h)| (k, *h))).unwrap();
            let size = self.leaves.len() as u64;
            self.seal_with(map, size, &log_key())
        }

        /// Appends a map entry with any map, size and signer.
        fn seal_with(&mut self, map: HeadMap, size: u64, signer: &SignerKey) -> usize {
            let entry = MapEntry {
                size,
                root: map.root(),
            };
            self.append(entry.sign(signer).unwrap());
            let n = self.leaves.len() as u64;
            let root = merkle::tree_hash(n, &self.stored).unwrap();
            self.seals.push(Seal {
                map,
                checkpoint: Checkpoint::new(ORIGIN, n, root),
            });
            self.seals.len() - 1
        }

        fn leaf_at(&self, index: u64) -> &str {
            &self.leaves[index as usize]
        }

        /// The honest evidence for `chain` as of seal `s`: the map's proof, and the records
        /// from the head the map names back to `prev none`.
        fn evidence(&self, s: usize, chain: &ChainKey) -> ChainEvidence {
            let map = &self.seals[s].map;
            let mut records = Vec::new();
            let mut next = map.get(chain);
            while let Some(h) = next {
                let body = self.leaf_at(h.index).to_string();
                next = Record::from_note(&Note::parse(body.as_bytes()).unwrap())
                    .unwrap()
                    .prev()
                    .head();
                records.push(Entry {
                    index: h.index,
                    body,
                });
            }
            ChainEvidence {
                proof: map.prove(chain),
                records,
            }
        }

        /// The honest bundle for `package` as of seal `s`.
        fn bundle(&self, s: usize, package: &str) -> Bundle {
            let p = pkg(package);
            let cp = &self.seals[s].checkpoint;
            Bundle {
                checkpoint: cp.sign(&[&log_key()]).unwrap().note,
                map_entry: self.leaf_at(cp.size - 1).to_string(),
                map_inclusion: merkle::prove_inclusion(cp.size, cp.size - 1, &self.stored).unwrap(),
                package: self.evidence(s, &ChainKey::Package(p.clone())),
                namespace: self.evidence(s, &ChainKey::Namespace(p.namespace().clone())),
            }
        }

        /// The bundle as a registry answers `?package_after=..&namespace_after=..` for the
        /// heads `held` names: each chain's records down to (not including) that index.
        fn bundle_after(&self, s: usize, package: &str, held: &Held) -> Bundle {
            let mut b = self.bundle(s, package);
            let cut = |records: &mut Vec<Entry>, head: Option<Head>| {
                if let Some(h) = head {
                    records.retain(|e| e.index > h.index);
                }
            };
            cut(&mut b.package.records, held.package_head);
            cut(&mut b.namespace.records, held.namespace_head);
            b
        }

        fn verify_after(
            &self,
            s: usize,
            bundle: &Bundle,
            package: &str,
            held: &Held,
        ) -> Result<VerifiedPackage, BundleError> {
            verify_bundle_after(
                bundle,
                &self.seals[s].checkpoint,
                &log_key().verifier(),
                &pkg(package),
                held,
                &|_| None,
            )
        }

        fn verify(
            &self,
            s: usize,
            bundle: &Bundle,
            package: &str,
        ) -> Result<VerifiedPackage, BundleError> {
            verify_bundle(
                bundle,
                &self.seals[s].checkpoint,
                &log_key().verifier(),
                &pkg(package),
            )
        }
    }

    /// The honest history the tests tamper with. Seal 0 is after the first releases; seal 1
    /// after a release by bob, the revoke of bob, and a yank.
    fn history() -> Log {
        let (alice, bob) = (alice(), bob());
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]); // 0
        log.push(ns_op(NamespaceOp::Grant, &bob, Role::Publish), &[&alice]); // 1
        log.push(release("acme:auth", "1.0.0", b"one"), &[&bob]); // 2
        log.push(release("acme:auth", "1.1.0", b"one-one"), &[&alice]); // 3
        log.push(release("acme:other", "0.1.0", b"other"), &[&alice]); // 4
        log.push(release("acme:auth", "2.0.0-rc.1", b"two"), &[&alice]); // 5
        assert_eq!(log.seal(), 0); // map entry 6, checkpoint size 7
        log.push(release("acme:auth", "1.2.0", b"one-two"), &[&bob]); // 7
        log.push(ns_op(NamespaceOp::Revoke, &bob, Role::Publish), &[&alice]); // 8
        log.push(yank("acme:auth", "1.2.0"), &[&alice]); // 9
        assert_eq!(log.seal(), 1); // map entry 10, checkpoint size 11
        log
    }

    fn check_of(r: Result<VerifiedPackage, BundleError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.check(),
        }
    }

    fn req(s: &str) -> Requirement {
        if s.is_empty() {
            Requirement::Newest
        } else {
            Requirement::parse(s).unwrap()
        }
    }

    fn picked(v: &VerifiedPackage, s: &str) -> Option<String> {
        v.resolve(&req(s)).map(|r| r.version().to_string())
    }

    /// docs/protocol.md §8.6.2 (all steps) and §8.6.3; resolution by docs/protocol.md §2.4.
    #[test]
    fn honest_bundle_verifies_and_resolves() {
        let log = history();
        let v = log
            .verify(1, &log.bundle(1, "acme:auth"), "acme:auth")
            .unwrap();
        assert_eq!(v.checkpoint_size, 11);
        assert_eq!(
            v.releases.iter().map(|r| r.index).collect::<Vec<_>>(),
            [2, 3, 5, 7]
        );
        assert_eq!(v.yanks.len(), 1);
        assert_eq!(
            (v.yanks[0].index, v.yanks[0].version.to_string()),
            (9, "1.2.0".into())
        );
        assert_eq!(v.package_head.map(|h| h.index), Some(9));
        assert_eq!(v.namespace_head.map(|h| h.index), Some(8));
        let r100 = v.release(&Version::new(1, 0, 0)).unwrap();
        assert_eq!(r100.signers, vec![bob().verifier()]);
        assert_eq!(&*r100.leaf, log.leaf_at(2));
        assert_eq!(r100.digest(), &Digest::of(b"one"));
        assert_eq!(r100.size(), 3);
        // Newest skips the yanked 1.2.0 and the pre-release; ranges skip the yank; exact does not.
        assert_eq!(picked(&v, "").as_deref(), Some("1.1.0"));
        assert_eq!(picked(&v, "^1").as_deref(), Some("1.1.0"));
        assert_eq!(picked(&v, "1.2.0").as_deref(), Some("1.2.0"));
        assert!(v.resolve(&req("=1.2.0")).unwrap().is_yanked());
        assert_eq!(picked(&v, ">=2.0.0-rc.1").as_deref(), Some("2.0.0-rc.1"));
        assert_eq!(picked(&v, "^3").as_deref(), None);
        let reference = Reference::parse("acme:auth@~1.0").unwrap();
        assert_eq!(v.resolve_reference(&reference).map(|r| r.index), Some(2));
        assert!(
            v.resolve_reference(&Reference::parse("acme:other").unwrap())
                .is_none()
        );
        // The namespace state answers for any index: bob until the revoke at 8, not after.
        let acme = Namespace::parse("acme").unwrap();
        assert!(v.namespace.may_publish(&acme, &bob().verifier(), 7));
        assert!(!v.namespace.may_publish(&acme, &bob().verifier(), 9));
        // The older seal verifies too, against its own checkpoint: 1.2.0 does not exist there.
        let old = log
            .verify(0, &log.bundle(0, "acme:auth"), "acme:auth")
            .unwrap();
        assert_eq!(old.releases.len(), 3);
        assert_eq!(picked(&old, "^1").as_deref(), Some("1.1.0"));
    }

    /// What two verifications proved, to compare: releases, yanks, heads, the namespace's
    /// state at every index, and what each would hold next.
    fn proven(v: &VerifiedPackage) -> impl PartialEq + fmt::Debug {
        let acme = Namespace::parse("acme").unwrap();
        (
            v.releases.clone(),
            v.yanks.clone(),
            (v.package_head, v.namespace_head, v.checkpoint_size),
            (v.package_records, v.namespace_records),
            v.namespace.history(&acme).to_vec(),
            v.held.clone(),
        )
    }

    /// docs/protocol.md §8.6.5: continuing from the chains held at seal 0 proves at seal 1
    /// exactly what the whole chains prove, from the records above the held heads only (the
    /// release by bob at 7, the revoke of bob at 8, the yank at 9).
    #[test]
    fn continuing_from_held_chains_proves_the_same() {
        let log = history();
        let held = log
            .verify(0, &log.bundle(0, "acme:auth"), "acme:auth")
            .unwrap()
            .held;
        assert_eq!(held.checkpoint_size, 7);
        assert_eq!(
            held.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 5]
        );
        let after = log.bundle_after(1, "acme:auth", &held);
        assert_eq!(after.package.records.len(), 2);
        assert_eq!(after.namespace.records.len(), 1);
        let continued = log.verify_after(1, &after, "acme:auth", &held).unwrap();
        let whole = log
            .verify(1, &log.bundle(1, "acme:auth"), "acme:auth")
            .unwrap();
        assert_eq!(proven(&continued), proven(&whole));
        // Only the records walked in this bundle report their signers.
        assert_eq!(continued.record_signers.len(), 3);
        // Held at the newest heads: nothing to fetch, the same result again.
        let again = log.bundle_after(1, "acme:auth", &continued.held);
        assert!(again.package.records.is_empty() && again.namespace.records.is_empty());
        let same = log
            .verify_after(1, &again, "acme:auth", &continued.held)
            .unwrap();
        assert_eq!(proven(&same), proven(&whole));
    }

    /// A chain that did not exist when held (a package released later) is walked whole.
    #[test]
    fn a_chain_absent_when_held_is_walked_whole() {
        let alice = alice();
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
        let s0 = log.seal();
        let held = log
            .verify(s0, &log.bundle(s0, "acme:auth"), "acme:auth")
            .unwrap()
            .held;
        assert_eq!(held.package_head, None);
        log.push(release("acme:auth", "1.0.0", b"one"), &[&alice]);
        let s1 = log.seal();
        let after = log.bundle_after(s1, "acme:auth", &held);
        assert_eq!(after.package.records.len(), 1);
        let v = log.verify_after(s1, &after, "acme:auth", &held).unwrap();
        assert_eq!(v.releases.len(), 1);
    }

    /// The attack continuing opens: a registry that, after a client held a chain, drops its
    /// head (a later record names an older one as `prev`, and the map names that branch) or
    /// rolls the chain back. The client holds the dropped record, so the walk cannot reach it.
    #[test]
    fn a_chain_that_no_longer_passes_through_the_held_head_is_caught() {
        let alice = alice();
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
        let first = log.push(release("acme:auth", "1.0.0", b"one"), &[&alice]);
        log.push(release("acme:auth", "1.1.0", b"bad"), &[&alice]);
        log.push(yank("acme:auth", "1.1.0"), &[&alice]); // the record the registry will drop
        let s0 = log.seal();
        let held = log
            .verify(s0, &log.bundle(s0, "acme:auth"), "acme:auth")
            .unwrap()
            .held;
        // A new record that skips the yank: its prev is the release 1.1.0, so the yank is
        // off the branch the map names from now on.
        let skip = Prev::Entry(Head::of(first + 1, log.leaf_at(first + 1).as_bytes()));
        log.push_raw(
            with_prev(release("acme:auth", "1.2.0", b"two"), skip),
            &[&alice],
            true,
        );
        let s1 = log.seal();
        let whole = log.bundle(s1, "acme:auth");
        // A client that never held the chain cannot tell: the branch is well formed.
        log.verify(s1, &whole, "acme:auth").unwrap();
        // One that held it sees the yank it verified disappear.
        let after = log.bundle_after(s1, "acme:auth", &held);
        let e = log
            .verify_after(s1, &after, "acme:auth", &held)
            .unwrap_err();
        assert_eq!(e.check(), "chain", "{e}");
        assert!(e.to_string().contains("fork or a rollback"), "{e}");
        // So does one served the whole chain.
        let e = log
            .verify_after(s1, &whole, "acme:auth", &held)
            .unwrap_err();
        assert_eq!(e.check(), "chain", "{e}");
        // And one served a map that names the chain absent now.
        let mut heads = log.heads.clone();
        heads.remove(&ChainKey::Package(pkg("acme:auth")));
        let map = HeadMap::from_heads(heads.iter().map(|(k, h)| (k, *h))).unwrap();
        let size = log.leaves.len() as u64;
        let s2 = log.seal_with(map, size, &log_key());
        let gone = log.bundle(s2, "acme:auth");
        let e = log.verify_after(s2, &gone, "acme:auth", &held).unwrap_err();
        assert_eq!(e.check(), "chain", "{e}");
    }

    /// Records at or below a held head are not taken on trust from the registry: serving them
    /// is refused, as is held state of another package or of a newer checkpoint.
    #[test]
    fn held_state_is_checked_against_the_request() {
        let log = history();
        let held = log
            .verify(0, &log.bundle(0, "acme:auth"), "acme:auth")
            .unwrap()
            .held;
        let whole = log.bundle(1, "acme:auth");
        let e = log.verify_after(1, &whole, "acme:auth", &held).unwrap_err();
        assert_eq!(e.check(), "chain");
        assert!(
            e.to_string().contains("expected only the records above"),
            "{e}"
        );
        // Held chains of another package.
        let other = log
            .verify(0, &log.bundle(0, "acme:other"), "acme:other")
            .unwrap()
            .held;
        let after = log.bundle_after(1, "acme:auth", &held);
        assert_eq!(
            check_of(log.verify_after(1, &after, "acme:auth", &other)),
            "chain"
        );
        // Held at a newer checkpoint than the one verified against.
        let newer = log
            .verify(1, &log.bundle(1, "acme:auth"), "acme:auth")
            .unwrap()
            .held;
        let old_after = log.bundle_after(0, "acme:auth", &newer);
        assert_eq!(
            check_of(log.verify_after(0, &old_after, "acme:auth", &newer)),
            "chain"
        );
        // A record swapped in above the held heads breaks a link as before.
        let mut forged = log.bundle_after(1, "acme:auth", &held);
        forged.package.records[0].body = forged.package.records[1].body.clone();
        assert_eq!(
            check_of(log.verify_after(1, &forged, "acme:auth", &held)),
            "chain"
        );
    }

    /// The new records are replayed on the held namespace state: a release by a key revoked
    /// after the held heads (sequenced by a registry that ignored §5) is refused.
    #[test]
    fn new_records_are_authorised_against_the_held_state() {
        let (alice, bob) = (alice(), bob());
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
        log.push(ns_op(NamespaceOp::Grant, &bob, Role::Publish), &[&alice]);
        log.push(release("acme:auth", "1.0.0", b"one"), &[&bob]);
        let s0 = log.seal();
        let held = log
            .verify(s0, &log.bundle(s0, "acme:auth"), "acme:auth")
            .unwrap()
            .held;
        log.push(ns_op(NamespaceOp::Revoke, &bob, Role::Publish), &[&alice]);
        log.push(release("acme:auth", "1.1.0", b"late"), &[&bob]);
        let s1 = log.seal();
        let after = log.bundle_after(s1, "acme:auth", &held);
        assert_eq!(
            check_of(log.verify_after(s1, &after, "acme:auth", &held)),
            "authorisation"
        );
    }

    /// docs/protocol.md §8.6.2 step 3: the namespace chain's head is the revoke the map names.
    #[test]
    fn omitted_revoke_is_caught() {
        let log = history();
        let mut b = log.bundle(1, "acme:auth");
        // Served without the revoke: the first record is no longer the proven head.
        b.namespace.records.remove(0);
        let e = log.verify(1, &b, "acme:auth").unwrap_err();
        assert_eq!(e.check(), "chain");
        assert!(
            e.to_string()
                .contains("expected log index 8, found log index 1"),
            "{e}"
        );
        // With the older map's proof, whose head is the grant, the proof fails instead.
        b.namespace.proof = log
            .evidence(0, &ChainKey::parse("namespace acme").unwrap())
            .proof;
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "head");
    }

    /// A client's cache of verified signers gives the same result without verifying those
    /// signatures again; a cached key that could not have signed the record is ignored and
    /// the signatures are verified as usual.
    #[test]
    fn known_signers_skip_verification_and_agree() {
        let log = history();
        let b = log.bundle(1, "acme:auth");
        let first = log.verify(1, &b, "acme:auth").unwrap();
        assert_eq!(
            first.record_signers.len(),
            8,
            "3 namespace and 5 package records"
        );
        let cache: BTreeMap<Hash, Vec<VerifierKey>> =
            first.record_signers.iter().cloned().collect();
        let cp = &log.seals[1].checkpoint;
        let key = log_key().verifier();
        let again =
            verify_bundle_known(&b, cp, &key, &pkg("acme:auth"), &|h| cache.get(h).cloned())
                .unwrap();
        assert_eq!(again.releases, first.releases);
        assert_eq!(again.yanks, first.yanks);
        let stranger = key_of("mallory", 9);
        let ignored = verify_bundle_known(&b, cp, &key, &pkg("acme:auth"), &|_| {
            Some(vec![stranger.clone()])
        })
        .unwrap();
        assert_eq!(ignored.releases, first.releases);
        assert!(
            ignored
                .record_signers
                .iter()
                .all(|(_, signers)| !signers.contains(&stranger))
        );
    }

    fn key_of(name: &str, seed: u8) -> VerifierKey {
        key(name, seed).verifier()
    }

    /// docs/protocol.md §8.6.4: a namespace bundle proves the whole namespace chain; leaving
    /// the revoke out, or proving an older head, is caught as for a package bundle.
    #[test]
    fn namespace_bundle_proves_the_namespace_alone() {
        let log = history();
        let b = log.bundle(1, "acme:auth");
        let nb = NamespaceBundle {
            checkpoint: b.checkpoint.clone(),
            map_entry: b.map_entry.clone(),
            map_inclusion: b.map_inclusion.clone(),
            namespace: b.namespace.clone(),
        };
        let ns = Namespace::parse("acme").unwrap();
        let cp = &log.seals[1].checkpoint;
        let key = log_key().verifier();
        let v = verify_namespace_bundle(&nb, cp, &key, &ns).unwrap();
        assert_eq!(v.records, 3);
        assert_eq!(v.head.map(|h| h.index), Some(8));
        assert_eq!(v.state.current(&ns).len(), 1, "bob was revoked");
        let mut omitted = nb.clone();
        omitted.namespace.records.remove(0);
        let e = verify_namespace_bundle(&omitted, cp, &key, &ns).unwrap_err();
        assert_eq!(e.check(), "chain");
        let mut stale = nb.clone();
        stale.namespace = log.evidence(0, &ChainKey::Namespace(ns.clone()));
        let e = verify_namespace_bundle(&stale, cp, &key, &ns).unwrap_err();
        assert_eq!(e.check(), "head");
        // Another namespace's chain under this name: its proof does not verify.
        let other = Namespace::parse("other").unwrap();
        let e = verify_namespace_bundle(&nb, cp, &key, &other).unwrap_err();
        assert_eq!(e.check(), "head");
    }

    /// docs/protocol.md §8.6.2 step 3: the package chain's head is the yank.
    #[test]
    fn omitted_yank_is_caught() {
        let log = history();
        let mut b = log.bundle(1, "acme:auth");
        assert_eq!(b.package.records[0].index, 9);
        b.package.records.remove(0);
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        // Or the yank left out of the middle is not possible either: drop a release below it.
        let mut b = log.bundle(1, "acme:auth");
        b.package.records.remove(2);
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        // Nor can the chain stop short of its first record.
        let mut b = log.bundle(1, "acme:auth");
        b.package.records.pop();
        let e = log.verify(1, &b, "acme:auth").unwrap_err();
        assert!(
            e.to_string()
                .contains("expected the records down to prev none"),
            "{e}"
        );
    }

    /// docs/protocol.md §8.6.2 step 2: a proof against an older map root.
    #[test]
    fn stale_head_is_caught() {
        let log = history();
        let mut b = log.bundle(1, "acme:auth");
        b.package = log.bundle(0, "acme:auth").package;
        let e = log.verify(1, &b, "acme:auth").unwrap_err();
        assert_eq!(e.check(), "head");
        assert!(
            e.to_string()
                .starts_with("head of package acme:auth: expected map root"),
            "{e}"
        );
        // The whole older evidence under the newer map entry fails the same way.
        let mut b = log.bundle(0, "acme:auth");
        let new = log.bundle(1, "acme:auth");
        b.map_entry = new.map_entry;
        b.map_inclusion = new.map_inclusion;
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "head");
        // And the older map entry under the newer checkpoint is not its last leaf.
        let mut b = log.bundle(1, "acme:auth");
        let old = log.bundle(0, "acme:auth");
        b.map_entry = old.map_entry;
        b.map_inclusion = old.map_inclusion;
        let e = log.verify(1, &b, "acme:auth").unwrap_err();
        assert_eq!(
            e,
            BundleError::Map(
                "expected size 10 (the checkpoint's size 11 less one), found size 6".into()
            )
        );
    }

    /// docs/protocol.md §8.6.2 step 3: a release that is not in the chain.
    #[test]
    fn invented_version_is_caught() {
        let log = history();
        let honest = log.bundle(1, "acme:auth");
        let head = Prev::Entry(Head::of(9, log.leaf_at(9).as_bytes()));
        let invented = with_prev(release("acme:auth", "9.9.9", b"evil"), head)
            .sign(&[&alice()])
            .unwrap();
        // On top of the head, at a new index or at the head's own index.
        for index in [11, 9] {
            let mut b = honest.clone();
            b.package.records.insert(
                0,
                Entry {
                    index,
                    body: invented.clone(),
                },
            );
            assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        }
        // In place of a real release.
        let mut b = honest.clone();
        b.package.records[1].body = invented.clone();
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        // Appended below the first record.
        let mut b = honest;
        b.package.records.push(Entry {
            index: 1,
            body: invented,
        });
        let e = log.verify(1, &b, "acme:auth").unwrap_err();
        assert_eq!(e.check(), "chain");
        assert!(
            e.to_string()
                .contains("expected no record after the first one"),
            "{e}"
        );
    }

    /// docs/protocol.md §8.6.2 steps 2 and 3: records and proofs of other chains or versions.
    #[test]
    fn mix_and_match_is_caught() {
        let log = history();
        let honest = log.bundle(1, "acme:auth");
        // Another package's release in the chain, at its real index or at the replaced one.
        let mut b = honest.clone();
        b.package.records[2] = Entry {
            index: 4,
            body: log.leaf_at(4).to_string(),
        };
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        let mut b = honest.clone();
        b.package.records[2].body = log.leaf_at(4).to_string();
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        // Another version's body at this version's index.
        let mut b = honest.clone();
        b.package.records[2].body = log.leaf_at(2).to_string();
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        // The same version re-signed with another digest: another leaf.
        let mut b = honest.clone();
        let prev = Prev::Entry(Head::of(2, log.leaf_at(2).as_bytes()));
        b.package.records[3].body = with_prev(release("acme:auth", "1.1.0", b"evil"), prev)
            .sign(&[&alice()])
            .unwrap();
        assert_eq!(b.package.records[3].index, 3);
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        // Another package's whole, valid evidence: its proof is not for this key's path.
        let mut b = honest;
        b.package = log.bundle(1, "acme:other").package;
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "head");
        // A namespace's evidence as the package's, and the other way round.
        let mut b = log.bundle(1, "acme:auth");
        std::mem::swap(&mut b.package, &mut b.namespace);
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "head");
    }

    /// docs/protocol.md §8.6.2 step 3: a record linked by hash but of another chain, which a
    /// lying registry put in the log and in the map.
    #[test]
    fn record_of_another_chain_with_good_links_is_caught() {
        let alice = alice();
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
        let first = log.push(release("acme:auth", "1.0.0", b"one"), &[&alice]);
        let prev = Prev::Entry(Head::of(first, log.leaf_at(first).as_bytes()));
        let alien = log.push_raw(
            with_prev(release("acme:other", "1.1.0", b"x"), prev),
            &[&alice],
            false,
        );
        let auth = ChainKey::parse("package acme:auth").unwrap();
        log.heads
            .insert(auth, Head::of(alien, log.leaf_at(alien).as_bytes()));
        let s = log.seal();
        let e = log
            .verify(s, &log.bundle(s, "acme:auth"), "acme:auth")
            .unwrap_err();
        assert_eq!(e.check(), "chain");
        assert!(
            e.to_string().contains(
                "expected a record of package acme:auth, found a record of package acme:other"
            ),
            "{e}"
        );
    }

    /// docs/protocol.md §8.6.2 step 3 and docs/protocol.md §4.7: two records on the same prev;
    /// the branch the map does not name is refused, whichever it is.
    #[test]
    fn fork_branch_not_named_by_the_map_is_caught() {
        let alice = alice();
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
        let root = log.push(release("acme:auth", "1.0.0", b"one"), &[&alice]);
        let on_root = Prev::Entry(Head::of(root, log.leaf_at(root).as_bytes()));
        let a = log.push_raw(
            with_prev(release("acme:auth", "1.1.0", b"a"), on_root),
            &[&alice],
            true,
        );
        let b = log.push_raw(
            with_prev(release("acme:auth", "1.2.0", b"b"), on_root),
            &[&alice],
            false,
        );
        let s = log.seal(); // the map names `a`
        let honest = log.bundle(s, "acme:auth");
        log.verify(s, &honest, "acme:auth").unwrap();
        let mut forked = honest.clone();
        forked.package.records[0] = Entry {
            index: b,
            body: log.leaf_at(b).to_string(),
        };
        assert_eq!(check_of(log.verify(s, &forked, "acme:auth")), "chain");
        // Both branches served one after the other break a link as well.
        let mut both = honest;
        both.package.records.insert(
            1,
            Entry {
                index: b,
                body: log.leaf_at(b).to_string(),
            },
        );
        assert_eq!(check_of(log.verify(s, &both, "acme:auth")), "chain");
        assert_eq!(a, 2);
    }

    /// docs/protocol.md §4.7 (a replayed record is refused) and docs/protocol.md §8.6.2 step 3:
    /// the registry refused the replayed grant, so the honest chain verifies without it and
    /// bob stays revoked; a replay spliced into the served chain is refused.
    #[test]
    fn replayed_grant_is_harmless_or_caught() {
        let log = history();
        let honest = log.bundle(1, "acme:auth");
        let v = log.verify(1, &honest, "acme:auth").unwrap();
        let acme = Namespace::parse("acme").unwrap();
        assert!(!v.namespace.may_publish(&acme, &bob().verifier(), 11));
        let grant = log.leaf_at(1).to_string();
        for index in [11, 8] {
            let mut b = honest.clone();
            b.namespace.records.insert(
                0,
                Entry {
                    index,
                    body: grant.clone(),
                },
            );
            assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "chain");
        }
    }

    /// docs/protocol.md §8.6.2 step 2: absence proofs.
    #[test]
    fn absent_package_is_an_empty_chain() {
        let log = history();
        let b = log.bundle(1, "acme:none");
        assert!(b.package.records.is_empty());
        let v = log.verify(1, &b, "acme:none").unwrap();
        assert!(v.releases.is_empty() && v.yanks.is_empty());
        assert_eq!(v.package_head, None);
        assert!(v.resolve(&Requirement::Newest).is_none());
        assert!(v.resolve(&req("1.0.0")).is_none());
        // Records served with an absence proof are refused.
        let mut b = log.bundle(1, "acme:none");
        b.package.records = log.bundle(1, "acme:auth").package.records;
        let e = log.verify(1, &b, "acme:none").unwrap_err();
        assert_eq!(e.check(), "chain");
        assert!(
            e.to_string()
                .contains("the map proves the chain absent, found 5 records"),
            "{e}"
        );
        // An absence proof for a chain that exists is refused.
        let mut b = log.bundle(1, "acme:auth");
        b.package = log.bundle(1, "acme:none").package;
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "head");
        // A package in an unclaimed namespace: both chains absent, nothing to resolve.
        let v = log.verify(1, &log.bundle(1, "zeta:x"), "zeta:x").unwrap();
        assert_eq!((v.namespace_head, v.package_head), (None, None));
    }

    /// docs/protocol.md §6.9 and §8.6.2 step 1.
    #[test]
    fn map_entry_is_checked() {
        let log = history();
        let honest = log.bundle(1, "acme:auth");
        // Not signed by the log key: another key under the log's name, or a tampered body.
        let mut b = honest.clone();
        let entry =
            MapEntry::parse(&Note::parse(honest.map_entry.as_bytes()).unwrap().text).unwrap();
        b.map_entry = entry.sign(&key(ORIGIN, 9)).unwrap();
        let e = log.verify(1, &b, "acme:auth").unwrap_err();
        assert!(
            matches!(&e, BundleError::Map(m) if m.contains("not signed by the log key")),
            "{e}"
        );
        let mut b = honest.clone();
        b.map_entry = honest.map_entry.replacen("size 10", "size 9", 1);
        let e = log.verify(1, &b, "acme:auth").unwrap_err();
        assert!(
            matches!(&e, BundleError::Map(m) if m.contains("does not verify")),
            "{e}"
        );
        // Not included: a wrong proof hash, a missing one, a proof of another index.
        let mut b = honest.clone();
        b.map_inclusion[0][0] ^= 1;
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "map");
        let mut b = honest.clone();
        b.map_inclusion.pop();
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "map");
        let mut b = honest.clone();
        b.map_inclusion = merkle::prove_inclusion(11, 9, &log.stored).unwrap();
        assert_eq!(check_of(log.verify(1, &b, "acme:auth")), "map");
        // The empty checkpoint has no map entry.
        let empty = Checkpoint::new(ORIGIN, 0, merkle::EMPTY_ROOT);
        let e =
            verify_bundle(&honest, &empty, &log_key().verifier(), &pkg("acme:auth")).unwrap_err();
        assert_eq!(e.check(), "map");
    }

    /// docs/protocol.md §6.9: an entry whose size is not its own index, signed and included.
    #[test]
    fn map_entry_with_wrong_size_is_caught() {
        let alice = alice();
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
        log.push(release("acme:auth", "1.0.0", b"one"), &[&alice]);
        let map = HeadMap::from_heads(log.heads.iter().map(|(k, h)| (k, *h))).unwrap();
        let s = log.seal_with(map, 1, &log_key());
        let e = log
            .verify(s, &log.bundle(s, "acme:auth"), "acme:auth")
            .unwrap_err();
        assert_eq!(
            e,
            BundleError::Map(
                "expected size 2 (the checkpoint's size 3 less one), found size 1".into()
            )
        );
    }

    /// docs/protocol.md §8.6.2 step 2: a map that names a head at or past its own size.
    #[test]
    fn head_past_the_map_entry_is_caught() {
        let alice = alice();
        let mut log = Log::new();
        log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
        let r = log.push(release("acme:auth", "1.0.0", b"one"), &[&alice]);
        let auth = ChainKey::parse("package acme:auth").unwrap();
        let mut heads = log.heads.clone();
        heads.insert(
            auth,
            Head {
                index: 2,
                leaf: Head::of(r, log.leaf_at(r).as_bytes()).leaf,
            },
        );
        let map = HeadMap::from_heads(heads.iter().map(|(k, h)| (k, *h))).unwrap();
        let s = log.seal_with(map, 2, &log_key());
        let e = log
            .verify(s, &log.bundle_at_head(s), "acme:auth")
            .unwrap_err();
        assert_eq!(e.check(), "head");
        assert!(
            e.to_string()
                .contains("expected a head below the map entry's size 2, found log index 2"),
            "{e}"
        );
    }

    impl Log {
        /// A bundle for `acme:auth` whose package records are read by leaf hash rather than by
        /// index (for a map that names an index where the leaf is not).
        fn bundle_at_head(&self, s: usize) -> Bundle {
            let mut b = self.bundle_without_records(s);
            let head = self.seals[s]
                .map
                .get(&ChainKey::parse("package acme:auth").unwrap())
                .unwrap();
            let body = self
                .leaves
                .iter()
                .find(|l| merkle::leaf_hash(l.as_bytes()) == head.leaf)
                .unwrap()
                .clone();
            b.package.records = vec![Entry {
                index: head.index,
                body,
            }];
            b
        }

        fn bundle_without_records(&self, s: usize) -> Bundle {
            let cp = &self.seals[s].checkpoint;
            let auth = ChainKey::parse("package acme:auth").unwrap();
            let acme = ChainKey::parse("namespace acme").unwrap();
            Bundle {
                checkpoint: cp.sign(&[&log_key()]).unwrap().note,
                map_entry: self.leaf_at(cp.size - 1).to_string(),
                map_inclusion: merkle::prove_inclusion(cp.size, cp.size - 1, &self.stored).unwrap(),
                package: ChainEvidence {
                    proof: self.seals[s].map.prove(&auth),
                    records: vec![],
                },
                namespace: self.evidence(s, &acme),
            }
        }
    }

    /// docs/protocol.md §8.6.2 step 4 and docs/protocol.md §5.3: records the namespace does not
    /// authorise at their index, sequenced by a lying registry.
    #[test]
    fn unauthorised_records_are_caught() {
        let (alice, bob, mallory) = (alice(), bob(), key("mallory", 9));
        // A release by bob after bob's revoke.
        let mut log = history();
        log.push(release("acme:auth", "1.3.0", b"late"), &[&bob]); // 11
        let s = log.seal();
        let e = log
            .verify(s, &log.bundle(s, "acme:auth"), "acme:auth")
            .unwrap_err();
        assert_eq!(e.check(), "authorisation");
        assert!(e.to_string().contains("at log index 11"), "{e}");
        // A yank by a key that never held a role.
        let mut log = history();
        log.push(yank("acme:auth", "1.1.0"), &[&mallory]);
        let s = log.seal();
        assert_eq!(
            check_of(log.verify(s, &log.bundle(s, "acme:auth"), "acme:auth")),
            "authorisation"
        );
        // A grant signed by a publisher, in the namespace chain.
        let mut log = history();
        log.push(ns_op(NamespaceOp::Grant, &mallory, Role::Owner), &[&bob]);
        let s = log.seal();
        let e = log
            .verify(s, &log.bundle(s, "acme:auth"), "acme:auth")
            .unwrap_err();
        assert!(
            matches!(&e, BundleError::Authorisation { chain, .. } if chain == "namespace acme"),
            "{e}"
        );
        // A release in a namespace nobody claimed.
        let mut log = Log::new();
        log.push(release("zeta:x", "1.0.0", b"z"), &[&alice]);
        let s = log.seal();
        assert_eq!(
            check_of(log.verify(s, &log.bundle(s, "zeta:x"), "zeta:x")),
            "authorisation"
        );
    }

    /// docs/protocol.md §8.6.2 step 5: versions are unique, yanks name earlier releases.
    #[test]
    fn package_rules_are_checked() {
        let alice = alice();
        let base = || {
            let mut log = Log::new();
            log.push(ns_op(NamespaceOp::Claim, &alice, Role::Owner), &[&alice]);
            log.push(release("acme:auth", "1.0.0", b"one"), &[&alice]);
            log
        };
        let cases: [(Record, &str); 3] = [
            (
                release("acme:auth", "1.0.0", b"again"),
                "expected each version released once",
            ),
            (
                yank("acme:auth", "2.0.0"),
                "expected a yank of a version released earlier",
            ),
            (
                yank("acme:auth", "1.0.0"),
                "expected each version yanked at most once",
            ),
        ];
        for (i, (record, message)) in cases.into_iter().enumerate() {
            let mut log = base();
            if i == 2 {
                log.push(yank("acme:auth", "1.0.0"), &[&alice]);
            }
            log.push(record, &[&alice]);
            let s = log.seal();
            let e = log
                .verify(s, &log.bundle(s, "acme:auth"), "acme:auth")
                .unwrap_err();
            assert_eq!(e.check(), "chain");
            assert!(e.to_string().contains(message), "{e}");
        }
    }

    /// docs/protocol.md §6.9: the map entry format, strictly.
    #[test]
    fn map_entry_text_is_strict() {
        let entry = MapEntry {
            size: 10,
            root: [7; 32],
        };
        let body = entry.to_body();
        assert_eq!(
            body,
            "gridreg/map/v1\nsize 10\nroot BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n"
        );
        assert_eq!(MapEntry::parse(&body).unwrap(), entry);
        let root = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";
        for bad in [
            format!("gridreg/map/v1\nsize 10\nroot {root}"),
            format!("gridreg/map/v2\nsize 10\nroot {root}\n"),
            format!("gridreg/map/v1\nsize 010\nroot {root}\n"),
            format!("gridreg/map/v1\nsize -1\nroot {root}\n"),
            format!("gridreg/map/v1\nsize \nroot {root}\n"),
            format!("gridreg/map/v1\nsize 18446744073709551616\nroot {root}\n"),
            format!("gridreg/map/v1\nsize  10\nroot {root}\n"),
            format!("gridreg/map/v1\nroot {root}\nsize 10\n"),
            format!(
                "gridreg/map/v1\nsize 10\nroot {}\n",
                root.trim_end_matches('=')
            ),
            format!(
                "gridreg/map/v1\nsize 10\nroot {}\n",
                root.replace("wc=", "wd=")
            ),
            format!("gridreg/map/v1\nsize 10\nroot {}\n", B64.encode([7u8; 31])),
            format!("gridreg/map/v1\nsize 10\nroot {root}\nextra x\n"),
            format!("gridreg/map/v1\nsize 10\nroot {root}\n\n"),
            "gridreg/map/v1\n".to_string(),
        ] {
            assert!(MapEntry::parse(&bad).is_err(), "{bad:?} parsed");
        }
        let e = MapEntry::parse("gridreg/map/v1\nsize 010\nroot x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "map entry line 2: expected a decimal size without leading zeros, found `010`"
        );
        // A record is not a map entry and a map entry is not a record.
        assert!(MapEntry::parse(&yank("acme:auth", "1.0.0").to_body()).is_err());
        assert!(Record::parse(&body).is_err());
        // Signed and verified under the log key only.
        let note = entry.sign(&log_key()).unwrap();
        assert_eq!(
            MapEntry::verify(note.as_bytes(), &log_key().verifier()).unwrap(),
            entry
        );
        assert!(matches!(
            MapEntry::verify(note.as_bytes(), &alice().verifier()),
            Err(MapEntryError::NotSignedByLog(_))
        ));
    }

    /// docs/protocol.md §8.6.1: the JSON form round-trips and verifies.
    #[test]
    fn json_round_trip() {
        let log = history();
        let b = log.bundle(1, "acme:auth");
        let text = serde_json::to_string(&b).unwrap();
        let back: Bundle = serde_json::from_str(&text).unwrap();
        assert_eq!(back, b);
        log.verify(1, &back, "acme:auth").unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 5);
        for k in [
            "checkpoint",
            "map_entry",
            "map_inclusion",
            "package",
            "namespace",
        ] {
            assert!(keys.contains(&k), "{k}");
        }
        assert_eq!(v["package"]["records"][0]["index"], 9);
        assert_eq!(v["package"]["proof"]["kind"], "member");
        assert_eq!(v["map_inclusion"][0].as_str().unwrap().len(), 44);
    }

    /// docs/protocol.md §8.6.1: hostile JSON is refused while reading.
    #[test]
    fn hostile_json_is_refused() {
        let log = history();
        let b = log.bundle(1, "acme:auth");
        let mut v: serde_json::Value = serde_json::to_value(&b).unwrap();
        let read = |v: &serde_json::Value| serde_json::from_value::<Bundle>(v.clone());
        // Too many records in one chain.
        let mut many = v.clone();
        let entry = serde_json::json!({"index": 1, "body": "x"});
        many["namespace"]["records"] = serde_json::Value::Array(vec![entry; MAX_CHAIN_RECORDS + 1]);
        let e = read(&many).unwrap_err().to_string();
        assert!(
            e.contains("expected at most 10000 records in a chain, found more"),
            "{e}"
        );
        // Exactly the limit is read (and then fails verification, not parsing).
        let entry = serde_json::json!({"index": 1, "body": "x"});
        many["namespace"]["records"] = serde_json::Value::Array(vec![entry; MAX_CHAIN_RECORDS]);
        assert!(read(&many).is_ok());
        // Too many inclusion hashes, or a bad one.
        let mut long = v.clone();
        let h = serde_json::Value::String(B64.encode([1u8; 32]));
        long["map_inclusion"] = serde_json::Value::Array(vec![h; merkle::MAX_PROOF_LEN + 1]);
        assert!(read(&long).is_err());
        let mut bad = v.clone();
        bad["map_inclusion"][0] = serde_json::Value::String(B64.encode([1u8; 31]));
        assert!(read(&bad).is_err());
        // A note over the size limit.
        let mut big = v.clone();
        big["package"]["records"][0]["body"] =
            serde_json::Value::String("a".repeat(MAX_NOTE_LEN + 1));
        let e = read(&big).unwrap_err().to_string();
        assert!(
            e.contains("expected a signed note of at most 262144 bytes"),
            "{e}"
        );
        // Missing members are errors; a negative index is not a log index.
        v["package"]["records"][0]["index"] = serde_json::json!(-1);
        assert!(read(&v).is_err());
        let mut missing = serde_json::to_value(&b).unwrap();
        missing.as_object_mut().unwrap().remove("map_entry");
        assert!(read(&missing).is_err());
    }
}
