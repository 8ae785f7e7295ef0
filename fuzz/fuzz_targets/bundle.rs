//! Package and namespace bundles (§8.6) as a hostile registry would serve them: any JSON is
//! refused or verified against a fixed log key, never a panic; also continued from a head inside
//! the bundle itself (§8.6.5), for the walk's stops.
#![no_main]

use gridreg_protocol::bundle::{
    Bundle, Held, NamespaceBundle, verify_bundle, verify_bundle_after, verify_namespace_bundle,
};
use gridreg_protocol::{Checkpoint, Head, Namespace, Note, PackageName, SignerKey};
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
        let package = PackageName::parse("acme:fuzz").unwrap();
        let _ = verify_bundle(&b, &cp, &log, &package);
        let head_at = |e: Option<&gridreg_protocol::bundle::Entry>| {
            e.map(|e| Head::of(e.index, e.body.as_bytes()))
        };
        let held = Held {
            package: package.clone(),
            checkpoint_size: cp.size.saturating_sub(1),
            package_head: head_at(b.package.records.get(1)),
            namespace_head: head_at(b.namespace.records.last()),
            entries: Vec::new(),
        };
        let _ = verify_bundle_after(&b, &cp, &log, &package, &held, &|_| None);
    }
    if let Ok(b) = serde_json::from_slice::<NamespaceBundle>(data)
        && let Some(cp) = checkpoint_of(&b.checkpoint)
    {
        let _ = verify_namespace_bundle(&b, &cp, &log, &Namespace::parse("acme").unwrap());
    }
});
