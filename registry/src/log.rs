//! Bridges the async [`Store`] to the protocol crate's synchronous Merkle functions.
//!
//! The Merkle functions ask for stored hashes by index, and which indexes they ask for depends
//! only on tree sizes, never on hash values. So each computation runs twice: a dry run against a
//! reader that records the indexes (answering zeros), one batched store read, then the real run
//! against the hashes read. This keeps the tree on disk without holding it in memory.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

use gridreg_protocol::merkle::{self, MerkleError};
use gridreg_protocol::{Hash, HashReader};

use crate::store::{Store, StoreError};

/// A Merkle computation over the stored log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The question itself is wrong (an index outside the tree, sizes out of order).
    #[error("{0}")]
    Merkle(#[from] MerkleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records the stored indexes a computation asks for below `base_len`; at or above it, answers
/// from `new` (hashes computed in this batch but not yet stored).
struct Recorder<'a> {
    base_len: u64,
    new: &'a [Hash],
    wanted: RefCell<BTreeSet<u64>>,
}

impl HashReader for Recorder<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        let mut wanted = self.wanted.borrow_mut();
        indexes
            .iter()
            .map(|&i| {
                if i < self.base_len {
                    wanted.insert(i);
                    Ok([0u8; 32])
                } else {
                    new_hash(self.new, self.base_len, i)
                }
            })
            .collect()
    }
}

fn new_hash(new: &[Hash], base_len: u64, i: u64) -> Result<Hash, MerkleError> {
    usize::try_from(i - base_len)
        .ok()
        .and_then(|k| new.get(k))
        .copied()
        .ok_or(MerkleError::OutOfRange {
            index: i,
            len: base_len + new.len() as u64,
        })
}

struct Fetched<'a> {
    base_len: u64,
    new: &'a [Hash],
    hashes: HashMap<u64, Hash>,
}

impl HashReader for Fetched<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, MerkleError> {
        indexes
            .iter()
            .map(|&i| {
                if i < self.base_len {
                    self.hashes
                        .get(&i)
                        .copied()
                        .ok_or(MerkleError::Storage(format!(
                            "stored hash {i} was not fetched"
                        )))
                } else {
                    new_hash(self.new, self.base_len, i)
                }
            })
            .collect()
    }
}

/// Runs `f` over the stored hashes of a tree whose stored-hash array is the `base_len` hashes in
/// the store followed by `new`.
pub async fn with_hashes<T>(
    store: &Store,
    base_len: u64,
    new: &[Hash],
    f: impl Fn(&dyn HashReader) -> Result<T, MerkleError>,
) -> Result<T, LogError> {
    let recorder = Recorder {
        base_len,
        new,
        wanted: RefCell::new(BTreeSet::new()),
    };
    f(&recorder)?;
    let wanted: Vec<u64> = recorder.wanted.into_inner().into_iter().collect();
    let read = store.read_hashes(wanted.clone()).await?;
    let fetched = Fetched {
        base_len,
        new,
        hashes: wanted.into_iter().zip(read).collect(),
    };
    Ok(f(&fetched)?)
}

/// Inclusion proof of leaf `index` in the stored tree of `size` leaves.
pub async fn inclusion_proof(store: &Store, size: u64, index: u64) -> Result<Vec<Hash>, LogError> {
    let base = merkle::stored_hash_count(size);
    with_hashes(store, base, &[], |r| {
        merkle::prove_inclusion(size, index, r)
    })
    .await
}

/// Consistency proof from tree size `from` to `to` over the stored tree.
pub async fn consistency_proof(store: &Store, from: u64, to: u64) -> Result<Vec<Hash>, LogError> {
    let base = merkle::stored_hash_count(to);
    with_hashes(store, base, &[], |r| merkle::prove_consistency(to, from, r)).await
}
