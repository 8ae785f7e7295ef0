//! The head map: a verifiable map from every chain key to its head (docs/protocol.md §6.8).
//!
//! The map is a compact sparse Merkle tree over 256-bit key paths. A chain key's path is
//! SHA-256(`gridreg/map/v1 key\n` || chain key text); bit 0 is the most significant bit of byte
//! 0, and bit `j` chooses the left (0) or right (1) child at depth `j`. A subtree holding no key
//! hashes to 32 zero bytes, a subtree holding exactly one key is that key's leaf hash
//! SHA-256(0x02 || path || index as u64 big-endian || leaf hash), and any other subtree is the node
//! hash SHA-256(0x03 || left || right). So a key's leaf sits at the shallowest depth where it is
//! alone, and a proof carries about log2(N) siblings instead of 256.
//!
//! [`HeadMap`] holds the map in memory as a crit-bit tree (only branching nodes are stored; the
//! one-sided interior nodes between them are folded into the cached hashes), updates it in
//! batches at O(k log N) hashes for k changed keys, and proves membership or absence of a key
//! ([`MapProof`]). [`MapProof::verify`] is what a client runs; it needs only the root.
//!
//! ```
//! use gridreg_protocol::{ChainKey, Head, HeadMap, MapProof};
//!
//! let auth = ChainKey::parse("package acme:auth").unwrap();
//! let other = ChainKey::parse("namespace other").unwrap();
//! let mut map = HeadMap::new();
//! map.apply([(&auth, Head { index: 7, leaf: [1; 32] })]).unwrap();
//! let root = map.root(); // what the registry commits to
//! let bytes = map.prove(&auth).encode(); // what it serves (or as JSON, via serde)
//!
//! // The client, from the root it trusts and the chain key it asked about:
//! let proof = MapProof::decode(&bytes).unwrap();
//! assert_eq!(proof.verify_head(&root, &auth).unwrap().map(|h| h.index), Some(7));
//! map.prove(&other).verify(&root, &other, None).unwrap();
//! assert!(proof.verify(&root, &auth, None).is_err());
//! ```

use std::borrow::Borrow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::chain::{ChainKey, Head, Prev};
use crate::merkle::Hash;

/// The domain-separation prefix of a key path: path = SHA-256(`KEY_DOMAIN` || chain key text).
pub const KEY_DOMAIN: &[u8] = b"gridreg/map/v1 key\n";

/// First byte of a map leaf hash's input (RFC 6962 uses 0x00 and 0x01 for the log).
pub const LEAF_PREFIX: u8 = 0x02;

/// First byte of a map interior node hash's input.
pub const NODE_PREFIX: u8 = 0x03;

/// The hash of a subtree that holds no key, and so the root of the empty map.
pub const EMPTY_HASH: Hash = [0; 32];

/// Key paths have 256 bits, so a proof has at most 256 siblings.
pub const MAX_DEPTH: usize = 256;

/// Most chains one [`HeadMap`] holds (its node references are 31-bit).
pub const MAX_KEYS: usize = (1 << 31) - 1;

/// Proof kinds as the first byte of the binary encoding.
const KIND_MEMBER: u8 = 0;
const KIND_ABSENT_EMPTY: u8 = 1;
const KIND_ABSENT_LEAF: u8 = 2;

/// Why a map operation, a proof's decoding or its verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error(
        "expected at most {} siblings in a map proof, found {found}",
        MAX_DEPTH
    )]
    TooManySiblings { found: usize },
    #[error("expected a membership proof of head {expected}, found an absence proof")]
    ExpectedMember { expected: Head },
    #[error("expected an absence proof, found a membership proof of head {found}")]
    ExpectedAbsence { found: Head },
    #[error("expected head {expected}, the proof is of head {found}")]
    WrongHead { expected: Head, found: Head },
    #[error("expected another key's leaf at the end of the absence proof, found the key itself")]
    OtherIsKey,
    #[error(
        "expected the other leaf's path to share the first {depth} bits of the key's path, found {shared} shared bits"
    )]
    OtherOffPath { depth: usize, shared: usize },
    #[error("expected a non-empty sibling at depth {depth} (the deepest), found the empty hash")]
    EmptyLastSibling { depth: usize },
    #[error("expected map root {}, the proof computes {}", hex::encode(.expected), hex::encode(.found))]
    RootMismatch { expected: Hash, found: Hash },
    #[error("malformed map proof: {0}")]
    Malformed(String),
    #[error("the head map holds at most {} chains", MAX_KEYS)]
    TooManyKeys,
}

fn malformed(msg: impl Into<String>) -> MapError {
    MapError::Malformed(msg.into())
}

/// A key's 256-bit path in the map: SHA-256(`KEY_DOMAIN` || chain key text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MapKey(pub Hash);

impl MapKey {
    /// The path of a chain, from its chain key text (`namespace acme`, `package acme:auth`).
    pub fn of(chain: &ChainKey) -> Self {
        Self::of_str(&chain.to_string())
    }

    /// The path of a chain key given as text. The text is hashed as given; callers that take it
    /// from the wire should parse it with [`ChainKey::parse`] first.
    pub fn of_str(chain_key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        h.update(chain_key.as_bytes());
        Self(h.finalize().into())
    }

    pub fn as_bytes(&self) -> &Hash {
        &self.0
    }

    /// Bit `depth` of the path (0: left, 1: right); bit 0 is the most significant bit of byte
    /// 0. Depths of 256 and more read as 0.
    pub fn bit(&self, depth: usize) -> usize {
        self.0
            .get(depth / 8)
            .map_or(0, |b| usize::from((b >> (7 - depth % 8)) & 1))
    }

    /// How many leading bits two paths share (256 when they are equal).
    pub fn shared_prefix(&self, other: &MapKey) -> usize {
        self.0
            .iter()
            .zip(other.0.iter())
            .position(|(a, b)| a != b)
            .map_or(MAX_DEPTH, |i| {
                i * 8 + (self.0[i] ^ other.0[i]).leading_zeros() as usize
            })
    }
}

impl fmt::Display for MapKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A key's leaf hash: SHA-256(0x02 || path || index as u64 big-endian || leaf hash).
pub fn leaf_hash(key: &MapKey, head: &Head) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(key.0);
    h.update(head.index.to_be_bytes());
    h.update(head.leaf);
    h.finalize().into()
}

/// An interior node hash: SHA-256(0x03 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The hash at depth `to` of a subtree whose hash at depth `from` is `h` and whose keys all
/// follow `key` from `to` to `from`: every sibling on the way is empty.
fn fold_up(mut h: Hash, key: &MapKey, from: usize, to: usize) -> Hash {
    for j in (to..from).rev() {
        h = if key.bit(j) == 0 {
            node_hash(&h, &EMPTY_HASH)
        } else {
            node_hash(&EMPTY_HASH, &h)
        };
    }
    h
}

// ---------------------------------------------------------------------------------------------
// The in-memory map

/// A node reference: `NONE`, a leaf (`LEAF | index`) or a branching node (`index`).
const NONE: u32 = u32::MAX;
const LEAF: u32 = 1 << 31;

enum Ref {
    None,
    Leaf(usize),
    Inner(usize),
}

fn unpack(r: u32) -> Ref {
    if r == NONE {
        Ref::None
    } else if r & LEAF != 0 {
        Ref::Leaf((r & !LEAF) as usize)
    } else {
        Ref::Inner(r as usize)
    }
}

#[derive(Debug, Clone, Copy)]
struct Leaf {
    key: MapKey,
    head: Head,
    /// [`leaf_hash`] of `key` and `head`: the same at any depth.
    hash: Hash,
}

/// A branching node: both subtrees at `depth + 1` hold keys.
#[derive(Debug, Clone, Copy)]
struct Inner {
    /// The subtree's hash at the top of its incoming edge (one below its parent's depth, or 0
    /// for the root), the one-sided interior nodes in between folded in.
    hash: Hash,
    child: [u32; 2],
    depth: u16,
    /// `hash` is stale; every ancestor of a dirty node is dirty too.
    dirty: bool,
}

/// Where a node reference is stored: the root slot or a child slot of a branching node.
enum Slot {
    Root,
    Child(usize, usize),
}

/// The head of every chain as a verifiable map (docs/protocol.md). It stores only paths and heads:
/// a chain key cannot be read back from it.
#[derive(Clone)]
pub struct HeadMap {
    leaves: Vec<Leaf>,
    inners: Vec<Inner>,
    root: u32,
    root_hash: Hash,
}

impl fmt::Debug for HeadMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeadMap")
            .field("len", &self.leaves.len())
            .field("root", &hex::encode(self.root_hash))
            .finish()
    }
}

impl Default for HeadMap {
    fn default() -> Self {
        Self::new()
    }
}

impl HeadMap {
    pub fn new() -> Self {
        Self {
            leaves: Vec::new(),
            inners: Vec::new(),
            root: NONE,
            root_hash: EMPTY_HASH,
        }
    }

    /// Builds the map of `heads` at once (sort, then one bottom-up pass). A chain key given more
    /// than once keeps its last head, as with [`HeadMap::apply`].
    pub fn from_heads<K: Borrow<ChainKey>>(
        heads: impl IntoIterator<Item = (K, Head)>,
    ) -> Result<Self, MapError> {
        Self::from_keyed(heads.into_iter().map(|(k, h)| (MapKey::of(k.borrow()), h)))
    }

    /// [`HeadMap::from_heads`] over key paths.
    pub fn from_keyed(entries: impl IntoIterator<Item = (MapKey, Head)>) -> Result<Self, MapError> {
        let mut entries: Vec<(MapKey, Head)> = entries.into_iter().collect();
        // A stable sort keeps the input order among equal paths, so the last one is kept.
        entries.sort_by_key(|e| e.0);
        let mut leaves = Vec::with_capacity(entries.len());
        for (i, (key, head)) in entries.iter().enumerate() {
            if entries.get(i + 1).is_some_and(|next| next.0 == *key) {
                continue;
            }
            leaves.push(Leaf {
                key: *key,
                head: *head,
                hash: leaf_hash(key, head),
            });
        }
        drop(entries);
        if leaves.len() > MAX_KEYS {
            return Err(MapError::TooManyKeys);
        }
        leaves.shrink_to_fit();
        let mut map = Self {
            inners: Vec::with_capacity(leaves.len().saturating_sub(1)),
            leaves,
            root: NONE,
            root_hash: EMPTY_HASH,
        };
        if !map.leaves.is_empty() {
            let (root, hash) = map.build(0, map.leaves.len(), 0);
            map.root = root;
            map.root_hash = hash;
        }
        Ok(map)
    }

    /// Builds the subtree of the sorted, distinct leaves `lo..hi` (at least one) whose incoming
    /// edge starts at depth `top`; returns its reference and its hash at `top`.
    fn build(&mut self, lo: usize, hi: usize, top: usize) -> (u32, Hash) {
        if hi - lo == 1 {
            return (LEAF | lo as u32, self.leaves[lo].hash);
        }
        let first = self.leaves[lo].key;
        let depth = first.shared_prefix(&self.leaves[hi - 1].key);
        let split = lo + self.leaves[lo..hi].partition_point(|l| l.key.bit(depth) == 0);
        let (left, lh) = self.build(lo, split, depth + 1);
        let (right, rh) = self.build(split, hi, depth + 1);
        let hash = fold_up(node_hash(&lh, &rh), &first, depth, top);
        self.inners.push(Inner {
            hash,
            child: [left, right],
            depth: depth as u16,
            dirty: false,
        });
        ((self.inners.len() - 1) as u32, hash)
    }

    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The map's root hash ([`EMPTY_HASH`] for the empty map).
    pub fn root(&self) -> Hash {
        self.root_hash
    }

    /// Every path and head, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&MapKey, &Head)> {
        self.leaves.iter().map(|l| (&l.key, &l.head))
    }

    /// Makes room for `additional` new chains, so the next batches do not grow the arrays.
    pub fn reserve(&mut self, additional: usize) {
        self.leaves.reserve(additional);
        self.inners.reserve(additional);
    }

    /// Bytes held by the map's node arrays (capacity included; the struct itself aside).
    pub fn memory_bytes(&self) -> usize {
        self.leaves.capacity() * std::mem::size_of::<Leaf>()
            + self.inners.capacity() * std::mem::size_of::<Inner>()
    }

    /// The leaf a descent along `key`'s bits reaches (the map must not be empty).
    fn descend(&self, key: &MapKey) -> Option<usize> {
        let mut r = self.root;
        loop {
            match unpack(r) {
                Ref::None => return None,
                Ref::Leaf(l) => return Some(l),
                Ref::Inner(i) => {
                    let n = &self.inners[i];
                    r = n.child[key.bit(usize::from(n.depth))];
                }
            }
        }
    }

    pub fn get(&self, chain: &ChainKey) -> Option<Head> {
        self.get_keyed(&MapKey::of(chain))
    }

    pub fn get_keyed(&self, key: &MapKey) -> Option<Head> {
        let l = &self.leaves[self.descend(key)?];
        (l.key == *key).then_some(l.head)
    }

    /// Sets one chain's head; see [`HeadMap::apply`].
    pub fn insert(&mut self, chain: &ChainKey, head: Head) -> Result<(), MapError> {
        self.apply([(chain, head)])
    }

    /// Sets the head of every chain in `batch`, in order (a chain given twice keeps the last),
    /// then rehashes only what changed: O(k log N) hashes for k chains. On error (more than
    /// [`MAX_KEYS`] chains) the entries before the failing one are applied and the root is
    /// consistent with them.
    pub fn apply<K: Borrow<ChainKey>>(
        &mut self,
        batch: impl IntoIterator<Item = (K, Head)>,
    ) -> Result<(), MapError> {
        self.apply_keyed(batch.into_iter().map(|(k, h)| (MapKey::of(k.borrow()), h)))
    }

    /// [`HeadMap::apply`] over key paths.
    pub fn apply_keyed(
        &mut self,
        batch: impl IntoIterator<Item = (MapKey, Head)>,
    ) -> Result<(), MapError> {
        let mut result = Ok(());
        for (key, head) in batch {
            if let Err(e) = self.upsert(key, head) {
                result = Err(e);
                break;
            }
        }
        self.root_hash = self.rehash(self.root, 0);
        result
    }

    /// Inserts or updates one leaf and marks the branching nodes whose hash changes dirty.
    fn upsert(&mut self, key: MapKey, head: Head) -> Result<(), MapError> {
        let hash = leaf_hash(&key, &head);
        let Some(found) = self.descend(&key) else {
            self.root = self.push_leaf(Leaf { key, head, hash })?;
            return Ok(());
        };
        let crit = key.shared_prefix(&self.leaves[found].key);
        if crit == MAX_DEPTH {
            self.leaves[found].head = head;
            self.leaves[found].hash = hash;
        }
        // Walk down to where the key's path leaves the tree's (or to its leaf), marking the
        // branching nodes above that point dirty.
        let mut slot = Slot::Root;
        let mut r = self.root;
        while let Ref::Inner(i) = unpack(r) {
            let n = &mut self.inners[i];
            let depth = usize::from(n.depth);
            if depth > crit {
                break;
            }
            n.dirty = true;
            let side = key.bit(depth);
            slot = Slot::Child(i, side);
            r = n.child[side];
        }
        if crit == MAX_DEPTH {
            return Ok(());
        }
        // A new branching node at `crit`: the new leaf on one side, the displaced subtree (whose
        // incoming edge now starts lower, so whose hash changes) on the other.
        if let Ref::Inner(i) = unpack(r) {
            self.inners[i].dirty = true;
        }
        let leaf = self.push_leaf(Leaf { key, head, hash })?;
        if self.inners.len() >= MAX_KEYS {
            return Err(MapError::TooManyKeys);
        }
        let mut child = [r, r];
        child[key.bit(crit)] = leaf;
        self.inners.push(Inner {
            hash: EMPTY_HASH,
            child,
            depth: crit as u16,
            dirty: true,
        });
        let inner = (self.inners.len() - 1) as u32;
        match slot {
            Slot::Root => self.root = inner,
            Slot::Child(i, side) => self.inners[i].child[side] = inner,
        }
        Ok(())
    }

    fn push_leaf(&mut self, leaf: Leaf) -> Result<u32, MapError> {
        if self.leaves.len() >= MAX_KEYS {
            return Err(MapError::TooManyKeys);
        }
        self.leaves.push(leaf);
        Ok(LEAF | (self.leaves.len() - 1) as u32)
    }

    /// The hash at depth `top` of the subtree `r`, recomputing dirty nodes (and clearing them).
    fn rehash(&mut self, r: u32, top: usize) -> Hash {
        match unpack(r) {
            Ref::None => EMPTY_HASH,
            Ref::Leaf(l) => self.leaves[l].hash,
            Ref::Inner(i) => {
                let n = self.inners[i];
                if !n.dirty {
                    return n.hash;
                }
                let depth = usize::from(n.depth);
                let left = self.rehash(n.child[0], depth + 1);
                let right = self.rehash(n.child[1], depth + 1);
                let mut hash = node_hash(&left, &right);
                if depth > top {
                    hash = fold_up(hash, &self.some_key(r), depth, top);
                }
                self.inners[i].hash = hash;
                self.inners[i].dirty = false;
                hash
            }
        }
    }

    /// The path of some leaf below `r`: all of them share the bits above `r`'s branching depth.
    fn some_key(&self, mut r: u32) -> MapKey {
        loop {
            match unpack(r) {
                Ref::None => return MapKey(EMPTY_HASH),
                Ref::Leaf(l) => return self.leaves[l].key,
                Ref::Inner(i) => r = self.inners[i].child[0],
            }
        }
    }

    /// The cached hash of `r` at the top of its incoming edge.
    fn top_hash(&self, r: u32) -> Hash {
        match unpack(r) {
            Ref::None => EMPTY_HASH,
            Ref::Leaf(l) => self.leaves[l].hash,
            Ref::Inner(i) => self.inners[i].hash,
        }
    }

    /// Proves the chain's head, or that the chain is not in the map.
    pub fn prove(&self, chain: &ChainKey) -> MapProof {
        self.prove_keyed(&MapKey::of(chain))
    }

    /// [`HeadMap::prove`] for a key path.
    pub fn prove_keyed(&self, key: &MapKey) -> MapProof {
        let mut siblings = Vec::new();
        let Some(found) = self.descend(key) else {
            return MapProof::new(siblings, ProofEnd::Empty);
        };
        let crit = key.shared_prefix(&self.leaves[found].key);
        let mut r = self.root;
        loop {
            match unpack(r) {
                Ref::None => return MapProof::new(siblings, ProofEnd::Empty),
                Ref::Leaf(l) => {
                    let leaf = &self.leaves[l];
                    let end = if leaf.key == *key {
                        ProofEnd::Member(leaf.head)
                    } else {
                        ProofEnd::Leaf {
                            key: leaf.key,
                            head: leaf.head,
                        }
                    };
                    return MapProof::new(siblings, end);
                }
                Ref::Inner(i) => {
                    let n = &self.inners[i];
                    let depth = usize::from(n.depth);
                    if crit < depth {
                        // The key's path leaves this subtree's common prefix at bit `crit`: its
                        // side at depth crit + 1 is empty, the subtree is the sibling there.
                        siblings.resize(crit, EMPTY_HASH);
                        let core =
                            node_hash(&self.top_hash(n.child[0]), &self.top_hash(n.child[1]));
                        siblings.push(fold_up(core, &self.some_key(r), depth, crit + 1));
                        return MapProof::new(siblings, ProofEnd::Empty);
                    }
                    let side = key.bit(depth);
                    siblings.resize(depth, EMPTY_HASH);
                    siblings.push(self.top_hash(n.child[1 - side]));
                    r = n.child[side];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Proofs

/// What a proof's path ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofEnd {
    /// The key's own leaf, with its head: a membership proof.
    Member(Head),
    /// An empty subtree: an absence proof.
    Empty,
    /// Another key's leaf, alone in the subtree where the key would be: an absence proof.
    Leaf { key: MapKey, head: Head },
}

/// A membership or absence proof of one key (docs/protocol.md §6.8.4): the sibling hash at every
/// depth from the root down to where the key's path ends, and what it ends at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "MapProofJson", try_from = "MapProofJson")]
pub struct MapProof {
    /// `siblings[j]`: the hash of the child at depth `j + 1` that is not on the key's path;
    /// [`EMPTY_HASH`] for an empty subtree.
    siblings: Vec<Hash>,
    end: ProofEnd,
}

impl MapProof {
    /// A proof from its parts, unchecked: [`MapProof::verify`] checks everything.
    pub fn new(siblings: Vec<Hash>, end: ProofEnd) -> Self {
        Self { siblings, end }
    }

    /// The depth of the path's end, which is the number of siblings.
    pub fn depth(&self) -> usize {
        self.siblings.len()
    }

    pub fn siblings(&self) -> &[Hash] {
        &self.siblings
    }

    pub fn end(&self) -> &ProofEnd {
        &self.end
    }

    /// The head a membership proof is for; `None` for an absence proof.
    pub fn head(&self) -> Option<Head> {
        match self.end {
            ProofEnd::Member(h) => Some(h),
            _ => None,
        }
    }

    /// Checks that in the map with root `root`, `chain` has head `head` (`Some`), or is absent
    /// (`None`).
    pub fn verify(
        &self,
        root: &Hash,
        chain: &ChainKey,
        head: Option<Head>,
    ) -> Result<(), MapError> {
        self.verify_keyed(root, &MapKey::of(chain), head)
    }

    /// Verifies the proof for `chain` and returns what it proves: the chain's head, or `None`
    /// when the chain is absent. The same checks as [`MapProof::verify`] with the proof's own
    /// claim.
    pub fn verify_head(&self, root: &Hash, chain: &ChainKey) -> Result<Option<Head>, MapError> {
        self.verify(root, chain, self.head())?;
        Ok(self.head())
    }

    /// [`MapProof::verify`] for a key path (docs/protocol.md §6.8.6, steps 1 to 5).
    pub fn verify_keyed(
        &self,
        root: &Hash,
        key: &MapKey,
        head: Option<Head>,
    ) -> Result<(), MapError> {
        let depth = self.siblings.len();
        if depth > MAX_DEPTH {
            return Err(MapError::TooManySiblings { found: depth });
        }
        let mut hash = match (self.end, head) {
            (ProofEnd::Member(found), Some(expected)) if found != expected => {
                return Err(MapError::WrongHead { expected, found });
            }
            (ProofEnd::Member(found), Some(_)) => leaf_hash(key, &found),
            (ProofEnd::Member(found), None) => return Err(MapError::ExpectedAbsence { found }),
            (ProofEnd::Empty | ProofEnd::Leaf { .. }, Some(expected)) => {
                return Err(MapError::ExpectedMember { expected });
            }
            (ProofEnd::Empty, None) => EMPTY_HASH,
            (ProofEnd::Leaf { key: other, head }, None) => {
                let shared = other.shared_prefix(key);
                if shared == MAX_DEPTH {
                    return Err(MapError::OtherIsKey);
                }
                if shared < depth {
                    return Err(MapError::OtherOffPath { depth, shared });
                }
                leaf_hash(&other, &head)
            }
        };
        if self.siblings.last() == Some(&EMPTY_HASH) {
            return Err(MapError::EmptyLastSibling { depth: depth - 1 });
        }
        for (j, sibling) in self.siblings.iter().enumerate().rev() {
            hash = if key.bit(j) == 0 {
                node_hash(&hash, sibling)
            } else {
                node_hash(sibling, &hash)
            };
        }
        if hash != *root {
            return Err(MapError::RootMismatch {
                expected: *root,
                found: hash,
            });
        }
        Ok(())
    }

    fn kind(&self) -> ProofKind {
        match self.end {
            ProofEnd::Member(_) => ProofKind::Member,
            ProofEnd::Empty => ProofKind::AbsentEmpty,
            ProofEnd::Leaf { .. } => ProofKind::AbsentLeaf,
        }
    }

    /// The bitmap of non-empty siblings (bit `j`, most significant first, set when sibling `j`
    /// is not [`EMPTY_HASH`]) and those siblings in depth order.
    fn compress(&self) -> (Vec<u8>, Vec<Hash>) {
        let mut bitmap = vec![0u8; self.siblings.len().div_ceil(8)];
        let mut present = Vec::new();
        for (j, s) in self.siblings.iter().enumerate() {
            if *s != EMPTY_HASH {
                bitmap[j / 8] |= 0x80 >> (j % 8);
                present.push(*s);
            }
        }
        (bitmap, present)
    }

    /// The binary encoding (docs/protocol.md §6.8.5): kind (1 byte), depth (u16
    /// big-endian), bitmap (depth/8 rounded up bytes), the non-empty siblings (32 bytes each), then
    /// the end's data: a member's head, or an other leaf's path and head (a head is index as u64
    /// big-endian, then the 32-byte leaf hash).
    pub fn encode(&self) -> Vec<u8> {
        let (bitmap, present) = self.compress();
        let mut out = Vec::with_capacity(3 + bitmap.len() + 32 * present.len() + 72);
        out.push(match self.kind() {
            ProofKind::Member => KIND_MEMBER,
            ProofKind::AbsentEmpty => KIND_ABSENT_EMPTY,
            ProofKind::AbsentLeaf => KIND_ABSENT_LEAF,
        });
        out.extend_from_slice(&(self.siblings.len() as u16).to_be_bytes());
        out.extend_from_slice(&bitmap);
        for s in &present {
            out.extend_from_slice(s);
        }
        let put_head = |out: &mut Vec<u8>, h: &Head| {
            out.extend_from_slice(&h.index.to_be_bytes());
            out.extend_from_slice(&h.leaf);
        };
        match &self.end {
            ProofEnd::Member(h) => put_head(&mut out, h),
            ProofEnd::Empty => {}
            ProofEnd::Leaf { key, head } => {
                out.extend_from_slice(&key.0);
                put_head(&mut out, head);
            }
        }
        out
    }

    /// Decodes [`MapProof::encode`]'s form, strictly: a known kind, depth at most 256, unused
    /// bitmap bits zero, no all-zero sibling marked present, exactly the expected length.
    pub fn decode(bytes: &[u8]) -> Result<Self, MapError> {
        fn take<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], MapError> {
            let (head, tail) = rest.split_at_checked(n).ok_or_else(|| {
                malformed(format!(
                    "expected {n} bytes of {what}, found {} bytes",
                    rest.len()
                ))
            })?;
            *rest = tail;
            Ok(head)
        }
        fn hash(b: &[u8]) -> Hash {
            let mut h = [0u8; 32];
            h.copy_from_slice(b);
            h
        }
        fn head(rest: &mut &[u8]) -> Result<Head, MapError> {
            let index = take(rest, 8, "head index")?;
            let mut i = [0u8; 8];
            i.copy_from_slice(index);
            let leaf = hash(take(rest, 32, "head leaf hash")?);
            Ok(Head {
                index: u64::from_be_bytes(i),
                leaf,
            })
        }
        let mut rest = bytes;
        let kind = take(&mut rest, 1, "kind")?[0];
        let d = take(&mut rest, 2, "depth")?;
        let depth = usize::from(u16::from_be_bytes([d[0], d[1]]));
        if depth > MAX_DEPTH {
            return Err(MapError::TooManySiblings { found: depth });
        }
        let bitmap = take(&mut rest, depth.div_ceil(8), "bitmap")?;
        let count = bitmap
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum::<usize>();
        let present: Vec<Hash> = take(&mut rest, 32 * count, "siblings")?
            .chunks_exact(32)
            .map(hash)
            .collect();
        let end = match kind {
            KIND_MEMBER => ProofEnd::Member(head(&mut rest)?),
            KIND_ABSENT_EMPTY => ProofEnd::Empty,
            KIND_ABSENT_LEAF => ProofEnd::Leaf {
                key: MapKey(hash(take(&mut rest, 32, "other leaf path")?)),
                head: head(&mut rest)?,
            },
            other => {
                return Err(malformed(format!("expected kind 0, 1 or 2, found {other}")));
            }
        };
        if !rest.is_empty() {
            return Err(malformed(format!(
                "expected the proof to end, found {} more bytes",
                rest.len()
            )));
        }
        Self::assemble(depth, bitmap, &present, end)
    }

    /// A proof from its compressed siblings, checking the bitmap against them.
    fn assemble(
        depth: usize,
        bitmap: &[u8],
        present: &[Hash],
        end: ProofEnd,
    ) -> Result<Self, MapError> {
        if depth > MAX_DEPTH {
            return Err(MapError::TooManySiblings { found: depth });
        }
        if bitmap.len() != depth.div_ceil(8) {
            return Err(malformed(format!(
                "expected a bitmap of {} bytes for depth {depth}, found {} bytes",
                depth.div_ceil(8),
                bitmap.len()
            )));
        }
        if !depth.is_multiple_of(8)
            && let Some(last) = bitmap.last()
            && last & (0xff >> (depth % 8)) != 0
        {
            return Err(malformed(format!(
                "expected the bitmap bits past depth {depth} to be zero, found {last:#04x} in its last byte"
            )));
        }
        let count = bitmap
            .iter()
            .map(|b| b.count_ones() as usize)
            .sum::<usize>();
        if count != present.len() {
            return Err(malformed(format!(
                "expected {count} siblings as the bitmap says, found {}",
                present.len()
            )));
        }
        let mut next = present.iter();
        let mut siblings = Vec::with_capacity(depth);
        for j in 0..depth {
            if bitmap[j / 8] & (0x80 >> (j % 8)) == 0 {
                siblings.push(EMPTY_HASH);
                continue;
            }
            match next.next() {
                Some(s) if *s != EMPTY_HASH => siblings.push(*s),
                _ => {
                    return Err(malformed(format!(
                        "expected a non-empty sibling at depth {j} as the bitmap says, found the empty hash"
                    )));
                }
            }
        }
        Ok(Self { siblings, end })
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// The kind of a proof in its JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofKind {
    Member,
    AbsentEmpty,
    AbsentLeaf,
}

/// A [`MapProof`] on the wire (docs/protocol.md §6.8.5). Base64 is standard and canonical;
/// heads are in `prev` form, `<index>:<64 hex>`. Parsing is bounded: at most 256 siblings, each
/// exactly 44 characters, read without buffering more than one at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapProofJson {
    pub kind: ProofKind,
    /// The number of siblings, empty ones included (0 to 256).
    pub depth: u16,
    /// Base64 of depth/8 rounded up bytes: bit `j` (most significant first) set when sibling
    /// `j` is non-empty.
    #[serde(with = "wire_bitmap")]
    pub bitmap: Vec<u8>,
    /// The non-empty siblings, in depth order.
    #[serde(with = "wire_siblings")]
    pub siblings: Vec<Hash>,
    /// `member` only: the key's head.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "wire_head")]
    pub head: Option<Head>,
    /// `absent_leaf` only: the other key's path, base64.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "wire_key")]
    pub other_key: Option<MapKey>,
    /// `absent_leaf` only: the other key's head.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "wire_head")]
    pub other_head: Option<Head>,
}

impl From<MapProof> for MapProofJson {
    fn from(p: MapProof) -> Self {
        let (bitmap, siblings) = p.compress();
        let (head, other_key, other_head) = match p.end {
            ProofEnd::Member(h) => (Some(h), None, None),
            ProofEnd::Empty => (None, None, None),
            ProofEnd::Leaf { key, head } => (None, Some(key), Some(head)),
        };
        Self {
            kind: p.kind(),
            depth: p.siblings.len() as u16,
            bitmap,
            siblings,
            head,
            other_key,
            other_head,
        }
    }
}

impl TryFrom<MapProofJson> for MapProof {
    type Error = MapError;

    fn try_from(j: MapProofJson) -> Result<Self, MapError> {
        let end = match (j.kind, j.head, j.other_key, j.other_head) {
            (ProofKind::Member, Some(h), None, None) => ProofEnd::Member(h),
            (ProofKind::AbsentEmpty, None, None, None) => ProofEnd::Empty,
            (ProofKind::AbsentLeaf, None, Some(key), Some(head)) => ProofEnd::Leaf { key, head },
            (kind, ..) => {
                let fields = match kind {
                    ProofKind::Member => "`head` and no `other_key` or `other_head`",
                    ProofKind::AbsentEmpty => "none of `head`, `other_key`, `other_head`",
                    ProofKind::AbsentLeaf => "`other_key` and `other_head` and no `head`",
                };
                return Err(malformed(format!(
                    "expected {fields} in a proof of kind {kind:?}, found others"
                )));
            }
        };
        Self::assemble(usize::from(j.depth), &j.bitmap, &j.siblings, end)
    }
}

impl MapProof {
    /// The JSON form (what `serde` writes for a [`MapProof`]).
    pub fn to_json(&self) -> MapProofJson {
        MapProofJson::from(self.clone())
    }
}

/// A string visitor that hands the text to a parser, so no copy of a long string is kept.
struct StrWith<F>(&'static str, F);

impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for StrWith<F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.1)(s).map_err(E::custom)
    }
}

fn parse_hash(s: &str) -> Result<Hash, String> {
    let bad = || format!("expected base64 of 32 bytes, found `{s}`");
    if s.len() != 44 {
        return Err(format!(
            "expected base64 of 32 bytes (44 characters), found {} characters",
            s.len()
        ));
    }
    let raw = B64.decode(s).map_err(|_| bad())?;
    <Hash>::try_from(raw.as_slice()).map_err(|_| bad())
}

fn parse_head(s: &str) -> Result<Head, String> {
    // `u64::MAX` has 20 digits; one `:` and 64 hex digits follow.
    if s.len() > 85 {
        return Err(format!(
            "expected `<log index>:<64 lowercase hex leaf hash>`, found {} characters",
            s.len()
        ));
    }
    match Prev::parse(s)? {
        Prev::Entry(h) => Ok(h),
        Prev::None => {
            Err("expected `<log index>:<64 lowercase hex leaf hash>`, found `none`".into())
        }
    }
}

/// One sibling hash inside the `siblings` array.
struct WireHash(Hash);

impl<'de> Deserialize<'de> for WireHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrWith("base64 of 32 bytes", parse_hash))
            .map(WireHash)
    }
}

mod wire_bitmap {
    use super::*;

    pub fn serialize<S: Serializer>(bitmap: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bitmap))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(StrWith("base64 of at most 32 bytes", |s: &str| {
            // 32 bytes are 44 base64 characters.
            if s.len() > 44 {
                return Err(format!(
                    "expected base64 of at most 32 bytes, found {} characters",
                    s.len()
                ));
            }
            B64.decode(s)
                .map_err(|_| format!("expected base64 of at most 32 bytes, found `{s}`"))
        }))
    }
}

mod wire_siblings {
    use super::*;

    pub fn serialize<S: Serializer>(siblings: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(siblings.iter().map(|h| B64.encode(h)))
    }

    struct Siblings;

    impl<'de> Visitor<'de> for Siblings {
        type Value = Vec<Hash>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "an array of at most {MAX_DEPTH} base64 hashes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Hash>, A::Error> {
            let mut out = Vec::new();
            while let Some(WireHash(h)) = seq.next_element()? {
                if out.len() == MAX_DEPTH {
                    return Err(de::Error::custom(format!(
                        "expected at most {MAX_DEPTH} siblings, found more"
                    )));
                }
                out.push(h);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        d.deserialize_seq(Siblings)
    }
}

mod wire_head {
    use super::*;

    pub fn serialize<S: Serializer>(head: &Option<Head>, s: S) -> Result<S::Ok, S::Error> {
        match head {
            Some(h) => s.serialize_str(&h.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Head>, D::Error> {
        d.deserialize_str(StrWith("`<log index>:<64 hex>`", parse_head))
            .map(Some)
    }
}

mod wire_key {
    use super::*;

    pub fn serialize<S: Serializer>(key: &Option<MapKey>, s: S) -> Result<S::Ok, S::Error> {
        match key {
            Some(k) => s.serialize_str(&B64.encode(k.0)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MapKey>, D::Error> {
        d.deserialize_str(StrWith("base64 of 32 bytes", parse_hash))
            .map(|h| Some(MapKey(h)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn head(index: u64, b: u8) -> Head {
        Head {
            index,
            leaf: [b; 32],
        }
    }

    fn chain(s: &str) -> ChainKey {
        ChainKey::parse(s).unwrap()
    }

    /// The root straight from the definition (docs/protocol.md §6.8.3): empty, one leaf, or the node
    /// hash of the two halves at the next depth. `entries` have distinct paths.
    fn reference_root(entries: &[(MapKey, Head)], depth: usize) -> Hash {
        match entries {
            [] => EMPTY_HASH,
            [(k, h)] => leaf_hash(k, h),
            _ => {
                let (l, r): (Vec<_>, Vec<_>) = entries.iter().partition(|(k, _)| k.bit(depth) == 0);
                node_hash(
                    &reference_root(&l, depth + 1),
                    &reference_root(&r, depth + 1),
                )
            }
        }
    }

    fn model_root(model: &BTreeMap<MapKey, Head>) -> Hash {
        let entries: Vec<(MapKey, Head)> = model.iter().map(|(k, h)| (*k, *h)).collect();
        reference_root(&entries, 0)
    }

    /// Checks every way a proof must verify and round-trip.
    fn check_proof(map: &HeadMap, key: &MapKey, expected: Option<Head>) {
        let p = map.prove_keyed(key);
        assert_eq!(p.head(), expected);
        p.verify_keyed(&map.root(), key, expected).unwrap();
        assert_eq!(MapProof::decode(&p.encode()).unwrap(), p);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<MapProof>(&json).unwrap(), p);
        // A membership proof is not an absence proof, and the other way round.
        match expected {
            Some(h) => {
                assert_eq!(
                    p.verify_keyed(&map.root(), key, None),
                    Err(MapError::ExpectedAbsence { found: h })
                );
                let other = Head {
                    index: h.index ^ 1,
                    ..h
                };
                assert_eq!(
                    p.verify_keyed(&map.root(), key, Some(other)),
                    Err(MapError::WrongHead {
                        expected: other,
                        found: h
                    })
                );
            }
            None => assert!(matches!(
                p.verify_keyed(&map.root(), key, Some(head(1, 1))),
                Err(MapError::ExpectedMember { .. })
            )),
        }
    }

    /// Two chain keys `namespace n<i>` whose paths share the longest prefix among the first
    /// `count`, found by sorting the paths.
    fn close_pair(count: usize) -> (ChainKey, ChainKey, usize) {
        let mut keys: Vec<(MapKey, ChainKey)> = (0..count)
            .map(|i| {
                let c = chain(&format!("namespace n{i}"));
                (MapKey::of(&c), c)
            })
            .collect();
        keys.sort();
        let (i, shared) = keys
            .windows(2)
            .map(|w| w[0].0.shared_prefix(&w[1].0))
            .enumerate()
            .max_by_key(|(_, s)| *s)
            .unwrap();
        (keys[i].1.clone(), keys[i + 1].1.clone(), shared)
    }

    // docs/protocol.md §6.8.1 "Key paths"
    #[test]
    fn paths_and_bits() {
        let k = chain("package acme:auth");
        assert_eq!(MapKey::of(&k), MapKey::of_str("package acme:auth"));
        let mut h = Sha256::new();
        h.update(b"gridreg/map/v1 key\npackage acme:auth");
        assert_eq!(MapKey::of(&k).0, <Hash>::from(h.finalize()));
        let mut p = [0u8; 32];
        p[0] = 0b1010_0000;
        p[31] = 1;
        let m = MapKey(p);
        assert_eq!((m.bit(0), m.bit(1), m.bit(2), m.bit(255)), (1, 0, 1, 1));
        assert_eq!(m.bit(256), 0);
        assert_eq!(m.shared_prefix(&m), 256);
        assert_eq!(m.shared_prefix(&MapKey([0; 32])), 0);
        let mut q = p;
        q[31] = 0;
        assert_eq!(m.shared_prefix(&MapKey(q)), 255);
    }

    // docs/protocol.md §6.8.3 "Tree hash", §6.8.6 "Verifying a proof"
    #[test]
    fn empty_map() {
        let map = HeadMap::new();
        assert_eq!(map.root(), EMPTY_HASH);
        assert_eq!(
            HeadMap::default().prove(&chain("namespace acme")),
            map.prove(&chain("namespace acme"))
        );
        assert!(map.is_empty());
        assert_eq!(HeadMap::from_keyed([]).unwrap().root(), EMPTY_HASH);
        let k = chain("namespace acme");
        let p = map.prove(&k);
        assert_eq!(p, MapProof::new(vec![], ProofEnd::Empty));
        p.verify(&EMPTY_HASH, &k, None).unwrap();
        assert_eq!(map.get(&k), None);
        check_proof(&map, &MapKey::of(&k), None);
    }

    // docs/protocol.md §6.8.3 "Tree hash": one key is the root.
    #[test]
    fn one_key() {
        let k = chain("namespace acme");
        let mut map = HeadMap::new();
        map.insert(&k, head(3, 7)).unwrap();
        assert_eq!(map.root(), leaf_hash(&MapKey::of(&k), &head(3, 7)));
        assert_eq!(map.get(&k), Some(head(3, 7)));
        let p = map.prove(&k);
        assert_eq!(p.depth(), 0);
        p.verify(&map.root(), &k, Some(head(3, 7))).unwrap();
        // Another key ends at this leaf, at depth 0.
        let other = chain("namespace other");
        let a = map.prove(&other);
        assert_eq!(
            a.end(),
            &ProofEnd::Leaf {
                key: MapKey::of(&k),
                head: head(3, 7)
            }
        );
        a.verify(&map.root(), &other, None).unwrap();
        assert_eq!(a.verify(&map.root(), &k, None), Err(MapError::OtherIsKey));
        // Updating keeps one key.
        map.insert(&k, head(9, 1)).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(map.root(), leaf_hash(&MapKey::of(&k), &head(9, 1)));
    }

    // docs/protocol.md §6.8.3 "Tree hash", §6.8.4 "Proofs": two keys that share a long prefix sit
    // below a run of one-sided interior nodes, and their proofs carry those empty siblings.
    #[test]
    fn two_keys_with_a_long_shared_prefix() {
        let (a, b, shared) = close_pair(20_000);
        assert!(shared >= 20, "only {shared} shared bits");
        let (ka, kb) = (MapKey::of(&a), MapKey::of(&b));
        let map = HeadMap::from_heads([(&a, head(1, 1)), (&b, head(2, 2))]).unwrap();
        let (la, lb) = (leaf_hash(&ka, &head(1, 1)), leaf_hash(&kb, &head(2, 2)));
        let core = if ka.bit(shared) == 0 {
            node_hash(&la, &lb)
        } else {
            node_hash(&lb, &la)
        };
        assert_eq!(map.root(), fold_up(core, &ka, shared, 0));
        let mut inc = HeadMap::new();
        inc.insert(&b, head(2, 2)).unwrap();
        inc.insert(&a, head(1, 1)).unwrap();
        assert_eq!(inc.root(), map.root());

        let p = map.prove(&a);
        assert_eq!(p.depth(), shared + 1);
        assert!(p.siblings()[..shared].iter().all(|s| *s == EMPTY_HASH));
        assert_eq!(p.siblings()[shared], lb);
        assert_eq!(p.encode().len(), 3 + (shared + 1).div_ceil(8) + 32 + 40);
        p.verify(&map.root(), &a, Some(head(1, 1))).unwrap();
        check_proof(&map, &kb, Some(head(2, 2)));

        // A key that branches off inside the shared prefix ends at an empty subtree, whose
        // sibling is the pair's subtree folded up to that depth.
        let mut off = ka.0;
        off[shared / 16] ^= 0x80 >> ((shared / 2) % 8);
        let off = MapKey(off);
        let c = off.shared_prefix(&ka);
        let q = map.prove_keyed(&off);
        assert_eq!((q.depth(), q.end()), (c + 1, &ProofEnd::Empty));
        assert_eq!(q.siblings()[c], fold_up(core, &ka, shared, c + 1));
        check_proof(&map, &off, None);
        // A key that branches off just below the pair's split ends at a leaf.
        let mut below = ka.0;
        below[31] ^= 1;
        let below = MapKey(below);
        let r = map.prove_keyed(&below);
        assert_eq!(
            r.end(),
            &ProofEnd::Leaf {
                key: ka,
                head: head(1, 1)
            }
        );
        check_proof(&map, &below, None);
    }

    // docs/protocol.md §6.8.3 "Tree hash": paths that differ only in their last bit give leaves at
    // depth 256, the deepest there is.
    #[test]
    fn full_depth_leaves() {
        let k0 = MapKey([0; 32]);
        let mut p = [0u8; 32];
        p[31] = 1;
        let k1 = MapKey(p);
        let map = HeadMap::from_keyed([(k0, head(1, 1)), (k1, head(2, 2))]).unwrap();
        let mut model = BTreeMap::new();
        model.insert(k0, head(1, 1));
        model.insert(k1, head(2, 2));
        assert_eq!(map.root(), model_root(&model));
        let proof = map.prove_keyed(&k1);
        assert_eq!(proof.depth(), MAX_DEPTH);
        check_proof(&map, &k0, Some(head(1, 1)));
        check_proof(&map, &k1, Some(head(2, 2)));
        check_proof(&map, &MapKey([1; 32]), None);
    }

    /// Paths with long shared prefixes: random bytes with the first `bits` bits cleared.
    fn path() -> impl Strategy<Value = MapKey> {
        (
            any::<[u8; 32]>(),
            prop_oneof![Just(0usize), 0usize..24, 0usize..=256],
        )
            .prop_map(|(mut p, bits)| {
                for j in 0..bits {
                    p[j / 8] &= !(0x80 >> (j % 8));
                }
                MapKey(p)
            })
    }

    fn any_head() -> impl Strategy<Value = Head> {
        (any::<u64>(), any::<u8>()).prop_map(|(i, b)| head(i, b))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        // docs/protocol.md §6.8.3 "Tree hash", §6.8.4 "Proofs", §6.8.6 "Verifying a proof"
        #[test]
        fn every_key_proves_its_head_and_others_their_absence(
            entries in prop::collection::vec((path(), any_head()), 0..60),
            absent in prop::collection::vec(path(), 0..10),
        ) {
            let map = HeadMap::from_keyed(entries.iter().copied()).unwrap();
            let model: BTreeMap<MapKey, Head> = entries.iter().copied().collect();
            prop_assert_eq!(map.len(), model.len());
            prop_assert_eq!(map.root(), model_root(&model));
            for (k, h) in &model {
                prop_assert_eq!(map.get_keyed(k), Some(*h));
                check_proof(&map, k, Some(*h));
            }
            for k in absent.iter().filter(|k| !model.contains_key(k)) {
                prop_assert_eq!(map.get_keyed(k), None);
                check_proof(&map, k, None);
            }
        }

        // docs/protocol.md §6.8.3 "Tree hash": the map after any sequence of batches is the map
        // built from scratch from the final heads.
        #[test]
        fn incremental_apply_equals_rebuild(
            pool in prop::collection::vec(path(), 1..40),
            batches in prop::collection::vec(
                prop::collection::vec((any::<prop::sample::Index>(), any_head()), 0..12),
                1..12,
            ),
        ) {
            let mut map = HeadMap::new();
            let mut model = BTreeMap::new();
            for batch in &batches {
                let batch: Vec<(MapKey, Head)> =
                    batch.iter().map(|(i, h)| (*i.get(&pool), *h)).collect();
                map.apply_keyed(batch.iter().copied()).unwrap();
                model.extend(batch.iter().copied());
                let rebuilt = HeadMap::from_keyed(model.iter().map(|(k, h)| (*k, *h))).unwrap();
                prop_assert_eq!(map.root(), rebuilt.root());
                prop_assert_eq!(map.root(), model_root(&model));
                prop_assert_eq!(map.len(), model.len());
            }
            for k in &pool {
                check_proof(&map, k, model.get(k).copied());
            }
        }

        // docs/protocol.md §6.8.5 "Proof encoding": any bytes decode to a proof or to an error.
        #[test]
        fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(p) = MapProof::decode(&bytes) {
                prop_assert_eq!(p.encode(), bytes);
                let _ = p.verify_keyed(&EMPTY_HASH, &MapKey([0; 32]), None);
            }
        }
    }

    /// A map of 64 chains plus a close pair, so proofs have empty and non-empty siblings.
    fn sample_map() -> (HeadMap, ChainKey, ChainKey) {
        let (a, b, _) = close_pair(5_000);
        let mut heads: Vec<(ChainKey, Head)> = (0..64)
            .map(|i| (chain(&format!("package acme:p{i}")), head(i, i as u8)))
            .collect();
        heads.push((a.clone(), head(100, 1)));
        heads.push((b, head(101, 2)));
        (
            HeadMap::from_heads(heads).unwrap(),
            a,
            chain("namespace absent"),
        )
    }

    /// Every single-bit change of the proof's encoding is refused, by decoding or by verifying.
    fn every_bit_flip_fails(root: &Hash, key: &MapKey, claim: Option<Head>, p: &MapProof) {
        let enc = p.encode();
        for bit in 0..enc.len() * 8 {
            let mut e = enc.clone();
            e[bit / 8] ^= 0x80 >> (bit % 8);
            if let Ok(q) = MapProof::decode(&e) {
                assert!(
                    q.verify_keyed(root, key, claim).is_err(),
                    "bit {bit} flipped still verifies"
                );
            }
        }
    }

    // docs/protocol.md §6.8.6 "Verifying a proof": every tampered proof is refused.
    #[test]
    fn tampered_proofs_fail() {
        let (map, member, absent) = sample_map();
        let root = map.root();
        let km = MapKey::of(&member);
        let ka = MapKey::of(&absent);
        let hm = map.get(&member).unwrap();
        let pm = map.prove(&member);
        let pa = map.prove(&absent);
        // An absence proof ending at another leaf, from a key close to a member.
        let mut near = km.0;
        near[31] ^= 1;
        let near = MapKey(near);
        let pl = map.prove_keyed(&near);
        assert!(matches!(pl.end(), ProofEnd::Leaf { .. }));
        let cases = [(km, Some(hm), pm), (ka, None, pa), (near, None, pl)];
        for (key, claim, p) in &cases {
            p.verify_keyed(&root, key, *claim).unwrap();
            every_bit_flip_fails(&root, key, *claim, p);
            let s = p.siblings().to_vec();
            assert!(!s.is_empty());
            let t = |siblings: Vec<Hash>| MapProof::new(siblings, *p.end());
            for j in 0..s.len() {
                let mut f = s.clone();
                f[j][5] ^= 1;
                assert!(t(f).verify_keyed(&root, key, *claim).is_err(), "flip {j}");
                let mut d = s.clone();
                d.remove(j);
                assert!(t(d).verify_keyed(&root, key, *claim).is_err(), "drop {j}");
                let mut a = s.clone();
                a.insert(j, [9; 32]);
                assert!(t(a).verify_keyed(&root, key, *claim).is_err(), "add {j}");
            }
            let mut longer = s.clone();
            longer.push(EMPTY_HASH);
            assert!(t(longer).verify_keyed(&root, key, *claim).is_err());
            if !matches!(p.end(), ProofEnd::Leaf { .. }) {
                let mut longer = s.clone();
                longer.push(EMPTY_HASH);
                assert_eq!(
                    t(longer).verify_keyed(&root, key, *claim),
                    Err(MapError::EmptyLastSibling { depth: s.len() })
                );
            }
            let mut longer = s.clone();
            longer.push([9; 32]);
            assert!(t(longer).verify_keyed(&root, key, *claim).is_err());
            assert_eq!(
                t(vec![[9; 32]; 257]).verify_keyed(&root, key, *claim),
                Err(MapError::TooManySiblings { found: 257 })
            );
            // The proof of one key is not a proof for another, nor against another root.
            let other = MapKey::of_str("package acme:p1");
            assert!(p.verify_keyed(&root, &other, *claim).is_err());
            let mut r2 = root;
            r2[0] ^= 1;
            assert!(matches!(
                p.verify_keyed(&r2, key, *claim),
                Err(MapError::RootMismatch { .. })
            ));
            // Flipping a bitmap bit (first byte after kind and depth) breaks it too.
            let mut e = p.encode();
            for bit in 0..s.len().min(8) {
                let mut f = e.clone();
                f[3] ^= 0x80 >> bit;
                assert!(
                    MapProof::decode(&f)
                        .map_or(true, |q| q.verify_keyed(&root, key, *claim).is_err())
                );
            }
            e.push(0);
            assert!(MapProof::decode(&e).is_err());
        }
        // Swapped value, and membership presented as absence and the other way round.
        assert!(
            cases[0]
                .2
                .verify(&root, &member, Some(head(100, 2)))
                .is_err()
        );
        assert!(cases[0].2.verify(&root, &member, None).is_err());
        assert!(cases[1].2.verify(&root, &absent, Some(hm)).is_err());
        // A member's proof claimed for an absent key, with the member's head.
        assert!(cases[0].2.verify(&root, &absent, Some(hm)).is_err());
        // An other leaf that is the key itself, or off the key's path.
        let ProofEnd::Leaf {
            head: other_head, ..
        } = *cases[2].2.end()
        else {
            unreachable!()
        };
        let is_key = MapProof::new(
            cases[2].2.siblings().to_vec(),
            ProofEnd::Leaf {
                key: near,
                head: other_head,
            },
        );
        assert_eq!(
            is_key.verify_keyed(&root, &near, None),
            Err(MapError::OtherIsKey)
        );
        let off = MapProof::new(
            cases[2].2.siblings().to_vec(),
            ProofEnd::Leaf {
                key: ka,
                head: other_head,
            },
        );
        assert!(matches!(
            off.verify_keyed(&root, &near, None),
            Err(MapError::OtherOffPath { .. })
        ));
    }

    // docs/protocol.md §6.8.5 "Proof encoding": malformed binary proofs are refused with a reason.
    #[test]
    fn hostile_binary_proofs() {
        let leaf = [7u8; 32];
        let mut ok = vec![KIND_ABSENT_EMPTY, 0, 9, 0x80, 0x00];
        ok.extend_from_slice(&leaf);
        let p = MapProof::decode(&ok).unwrap();
        assert_eq!(p.depth(), 9);
        assert_eq!(p.siblings()[0], leaf);
        assert_eq!(p.encode(), ok);
        let bad: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "kind"),
            (vec![KIND_MEMBER, 0], "depth"),
            (vec![KIND_ABSENT_EMPTY, 1, 1], "at most 256"),
            (vec![KIND_ABSENT_EMPTY, 0xff, 0xff], "at most 256"),
            (vec![3, 0, 0], "kind 0, 1 or 2"),
            (vec![KIND_MEMBER, 0, 0, 1, 2], "head index"),
            (vec![KIND_ABSENT_EMPTY, 0, 0, 0], "more bytes"),
            (vec![KIND_ABSENT_EMPTY, 0, 9, 0x80], "bitmap"),
            (
                [&[KIND_ABSENT_EMPTY, 0, 9, 0x00, 0x40][..], &leaf].concat(),
                "past depth 9",
            ),
            (vec![KIND_ABSENT_EMPTY, 0, 9, 0x40, 0x00], "siblings"),
            (vec![KIND_ABSENT_LEAF, 0, 0], "other leaf path"),
        ];
        for (b, why) in bad {
            let e = MapProof::decode(&b).unwrap_err().to_string();
            assert!(e.contains(why), "{b:?}: {e}");
        }
        // A sibling marked present that is the empty hash is not canonical.
        let mut zero = vec![KIND_ABSENT_EMPTY, 0, 1, 0x80];
        zero.extend_from_slice(&EMPTY_HASH);
        assert!(
            MapProof::decode(&zero)
                .unwrap_err()
                .to_string()
                .contains("empty hash")
        );
        // The deepest possible proof decodes.
        let mut deep = vec![KIND_ABSENT_EMPTY, 1, 0];
        deep.extend_from_slice(&[0; 31]);
        deep.push(1);
        deep.extend_from_slice(&leaf);
        assert_eq!(MapProof::decode(&deep).unwrap().depth(), 256);
    }

    // docs/protocol.md §6.8.5 "Proof encoding": malformed JSON proofs are refused, and parsing stops
    // at the 257th sibling.
    #[test]
    fn hostile_json_proofs() {
        let (map, member, absent) = sample_map();
        let good = serde_json::to_value(map.prove(&member)).unwrap();
        let h = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let x = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";
        let set = |k: &str, v: serde_json::Value| {
            let mut j = good.clone();
            j[k] = v;
            j
        };
        let many: Vec<&str> = vec![x; 300];
        let head_text = map.get(&member).unwrap().to_string();
        let cases = [
            set("siblings", serde_json::json!(many)),
            set("siblings", serde_json::json!([&x[1..]])),
            set("siblings", serde_json::json!([format!("{}=", &x[..43])])),
            set("siblings", serde_json::json!([x.replace('=', "")])),
            set("siblings", serde_json::json!([h])),
            set(
                "siblings",
                serde_json::json!([x, x, x, x, x, x, x, x, x, x, x]),
            ),
            set("siblings", serde_json::json!("not a list")),
            set("kind", serde_json::json!("membership")),
            set("depth", serde_json::json!(257)),
            set("depth", serde_json::json!(-1)),
            set(
                "bitmap",
                serde_json::json!("////////////////////////////////////////////"),
            ),
            set("bitmap", serde_json::json!("@@")),
            set("head", serde_json::json!("none")),
            set("head", serde_json::json!(format!("01{}", &head_text[1..]))),
            set("head", serde_json::Value::Null),
            set("other_key", serde_json::json!(x)),
            set("kind", serde_json::json!("absent_empty")),
            set("kind", serde_json::json!("absent_leaf")),
        ];
        assert!(serde_json::from_value::<MapProof>(good.clone()).is_ok());
        for c in cases {
            assert!(
                serde_json::from_value::<MapProof>(c.clone()).is_err(),
                "{c}"
            );
        }
        let too_many =
            serde_json::from_value::<MapProofJson>(set("siblings", serde_json::json!(many)))
                .unwrap_err()
                .to_string();
        assert!(too_many.contains("at most 256 siblings"), "{too_many}");
        // The JSON of an absence proof round-trips through the wire struct too.
        let a = map.prove(&absent);
        let j = MapProofJson::from(a.clone());
        assert_eq!(MapProof::try_from(j).unwrap(), a);
    }

    // docs/protocol.md §6.8.7 "Test vectors": the heads are log entries 0 and 1 of docs/protocol.md
    // §11.3.
    const V_HEAD_NS: &str = "0:be4945a95d2a4ff050ce46a6289b35c5987c5ddb3c03f8cba0075c7cf20cbfd2";
    const V_HEAD_PKG: &str = "1:cb2fa7ddb247eca44bd85fff169d721dad678dbcf20aceea6b34850432735b49";
    const V_PATH_NS: &str = "d66a41e8848c0993edfd620c807d6bb962e2a7a31aa7cbb3c654e40024ebaeac";
    const V_PATH_PKG: &str = "6ee78cadd263c0806a79569d63f69f77479ce5fe35a009e668c37a91552e70cf";
    const V_LEAF_NS: &str = "7b74b4d3243ea6e79a350da8ca8947ce5e41c606f3fc03dcad26ea516d72209d";
    const V_LEAF_PKG: &str = "f57ad009649d2264a6db9dd931e6599974f938ebb0e02ffcd22041f146bbf673";
    const V_ROOT: &str = "f9201b998284226e7c86a169c05b5bf7eb51bc0733d00a8ad79c8d325d6e1dd6";
    const V_EMPTY_ROOT: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    const V_ABSENT_EMPTY_BIN: &str = "010000";
    const V_ABSENT_EMPTY_JSON: &str =
        r#"{"kind":"absent_empty","depth":0,"bitmap":"","siblings":[]}"#;
    const V_MEMBER_BIN: &str = "000001807b74b4d3243ea6e79a350da8ca8947ce5e41c606f3fc03dcad26ea516d72209d0000000000000001cb2fa7ddb247eca44bd85fff169d721dad678dbcf20aceea6b34850432735b49";
    const V_MEMBER_JSON: &str = r#"{"kind":"member","depth":1,"bitmap":"gA==","siblings":["e3S00yQ+pueaNQ2oyolHzl5Bxgbz/APcrSbqUW1yIJ0="],"head":"1:cb2fa7ddb247eca44bd85fff169d721dad678dbcf20aceea6b34850432735b49"}"#;
    const V_ABSENT_LEAF_BIN: &str = "020001807b74b4d3243ea6e79a350da8ca8947ce5e41c606f3fc03dcad26ea516d72209d6ee78cadd263c0806a79569d63f69f77479ce5fe35a009e668c37a91552e70cf0000000000000001cb2fa7ddb247eca44bd85fff169d721dad678dbcf20aceea6b34850432735b49";
    const V_ABSENT_LEAF_JSON: &str = r#"{"kind":"absent_leaf","depth":1,"bitmap":"gA==","siblings":["e3S00yQ+pueaNQ2oyolHzl5Bxgbz/APcrSbqUW1yIJ0="],"other_key":"bueMrdJjwIBqeVadY/afd0ec5f41oAnmaMN6kVUucM8=","other_head":"1:cb2fa7ddb247eca44bd85fff169d721dad678dbcf20aceea6b34850432735b49"}"#;

    fn parse_head_text(s: &str) -> Head {
        Prev::parse(s).unwrap().head().unwrap()
    }

    fn check_vector(
        root: &Hash,
        chain: &ChainKey,
        head: Option<Head>,
        p: &MapProof,
        bin: &str,
        json: &str,
    ) {
        assert_eq!(hex::encode(p.encode()), bin);
        assert_eq!(serde_json::to_string(p).unwrap(), json);
        assert_eq!(&MapProof::decode(&hex::decode(bin).unwrap()).unwrap(), p);
        assert_eq!(&serde_json::from_str::<MapProof>(json).unwrap(), p);
        p.verify(root, chain, head).unwrap();
    }

    // docs/protocol.md §6.8.7 "Test vectors"
    #[test]
    fn vectors() {
        let ns = chain("namespace acme");
        let pkg = chain("package acme:auth");
        let (hn, hp) = (parse_head_text(V_HEAD_NS), parse_head_text(V_HEAD_PKG));
        assert_eq!(MapKey::of(&ns).to_string(), V_PATH_NS);
        assert_eq!(MapKey::of(&pkg).to_string(), V_PATH_PKG);
        assert_eq!(hex::encode(leaf_hash(&MapKey::of(&ns), &hn)), V_LEAF_NS);
        assert_eq!(hex::encode(leaf_hash(&MapKey::of(&pkg), &hp)), V_LEAF_PKG);

        let empty = HeadMap::new();
        assert_eq!(hex::encode(empty.root()), V_EMPTY_ROOT);
        let other = chain("namespace other");
        check_vector(
            &EMPTY_HASH,
            &other,
            None,
            &empty.prove(&other),
            V_ABSENT_EMPTY_BIN,
            V_ABSENT_EMPTY_JSON,
        );

        let map = HeadMap::from_heads([(&ns, hn), (&pkg, hp)]).unwrap();
        assert_eq!(hex::encode(map.root()), V_ROOT);
        let mut by_one = HeadMap::new();
        by_one.insert(&pkg, hp).unwrap();
        by_one.insert(&ns, hn).unwrap();
        assert_eq!(by_one.root(), map.root());
        // The two paths differ in their first bit: the root is node(pkg leaf, ns leaf).
        let (ln, lp): (Hash, Hash) = (
            hex::decode(V_LEAF_NS).unwrap().try_into().unwrap(),
            hex::decode(V_LEAF_PKG).unwrap().try_into().unwrap(),
        );
        assert_eq!(node_hash(&lp, &ln), map.root());
        check_vector(
            &map.root(),
            &pkg,
            Some(hp),
            &map.prove(&pkg),
            V_MEMBER_BIN,
            V_MEMBER_JSON,
        );
        check_vector(
            &map.root(),
            &other,
            None,
            &map.prove(&other),
            V_ABSENT_LEAF_BIN,
            V_ABSENT_LEAF_JSON,
        );
    }

    // docs/protocol.md §6.8.7 "Test vectors": the values asserted above are the ones printed there.
    #[test]
    fn document_prints_these_values() {
        let path = format!("{}/../docs/protocol.md", env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(&path).unwrap();
        for v in [
            V_HEAD_NS,
            V_HEAD_PKG,
            V_PATH_NS,
            V_PATH_PKG,
            V_LEAF_NS,
            V_LEAF_PKG,
            V_ROOT,
            V_EMPTY_ROOT,
            V_ABSENT_EMPTY_BIN,
            V_ABSENT_EMPTY_JSON,
            V_MEMBER_BIN,
            V_MEMBER_JSON,
            V_ABSENT_LEAF_BIN,
            V_ABSENT_LEAF_JSON,
        ] {
            assert!(doc.contains(v), "docs/protocol.md does not print {v}");
        }
    }
}
