//! Reading a log through its C2SP tlog-tiles only (docs/protocol.md §7.12), as
//! `gridreg log monitor --tiles` does: every entry bundle is checked against its level-0 tile,
//! every upper tile against the tree computed from the leaves; the caller (`log monitor`)
//! then checks the root of those leaves against the signed checkpoint. Nothing here trusts the JSON API.

use anyhow::Context as _;
use gridreg_protocol::api::LogEntry;
use gridreg_protocol::merkle::{Hash, append_leaves};
use gridreg_protocol::tiles::{
    MAX_ENTRY_LEN, TILE_WIDTH, Tile, TileKind, check_hash_tile, check_leaf_tile, decode_bundle,
    decode_hashes, entry_bundles, hash_tiles,
};

use super::http::Api;
use crate::exit::Failure;

/// What reading the tiles of a tree gave.
pub struct TiledLog {
    pub entries: Vec<LogEntry>,
    /// Tiles and bundles fetched and checked.
    pub fetched: usize,
}

/// Reads the first `size` entries of the log at `api` through tiles, checking every tile.
pub fn read(api: &Api, size: u64) -> anyhow::Result<TiledLog> {
    let mut entries = Vec::new();
    let mut leaves: Vec<Hash> = Vec::new();
    let mut fetched = 0usize;
    let bundle_max = TILE_WIDTH * (2 + MAX_ENTRY_LEN as u64);
    for bundle in entry_bundles(size) {
        let bytes = api.get_bytes(&format!("/{}", bundle.path()), bundle_max)?;
        let items = decode_bundle(&bundle, &bytes).map_err(|e| Failure(e.to_string()))?;
        let level0 = Tile {
            kind: TileKind::Hashes { level: 0 },
            ..bundle
        };
        let hashes = fetch_hashes(api, &level0)?;
        check_leaf_tile(&level0, &hashes, &items).map_err(|e| Failure(e.to_string()))?;
        fetched += 2;
        for (index, item) in bundle.positions().zip(items) {
            let body = String::from_utf8(item.to_vec())
                .map_err(|_| Failure(format!("log entry {index} (in {bundle}) is not UTF-8")))?;
            entries.push(LogEntry { index, body });
        }
        leaves.extend(hashes);
    }
    let stored = append_leaves(0, &leaves, &Vec::<Hash>::new())
        .map_err(|e| anyhow::anyhow!("building the tree from the tiles' leaves: {e}"))?;
    for tile in hash_tiles(size)
        .into_iter()
        .filter(|t| t.kind != TileKind::Hashes { level: 0 })
    {
        let hashes = fetch_hashes(api, &tile)?;
        check_hash_tile(&tile, &hashes, &stored).map_err(|e| Failure(e.to_string()))?;
        fetched += 1;
    }
    Ok(TiledLog { entries, fetched })
}

fn fetch_hashes(api: &Api, tile: &Tile) -> anyhow::Result<Vec<Hash>> {
    let bytes = api
        .get_bytes(&format!("/{}", tile.path()), 32 * TILE_WIDTH)
        .with_context(|| format!("reading {tile}"))?;
    Ok(decode_hashes(tile, &bytes).map_err(|e| Failure(e.to_string()))?)
}
