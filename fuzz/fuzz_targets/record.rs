//! Record bodies (docs/protocol.md §4): parsing never panics, and what parses prints back to the
//! same bytes (canonical form); a release's OCI manifest and config are valid JSON.
#![no_main]

use gridreg_protocol::Record;
use gridreg_protocol::oci::{WasmKind, release_artifact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(record) = Record::parse(text) else {
        return;
    };
    assert_eq!(
        record.to_body(),
        text,
        "a parsed record printed back differently"
    );
    if let Record::Release(r) = &record {
        for kind in [WasmKind::Component, WasmKind::Module] {
            let a = release_artifact(r, Some("fuzz"), kind);
            serde_json::from_slice::<serde_json::Value>(&a.manifest.bytes).unwrap();
            serde_json::from_slice::<serde_json::Value>(&a.config.bytes).unwrap();
        }
    }
});
