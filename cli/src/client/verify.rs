//! The checks `gridreg pull --verify` runs on a downloaded release, in this order, stopping at the
//! first failure with an error that names the check:
//!
//! 1. `digest`: the bytes hash to the record's digest and have its size;
//! 2. `checkpoint`: the registry's checkpoint, which every proof below is checked against, is
//!    signed by the pinned log key;
//! 3. `freshness`: it carries a cosignature by the registry's timestamp key no older than the
//!    registry's `max_age` (a frozen registry or a mirror replaying an old view fails here);
//! 4. `consistency`: it is not smaller than the last checkpoint this client trusted (a rollback)
//!    and is consistent with it (a fork);
//! 5. `signature`: the record is signed by a key the namespace ever authorised (and, when the
//!    policy has `[signers]`, by enough of those keys);
//! 6. `authorisation`: replaying the namespace's records, each proven included in the log, a
//!    signer held a role in the namespace at the record's log index;
//! 7. `inclusion`: the record is in the log at its index;
//! 8. `surface`: the record's import and export lines are the ones the client computes from the
//!    bytes;
//! 9. `policy`: the policy passes on the client's own audit, drift against the locked version
//!    included.
//!
//! Nothing the registry says is believed until one of these checks has proven it.

use std::fmt;
use std::time::{Duration, Instant};

use gridreg_protocol::api::{LogEntry, ReleaseInfo};
use gridreg_protocol::merkle::{Hash, leaf_hash, verify_inclusion};
use gridreg_protocol::note::{self, KeySet};
use gridreg_protocol::{
    Digest, Head, NamespaceState, Note, Prev, Record, SignedCheckpoint, VerifierKey, key_label,
    record::Release,
};
use gridreg_verifier::policy::{Date, Evaluation, Subject};
use gridreg_verifier::{Audit, Policy};
use serde::de::IgnoredAny;

use super::http::Api;
use super::remote;
use super::trust::{Outcome, Session};
use crate::exit::Failure;

/// The checks, by the name messages use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Digest,
    Signature,
    Authorisation,
    Inclusion,
    Checkpoint,
    Freshness,
    Consistency,
    Surface,
    Policy,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Check::Digest => "digest",
            Check::Signature => "signature",
            Check::Authorisation => "authorisation",
            Check::Inclusion => "inclusion",
            Check::Checkpoint => "checkpoint",
            Check::Freshness => "freshness",
            Check::Consistency => "consistency",
            Check::Surface => "surface",
            Check::Policy => "policy",
        })
    }
}

fn failed(check: Check, message: impl fmt::Display) -> anyhow::Error {
    Failure(format!("verification failed at check `{check}`: {message}")).into()
}

/// What the caller hands in.
pub struct Request<'a> {
    pub session: &'a Session,
    /// What this client asked for: the package, and the version it resolved (never the
    /// registry's word for either).
    pub package: &'a str,
    pub version: &'a str,
    pub release: &'a ReleaseInfo<IgnoredAny>,
    /// The downloaded bytes and what the download computed of them.
    pub bytes: &'a [u8],
    pub digest: Digest,
    pub policy: Option<&'a Policy>,
    /// The locked version's audit, for drift.
    pub baseline: Option<&'a Audit>,
    pub today: Date,
}

/// Where the client-side time went (everything except waiting on the network).
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub signatures: Duration,
    pub proofs: Duration,
    pub audit: Duration,
}

/// Everything a successful verification established.
pub struct Verified {
    pub release: Release,
    pub signers: Vec<VerifierKey>,
    pub checkpoint: SignedCheckpoint,
    /// How long ago the registry's timestamp key cosigned the checkpoint.
    pub age: Duration,
    pub trust: Outcome,
    pub audit: Audit,
    pub evaluation: Option<Evaluation>,
    pub namespace_records: usize,
    pub timings: Timings,
}

/// Runs every check on one release.
pub fn verify(req: &Request) -> anyhow::Result<Verified> {
    let mut t = Timings::default();
    let session = req.session;
    let api = &session.api;
    let leaf = req.release.record.as_bytes();

    // The record itself: a signed note holding a release of what was asked for.
    let clock = Instant::now();
    let parsed = Note::parse(leaf).map_err(|e| {
        failed(
            Check::Signature,
            format!("the record is not a signed note: {e}"),
        )
    })?;
    let record = Record::from_note(&parsed)
        .map_err(|e| failed(Check::Signature, format!("the record does not parse: {e}")))?;
    let Record::Release(release) = record.clone() else {
        return Err(failed(
            Check::Signature,
            "the registry served a record that is not a release",
        ));
    };
    if release.package.to_string() != req.package || release.version.to_string() != req.version {
        return Err(failed(
            Check::Signature,
            format!(
                "asked for {}@{}, the signed record is for {}@{}",
                req.package, req.version, release.package, release.version
            ),
        ));
    }
    t.signatures += clock.elapsed();

    // 1. digest and size.
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

    // 2-4. the checkpoint every proof is checked against: signed by the log key, fresh, and
    // consistent with (never older than) the one this client trusted before.
    let (checkpoint, trust, age) = current_checkpoint(session, &mut t)?;
    let verified = &checkpoint.checkpoint;
    let index = req.release.info.log_index;
    if index >= verified.size {
        return Err(failed(
            Check::Inclusion,
            format!(
                "the release is said to be at log index {index}, but the checkpoint covers only {} entries",
                verified.size
            ),
        ));
    }

    // 5. signature: by any key the namespace ever named (their roles are check 3).
    let ns = release.package.namespace();
    let ns_records: Vec<_> = remote::namespace_records(api, ns.as_str())?
        .into_iter()
        .filter(|e| e.index < index)
        .collect();
    let clock = Instant::now();
    let mut named = KeySet::new();
    for e in &ns_records {
        if let Ok(n) = Note::parse(e.body.as_bytes())
            && let Ok(Record::Namespace(r)) = Record::from_note(&n)
        {
            named.insert(r.key);
        }
    }
    let signers: Vec<VerifierKey> = match note::verify(leaf, &named) {
        Ok(v) => v.verified_by,
        Err(err) => {
            let lines: Vec<String> = parsed
                .signatures
                .iter()
                .map(|s| key_label(&s.name, s.key_id))
                .collect();
            return Err(failed(
                Check::Signature,
                format!(
                    "{}@{} is not validly signed by any key namespace {ns} authorised before log index {index} ({err}; signature lines: {})",
                    release.package,
                    release.version,
                    lines.join(", ")
                ),
            ));
        }
    };
    if let Some(policy) = req.policy
        && let Some(want) = policy.signers()
    {
        let keys = want
            .keys
            .iter()
            .filter_map(|k| VerifierKey::parse(k).ok())
            .collect::<Vec<_>>();
        let set = KeySet::from_keys(keys);
        note::verify_threshold(leaf, &set, want.threshold).map_err(|e| {
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

    // 6. authorisation: replay the namespace, each record proven included.
    let state =
        replay_namespace(api, &ns_records, verified.size, &verified.root, &mut t).map_err(|e| {
            match e.downcast::<Failure>() {
                Ok(f) => failed(Check::Authorisation, f.0),
                Err(e) => e,
            }
        })?;
    let clock = Instant::now();
    state
        .check_publish(ns, index, &signers)
        .map_err(|err| failed(Check::Authorisation, err))?;
    t.signatures += clock.elapsed();

    // 7. inclusion of the release itself.
    let proof = remote::inclusion_proof(api, index, verified.size)?;
    let clock = Instant::now();
    verify_inclusion(
        &proof,
        verified.size,
        &verified.root,
        index,
        &leaf_hash(leaf),
    )
    .map_err(|err| {
        failed(
            Check::Inclusion,
            format!("{}@{}: {err}", release.package, release.version),
        )
    })?;
    t.proofs += clock.elapsed();

    // 8. surface: the client's own audit against the signed lines.
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

    // 9. policy on that audit.
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
                        "policy `{}` refuses {}@{}:\n  {}",
                        policy.name(),
                        release.package,
                        release.version,
                        errors.join("\n  ")
                    ),
                ));
            }
            Some(ev)
        }
    };
    t.audit += clock.elapsed();

    Ok(Verified {
        release,
        signers,
        checkpoint,
        age,
        trust,
        audit,
        evaluation,
        namespace_records: ns_records.len(),
        timings: t,
    })
}

/// Fetches the registry's checkpoint and runs checks 2-4 on it: the log key's signature, the
/// timestamp's age, and consistency with the trusted checkpoint, which then moves forward. A
/// checkpoint smaller than the trusted one is fetched once more (another run of this client may
/// have moved the trusted one between the fetch and the check); smaller again, it is a rollback.
pub fn current_checkpoint(
    session: &Session,
    t: &mut Timings,
) -> anyhow::Result<(SignedCheckpoint, Outcome, Duration)> {
    let as_check = |check: Check| {
        move |e: anyhow::Error| {
            if e.downcast_ref::<Failure>().is_some() {
                failed(check, e)
            } else {
                e
            }
        }
    };
    let mut attempt = 1;
    loop {
        let text = session.api.get_text("/v1/log/checkpoint")?;
        let clock = Instant::now();
        let checkpoint = session
            .verify_checkpoint(&text)
            .map_err(as_check(Check::Checkpoint))?;
        let age = session
            .check_fresh(&checkpoint)
            .map_err(as_check(Check::Freshness))?;
        t.signatures += clock.elapsed();
        match session
            .advance(&checkpoint)
            .map_err(as_check(Check::Consistency))?
        {
            Outcome::Older { .. } if attempt == 1 => attempt += 1,
            Outcome::Older { .. } => {
                return Err(failed(Check::Consistency, session.rollback(&checkpoint)?));
            }
            trust => return Ok((checkpoint, trust, age)),
        }
    }
}

/// Replays namespace records in log order, each first proven included in the tree of `size`
/// with `root` and each naming the one before it as its `prev` (the namespace's chain, from
/// `none`). A record outside that tree, a broken link (a record left out in between, or a
/// replayed one), or one the namespace rules refuse, is a [`Failure`]; not reaching the registry
/// is an ordinary error.
pub fn replay_namespace(
    api: &Api,
    records: &[LogEntry],
    size: u64,
    root: &Hash,
    t: &mut Timings,
) -> anyhow::Result<NamespaceState> {
    let mut state = NamespaceState::new();
    let mut head: Option<Head> = None;
    for e in records {
        let proof = remote::inclusion_proof(api, e.index, size)?;
        let clock = Instant::now();
        verify_inclusion(&proof, size, root, e.index, &leaf_hash(e.body.as_bytes()))
            .map_err(|err| Failure(format!("namespace record at log index {}: {err}", e.index)))?;
        t.proofs += clock.elapsed();
        let clock = Instant::now();
        let (record, _) = state
            .apply_entry(e.index, e.body.as_bytes())
            .map_err(|err| Failure(format!("replaying the namespace: {err}")))?;
        if record.prev() != Prev::after(head) {
            return Err(Failure(format!(
                "the namespace's chain is broken at log index {}: the record names {} as the one \
                 before it, but the record before it is {} (the registry left a record out or \
                 served a replayed one)",
                e.index,
                record.prev(),
                Prev::after(head)
            ))
            .into());
        }
        head = Some(Head::of(e.index, e.body.as_bytes()));
        t.signatures += clock.elapsed();
    }
    Ok(state)
}
