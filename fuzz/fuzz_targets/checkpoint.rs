//! Checkpoints (§6.6): a body parses or not without panicking, parses back from its printed
//! form, and a signed note is verified against a fixed log key without panicking.
#![no_main]

use gridreg_protocol::{Checkpoint, SignedCheckpoint, SignerKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = Checkpoint::parse_body(text)
    {
        assert_eq!(Checkpoint::parse_body(&c.to_body()).unwrap(), c);
    }
    let key = SignerKey::from_seed("log.fuzz", &[9; 32]).unwrap();
    let _ = SignedCheckpoint::verify(data, "log.fuzz", &key.verifier());
});
