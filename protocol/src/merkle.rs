//! RFC 6962 Merkle tree math over stored hashes: leaf and node hashing, the stored-hash layout
//! (the one Go's `golang.org/x/mod/sumdb/tlog` uses), tree heads of any size, inclusion and
//! consistency proofs (generation and verification). The caller owns storage and implements
//! [`HashReader`]; every function here is plain math over the hashes it reads.
//!
//! Layout: the hashes of a log are kept in one append-only array. When leaf `n` is appended, its
//! leaf hash is stored, followed by the hash of every complete subtree that leaf closes (level 1,
//! 2, ...). So the array only ever grows, and each subtree hash sits at a fixed index given by
//! [`stored_hash_index`]. A tree head or a proof needs only the O(log n) complete-subtree hashes
//! that cover the ranges involved, read in one batch of increasing indexes.

use sha2::{Digest as _, Sha256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 section 2.1).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Largest tree size the math accepts. Stored-hash indexes are about twice the leaf count, so
/// this keeps every index computation inside `u64` (no log comes near 2^62 entries).
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// A proof longer than this cannot belong to any tree with at most 2^64 leaves.
pub const MAX_PROOF_LEN: usize = 64;

/// Why a computation or a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("reading stored hashes failed: {0}")]
    Storage(String),
    #[error("hash storage returned {found} hashes for {expected} indexes")]
    ShortRead { expected: usize, found: usize },
    #[error("tree size {0} is larger than the supported maximum of 2^62")]
    TooLarge(u64),
    #[error("stored hash index {index} is out of range (only {len} hashes stored)")]
    OutOfRange { index: u64, len: u64 },
    #[error("leaf index {index} is not in a tree of size {size}")]
    IndexNotInTree { index: u64, size: u64 },
    #[error("cannot prove tree size {old} is a prefix of tree size {new}")]
    BadSizes { old: u64, new: u64 },
    #[error(
        "leaf {index} is appended at the wrong place: the storage has hashes for {stored} leaves"
    )]
    WrongAppendIndex { index: u64, stored: u64 },
    #[error("inclusion proof for leaf {index} in tree size {size} does not verify")]
    InclusionFailed { index: u64, size: u64 },
    #[error("consistency proof from tree size {old} to {new} does not verify")]
    ConsistencyFailed { old: u64, new: u64 },
}

/// Reads stored hashes by index. Implemented by the caller over its storage (a database table,
/// files, tiles, or simply a `Vec<Hash>` in memory). The functions here always ask for indexes in
/// increasing order, so a storage can serve a batch with one range scan.
pub trait HashReader {
    /// Returns the hashes at `indexes`, in the same order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError>;
}

impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|u| self.get(u))
                    .copied()
                    .ok_or(MerkleError::OutOfRange {
                        index: i,
                        len: self.len() as u64,
                    })
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        self.as_slice().read_hashes(indexes)
    }
}

fn check_size(size: u64) -> Result<(), MerkleError> {
    if size > MAX_TREE_SIZE {
        return Err(MerkleError::TooLarge(size));
    }
    Ok(())
}

fn read<R: HashReader + ?Sized>(r: &R, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
    let out = r.read_hashes(indexes)?;
    if out.len() != indexes.len() {
        return Err(MerkleError::ShortRead {
            expected: indexes.len(),
            found: out.len(),
        });
    }
    Ok(out)
}

/// Leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Where the hash of the `n`-th subtree at `level` (covering leaves `n<<level .. (n+1)<<level`)
/// sits in the stored-hash array.
pub fn stored_hash_index(level: u32, n: u64) -> u64 {
    // The subtree is completed by its last leaf; the hashes stored before that leaf's group are
    // one per leaf plus one per completed subtree of every level, which is last + last/2 + ...
    let last = ((n + 1) << level) - 1;
    let mut before = 0u64;
    let mut m = last;
    while m > 0 {
        before += m;
        m >>= 1;
    }
    before + u64::from(level)
}

/// How many hashes a tree of `size` leaves stores (`size` at most [`MAX_TREE_SIZE`]; larger
/// sizes saturate).
pub fn stored_hash_count(size: u64) -> u64 {
    if size > MAX_TREE_SIZE {
        return u64::MAX;
    }
    if size == 0 {
        return 0;
    }
    let last = size - 1;
    stored_hash_index(0, last) + 1 + u64::from(last.trailing_ones())
}

/// The hashes to append to storage when adding leaf number `index` with hash `leaf`: the leaf
/// hash, then the hash of each complete subtree the leaf closes. `r` must hold the hashes of
/// leaves `0..index`.
pub fn stored_hashes_for_leaf<R: HashReader + ?Sized>(
    index: u64,
    leaf: Hash,
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(index.saturating_add(1))?;
    let closes = index.trailing_ones();
    // The left siblings, highest level first, which is increasing storage order.
    let indexes: Vec<u64> = (0..closes)
        .rev()
        .map(|level| stored_hash_index(level, (index >> level) - 1))
        .collect();
    let siblings = read(r, &indexes)?;
    let mut out = Vec::with_capacity(1 + closes as usize);
    let mut h = leaf;
    out.push(h);
    for sibling in siblings.iter().rev() {
        h = node_hash(sibling, &h);
        out.push(h);
    }
    Ok(out)
}

/// The hashes to append for a batch of leaves starting at leaf `start`, given storage `r` that
/// holds exactly the hashes of leaves `0..start`. The sequencer's whole Merkle step: the caller
/// writes the returned hashes after the existing ones.
pub fn append_leaves<R: HashReader + ?Sized>(
    start: u64,
    leaves: &[Hash],
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    struct Overlay<'a, R: ?Sized> {
        base: &'a R,
        base_len: u64,
        new: &'a [Hash],
    }
    impl<R: HashReader + ?Sized> HashReader for Overlay<'_, R> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
            let split = indexes.partition_point(|&i| i < self.base_len);
            let mut out = read(self.base, &indexes[..split])?;
            let shifted: Vec<u64> = indexes[split..].iter().map(|i| i - self.base_len).collect();
            out.extend(self.new.read_hashes(&shifted)?);
            Ok(out)
        }
    }
    let base_len = stored_hash_count(start);
    let mut new: Vec<Hash> = Vec::with_capacity(leaves.len() * 2);
    for (i, leaf) in leaves.iter().enumerate() {
        let overlay = Overlay {
            base: r,
            base_len,
            new: &new,
        };
        let hashes = stored_hashes_for_leaf(start + i as u64, *leaf, &overlay)?;
        new.extend(hashes);
    }
    Ok(new)
}

/// The largest power of two strictly below `n` (n >= 2), and its log2.
fn split_point(n: u64) -> (u64, u32) {
    let level = 63 - (n - 1).leading_zeros();
    (1u64 << level, level)
}

/// Appends the stored indexes of the complete subtrees that tile `lo..hi`, left to right.
fn subtree_indexes(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = split_point(hi - lo + 1);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// Folds the hashes of the complete subtrees tiling `lo..hi` (as listed by `subtree_indexes`)
/// into the hash of that range, consuming them from the front of `hashes`.
fn subtree_hash(mut lo: u64, hi: u64, hashes: &mut &[Hash]) -> Result<Hash, MerkleError> {
    let mut count = 0;
    while lo < hi {
        let (k, _) = split_point(hi - lo + 1);
        lo += k;
        count += 1;
    }
    if count == 0 || hashes.len() < count {
        return Err(MerkleError::ShortRead {
            expected: count,
            found: hashes.len(),
        });
    }
    let (mine, rest) = hashes.split_at(count);
    *hashes = rest;
    let mut h = mine[count - 1];
    for left in mine[..count - 1].iter().rev() {
        h = node_hash(left, &h);
    }
    Ok(h)
}

/// The root hash of the tree made of the first `size` leaves.
pub fn tree_hash<R: HashReader + ?Sized>(size: u64, r: &R) -> Result<Hash, MerkleError> {
    check_size(size)?;
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let mut need = Vec::new();
    subtree_indexes(0, size, &mut need);
    let hashes = read(r, &need)?;
    subtree_hash(0, size, &mut hashes.as_slice())
}

fn inclusion_indexes(lo: u64, hi: u64, index: u64, need: &mut Vec<u64>) {
    if lo + 1 == hi {
        return;
    }
    let (k, _) = split_point(hi - lo);
    if index < lo + k {
        inclusion_indexes(lo, lo + k, index, need);
        subtree_indexes(lo + k, hi, need);
    } else {
        subtree_indexes(lo, lo + k, need);
        inclusion_indexes(lo + k, hi, index, need);
    }
}

fn inclusion_build(
    lo: u64,
    hi: u64,
    index: u64,
    hashes: &mut &[Hash],
    proof: &mut Vec<Hash>,
) -> Result<(), MerkleError> {
    if lo + 1 == hi {
        return Ok(());
    }
    let (k, _) = split_point(hi - lo);
    // Reads come in storage order (left before right), but the proof lists siblings from the
    // leaf upwards, so the sibling of this level is pushed after the deeper ones.
    if index < lo + k {
        inclusion_build(lo, lo + k, index, hashes, proof)?;
        proof.push(subtree_hash(lo + k, hi, hashes)?);
    } else {
        let left = subtree_hash(lo, lo + k, hashes)?;
        inclusion_build(lo + k, hi, index, hashes, proof)?;
        proof.push(left);
    }
    Ok(())
}

/// The inclusion proof (audit path, leaf to root) of leaf `index` in the tree of `size` leaves.
pub fn prove_inclusion<R: HashReader + ?Sized>(
    size: u64,
    index: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(size)?;
    if index >= size {
        return Err(MerkleError::IndexNotInTree { index, size });
    }
    let mut need = Vec::new();
    inclusion_indexes(0, size, index, &mut need);
    let hashes = read(r, &need)?;
    let mut proof = Vec::with_capacity(need.len());
    inclusion_build(0, size, index, &mut hashes.as_slice(), &mut proof)?;
    Ok(proof)
}

/// Recomputes the root from a leaf hash and its audit path; `None` when the proof has the wrong
/// shape for this index and size.
fn inclusion_root(proof: &[Hash], lo: u64, hi: u64, index: u64, leaf: &Hash) -> Option<Hash> {
    if lo + 1 == hi {
        return proof.is_empty().then_some(*leaf);
    }
    let (sibling, rest) = proof.split_last()?;
    let (k, _) = split_point(hi - lo);
    if index < lo + k {
        let left = inclusion_root(rest, lo, lo + k, index, leaf)?;
        Some(node_hash(&left, sibling))
    } else {
        let right = inclusion_root(rest, lo + k, hi, index, leaf)?;
        Some(node_hash(sibling, &right))
    }
}

/// Checks that `leaf` is leaf number `index` of the tree of `size` leaves with root `root`.
pub fn verify_inclusion(
    proof: &[Hash],
    size: u64,
    root: &Hash,
    index: u64,
    leaf: &Hash,
) -> Result<(), MerkleError> {
    let fail = MerkleError::InclusionFailed { index, size };
    if index >= size || size > MAX_TREE_SIZE || proof.len() > MAX_PROOF_LEN {
        return Err(fail);
    }
    match inclusion_root(proof, 0, size, index, leaf) {
        Some(h) if &h == root => Ok(()),
        _ => Err(fail),
    }
}

fn consistency_indexes(lo: u64, hi: u64, old: u64, need: &mut Vec<u64>) {
    if old == hi {
        if lo != 0 {
            subtree_indexes(lo, hi, need);
        }
        return;
    }
    let (k, _) = split_point(hi - lo);
    if old <= lo + k {
        consistency_indexes(lo, lo + k, old, need);
        subtree_indexes(lo + k, hi, need);
    } else {
        subtree_indexes(lo, lo + k, need);
        consistency_indexes(lo + k, hi, old, need);
    }
}

fn consistency_build(
    lo: u64,
    hi: u64,
    old: u64,
    hashes: &mut &[Hash],
    proof: &mut Vec<Hash>,
) -> Result<(), MerkleError> {
    if old == hi {
        // A subtree wholly inside the old tree: the verifier needs its hash unless it is the
        // whole old tree, whose root the verifier already has.
        if lo != 0 {
            proof.push(subtree_hash(lo, hi, hashes)?);
        }
        return Ok(());
    }
    let (k, _) = split_point(hi - lo);
    if old <= lo + k {
        consistency_build(lo, lo + k, old, hashes, proof)?;
        proof.push(subtree_hash(lo + k, hi, hashes)?);
    } else {
        let left = subtree_hash(lo, lo + k, hashes)?;
        consistency_build(lo + k, hi, old, hashes, proof)?;
        proof.push(left);
    }
    Ok(())
}

/// The consistency proof that the tree of `old` leaves is a prefix of the tree of `new` leaves
/// (RFC 6962 section 2.1.2). Empty when `old` is 0 or equal to `new`.
pub fn prove_consistency<R: HashReader + ?Sized>(
    new: u64,
    old: u64,
    r: &R,
) -> Result<Vec<Hash>, MerkleError> {
    check_size(new)?;
    if old > new {
        return Err(MerkleError::BadSizes { old, new });
    }
    if old == 0 {
        return Ok(Vec::new());
    }
    let mut need = Vec::new();
    consistency_indexes(0, new, old, &mut need);
    let hashes = read(r, &need)?;
    let mut proof = Vec::with_capacity(need.len());
    consistency_build(0, new, old, &mut hashes.as_slice(), &mut proof)?;
    Ok(proof)
}

/// Recomputes (old root, new root) from a consistency proof; `None` when the proof has the
/// wrong shape for these sizes.
fn consistency_roots(
    proof: &[Hash],
    lo: u64,
    hi: u64,
    old: u64,
    old_root: &Hash,
) -> Option<(Hash, Hash)> {
    if old == hi {
        if lo == 0 {
            return proof.is_empty().then_some((*old_root, *old_root));
        }
        return match proof {
            [h] => Some((*h, *h)),
            _ => None,
        };
    }
    let (sibling, rest) = proof.split_last()?;
    let (k, _) = split_point(hi - lo);
    if old <= lo + k {
        let (o, n) = consistency_roots(rest, lo, lo + k, old, old_root)?;
        Some((o, node_hash(&n, sibling)))
    } else {
        let (o, n) = consistency_roots(rest, lo + k, hi, old, old_root)?;
        Some((node_hash(sibling, &o), node_hash(sibling, &n)))
    }
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of the tree of `new`
/// leaves with root `new_root`.
pub fn verify_consistency(
    proof: &[Hash],
    new: u64,
    new_root: &Hash,
    old: u64,
    old_root: &Hash,
) -> Result<(), MerkleError> {
    let fail = MerkleError::ConsistencyFailed { old, new };
    if old > new || new > MAX_TREE_SIZE || proof.len() > MAX_PROOF_LEN {
        return Err(fail);
    }
    if old == 0 {
        // Every tree extends the empty tree; only the empty root and an empty proof are valid.
        return if proof.is_empty() && old_root == &EMPTY_ROOT {
            Ok(())
        } else {
            Err(fail)
        };
    }
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err(fail)
        };
    }
    match consistency_roots(proof, 0, new, old, old_root) {
        Some((o, n)) if &o == old_root && &n == new_root => Ok(()),
        _ => Err(fail),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Builds storage leaf by leaf, checking the count formula on the way.
    fn storage(n: u64) -> (Vec<Hash>, Vec<Hash>) {
        let mut s = Vec::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let l = leaf_hash(format!("leaf {i}").as_bytes());
            leaves.push(l);
            let h = stored_hashes_for_leaf(i, l, &s).unwrap();
            s.extend(h);
            assert_eq!(stored_hash_count(i + 1), s.len() as u64);
        }
        (s, leaves)
    }

    /// The RFC 6962 definition, straight from the recursion, for cross-checking.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let (k, _) = split_point(n as u64);
                let k = k as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn tree_hash_matches_definition_and_proofs_verify() {
        let (s, leaves) = storage(70);
        for size in 0..=70u64 {
            let root = tree_hash(size, &s).unwrap();
            assert_eq!(root, reference_root(&leaves[..size as usize]));
            for i in 0..size {
                let p = prove_inclusion(size, i, &s).unwrap();
                verify_inclusion(&p, size, &root, i, &leaves[i as usize]).unwrap();
            }
            for old in 0..=size {
                let p = prove_consistency(size, old, &s).unwrap();
                let old_root = tree_hash(old, &s).unwrap();
                verify_consistency(&p, size, &root, old, &old_root).unwrap();
            }
        }
    }

    #[test]
    fn batch_append_equals_one_by_one() {
        let (s, leaves) = storage(37);
        let first = stored_hash_count(10) as usize;
        let mut batched = s[..first].to_vec();
        let more = append_leaves(10, &leaves[10..], &batched).unwrap();
        batched.extend(more);
        assert_eq!(batched, s);
    }

    #[test]
    fn reads_are_logarithmic() {
        struct Counting<'a>(&'a [Hash], std::cell::Cell<usize>);
        impl HashReader for Counting<'_> {
            fn read_hashes(&self, idx: &[u64]) -> Result<Vec<Hash>, MerkleError> {
                assert!(
                    idx.windows(2).all(|w| w[0] < w[1]),
                    "reads must be increasing"
                );
                self.1.set(self.1.get() + idx.len());
                self.0.read_hashes(idx)
            }
        }
        let (s, _) = storage(1000);
        let c = Counting(&s, std::cell::Cell::new(0));
        for (size, i) in [(1000u64, 0u64), (1000, 999), (999, 513), (777, 1)] {
            c.1.set(0);
            prove_inclusion(size, i, &c).unwrap();
            assert!(c.1.get() <= 2 * 10, "inclusion read {} hashes", c.1.get());
            c.1.set(0);
            prove_consistency(size, i + 1, &c).unwrap();
            assert!(
                c.1.get() <= 2 * 10 + 1,
                "consistency read {} hashes",
                c.1.get()
            );
        }
    }

    #[test]
    fn bad_arguments() {
        let (s, _) = storage(8);
        assert!(matches!(
            prove_inclusion(8, 8, &s),
            Err(MerkleError::IndexNotInTree { .. })
        ));
        assert!(matches!(
            prove_consistency(4, 5, &s),
            Err(MerkleError::BadSizes { .. })
        ));
        assert!(matches!(
            tree_hash(9, &s),
            Err(MerkleError::OutOfRange { .. })
        ));
        let root = tree_hash(8, &s).unwrap();
        assert!(verify_consistency(&[], 8, &root, 0, &root).is_err());
        verify_consistency(&[], 8, &root, 0, &EMPTY_ROOT).unwrap();
        assert!(verify_inclusion(&[root; 65], 8, &root, 0, &root).is_err());
        // Absurd sizes from the network are errors, never arithmetic overflow.
        for size in [MAX_TREE_SIZE + 1, u64::MAX] {
            assert_eq!(tree_hash(size, &s), Err(MerkleError::TooLarge(size)));
            assert!(prove_inclusion(size, 3, &s).is_err());
            assert!(prove_consistency(size, 3, &s).is_err());
            assert!(verify_inclusion(&[root], size, &root, 3, &root).is_err());
            assert!(verify_consistency(&[root], size, &root, 3, &root).is_err());
        }
        assert_eq!(stored_hash_count(u64::MAX), u64::MAX);
        assert!(stored_hashes_for_leaf(u64::MAX, root, &s).is_err());
        // The largest accepted size still computes without overflow (and fails on storage).
        assert!(matches!(
            prove_inclusion(MAX_TREE_SIZE, MAX_TREE_SIZE - 1, &s),
            Err(MerkleError::OutOfRange { .. })
        ));
    }
}
