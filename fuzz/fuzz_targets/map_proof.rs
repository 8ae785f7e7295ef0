//! Head-map proofs (§6.8.5, §6.8.6): decoding arbitrary bytes and verifying what decodes against
//! arbitrary roots never panics, and a decoded proof encodes back to the same bytes.
#![no_main]

use gridreg_protocol::map::MapProof;
use gridreg_protocol::{ChainKey, PackageName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = MapProof::decode(data) else {
        return;
    };
    assert_eq!(
        proof.encode(),
        data,
        "a decoded proof encoded back differently"
    );
    let chain = ChainKey::Package(PackageName::parse("acme:fuzz").unwrap());
    let root = [data.len() as u8; 32];
    let _ = proof.verify_head(&root, &chain);
});
