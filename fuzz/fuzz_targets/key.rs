//! Verifier keys, signer keys and key files (§3.2, §3.3): no input panics, and a verifier key
//! that parses prints back to the same text.
#![no_main]

use gridreg_protocol::{SignerKey, VerifierKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(k) = VerifierKey::parse(text) {
        assert_eq!(k.to_string(), text);
    }
    let _ = SignerKey::parse(text);
    let _ = SignerKey::parse_key_file(text);
});
