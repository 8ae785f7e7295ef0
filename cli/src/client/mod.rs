//! The client side of the trust model: configuration and pinned log keys, the HTTP API, the
//! stored checkpoint per log, the lockfile, and the checks `pull --verify` runs. The commands
//! in `commands/` (publish, pull, namespace, yank, registry, log) are thin layers over this.
//!
//! The client believes nothing the registry says that it can check itself: records by their
//! signatures, keys by replaying the namespace from the log, entries by inclusion proofs,
//! checkpoints by the pinned key and by consistency with the last one it trusted, and the
//! component's surface by auditing the bytes itself.

pub mod config;
pub mod fetch;
pub mod fsutil;
pub mod held;
pub mod http;
pub mod lockfile;
pub mod remote;
pub mod signers;
pub mod tiles;
pub mod trust;
pub mod verify;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use gridreg_protocol::api::{PublishResponse, decode_hashes};
use gridreg_protocol::merkle::{leaf_hash, verify_inclusion};
use gridreg_protocol::{ChainKey, Hash, Prev, SignedCheckpoint, SignerKey, VerifierKey};

use crate::exit::Failure;
use http::HttpError;
use trust::{Outcome, Session};

/// How many times a record is sent while the registry answers 503 (it stored nothing and asks
/// for another try: its log could not be written, or it is shutting down) or cannot be reached
/// (behind a load balancer, the next try may reach another replica).
const SEND_ATTEMPTS: u32 = 3;

/// How many times a record is signed on a newer chain head after the registry answered
/// `stale_prev` (another record of the chain landed first: concurrent publishers of a package).
const CHAIN_ATTEMPTS: u32 = 8;

/// Reads a signer key file written by `gridreg keygen`.
pub fn load_signer(path: &Path) -> anyhow::Result<SignerKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read signer key `{}`", path.display()))?;
    SignerKey::parse_key_file(&text).map_err(|e| {
        anyhow::anyhow!(
            "`{}` is not a signer key (expected PRIVATE+KEY+NAME+KEYID+BASE64, as `gridreg keygen` writes): {e}",
            path.display()
        )
    })
}

/// A verifier key given on the command line, or the path of a file holding one.
pub fn parse_verifier(arg: &str) -> anyhow::Result<VerifierKey> {
    if let Ok(k) = VerifierKey::parse(arg.trim()) {
        return Ok(k);
    }
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read `{arg}`"))?;
        if let Ok(k) = SignerKey::parse_key_file(&text) {
            return Ok(k.verifier());
        }
        return VerifierKey::parse(text.trim())
            .map_err(|e| anyhow::anyhow!("`{arg}` does not hold a verifier key: {e}"));
    }
    VerifierKey::parse(arg.trim()).map_err(|e| {
        anyhow::anyhow!(
            "expected a verifier key NAME+KEYID+BASE64 or a file holding one, found `{arg}`: {e}"
        )
    })
}

/// A record the log accepted, with the log's answer checked.
pub struct Submitted {
    pub index: u64,
    pub checkpoint: SignedCheckpoint,
    pub trust: Outcome,
}

/// Signs a record of `chain` on the chain's current head and submits it ([`submit`]). When
/// another record of the chain lands first (the registry answers `stale_prev` with the new
/// head), the record is signed again on that head and sent again, up to [`CHAIN_ATTEMPTS`]
/// times, so concurrent publishers of one package all land, one after the other. `sign` builds
/// and signs the record for a given `prev`.
pub fn submit_chained(
    session: &Session,
    chain: &ChainKey,
    mut sign: impl FnMut(Prev) -> anyhow::Result<String>,
) -> anyhow::Result<Submitted> {
    let mut prev = remote::chain_head(&session.api, chain)?;
    let mut attempt = 1;
    loop {
        let leaf = sign(prev)?;
        let err = match submit(session, &leaf) {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let Some(stale) = err
            .downcast_ref::<HttpError>()
            .filter(|h| h.is_stale_prev())
        else {
            return Err(err);
        };
        if attempt == CHAIN_ATTEMPTS {
            return Err(err.context(format!(
                "{chain} kept moving: {CHAIN_ATTEMPTS} signings in a row named a head that \
                 another record had replaced"
            )));
        }
        let head = match stale.head.as_deref().map(Prev::parse) {
            Some(Ok(head)) if head != prev => head,
            // No usable head in the answer, or the same one again: ask for it.
            _ => remote::chain_head(&session.api, chain)?,
        };
        attempt += 1;
        eprintln!(
            "another record of {chain} landed first; signing again on its new head {head} \
             (attempt {attempt} of {CHAIN_ATTEMPTS})"
        );
        prev = head;
    }
}

/// Posts a signed record and checks the registry's answer before believing it: the checkpoint
/// is signed by the pinned log key, the record is included at the index it was given, and the
/// checkpoint is consistent with the one this client trusted before.
///
/// After a 503 or no answer at all, the record is sent again, up to [`SEND_ATTEMPTS`] times, a
/// second and then two apart. If a later attempt is refused as a conflict (the version exists,
/// the yank or claim is already there), an earlier attempt may have landed after all (a replica
/// that crashed after its commit, or a connection lost before the answer): the
/// record is then looked for in the log since the last checkpoint this client trusted, and if it
/// is there, that entry is the answer, with the same checks.
pub fn submit(session: &Session, leaf: &str) -> anyhow::Result<Submitted> {
    let mut attempt = 1;
    loop {
        let err = match session
            .api
            .post_text::<PublishResponse>("/v1/records", leaf)
        {
            Ok(resp) => {
                let checkpoint = session.verify_checkpoint(&resp.checkpoint)?;
                let proof = decode_hashes(&resp.proof).map_err(|e| {
                    Failure(format!("inclusion: the registry's proof is malformed: {e}"))
                })?;
                return checked(session, leaf, resp.index, checkpoint, &proof);
            }
            Err(e) => e,
        };
        let http = err.downcast_ref::<HttpError>();
        let unanswered = http.is_some_and(|h| h.status.is_none());
        let unavailable = http.is_some_and(HttpError::is_unavailable);
        if (unavailable || unanswered) && attempt < SEND_ATTEMPTS {
            let wait = Duration::from_secs(u64::from(attempt));
            eprintln!(
                "{err}\n  sending the record again in {} s (attempt {} of {SEND_ATTEMPTS})",
                wait.as_secs(),
                attempt + 1
            );
            std::thread::sleep(wait);
            attempt += 1;
            continue;
        }
        if http.is_some_and(HttpError::is_conflict)
            && attempt > 1
            && let Some(landed) = find_landed(session, leaf)?
        {
            return Ok(landed);
        }
        return Err(err);
    }
}

/// The record in the log after all (see [`submit`]), checked as an answer to a publish would be.
fn find_landed(session: &Session, leaf: &str) -> anyhow::Result<Option<Submitted>> {
    let from = session.trusted()?.map_or(0, |cp| cp.size());
    let latest = session.latest()?;
    let entries = remote::entries(&session.api, from, latest.size())?;
    let Some(entry) = entries.iter().find(|e| e.body == leaf) else {
        return Ok(None);
    };
    eprintln!(
        "  an earlier attempt was recorded after all, at log index {}",
        entry.index
    );
    let proof = remote::inclusion_proof(&session.api, entry.index, latest.size())?;
    checked(session, leaf, entry.index, latest, &proof).map(Some)
}

/// Checks that `leaf` is at `index` in `checkpoint` (signed by the pinned key) and that the
/// checkpoint extends the one this client trusted before.
fn checked(
    session: &Session,
    leaf: &str,
    index: u64,
    checkpoint: SignedCheckpoint,
    proof: &[Hash],
) -> anyhow::Result<Submitted> {
    verify_inclusion(
        proof,
        checkpoint.size(),
        checkpoint.root(),
        index,
        &leaf_hash(leaf.as_bytes()),
    )
    .map_err(|e| {
        Failure(format!(
            "inclusion: the registry says the record is at log index {}, but its proof does not show it in the checkpoint of size {}: {e}",
            index,
            checkpoint.size()
        ))
    })?;
    let trust = session.advance(&checkpoint)?;
    Ok(Submitted {
        index,
        checkpoint,
        trust,
    })
}

/// For `run` and `compose`: when `spec` names no file but parses as a package reference, fetches
/// that release from the registry with every check (the policy check only when `policy` is
/// given), honouring `./gridreg.lock` (its version's digest, and drift against it) without
/// writing it. Returns the release as an input (named `ns:name@version`, with the digest the
/// download was checked against, so nothing hashes it again); `None` when `spec` is not a
/// reference.
#[cfg(any(feature = "run", feature = "compose"))]
pub fn fetch_reference(
    spec: &str,
    registry: trust::Target,
    policy: Option<&gridreg_verifier::Policy>,
    today: gridreg_verifier::policy::Date,
) -> anyhow::Result<Option<crate::input::Input>> {
    if spec == "-" || Path::new(spec).exists() {
        return Ok(None);
    }
    let Ok(reference) = gridreg_protocol::Reference::parse(spec) else {
        return Ok(None);
    };
    let lock_path = lockfile::path(None);
    let lock = lockfile::LockFile::load(&lock_path)?;
    let locked = lock.get(&reference.package.to_string()).cloned();
    let session = trust::connect(registry)?;
    let fetched = fetch::fetch(&fetch::Request {
        session: &session,
        reference: &reference,
        verify: true,
        policy,
        today,
        locked_entry: locked.as_ref(),
        lock_path: &lock_path,
        locked: false,
    })?;
    let name = format!("{}@{}", fetched.release.package, fetched.version);
    eprintln!(
        "verified {name} from {} (log index {}, {}, signed by {})",
        session.remote.url,
        fetched.release.info.log_index,
        fetched.digest,
        fetched
            .verified
            .as_ref()
            .map(|(v, _)| v
                .signers
                .iter()
                .map(VerifierKey::label)
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    Ok(Some(crate::input::Input {
        name,
        bytes: fetched.bytes,
        digest: fetched.digest,
    }))
}
