//! Policy files (`policies/*.toml`): any text is a policy or an error, never a panic.
#![no_main]

use gridreg_verifier::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::parse(text, "fuzz.toml");
    }
});
