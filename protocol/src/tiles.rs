//! C2SP tlog-tiles: the log as static resources (docs/protocol.md §7.12).
//!
//! A *tile* at level `L` and index `N` holds up to 256 consecutive Merkle tree hashes at tree
//! level `8 L`: hash `i` is the hash of the subtree over leaves
//! `(N * 256 + i) * 256^L .. (N * 256 + i + 1) * 256^L`. A full tile has 256 hashes; the
//! rightmost tiles of a tree are *partial*, with `W` of them (`1..=255`), named with a `.p/W`
//! suffix. The *entry bundle* `N` holds the log entries of the level-0 tile `N`, each preceded by
//! its length as a big-endian `u16`; so a log entry is at most [`MAX_ENTRY_LEN`] bytes.
//!
//! This module is the pure part: paths (print and parse), which tiles a tree of a given size
//! has, which stored hashes a tile is made of (the registry reads them with
//! [`crate::merkle::stored_hash_index`]), bundle encoding, and the checks a tile client makes.

use std::fmt;

use crate::merkle::{Hash, HashReader, MAX_TREE_SIZE, leaf_hash, stored_hash_index};

/// Tree levels spanned by one tile.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in a full tile (and entries in a full bundle).
pub const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;
/// The highest tile level a path may name.
pub const MAX_LEVEL: u8 = 63;
/// Largest log entry: entry bundles prefix each entry with a `u16` length.
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;

/// Why a tile path, a tile or a bundle was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("expected a tile path tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>], found `{0}`")]
    BadPath(String),
    #[error("tile {tile}: expected {expected} bytes, found {found}")]
    Length {
        tile: String,
        expected: usize,
        found: usize,
    },
    #[error("entry bundle {tile}: {reason}")]
    Bundle { tile: String, reason: String },
    #[error("tile {tile}: hash {position} is not the one computed from the entries below it")]
    Mismatch { tile: String, position: u64 },
    #[error("a log entry of {0} bytes is larger than the {MAX_ENTRY_LEN} bytes a bundle can hold")]
    EntryTooLarge(usize),
    #[error("reading hashes: {0}")]
    Hashes(String),
}

/// Hash tiles, or entry bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// Merkle tree hashes at tree level `8 * level`.
    Hashes { level: u8 },
    /// Log entries (the bundle beside level-0 tile of the same index).
    Entries,
}

/// One tile or entry bundle: which one, and how many hashes or entries it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tile {
    pub kind: TileKind,
    pub index: u64,
    /// `1..=256`; 256 is a full tile.
    pub width: u16,
}

impl Tile {
    pub fn is_full(&self) -> bool {
        u64::from(self.width) == TILE_WIDTH
    }

    /// The tree level of the hashes in a hash tile (0 for bundles, whose entries hash to level 0).
    pub fn tree_level(&self) -> u32 {
        match self.kind {
            TileKind::Hashes { level } => u32::from(level) * TILE_HEIGHT,
            TileKind::Entries => 0,
        }
    }

    /// The path below the log's prefix: `tile/0/x001/234`, `tile/entries/000.p/17`.
    pub fn path(&self) -> String {
        let mut p = match self.kind {
            TileKind::Hashes { level } => format!("tile/{level}/"),
            TileKind::Entries => "tile/entries/".to_string(),
        };
        p.push_str(&index_path(self.index));
        if !self.is_full() {
            p.push_str(&format!(".p/{}", self.width));
        }
        p
    }

    /// Parses a path as [`Tile::path`] prints it; every other spelling (leading zeros, a
    /// missing `x`, `.p/256`, level 64) is refused, so one tile has exactly one path.
    pub fn parse_path(path: &str) -> Result<Self, TileError> {
        let bad = || TileError::BadPath(path.chars().take(200).collect());
        let rest = path.strip_prefix("tile/").ok_or_else(bad)?;
        let (kind_part, rest) = rest.split_once('/').ok_or_else(bad)?;
        let kind = if kind_part == "entries" {
            TileKind::Entries
        } else {
            let level = canonical_decimal(kind_part).ok_or_else(bad)?;
            if level > u64::from(MAX_LEVEL) {
                return Err(bad());
            }
            TileKind::Hashes { level: level as u8 }
        };
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w = canonical_decimal(w).ok_or_else(bad)?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return Err(bad());
                }
                (i, w as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = parse_index_path(index_part).ok_or_else(bad)?;
        Ok(Self { kind, index, width })
    }

    /// Whether a tree of `size` leaves holds every hash (or entry) this tile names.
    pub fn within(&self, size: u64) -> bool {
        let level = self.tree_level();
        if level >= 64 {
            return false;
        }
        let complete = size >> level;
        self.index
            .checked_mul(TILE_WIDTH)
            .and_then(|first| first.checked_add(u64::from(self.width)))
            .is_some_and(|end| end <= complete)
    }

    /// The positions (at the tile's tree level) of the hashes or entries it holds.
    pub fn positions(&self) -> std::ops::Range<u64> {
        let first = self.index.saturating_mul(TILE_WIDTH);
        first..first.saturating_add(u64::from(self.width))
    }

    /// The stored-hash indexes ([`stored_hash_index`]) of a hash tile's hashes, in order.
    pub fn stored_indexes(&self) -> Vec<u64> {
        let level = self.tree_level();
        self.positions()
            .map(|n| stored_hash_index(level, n))
            .collect()
    }

    /// Whether `self` holds the first hashes of `full` (a partial tile that grew into it).
    pub fn is_prefix_of(&self, full: &Tile) -> bool {
        self.kind == full.kind && self.index == full.index && self.width <= full.width
    }
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `1234067` → `x001/x234/067`: three-digit groups, all but the last prefixed with `x`.
fn index_path(index: u64) -> String {
    let mut groups = vec![index % 1000];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(rest % 1000);
        rest /= 1000;
    }
    let mut out = String::new();
    for (i, g) in groups.iter().rev().enumerate() {
        if i > 0 {
            out.push('/');
        }
        if i + 1 < groups.len() {
            out.push('x');
        }
        out.push_str(&format!("{g:03}"));
    }
    out
}

fn parse_index_path(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() > 7 {
        return None;
    }
    let mut n: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        let digits = if i + 1 < parts.len() {
            part.strip_prefix('x')?
        } else {
            part
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n = n
            .checked_mul(1000)?
            .checked_add(digits.parse::<u64>().ok()?)?;
    }
    // One index, one path: no leading all-zero groups.
    if parts.len() > 1 && parts[0] == "x000" {
        return None;
    }
    Some(n)
}

/// A decimal with no sign and no leading zeros (`0` itself allowed), as C2SP texts write sizes.
pub(crate) fn canonical_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Every hash tile a tree of `size` leaves is served as: the full tiles and, per level, the
/// partial tile of width `floor(size / 256^L) mod 256` when that is not zero. Level by level,
/// lowest first, each in index order.
pub fn hash_tiles(size: u64) -> Vec<Tile> {
    let mut out = Vec::new();
    let size = size.min(MAX_TREE_SIZE);
    for level in 0..=MAX_LEVEL {
        let shift = u32::from(level) * TILE_HEIGHT;
        if shift >= 64 {
            break;
        }
        let count = size >> shift;
        if count == 0 {
            break;
        }
        out.extend(tiles_over(TileKind::Hashes { level }, count));
    }
    out
}

/// The entry bundles of a tree of `size` leaves, in order.
pub fn entry_bundles(size: u64) -> Vec<Tile> {
    tiles_over(TileKind::Entries, size.min(MAX_TREE_SIZE)).collect()
}

fn tiles_over(kind: TileKind, count: u64) -> impl Iterator<Item = Tile> {
    let full = count / TILE_WIDTH;
    let partial = (count % TILE_WIDTH) as u16;
    (0..full)
        .map(move |index| Tile {
            kind,
            index,
            width: TILE_WIDTH as u16,
        })
        .chain((partial > 0).then_some(Tile {
            kind,
            index: full,
            width: partial,
        }))
}

/// An entry bundle's bytes: each entry as a big-endian `u16` length, then the entry.
pub fn encode_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLarge(e.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entry bundle into exactly `tile.width` entries; anything else (short, trailing
/// bytes, another count) is refused.
pub fn decode_bundle<'a>(tile: &Tile, bytes: &'a [u8]) -> Result<Vec<&'a [u8]>, TileError> {
    let err = |reason: String| TileError::Bundle {
        tile: tile.path(),
        reason,
    };
    let want = usize::from(tile.width);
    let mut out = Vec::with_capacity(want);
    let mut rest = bytes;
    while !rest.is_empty() {
        if out.len() == want {
            return Err(err(format!(
                "expected {want} entries, found {} more bytes after them",
                rest.len()
            )));
        }
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            return Err(err("a length prefix is cut short".into()));
        };
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return Err(err(format!(
                "entry {} says {len} bytes, only {} follow",
                out.len(),
                tail.len()
            )));
        }
        let (entry, tail) = tail.split_at(len);
        out.push(entry);
        rest = tail;
    }
    if out.len() != want {
        return Err(err(format!("expected {want} entries, found {}", out.len())));
    }
    Ok(out)
}

/// Splits a hash tile into its hashes, checking it is exactly `32 * width` bytes.
pub fn decode_hashes(tile: &Tile, bytes: &[u8]) -> Result<Vec<Hash>, TileError> {
    let expected = 32 * usize::from(tile.width);
    if bytes.len() != expected {
        return Err(TileError::Length {
            tile: tile.path(),
            expected,
            found: bytes.len(),
        });
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Checks a level-0 tile against the entries of the bundle of the same index: each tile hash
/// must be the leaf hash of the entry at its position.
pub fn check_leaf_tile(tile: &Tile, hashes: &[Hash], entries: &[&[u8]]) -> Result<(), TileError> {
    if hashes.len() != entries.len() {
        return Err(TileError::Length {
            tile: tile.path(),
            expected: entries.len() * 32,
            found: hashes.len() * 32,
        });
    }
    for (i, (h, e)) in hashes.iter().zip(entries).enumerate() {
        if *h != leaf_hash(e) {
            return Err(TileError::Mismatch {
                tile: tile.path(),
                position: tile.positions().start + i as u64,
            });
        }
    }
    Ok(())
}

/// Checks a hash tile against the tree a client computed itself (`stored`, the stored-hash
/// array of the leaves it read): every hash must be the subtree hash at its position.
pub fn check_hash_tile<R: HashReader + ?Sized>(
    tile: &Tile,
    hashes: &[Hash],
    stored: &R,
) -> Result<(), TileError> {
    let want = stored
        .read_hashes(&tile.stored_indexes())
        .map_err(|e| TileError::Hashes(e.to_string()))?;
    if want.len() != hashes.len() {
        return Err(TileError::Length {
            tile: tile.path(),
            expected: want.len() * 32,
            found: hashes.len() * 32,
        });
    }
    if let Some(i) = want.iter().zip(hashes).position(|(a, b)| a != b) {
        return Err(TileError::Mismatch {
            tile: tile.path(),
            position: tile.positions().start + i as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::merkle::{append_leaves, node_hash, tree_hash};

    fn hashes(level: u8, index: u64, width: u16) -> Tile {
        Tile {
            kind: TileKind::Hashes { level },
            index,
            width,
        }
    }

    #[test]
    fn paths_follow_the_spec_example_and_round_trip() {
        assert_eq!(hashes(0, 1_234_067, 256).path(), "tile/0/x001/x234/067");
        assert_eq!(hashes(2, 5, 17).path(), "tile/2/005.p/17");
        let bundle = Tile {
            kind: TileKind::Entries,
            index: 1000,
            width: 256,
        };
        assert_eq!(bundle.path(), "tile/entries/x001/000");
        for t in [
            hashes(0, 0, 1),
            hashes(63, u64::MAX, 255),
            hashes(1, 999, 256),
            bundle,
        ] {
            assert_eq!(Tile::parse_path(&t.path()).unwrap(), t, "{t}");
        }
    }

    #[test]
    fn every_other_spelling_is_refused() {
        for bad in [
            "tile/0/1",
            "tile/0/0001",
            "tile/00/001",
            "tile/64/000",
            "tile/0/001/002",
            "tile/0/x000/002",
            "tile/0/x001/x002",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/07",
            "tile/0/000.p/",
            "tile/entries/",
            "tile/entries/../000",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/-1/000",
            "tile/0/+01",
            "tiles/0/000",
            "tile/0/x999/x999/x999/x999/x999/x999/999",
        ] {
            assert!(Tile::parse_path(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn the_spec_example_of_size_70000() {
        let tiles = hash_tiles(70_000);
        let full0 = tiles
            .iter()
            .filter(|t| t.kind == TileKind::Hashes { level: 0 } && t.is_full())
            .count();
        assert_eq!(full0, 273);
        let partial: Vec<_> = tiles.iter().filter(|t| !t.is_full()).collect();
        assert_eq!(
            partial,
            [&hashes(0, 273, 112), &hashes(1, 1, 17), &hashes(2, 0, 1)]
        );
        assert!(tiles.contains(&hashes(1, 0, 256)));
        assert_eq!(tiles.len(), 273 + 1 + 1 + 1 + 1);
        // A tree of 256: one full level-0 tile and a level-1 tile of width 1.
        assert_eq!(hash_tiles(256), [hashes(0, 0, 256), hashes(1, 0, 1)]);
        assert!(hash_tiles(0).is_empty());
        for t in tiles {
            assert!(t.within(70_000), "{t}");
        }
        assert!(!hashes(0, 273, 113).within(70_000));
        assert!(!hashes(2, 0, 2).within(70_000));
        assert!(!hashes(63, u64::MAX, 255).within(u64::MAX));
    }

    #[test]
    fn upper_tiles_are_hashes_of_full_tiles_below() {
        let leaves: Vec<Hash> = (0..600u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let stored = append_leaves(0, &leaves, &Vec::<Hash>::new()).unwrap();
        let tile0: Vec<Hash> = stored
            .read_hashes(&hashes(0, 1, 256).stored_indexes())
            .unwrap();
        assert_eq!(tile0, leaves[256..512]);
        // Level 1, hash 1 = the tree hash of level-0 tile 1.
        let mut level: Vec<Hash> = tile0.clone();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        let up = stored
            .read_hashes(&hashes(1, 0, 2).stored_indexes())
            .unwrap();
        assert_eq!(up[1], level[0]);
        assert!(check_hash_tile(&hashes(1, 0, 2), &up, &stored).is_ok());
        let mut forged = up.clone();
        forged[0][0] ^= 1;
        assert_eq!(
            check_hash_tile(&hashes(1, 0, 2), &forged, &stored),
            Err(TileError::Mismatch {
                tile: "tile/1/000.p/2".into(),
                position: 0
            })
        );
        assert!(tree_hash(600, &stored).is_ok());
    }

    #[test]
    fn bundles_round_trip_and_refuse_tricks() {
        let entries: Vec<Vec<u8>> = (0..3).map(|i| vec![b'a' + i; 10 * i as usize]).collect();
        let tile = Tile {
            kind: TileKind::Entries,
            index: 0,
            width: 3,
        };
        let bytes = encode_bundle(entries.iter().map(Vec::as_slice)).unwrap();
        let back = decode_bundle(&tile, &bytes).unwrap();
        assert_eq!(back, entries.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let hashes: Vec<Hash> = back.iter().map(|e| leaf_hash(e)).collect();
        assert!(check_leaf_tile(&tile, &hashes, &back).is_ok());
        assert!(check_leaf_tile(&tile, &hashes[..2], &back).is_err());
        // Short, long, truncated, another count.
        assert!(decode_bundle(&tile, &bytes[..bytes.len() - 1]).is_err());
        let mut long = bytes.clone();
        long.extend_from_slice(&[0, 0]);
        assert!(decode_bundle(&tile, &long).is_err());
        assert!(decode_bundle(&tile, &bytes[..1]).is_err());
        let four = Tile { width: 4, ..tile };
        assert!(decode_bundle(&four, &bytes).is_err());
        assert_eq!(
            encode_bundle([vec![0u8; MAX_ENTRY_LEN + 1].as_slice()]),
            Err(TileError::EntryTooLarge(MAX_ENTRY_LEN + 1))
        );
        assert!(decode_hashes(&tile, &[0u8; 95]).is_err());
        assert_eq!(decode_hashes(&tile, &[7u8; 96]).unwrap().len(), 3);
    }
}
