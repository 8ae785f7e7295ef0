//! Chains: every record names the record before it in its chain (docs/protocol.md §4.7 "Chains").
//!
//! A namespace's claim, grants and revokes form the namespace chain `namespace acme`; a package's
//! releases and yanks form the package chain `package acme:auth`. A record's `prev` is `none` for
//! the first record of its chain and otherwise the log index and leaf hash of the chain's head. The
//! registry appends a record only if its `prev` is the head when it is sequenced, so a replayed
//! record (whose `prev` is no longer the head) is refused and a chain only grows at its head.
//!
//! [`Chains`] is that rule as a state machine (what the sequencer and a monitor replay);
//! [`check_links`] checks a chain a client was given, record by record, back to `none`.

use std::collections::HashMap;
use std::fmt;

use crate::merkle::{self, Hash};
use crate::name::{Namespace, PackageName};
use crate::record::Record;

/// The `prev` line of a record: the chain's head when the record was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prev {
    /// The record starts its chain.
    None,
    /// The head's log index and leaf hash, printed `<index>:<64 lowercase hex>`.
    Entry(Head),
}

/// The newest record of a chain: its log index and leaf hash (SHA-256(0x00 || leaf bytes)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Head {
    pub index: u64,
    pub leaf: Hash,
}

impl Head {
    /// The head a record at `index` with these exact leaf bytes becomes.
    pub fn of(index: u64, leaf_bytes: &[u8]) -> Self {
        Self {
            index,
            leaf: merkle::leaf_hash(leaf_bytes),
        }
    }
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.leaf, &mut hex).map_err(|_| fmt::Error)?;
        write!(f, "{}:", self.index)?;
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl Prev {
    /// `prev` as it follows a chain whose head is `head` (`None`: the chain does not exist yet).
    pub fn after(head: Option<Head>) -> Self {
        head.map_or(Self::None, Self::Entry)
    }

    /// Parses exactly `none` or `<decimal index without leading zeros>:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "none" {
            return Ok(Self::None);
        }
        let bad = || {
            format!("expected `none` or `<log index>:<64 lowercase hex leaf hash>`, found `{s}`")
        };
        let (index, hash) = s.split_once(':').ok_or_else(bad)?;
        let canonical_index = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && !(index.len() > 1 && index.starts_with('0'));
        let canonical_hash = hash.len() == 64
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !canonical_index || !canonical_hash {
            return Err(bad());
        }
        let index = index.parse::<u64>().map_err(|_| bad())?;
        let mut leaf = [0u8; 32];
        hex::decode_to_slice(hash, &mut leaf).map_err(|_| bad())?;
        Ok(Self::Entry(Head { index, leaf }))
    }

    pub fn head(&self) -> Option<Head> {
        match self {
            Self::None => None,
            Self::Entry(h) => Some(*h),
        }
    }
}

impl fmt::Display for Prev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Entry(h) => h.fmt(f),
        }
    }
}

/// Which chain a record belongs to, printed `namespace acme` or `package acme:auth` (its chain
/// key, docs/protocol.md §4.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChainKey {
    Namespace(Namespace),
    Package(PackageName),
}

impl ChainKey {
    /// Parses `namespace <ns>` or `package <ns:name>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.split_once(' ') {
            Some(("namespace", n)) => Namespace::parse(n)
                .map(Self::Namespace)
                .map_err(|e| e.to_string()),
            Some(("package", p)) => PackageName::parse(p)
                .map(Self::Package)
                .map_err(|e| e.to_string()),
            _ => Err(format!(
                "expected `namespace <namespace>` or `package <namespace:name>`, found `{s}`"
            )),
        }
    }
}

impl fmt::Display for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Namespace(n) => write!(f, "namespace {n}"),
            Self::Package(p) => write!(f, "package {p}"),
        }
    }
}

/// Why a record does not extend its chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the record's prev is {found}, but the head of {chain} is {head}")]
    StalePrev {
        chain: Box<ChainKey>,
        /// The chain's current head (`none`: the chain does not exist yet).
        head: Prev,
        found: Prev,
    },
    #[error("log entry {index} is in {found}, expected a record of {chain}")]
    OtherChain {
        index: u64,
        chain: Box<ChainKey>,
        found: Box<ChainKey>,
    },
    #[error("log entry {index} does not come after log entry {previous} of {chain}")]
    NotAscending {
        index: u64,
        previous: u64,
        chain: Box<ChainKey>,
    },
}

/// The head of every chain, as a replay of the log in order leaves them.
#[derive(Debug, Clone, Default)]
pub struct Chains {
    heads: HashMap<ChainKey, Head>,
}

impl Chains {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn head(&self, chain: &ChainKey) -> Option<Head> {
        self.heads.get(chain).copied()
    }

    /// Whether `record` extends its chain as things stand: its `prev` names the current head.
    pub fn check(&self, record: &Record) -> Result<(), ChainError> {
        let chain = record.chain();
        let head = Prev::after(self.head(&chain));
        if record.prev() != head {
            return Err(ChainError::StalePrev {
                chain: Box::new(chain),
                head,
                found: record.prev(),
            });
        }
        Ok(())
    }

    /// Checks `record` and makes it the head of its chain (at `index`, with its exact leaf
    /// bytes). On error nothing changes.
    pub fn apply(
        &mut self,
        index: u64,
        leaf_bytes: &[u8],
        record: &Record,
    ) -> Result<(), ChainError> {
        self.check(record)?;
        self.heads
            .insert(record.chain(), Head::of(index, leaf_bytes));
        Ok(())
    }

    /// Sets a chain's head as read from a store (the sequencer's staging read).
    pub fn set(&mut self, chain: ChainKey, head: Head) {
        self.heads.insert(chain, head);
    }

    pub fn len(&self) -> usize {
        self.heads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heads.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ChainKey, &Head)> {
        self.heads.iter()
    }
}

/// Checks that `records` (log index, leaf bytes, parsed record), in log order, are one chain
/// `chain` linked from `none`: each names the one before it. Returns the head (`None` for an
/// empty list). It does not check that the list is the whole chain: that takes a proof of its head.
pub fn check_links<'a>(
    chain: &ChainKey,
    records: impl IntoIterator<Item = (u64, &'a [u8], &'a Record)>,
) -> Result<Option<Head>, ChainError> {
    let mut head: Option<Head> = None;
    for (index, leaf, record) in records {
        let found = record.chain();
        if &found != chain {
            return Err(ChainError::OtherChain {
                index,
                chain: Box::new(chain.clone()),
                found: Box::new(found),
            });
        }
        if let Some(h) = head
            && index <= h.index
        {
            return Err(ChainError::NotAscending {
                index,
                previous: h.index,
                chain: Box::new(chain.clone()),
            });
        }
        if record.prev() != Prev::after(head) {
            return Err(ChainError::StalePrev {
                chain: Box::new(chain.clone()),
                head: Prev::after(head),
                found: record.prev(),
            });
        }
        head = Some(Head::of(index, leaf));
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn prev_parses_only_canonical_text() {
        assert_eq!(Prev::parse("none").unwrap(), Prev::None);
        let h = format!("17:{}", "ab".repeat(32));
        let p = Prev::parse(&h).unwrap();
        assert_eq!(p.to_string(), h);
        assert_eq!(p.head().unwrap().index, 17);
        for bad in [
            "None",
            "",
            "17",
            "017:".to_string().as_str(),
            &format!("017:{}", "ab".repeat(32)),
            &format!("-1:{}", "ab".repeat(32)),
            &format!("17:{}", "AB".repeat(32)),
            &format!("17:{}", "ab".repeat(31)),
            &format!("18446744073709551616:{}", "ab".repeat(32)),
            &format!(" 17:{}", "ab".repeat(32)),
        ] {
            assert!(Prev::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn chain_keys_print_and_parse() {
        for s in ["namespace acme", "package acme:auth"] {
            assert_eq!(ChainKey::parse(s).unwrap().to_string(), s);
        }
        for bad in [
            "acme",
            "namespace",
            "package acme",
            "namespace Acme",
            "thing acme",
        ] {
            assert!(ChainKey::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    fn signed(body: &str) -> (Vec<u8>, Record) {
        let k = crate::key::SignerKey::from_seed("alice", &[3; 32]).unwrap();
        let r = Record::parse(body).unwrap();
        (r.sign(&[&k]).unwrap().into_bytes(), r)
    }

    fn yank(prev: Prev, version: &str) -> (Vec<u8>, Record) {
        signed(&format!(
            "gridreg/yank/v2\npackage acme:auth\nprev {prev}\nversion {version}\nreason r\ntime 2026-11-21T19:56:57Z\n"
        ))
    }

    #[test]
    fn chains_grow_only_at_the_head() {
        let mut chains = Chains::new();
        let (leaf0, first) = yank(Prev::None, "1.0.0");
        chains.apply(4, &leaf0, &first).unwrap();
        let head = Prev::Entry(Head::of(4, &leaf0));
        // The same record again (a replay), and one naming an invented head, are refused.
        let err = chains.apply(5, &leaf0, &first).unwrap_err();
        assert_eq!(
            err,
            ChainError::StalePrev {
                chain: Box::new(first.chain()),
                head,
                found: Prev::None
            }
        );
        let (leaf_x, invented) = yank(
            Prev::Entry(Head {
                index: 4,
                leaf: [0; 32],
            }),
            "1.0.1",
        );
        assert!(chains.apply(5, &leaf_x, &invented).is_err());
        assert_eq!(chains.head(&first.chain()), head.head());
        let (leaf1, second) = yank(head, "1.0.1");
        chains.apply(9, &leaf1, &second).unwrap();
        assert_eq!(chains.head(&first.chain()), Some(Head::of(9, &leaf1)));
        assert_eq!(chains.len(), 1);
    }

    #[test]
    fn links_are_checked_back_to_none() {
        let chain = ChainKey::parse("package acme:auth").unwrap();
        let (l0, r0) = yank(Prev::None, "1.0.0");
        let h0 = Prev::Entry(Head::of(2, &l0));
        let (l1, r1) = yank(h0, "1.0.1");
        let h1 = Prev::Entry(Head::of(7, &l1));
        let (l2, r2) = yank(h1, "1.0.2");
        let whole = [(2, &l0[..], &r0), (7, &l1[..], &r1), (9, &l2[..], &r2)];
        assert_eq!(
            check_links(&chain, whole.iter().copied()).unwrap(),
            Some(Head::of(9, &l2))
        );
        assert_eq!(check_links(&chain, std::iter::empty()).unwrap(), None);
        // A record left out in the middle, or the first one, breaks a link.
        let gap = [(2, &l0[..], &r0), (9, &l2[..], &r2)];
        assert!(matches!(
            check_links(&chain, gap.iter().copied()),
            Err(ChainError::StalePrev { .. })
        ));
        let headless = [(7, &l1[..], &r1), (9, &l2[..], &r2)];
        assert!(check_links(&chain, headless.iter().copied()).is_err());
        // Indexes must rise, and every record must be of the chain.
        let backwards = [(2, &l0[..], &r0), (1, &l1[..], &r1)];
        assert!(matches!(
            check_links(&chain, backwards.iter().copied()),
            Err(ChainError::NotAscending { .. })
        ));
        let other = ChainKey::parse("package acme:other").unwrap();
        assert!(matches!(
            check_links(&other, whole.iter().copied()),
            Err(ChainError::OtherChain { .. })
        ));
    }
}
