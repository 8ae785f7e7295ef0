//! The checks `gridreg pull --verify` runs, in this order, stopping at the first failure with
//! an error that names the check. Checks 1-7 prove the package's whole state from one bundle
//! (docs/protocol.md §8.6) before a version is chosen; the version is then resolved here, from
//! proven releases minus proven yanks, never from the registry's lists.
//!
//! 1. `checkpoint`: the bundle's checkpoint is signed by the pinned log key;
//! 2. `freshness`: it carries a cosignature by the registry's timestamp key no older than the
//!    registry's `max_age` (a frozen registry or a mirror replaying an old view fails here);
//! 3. `consistency`: it is not smaller than the last checkpoint this client trusted (a rollback)
//!    and is consistent with it (a fork);
//! 4. `map`: the checkpoint's last leaf is a map entry signed by the log key;
//! 5. `head`: the map proves the heads (or the absence) of the package's chain and its
//!    namespace's chain;
//! 6. `chain`: both chains' records link by hash from those heads back to `none` (nothing left
//!    out, nothing old, nothing invented), and the release served is the one the chain holds;
//! 7. `authorisation`: replaying both chains, every record was signed by a key that held a role
//!    in the namespace at its log index;
//! 8. `signature`: the release's signers (and, when the policy has `[signers]`, enough of those
//!    keys);
//! 9. `inclusion`: the release is in the proven chain, so in the log under the map entry;
//! 10. `digest`: the bytes hash to the record's digest and have its size;
//! 11. `surface`: the record's import and export lines are the ones the client computes from the
//!     bytes;
//! 12. `policy`: the policy passes on the client's own audit, drift against the locked version
//!     included.
//!
//! Nothing the registry says is believed until one of these checks has proven it.

use std::fmt;
use std::time::{Duration, Instant};

use gridreg_protocol::api::ReleaseInfo;
use gridreg_protocol::bundle::{
    Bundle, BundleError, Held, NamespaceBundle, VerifiedNamespace, VerifiedPackage,
    VerifiedRelease, verify_bundle_after, verify_bundle_known, verify_namespace_bundle,
};

use gridreg_protocol::note::{self, KeySet};
use gridreg_protocol::{Digest, Head, Namespace, PackageName, SignedCheckpoint, VerifierKey};
use gridreg_verifier::policy::{Date, Evaluation, Subject};
use gridreg_verifier::{Audit, Policy};
use serde::de::IgnoredAny;

use super::held;
use super::http::HttpError;
use super::remote;
use super::signers::SignerCache;
use super::trust::{Outcome, Session};
use crate::exit::Failure;

/// The checks, by the name messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Checkpoint,
    Freshness,
    Consistency,
    Map,
    Head,
    Chain,
    Authorisation,
    Signature,
    Digest,
    Surface,
    Policy,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Checkpoint => "checkpoint",
            Check::Freshness => "freshness",
            Check::Consistency => "consistency",
            Check::Map => "map",
            Check::Head => "head",
            Check::Chain => "chain",
            Check::Authorisation => "authorisation",
            Check::Signature => "signature",
            Check::Digest => "digest",
            Check::Surface => "surface",
            Check::Policy => "policy",
        })
    }
}

fn failed(check: Check, message: impl fmt::Display) -> anyhow::Error {
    Failure(format!("verification failed at check `{check}`: {message}")).into()
}

/// The check a bundle failure belongs to.
fn bundle_check(e: &BundleError) -> Check {
    match e {
        BundleError::Map(_) => Check::Map,
        BundleError::Head { .. } => Check::Head,
        BundleError::Chain { .. } => Check::Chain,
        BundleError::Authorisation { .. } => Check::Authorisation,
    }
}

/// Where the client-side time went (everything except waiting on the network).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub signatures: Duration,
    pub proofs: Duration,
    pub audit: Duration,
}

/// A package's state proven as of a fresh checkpoint consistent with the trusted one (checks
/// 1-7): every release and yank, and who could publish when.
pub struct Evidence {
    pub package: VerifiedPackage,
    pub checkpoint: SignedCheckpoint,
    /// How long ago the registry's timestamp key cosigned the checkpoint.
    pub age: Duration,
    pub trust: Outcome,
    /// How many records each chain has.
    pub package_records: usize,
    pub namespace_records: usize,
    /// How many of them the registry sent this time (the rest were held).
    pub fetched_records: usize,
    /// The size of the bundle's answer.
    pub bundle_bytes: usize,
    pub timings: Timings,
}

impl Evidence {
    /// The proven release a requirement resolves to (exact: even yanked; ranges and newest:
    /// not yanked), or an error (exit 2, as for any reference that names nothing) listing what
    /// the chain holds.
    pub fn resolve(
        &self,
        reference: &gridreg_protocol::Reference,
        registry: &str,
    ) -> anyhow::Result<&VerifiedRelease> {
        if let Some(r) = self.package.resolve_reference(reference) {
            return Ok(r);
        }
        let size = self.checkpoint.size();
        if self.package.package_head.is_none() {
            anyhow::bail!(
                "the registry at {registry} has no package {} (the head map proves it absent as of log size {size})",
                reference.package
            );
        }
        anyhow::bail!(
            "no release of {} matches `{reference}` in its proven chain (as of log size {size}); released: {}",
            reference.package,
            remote::listed_versions(
                self.package
                    .releases
                    .iter()
                    .map(|r| (r.version(), r.is_yanked()))
            )
        )
    }
}

/// Fetches the bundle of `package` and runs checks 1-7 on it. A checkpoint smaller than the
/// trusted one is fetched once more (another run of this client may have moved the trusted one
/// between the fetch and the check); smaller again, it is a rollback.
///
/// When this client proved the package before (`client::held`), it asks only for the records
/// above the heads it holds and continues from them (docs/protocol.md §8.6.5); a chain that no
/// longer leads down to its held head fails the `chain` check.
pub fn evidence(session: &Session, package: &PackageName) -> anyhow::Result<Evidence> {
    let mut t = Timings::default();
    let clock = Instant::now();
    let held_path = held::path(&session.held_dir(), package);
    let mut held = held::load(&held_path, package);
    t.proofs += clock.elapsed();
    let (bundle, checkpoint, trust, age, bundle_bytes) = loop {
        let path = bundle_path(package, held.as_ref());
        let (bundle, checkpoint, trust, age, bytes) =
            fetch_checked::<Bundle>(session, &path, |b| &b.checkpoint, &mut t)?;
        // Held chains newer than this checkpoint (another run of this client moved on
        // meanwhile) cannot be continued from here: prove the whole chains instead.
        if held
            .as_ref()
            .is_some_and(|h| h.checkpoint_size > checkpoint.size())
        {
            held = None;
            continue;
        }
        break (bundle, checkpoint, trust, age, bytes);
    };
    let clock = Instant::now();
    let fetched_records = bundle.package.records.len() + bundle.namespace.records.len();
    // Continuing from held chains, the few records above them cost less to verify (one
    // signature each) than reading and rewriting the cache of verified signers for all.
    let use_cache = held.is_none() || fetched_records > SIGNER_CACHE_WORTH;
    let mut cache = if use_cache {
        SignerCache::load(session.signers_path())
    } else {
        SignerCache::default()
    };
    let known = |leaf: &gridreg_protocol::Hash| cache.get(leaf);
    let proven = match &held {
        Some(h) => verify_bundle_after(
            &bundle,
            &checkpoint.checkpoint,
            &session.log_key,
            package,
            h,
            &known,
        ),
        None => verify_bundle_known(
            &bundle,
            &checkpoint.checkpoint,
            &session.log_key,
            package,
            &known,
        ),
    }
    .map_err(|e| failed(bundle_check(&e), e))?;
    if use_cache {
        cache.extend(&proven.record_signers);
        cache.save();
    }
    let moved = held.as_ref().is_none_or(|h| {
        h.package_head != proven.held.package_head || h.namespace_head != proven.held.namespace_head
    });
    if moved {
        held::save(&held_path, &proven.held);
    }
    t.proofs += clock.elapsed();
    Ok(Evidence {
        package_records: proven.package_records,
        namespace_records: proven.namespace_records,
        fetched_records,
        bundle_bytes,
        package: proven,
        checkpoint,
        age,
        trust,
        timings: t,
    })
}

/// Above how many fetched records a pull that continues from held chains reads the cache of
/// verified signers: about what reading it costs, in signature verifications.
const SIGNER_CACHE_WORTH: usize = 32;

/// `/v1/bundles/{package}`, asking only for the records above the held heads, if any.
fn bundle_path(package: &PackageName, held: Option<&Held>) -> String {
    let mut path = format!("/v1/bundles/{package}");
    let mut sep = '?';
    if let Some(h) = held {
        for (name, head) in [
            ("package_after", h.package_head),
            ("namespace_after", h.namespace_head),
        ] {
            if let Some(head) = head {
                path.push(sep);
                path.push_str(&format!("{name}={head}"));
                sep = '&';
            }
        }
    }
    path
}

/// A namespace's whole chain proven as of a fresh, consistent checkpoint (checks 1-7 for the
/// namespace alone): `gridreg namespace show`.
pub fn namespace_evidence(
    session: &Session,
    namespace: &Namespace,
) -> anyhow::Result<(VerifiedNamespace, SignedCheckpoint)> {
    let mut t = Timings::default();
    let (bundle, checkpoint, _, _, _) = fetch_checked::<NamespaceBundle>(
        session,
        &format!("/v1/namespaces/{namespace}/bundle"),
        |b| &b.checkpoint,
        &mut t,
    )?;
    let proven =
        verify_namespace_bundle(&bundle, &checkpoint.checkpoint, &session.log_key, namespace)
            .map_err(|e| failed(bundle_check(&e), e))?;
    Ok((proven, checkpoint))
}

/// GETs a bundle at `path` and runs checks 1-3 on the checkpoint it carries, fetching once more
/// when it is older than the trusted one.
fn fetch_checked<T: serde::de::DeserializeOwned>(
    session: &Session,
    path: &str,
    checkpoint_of: impl Fn(&T) -> &str,
    t: &mut Timings,
) -> anyhow::Result<(T, SignedCheckpoint, Outcome, Duration, usize)> {
    let mut attempt = 1;
    loop {
        let (bundle, bytes): (T, usize) = session.api.get_json_sized(path).map_err(|e| {
            if e.downcast_ref::<HttpError>()
                .is_some_and(|h| h.status == Some(404) && h.code.is_none())
            {
                e.context(format!(
                    "the registry at {} serves no bundles (a gridreg registry older than map \
                     entries?); verification needs them",
                    session.api.base()
                ))
            } else {
                e
            }
        })?;
        if let Some((checkpoint, trust, age)) =
            check_checkpoint(session, checkpoint_of(&bundle), t, attempt)?
        {
            return Ok((bundle, checkpoint, trust, age, bytes));
        }
        attempt += 1;
    }
}

/// What the caller hands in for one release chosen from the evidence.
pub struct Request<'a> {
    pub evidence: &'a Evidence,
    /// The release this client resolved from the evidence.
    pub chosen: &'a VerifiedRelease,
    /// The registry's answer for that release (record, index): must be the proven one.
    pub served: &'a ReleaseInfo<IgnoredAny>,
    /// The downloaded bytes and what the download computed of them.
    pub bytes: &'a [u8],
    pub digest: Digest,
    pub policy: Option<&'a Policy>,
    /// The locked version's audit, for drift.
    pub baseline: Option<&'a Audit>,
    pub today: Date,
}

/// Everything a successful verification established.
pub struct Verified {
    pub release: gridreg_protocol::record::Release,
    pub index: u64,
    pub signers: Vec<VerifierKey>,
    pub checkpoint: SignedCheckpoint,
    pub age: Duration,
    pub trust: Outcome,
    /// The log index of the map entry the chains were proven under.
    pub map_index: u64,
    pub package_head: Option<Head>,
    pub namespace_head: Option<Head>,
    pub package_records: usize,
    pub namespace_records: usize,
    /// How many records the registry sent (the rest were held from an earlier pull).
    pub fetched_records: usize,
    /// The size of the bundle's answer.
    pub bundle_bytes: usize,
    /// The log index of this version's yank, if it was yanked (an exact or locked pull).
    pub yanked_at: Option<(u64, String)>,
    pub audit: Audit,
    pub evaluation: Option<Evaluation>,
    pub timings: Timings,
    /// The digest of the OCI manifest the registry serves for this release, re-derived from the
    /// proven record (docs/protocol.md §7.11.3): what wkg, oras and skopeo pull.
    pub oci_manifest: gridreg_protocol::Digest,
}

/// Runs checks 8-12 on one proven release and its downloaded bytes.
pub fn verify(req: &Request) -> anyhow::Result<Verified> {
    let ev = req.evidence;
    let mut t = ev.timings;
    let chosen = req.chosen;
    let release = &chosen.release;
    let name = format!("{}@{}", release.package, release.version);

    // The registry's record for the release must be the one the chain proves.
    if req.served.record != *chosen.leaf || req.served.info.log_index != chosen.index {
        return Err(failed(
            Check::Chain,
            format!(
                "the registry serves a record for {name} at log index {} that is not the one its \
                 proven chain holds at log index {}",
                req.served.info.log_index, chosen.index
            ),
        ));
    }

    // 8. signature: the proven signers; the policy may want more of its own keys.
    let clock = Instant::now();
    if let Some(policy) = req.policy
        && let Some(want) = policy.signers()
    {
        let keys = want
            .keys
            .iter()
            .filter_map(|k| VerifierKey::parse(k).ok())
            .collect::<Vec<_>>();
        let set = KeySet::from_keys(keys);
        note::verify_threshold(chosen.leaf.as_bytes(), &set, want.threshold).map_err(|e| {
            failed(
                Check::Signature,
                format!(
                    "policy `{}` requires {} of its [signers] keys: {e}",
                    policy.name(),
                    want.threshold
                ),
            )
        })?;
    }
    t.signatures += clock.elapsed();

    // 10. digest and size.
    if req.digest != release.digest || req.bytes.len() as u64 != release.size {
        return Err(failed(
            Check::Digest,
            format!(
                "the record signs {} ({} bytes); the downloaded bytes are {} ({} bytes)",
                release.digest,
                release.size,
                req.digest,
                req.bytes.len()
            ),
        ));
    }

    // 11. surface: the client's own audit against the signed lines.
    let clock = Instant::now();
    let audit = gridreg_verifier::audit_with_digest(req.bytes, req.digest).map_err(|e| {
        failed(
            Check::Surface,
            format!("the downloaded component does not validate: {e}"),
        )
    })?;
    if let Some(diff) = audit.surface_diff(&release.imports, &release.exports) {
        return Err(failed(Check::Surface, diff));
    }

    // 12. policy on that audit.
    let evaluation = match req.policy {
        None => None,
        Some(policy) => {
            let package = release.package.to_string();
            let subject = Subject {
                audit: &audit,
                package: Some(&package),
                baseline: req.baseline,
                today: req.today,
            };
            let ev = policy.evaluate(&subject);
            let errors: Vec<String> = ev
                .errors()
                .map(|v| format!("[{}] {}", v.rule.id(), v.message))
                .collect();
            if !errors.is_empty() {
                return Err(failed(
                    Check::Policy,
                    format!(
                        "policy `{}` refuses {name}:\n  {}",
                        policy.name(),
                        errors.join("\n  ")
                    ),
                ));
            }
            Some(ev)
        }
    };
    t.audit += clock.elapsed();

    let yanked_at = chosen.yanked_at.map(|at| {
        let reason = ev
            .package
            .yanks
            .iter()
            .find(|y| y.index == at)
            .map(|y| y.reason.clone())
            .unwrap_or_default();
        (at, reason)
    });
    let author = gridreg_protocol::Note::parse(chosen.leaf.as_bytes())
        .ok()
        .and_then(|n| n.signatures.into_iter().next())
        .map(|s| s.name);
    let kind = match audit.kind {
        gridreg_verifier::Kind::Component => gridreg_protocol::oci::WasmKind::Component,
        gridreg_verifier::Kind::Module => gridreg_protocol::oci::WasmKind::Module,
    };
    let oci_manifest = gridreg_protocol::oci::release_artifact(release, author.as_deref(), kind)
        .manifest
        .digest;
    Ok(Verified {
        oci_manifest,
        release: release.clone(),
        index: chosen.index,
        signers: chosen.signers.clone(),
        checkpoint: ev.checkpoint.clone(),
        age: ev.age,
        trust: ev.trust,
        map_index: ev.package.checkpoint_size - 1,
        package_head: ev.package.package_head,
        namespace_head: ev.package.namespace_head,
        package_records: ev.package_records,
        namespace_records: ev.namespace_records,
        fetched_records: ev.fetched_records,
        bundle_bytes: ev.bundle_bytes,
        yanked_at,
        audit,
        evaluation,
        timings: t,
    })
}

/// Fetches of a checkpoint that lacks the witness quorum before it counts as refused: a
/// registry gathers cosignatures for a new checkpoint within a second or two.
const QUORUM_ATTEMPTS: u32 = 10;
/// The pause between those fetches.
const QUORUM_PAUSE: Duration = Duration::from_millis(500);

/// Verifies a checkpoint text and runs the `checkpoint` (log key, witness quorum), `freshness`
/// and `consistency` checks on it; the trusted checkpoint then moves forward. `None` when the
/// caller should fetch again (this was fetch number `attempt`): once when it is older than the
/// trusted one (older again is a rollback), and for a while when the witness quorum is not met
/// yet.
fn check_checkpoint(
    session: &Session,
    text: &str,
    t: &mut Timings,
    attempt: u32,
) -> anyhow::Result<Option<(SignedCheckpoint, Outcome, Duration)>> {
    let may_retry = attempt == 1;
    let as_check = |check: Check| {
        move |e: anyhow::Error| {
            if e.downcast_ref::<Failure>().is_some() {
                failed(check, e)
            } else {
                e
            }
        }
    };
    let clock = Instant::now();
    let checkpoint = session
        .verify_checkpoint(text)
        .map_err(as_check(Check::Checkpoint))?;
    if let Err(short) = session.check_witnesses(&checkpoint) {
        if attempt < QUORUM_ATTEMPTS {
            std::thread::sleep(QUORUM_PAUSE);
            return Ok(None);
        }
        return Err(failed(Check::Checkpoint, short));
    }
    let age = session
        .check_fresh(&checkpoint)
        .map_err(as_check(Check::Freshness))?;
    t.signatures += clock.elapsed();
    match session
        .advance(&checkpoint)
        .map_err(as_check(Check::Consistency))?
    {
        Outcome::Older { .. } if may_retry => Ok(None),
        Outcome::Older { .. } => Err(failed(Check::Consistency, session.rollback(&checkpoint)?)),
        trust => Ok(Some((checkpoint, trust, age))),
    }
}

/// Fetches the registry's checkpoint and runs checks 1-3 on it: the log key's signature, the
/// timestamp's age, and consistency with the trusted checkpoint, which then moves forward. A
/// checkpoint smaller than the trusted one is fetched once more (another run of this client may
/// have moved the trusted one between the fetch and the check); smaller again, it is a rollback.
pub fn current_checkpoint(
    session: &Session,
    t: &mut Timings,
) -> anyhow::Result<(SignedCheckpoint, Outcome, Duration)> {
    current_checkpoint_at(session, "/v1/log/checkpoint", t)
}

/// [`current_checkpoint`] from another path: the tiles' `/checkpoint` serves the same note.
pub fn current_checkpoint_at(
    session: &Session,
    path: &str,
    t: &mut Timings,
) -> anyhow::Result<(SignedCheckpoint, Outcome, Duration)> {
    let mut attempt = 1;
    loop {
        let text = session.api.get_text(path)?;
        if let Some(checked) = check_checkpoint(session, &text, t, attempt)? {
            return Ok(checked);
        }
        attempt += 1;
    }
}
