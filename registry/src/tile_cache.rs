//! Full tiles kept in memory within a byte budget. A full tile (256 hashes or 256 entries) never
//! changes once the log holds it, so a copy can be served as long as it is kept; the newest
//! tiles, which tile clients read most, stay in and the oldest go first. Partial tiles are not
//! kept: each is read once or twice before the log grows past it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::body::Bytes;

/// The default budget: 4,096 full level-0 hash tiles (8 KiB each), or fewer entry bundles.
pub const DEFAULT_TILE_CACHE: usize = 32 << 20;

/// A tile larger than this share of the budget is served but not kept, so one large entry
/// bundle cannot push out hundreds of hash tiles.
const MAX_SHARE: usize = 16;

/// Tiles by their path (`tile/0/x001/234`), oldest insertion evicted first.
#[derive(Debug)]
pub struct TileCache {
    budget: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    used: usize,
    tiles: HashMap<String, Bytes>,
    order: VecDeque<String>,
}

impl TileCache {
    /// A cache holding at most `budget` bytes of tiles; 0 keeps nothing.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            inner: Mutex::default(),
        }
    }

    pub fn get(&self, path: &str) -> Option<Bytes> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.tiles.get(path).cloned()
    }

    /// Keeps `bytes` as the tile at `path`, evicting the oldest tiles to stay within the budget.
    pub fn insert(&self, path: &str, bytes: Bytes) {
        if bytes.is_empty() || bytes.len() > self.budget / MAX_SHARE {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.tiles.contains_key(path) {
            return;
        }
        while inner.used + bytes.len() > self.budget {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.tiles.remove(&old) {
                inner.used -= b.len();
            }
        }
        inner.used += bytes.len();
        inner.order.push_back(path.to_string());
        inner.tiles.insert(path.to_string(), bytes);
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).used
    }
}

impl Default for TileCache {
    fn default() -> Self {
        Self::new(DEFAULT_TILE_CACHE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_within_the_budget_oldest_out_first() {
        let cache = TileCache::new(64 << 10);
        let tile = |n: u8| Bytes::from(vec![n; 4 << 10]);
        for n in 0..20u8 {
            cache.insert(&format!("tile/0/{n:03}"), tile(n));
            assert!(cache.used() <= 64 << 10);
        }
        // 16 of 4 KiB fit: the first four went.
        for n in 0..4u8 {
            assert!(cache.get(&format!("tile/0/{n:03}")).is_none(), "{n}");
        }
        for n in 4..20u8 {
            assert_eq!(cache.get(&format!("tile/0/{n:03}")), Some(tile(n)), "{n}");
        }
        assert_eq!(cache.used(), 64 << 10);
    }

    #[test]
    fn a_large_tile_is_not_kept_and_pushes_nothing_out() {
        let cache = TileCache::new(64 << 10);
        cache.insert("tile/0/000", Bytes::from(vec![1; 4 << 10]));
        cache.insert("tile/entries/000", Bytes::from(vec![2; (4 << 10) + 1]));
        assert!(cache.get("tile/entries/000").is_none());
        assert!(cache.get("tile/0/000").is_some());
        // A second insert under one path keeps the first copy and counts it once.
        cache.insert("tile/0/000", Bytes::from(vec![3; 4 << 10]));
        assert_eq!(cache.get("tile/0/000").map(|b| b[0]), Some(1));
        assert_eq!(cache.used(), 4 << 10);
    }

    #[test]
    fn a_zero_budget_keeps_nothing() {
        let cache = TileCache::new(0);
        cache.insert("tile/0/000", Bytes::from_static(b"x"));
        assert!(cache.get("tile/0/000").is_none());
        assert_eq!(cache.used(), 0);
    }
}
