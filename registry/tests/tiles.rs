//! C2SP tlog-tiles over the registry's store (docs/protocol.md §7.12): a client that reads only
//! tiles recomputes the root of every checkpoint and checks every entry; partial tiles grow into
//! full ones with the same first hashes; bad paths, ranges beyond the log and oversized entries
//! are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Backend, claim, claim_until, harness, harness_on, key};
use gridreg_protocol::merkle::{Hash, append_leaves, leaf_hash, tree_hash};
use gridreg_protocol::tiles::{
    Tile, TileKind, check_hash_tile, check_leaf_tile, decode_bundle, decode_hashes, entry_bundles,
    hash_tiles,
};
use gridreg_protocol::{SignedCheckpoint, VerifierKey};

/// Reads the whole log through tiles only, checking each against the others; returns the
/// verified checkpoint and the bytes of every tile read, by path.
async fn read_through_tiles(
    h: &common::Harness,
) -> (
    SignedCheckpoint,
    std::collections::BTreeMap<String, Vec<u8>>,
) {
    let key = VerifierKey::parse(h.get("/v1/log/key").await.text().trim()).unwrap();
    let r = h.get("/checkpoint").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["cache-control"], "public, max-age=1");
    let cp = SignedCheckpoint::verify(&r.body, key.name(), &key).unwrap();
    let size = cp.size();
    let mut read = std::collections::BTreeMap::new();
    let mut leaves: Vec<Hash> = Vec::new();
    for bundle in entry_bundles(size) {
        let b = h.get(&format!("/{}", bundle.path())).await;
        assert_eq!(b.status, StatusCode::OK, "{bundle}");
        assert_eq!(b.headers["content-type"], "application/octet-stream");
        assert_eq!(
            b.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let entries = decode_bundle(&bundle, &b.body).unwrap();
        let level0 = Tile {
            kind: TileKind::Hashes { level: 0 },
            ..bundle
        };
        let t = h.get(&format!("/{}", level0.path())).await;
        assert_eq!(t.status, StatusCode::OK, "{level0}");
        let hashes = decode_hashes(&level0, &t.body).unwrap();
        check_leaf_tile(&level0, &hashes, &entries).unwrap();
        leaves.extend(entries.iter().map(|e| leaf_hash(e)));
        read.insert(bundle.path(), b.body.clone());
        read.insert(level0.path(), t.body.clone());
    }
    let stored = append_leaves(0, &leaves, &Vec::<Hash>::new()).unwrap();
    assert_eq!(&tree_hash(size, &stored).unwrap(), cp.root());
    for tile in hash_tiles(size)
        .into_iter()
        .filter(|t| t.kind != TileKind::Hashes { level: 0 })
    {
        let t = h.get(&format!("/{}", tile.path())).await;
        assert_eq!(t.status, StatusCode::OK, "{tile}");
        let hashes = decode_hashes(&tile, &t.body).unwrap();
        check_hash_tile(&tile, &hashes, &stored).unwrap();
        read.insert(tile.path(), t.body.clone());
    }
    (cp, read)
}

backend_tests!(tiles_give_the_log_and_partial_tiles_grow_into_full_ones);

async fn tiles_give_the_log_and_partial_tiles_grow_into_full_ones(backend: Backend) {
    let h = harness_on(backend).await;
    claim_until(&h, 40).await;
    let (small, early) = read_through_tiles(&h).await;
    assert!(small.size() < 256);
    let partial = format!("tile/0/000.p/{}", small.size());
    assert!(early.contains_key(&partial), "{early:?}");
    // The full tile does not exist yet.
    h.get("/tile/0/000")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    claim_until(&h, 300).await;
    let (big, late) = read_through_tiles(&h).await;
    assert!(big.size() >= 300);
    // The full tile begins with the partial one's hashes, and the partial one is still served
    // exactly as before (a client that verified the earlier checkpoint may still fetch it).
    let full = &late["tile/0/000"];
    assert_eq!(full.len(), 256 * 32);
    assert_eq!(&full[..early[&partial].len()], early[&partial].as_slice());
    // Full tiles are kept in memory after their first read; a second read gives the same bytes
    // with the same headers.
    for path in ["tile/0/000", "tile/entries/000"] {
        let r = h.get(&format!("/{path}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, late[path], "{path}");
        assert_eq!(
            r.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert_eq!(r.headers["content-type"], "application/octet-stream");
    }
    let again = h.get(&format!("/{partial}")).await;
    assert_eq!(again.body, early[&partial]);
    let bundle = format!("tile/entries/000.p/{}", small.size());
    assert_eq!(h.get(&format!("/{bundle}")).await.body, early[&bundle]);
    // Level 1 has a partial tile of width 1: the hash of the full level-0 tile.
    assert!(late.contains_key("tile/1/000.p/1"), "{:?}", late.keys());
    // /checkpoint is /v1/log/checkpoint.
    let v1 = h.get("/v1/log/checkpoint").await.text();
    assert_eq!(
        common::log_signed(&v1),
        common::log_signed(&h.get("/checkpoint").await.text())
    );
}

#[tokio::test]
async fn bad_tile_paths_and_ranges_beyond_the_log_are_refused() {
    let h = harness().await;
    let alice = key("alice");
    assert_eq!(
        h.post_record(&claim(&h.app, &alice, "acme").await)
            .await
            .status,
        StatusCode::OK
    );
    for bad in [
        "/tile/0/1",
        "/tile/00/000",
        "/tile/64/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/0/x000/001",
        "/tile/entries/000.p/01",
        "/tile/0/..%2f..%2fregistry.db",
        "/tile/entries/x18446744073709551615/000",
    ] {
        h.get(bad)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "bad_request");
    }
    for beyond in [
        "/tile/0/000.p/3",
        "/tile/0/001.p/1",
        "/tile/1/000.p/1",
        "/tile/entries/000.p/3",
        "/tile/63/x018/x446/x744/x073/x709/x551/615.p/255",
    ] {
        h.get(beyond)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(h.get("/tile/0/000.p/2").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_record_larger_than_a_bundle_entry_is_refused_413() {
    let h = harness().await;
    let before = h.snapshot().await;
    let r = h.post_record(&"a".repeat(65_536)).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert!(r.text().contains("65535"), "{}", r.text());
    assert_eq!(h.snapshot().await, before);
}
