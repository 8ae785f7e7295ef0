//! The audit of a component or core module (`gridreg verify`, the registry's publish check):
//! any bytes give an audit or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gridreg_verifier::audit(data);
});
