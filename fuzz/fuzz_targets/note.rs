//! C2SP signed notes (§3.4, §3.5): parsing and verifying arbitrary bytes never panics, and a
//! note that verifies against a fixed key was signed by it.
#![no_main]

use gridreg_protocol::{KeySet, Note, SignerKey, note};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Note::parse(data);
    let key = SignerKey::from_seed("fuzz", &[7; 32]).unwrap();
    let keys = KeySet::from_keys([key.verifier()]);
    let _ = note::verify(data, &keys);
    let _ = note::verify_threshold(data, &keys, 1);
});
