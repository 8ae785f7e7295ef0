//! Fetching one release from a registry: resolve the reference (or take the lockfile's
//! version with `--locked`), download the bytes bounded by the size the record signs, and,
//! with a policy, run every check of [`super::verify`]. `pull` writes the result to a file and
//! the lockfile; `run` and `compose` use it for registry references.

use anyhow::Context as _;
use gridreg_protocol::api::ReleaseInfo;
use gridreg_protocol::{Digest, Note, Record, Reference, Requirement};
use gridreg_verifier::policy::{Date, DriftAction};
use gridreg_verifier::{Audit, Policy};
use serde::de::IgnoredAny;

use super::lockfile::Locked;
use super::remote;
use super::trust::Session;
use super::verify::{self, Verified};
use crate::exit::Failure;
use crate::input;

/// What to fetch and how.
pub struct Request<'a> {
    pub session: &'a Session,
    pub reference: &'a Reference,
    /// Run every check (otherwise only digest and size).
    pub verify: bool,
    /// The policy the last check applies (none: every check but the policy).
    pub policy: Option<&'a Policy>,
    pub today: Date,
    /// The lockfile's entry for this package, if any, and where the lockfile is (for messages).
    pub locked_entry: Option<&'a Locked>,
    pub lock_path: &'a std::path::Path,
    /// Refuse anything the lockfile does not pin.
    pub locked: bool,
}

/// One fetched release.
pub struct Fetched {
    pub release: ReleaseInfo<IgnoredAny>,
    pub version: String,
    pub digest: Digest,
    pub size: u64,
    pub bytes: Vec<u8>,
    /// Present with `verify`: everything verification established, and the time
    /// spent hashing the download.
    pub verified: Option<(Verified, std::time::Duration)>,
}

impl Fetched {
    /// The lockfile entry for this release.
    pub fn lock_entry(&self) -> Locked {
        Locked {
            name: self.release.package.clone(),
            version: self.version.clone(),
            digest: self.digest.to_string(),
            log_index: self.release.info.log_index,
        }
    }
}

pub fn fetch(req: &Request) -> anyhow::Result<Fetched> {
    let package = req.reference.package.to_string();
    // With verification, the package's whole state is proven first (checks 1-7), and the
    // version is chosen from that, never from the registry's version list.
    let evidence = match req.verify {
        true => Some(verify::evidence(req.session, &req.reference.package)?),
        false => None,
    };
    // Which version; resolved from the evidence, the proven release comes with it.
    let mut resolved = None;
    let version = if req.locked {
        let Some(l) = req.locked_entry else {
            return Err(Failure(format!(
                "--locked: {package} is not in {}",
                req.lock_path.display()
            ))
            .into());
        };
        let v = semver::Version::parse(&l.version)
            .with_context(|| format!("{}: bad version for {package}", req.lock_path.display()))?;
        let fits = match &req.reference.requirement {
            Requirement::Newest => true,
            r => r.matches(&v),
        };
        if !fits {
            return Err(Failure(format!(
                "--locked: {} locks {package}@{}, which does not match `{}`",
                req.lock_path.display(),
                l.version,
                req.reference
            ))
            .into());
        }
        l.version.clone()
    } else if let Some(ev) = &evidence {
        let r = ev.resolve(req.reference, req.session.api.base())?;
        resolved = Some(r);
        r.version().to_string()
    } else {
        remote::resolve(&req.session.api, req.reference)?
    };
    let chosen = match (&evidence, resolved) {
        (_, Some(r)) => Some(r),
        (None, None) => None,
        // The locked version must be a proven release.
        (Some(ev), None) => {
            let v = semver::Version::parse(&version)
                .with_context(|| format!("bad version {version} for {package}"))?;
            Some(ev.package.release(&v).ok_or_else(|| {
                Failure(format!(
                    "verification failed at check `chain`: {package}@{version} is not in the \
                     proven chain of {package} (as of log size {}); the chain holds {} releases",
                    ev.checkpoint.size(),
                    ev.package.releases.len()
                ))
            })?)
        }
    };
    let release = remote::release(&req.session.api, &req.reference.package, &version)?;
    let (digest, size) = signed_digest(&release, &package, &version)?;
    if let Some(l) = req.locked_entry {
        let same_version = l.version == version;
        if same_version && l.digest != digest.to_string() {
            return Err(Failure(format!(
                "{package}@{version}: the registry's record has digest {digest}, but {} locked {} (versions are immutable: this is a different component under the same version)",
                req.lock_path.display(),
                l.digest
            ))
            .into());
        }
        let index = chosen.map_or(release.info.log_index, |c| c.index);
        if req.locked && l.log_index != index {
            return Err(Failure(format!(
                "--locked: {package}@{version} is at log index {index} in the registry, {} says {}",
                req.lock_path.display(),
                l.log_index
            ))
            .into());
        }
    }

    // Download, bounded by the size the record states.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 30));
    let got = req
        .session
        .api
        .download(
            &format!("/v1/content/{digest}"),
            &mut bytes,
            size,
            size.min(input::MAX_INPUT),
        )
        .context("downloading the content")?;

    let verified = match (&evidence, chosen) {
        (Some(ev), Some(chosen)) => {
            let baseline = match req.locked_entry {
                Some(l)
                    if l.version != version
                        && req.policy.is_some_and(|p| p.drift() != DriftAction::Allow) =>
                {
                    Some(baseline_audit(req.session, l)?)
                }
                _ => None,
            };
            let v = verify::verify(&verify::Request {
                evidence: ev,
                chosen,
                served: &release,
                bytes: &bytes,
                digest: got.digest,
                policy: req.policy,
                baseline: baseline.as_ref(),
                today: req.today,
            })?;
            Some((v, got.hashing))
        }
        _ => {
            if got.digest != digest || got.size != size {
                return Err(Failure(format!(
                    "verification failed at check `digest`: the record names {digest} ({size} bytes), the download is {} ({} bytes)",
                    got.digest,
                    got.size
                ))
                .into());
            }
            None
        }
    };

    Ok(Fetched {
        release,
        version,
        digest,
        size,
        bytes,
        verified,
    })
}

/// The digest and size the release record names (checked against the bytes later). The record
/// must be a release of the package and version this client asked for: a registry that answers
/// with another version's record (mix-and-match) is refused here, whatever its answer's other
/// fields say.
fn signed_digest(
    release: &ReleaseInfo<IgnoredAny>,
    package: &str,
    version: &str,
) -> anyhow::Result<(Digest, u64)> {
    let note = Note::parse(release.record.as_bytes()).map_err(|e| {
        Failure(format!(
            "the registry's record for {}@{} is not a signed note: {e}",
            release.package, release.info.version
        ))
    })?;
    match Record::from_note(&note) {
        Ok(Record::Release(r))
            if r.package.to_string() == package && r.version.to_string() == version =>
        {
            Ok((r.digest, r.size))
        }
        Ok(Record::Release(r)) => Err(Failure(format!(
            "verification failed at check `signature`: asked for {package}@{version}, the signed record is for {}@{}",
            r.package, r.version
        ))
        .into()),
        Ok(_) => Err(Failure(format!(
            "the registry's record for {}@{} is not a release",
            release.package, release.info.version
        ))
        .into()),
        Err(e) => Err(Failure(format!(
            "the registry's record for {}@{} does not parse: {e}",
            release.package, release.info.version
        ))
        .into()),
    }
}

/// The locked version's audit, for drift: fetched by its locked digest and checked against it.
fn baseline_audit(session: &Session, l: &Locked) -> anyhow::Result<Audit> {
    let digest = Digest::parse(&l.digest)
        .map_err(|e| anyhow::anyhow!("gridreg.lock: {}: bad digest: {e}", l.name))?;
    let mut bytes = Vec::new();
    let got = session
        .api
        .download(
            &format!("/v1/content/{digest}"),
            &mut bytes,
            0,
            input::MAX_INPUT,
        )
        .with_context(|| {
            format!(
                "fetching the locked {}@{} for the drift check",
                l.name, l.version
            )
        })?;
    if got.digest != digest {
        return Err(Failure(format!(
            "the locked {}@{} fetched for the drift check does not hash to its locked digest {digest}",
            l.name, l.version
        ))
        .into());
    }
    gridreg_verifier::audit_with_digest(&bytes, digest)
        .with_context(|| format!("auditing the locked {}@{}", l.name, l.version))
}
