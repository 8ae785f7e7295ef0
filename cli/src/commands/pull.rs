//! `gridreg pull`: resolve a reference, download the release, and with `--verify` check every
//! claim on this machine (see `client::verify` for the checks and their order). Writes the file
//! atomically and records the exact release in `gridreg.lock`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use gridreg_protocol::{Reference, VerifierKey};

use crate::client::fetch::{self, Fetched};
use crate::client::fsutil;
use crate::client::lockfile::{self, LockFile};
use crate::client::trust::{self, Session};
use crate::commands::RegistryOpt;
use crate::exit::Status;
use crate::{input, policy_file};

/// Download a release, verify it on this machine, and lock it.
///
/// REF is `ns:name` (newest non-yanked), `ns:name@1.2.0` (exactly that version) or a range such
/// as `ns:name@^1.2` (newest matching non-yanked). With --verify every claim is checked here, in
/// order, stopping at the first failure: digest and size, the checkpoint's signature by the log
/// key, its freshness (the registry's timestamp no older than max_age, default 24h), consistency
/// with the last checkpoint this client trusted (a smaller one is a rollback), record signature,
/// signer authorised in the namespace at that log index (replaying the namespace from the log),
/// record inclusion, the signed import/export lines against the bytes, and the policy on this
/// client's own audit (drift against the version in gridreg.lock included).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg pull acme:auth@^1.2 --verify                  verify with the default policy
  gridreg pull acme:auth@^1.2 --verify --policy strict -o auth.wasm
  gridreg pull acme:auth --verify --locked              CI: only exactly what gridreg.lock says
  gridreg pull acme:auth@1.2.0 --verify --json

Exit status: 0 pulled (and verified); 1 a check failed (the message names it; a log fork or
rollback also saves evidence under the state directory) or --locked refused; 2 bad input, unknown package, or the
registry is unreachable.")]
pub struct Opts {
    /// What to pull: `ns:name`, `ns:name@VERSION` or `ns:name@RANGE`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Where to write the component [default: NS-NAME-VERSION.wasm].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Check everything (see above) before writing anything.
    #[arg(long)]
    pub verify: bool,
    /// Policy for --verify: a TOML file or a built-in name (default, strict, http-proxy, ci).
    #[arg(long, value_name = "POLICY", default_value = "default")]
    pub policy: String,
    /// Refuse anything gridreg.lock does not already pin (package, version, digest, log index).
    #[arg(long)]
    pub locked: bool,
    /// The lockfile [default: ./gridreg.lock].
    #[arg(long, value_name = "FILE")]
    pub lockfile: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryOpt,
    /// Judge exemption expiry as of this date (YYYY-MM-DD) instead of today.
    #[arg(long, value_name = "DATE", hide = true)]
    pub today: Option<String>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let reference = Reference::parse(&self.reference)
            .with_context(|| format!("`{}` is not a package reference", self.reference))?;
        let policy = if self.verify {
            Some(policy_file::load(&self.policy)?)
        } else {
            None
        };
        let today = policy_file::today(self.today.as_deref())?;
        let lock_path = lockfile::path(self.lockfile.as_deref());
        let mut lock = LockFile::load(&lock_path)?;
        let package = reference.package.to_string();
        let locked = lock.get(&package).cloned();
        let session = trust::connect(self.registry.get())?;

        let fetched = fetch::fetch(&fetch::Request {
            session: &session,
            reference: &reference,
            verify: self.verify,
            policy: policy.as_ref(),
            today,
            locked_entry: locked.as_ref(),
            lock_path: &lock_path,
            locked: self.locked,
        })?;
        let entry = fetched.lock_entry();
        let out = self.output.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "{}-{}-{}.wasm",
                reference.package.namespace(),
                reference.package.name(),
                fetched.version
            ))
        });
        fsutil::write_atomic(&out, &fetched.bytes)
            .with_context(|| format!("writing {}", out.display()))?;
        let lock_changed = locked.as_ref() != Some(&entry);
        if lock_changed && !self.locked {
            lock.set(entry);
            lock.save(&lock_path)?;
        }

        self.report(&session, &fetched, &out, &lock_path, lock_changed)?;
        Ok(Status::Ok)
    }

    fn report(
        &self,
        session: &Session,
        fetched: &Fetched,
        out: &Path,
        lock_path: &Path,
        lock_changed: bool,
    ) -> anyhow::Result<()> {
        let Fetched {
            release,
            digest,
            size,
            verified,
            ..
        } = fetched;
        let size = *size;
        let verified = verified.as_ref();
        let name = format!("{}@{}", release.package, release.info.version);
        if self.json {
            let mut obj = serde_json::json!({
                "package": release.package,
                "version": release.info.version,
                "digest": digest.to_string(),
                "size": size,
                "log_index": release.info.log_index,
                "output": out.display().to_string(),
                "registry": session.remote.url,
                "verified": verified.is_some(),
                "lockfile": lock_path.display().to_string(),
            });
            if let Some((v, hashing)) = verified {
                obj["signers"] = v.signers.iter().map(|k| k.to_string()).collect();
                obj["oci_manifest"] = serde_json::Value::String(v.oci_manifest.to_string());
                obj["checkpoint"] =
                    serde_json::json!({"origin": session.origin(), "size": v.checkpoint.size()});
                obj["capabilities"] = v
                    .audit
                    .capabilities
                    .iter()
                    .map(|c| c.as_str().to_string())
                    .collect();
                obj["verdict"] = serde_json::to_value(v.evaluation.as_ref().map(|e| e.verdict))?;
                obj["bundle"] = serde_json::json!({
                    "bytes": v.bundle_bytes,
                    "records_fetched": v.fetched_records,
                    "records": v.package_records + v.namespace_records,
                });
                let t = &v.timings;
                obj["timings_ms"] = serde_json::json!({
                    "hash": ms(*hashing),
                    "signatures": ms(t.signatures),
                    "proofs": ms(t.proofs),
                    "audit_and_policy": ms(t.audit),
                    "client_total": ms(*hashing + t.signatures + t.proofs + t.audit),
                    "network": ms(session.api.network_time()),
                });
            }
            println!("{}", serde_json::to_string_pretty(&obj)?);
            return Ok(());
        }
        println!(
            "pulled {name} ({digest}, {}) -> {}",
            input::human_size(size),
            out.display()
        );
        if let Some((v, _)) = verified {
            let signers: Vec<String> = v.signers.iter().map(VerifierKey::label).collect();
            let ns = v.release.package.namespace();
            let lines = [
                (
                    "checkpoint",
                    format!("signed by the pinned log key {}", session.log_key.label()),
                ),
                (
                    "freshness",
                    format!(
                        "timestamped {} ago (max_age {})",
                        trust::human(v.age),
                        trust::human(session.max_age)
                    ),
                ),
                ("consistency", v.trust.describe(v.checkpoint.size())),
                (
                    "map",
                    format!(
                        "the map entry at log index {} is the checkpoint's last leaf",
                        v.map_index
                    ),
                ),
                (
                    "head",
                    format!(
                        "heads of {} ({}) and {ns} ({}) proven in the map",
                        v.release.package,
                        head_text(v.package_head),
                        head_text(v.namespace_head)
                    ),
                ),
                (
                    "chain",
                    format!(
                        "{} package and {} namespace records linked back to none ({})",
                        v.package_records,
                        v.namespace_records,
                        match v.package_records + v.namespace_records - v.fetched_records {
                            0 => "all fetched".to_string(),
                            held => format!(
                                "{} fetched, {held} held from an earlier pull",
                                v.fetched_records
                            ),
                        }
                    ),
                ),
                (
                    "authorisation",
                    format!(
                        "a key held a role in {ns} at log index {} (both chains replayed)",
                        v.index
                    ),
                ),
                ("signature", format!("signed by {}", signers.join(", "))),
                (
                    "inclusion",
                    format!(
                        "log index {} is in the proven chain, in the tree of size {}",
                        v.index,
                        v.checkpoint.size()
                    ),
                ),
                (
                    "digest",
                    format!("{} bytes hash to the signed digest", size),
                ),
                (
                    "surface",
                    format!(
                        "{} imports, {} exports match the signed record",
                        v.audit.imports.len(),
                        v.audit.exports.len()
                    ),
                ),
                (
                    "policy",
                    match &v.evaluation {
                        Some(e) => {
                            let warnings = e.warnings().count();
                            if warnings > 0 {
                                format!("{}: {} ({warnings} warnings)", self.policy, e.verdict)
                            } else {
                                format!("{}: {}", self.policy, e.verdict)
                            }
                        }
                        None => "none".to_string(),
                    },
                ),
            ];
            for (check, what) in lines {
                println!("  ok {check:<14} {what}");
            }
            println!(
                "  oci manifest {} (what OCI clients pull as {}/{}:{})",
                v.oci_manifest,
                v.release.package.namespace(),
                v.release.package.name(),
                v.release.version
            );
            if let Some((at, reason)) = &v.yanked_at {
                println!("  warning {name} was yanked at log index {at}: {reason}");
            }
            if let Some(e) = &v.evaluation {
                for w in e.warnings() {
                    println!("  warning [{}] {}", w.rule.id(), w.message);
                }
            }
        } else {
            println!(
                "  not verified beyond the digest (add --verify to check signatures, log and policy)"
            );
        }
        if lock_changed && !self.locked {
            println!("locked {name} in {}", lock_path.display());
        }
        Ok(())
    }
}

/// A proven head as `log index N`, or `absent`.
fn head_text(head: Option<gridreg_protocol::Head>) -> String {
    head.map_or_else(
        || "absent".to_string(),
        |h| format!("log index {}", h.index),
    )
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
