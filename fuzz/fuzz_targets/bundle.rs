//! Package and namespace bundles (§8.6) as a hostile registry would serve them: any JSON is
//! refused or verified against a fixed log key, never a panic.
#![no_main]

use gridreg_protocol::bundle::{Bundle, NamespaceBundle, verify_bundle, verify_namespace_bundle};
use gridreg_protocol::{Checkpoint, Namespace, Note, PackageName, SignerKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SignerKey::from_seed("log.fuzz", &[9; 32]).unwrap();
    let log = key.verifier();
    let checkpoint_of = |text: &str| {
        Note::parse(text.as_bytes())
            .ok()
            .and_then(|n| Checkpoint::parse_body(&n.text).ok())
    };
    if let Ok(b) = serde_json::from_slice::<Bundle>(data)
        && let Some(cp) = checkpoint_of(&b.checkpoint)
    {
        let _ = verify_bundle(&b, &cp, &log, &PackageName::parse("acme:fuzz").unwrap());
    }
    if let Ok(b) = serde_json::from_slice::<NamespaceBundle>(data)
        && let Some(cp) = checkpoint_of(&b.checkpoint)
    {
        let _ = verify_namespace_bundle(&b, &cp, &log, &Namespace::parse("acme").unwrap());
    }
});
