//! What the client trusts about a log, and how that trust moves forward.
//!
//! - The log key: pinned in the configuration at first contact (trust on first use, said loudly)
//!   or set by `gridreg registry add --log-key`. Every checkpoint must verify under it.
//! - The last checkpoint seen, per log (origin and key id), under the user's state directory
//!   (`$GRIDREG_STATE_DIR`, else `$XDG_STATE_HOME/gridreg`, else `$HOME/.local/state/gridreg`).
//!   It only ever moves to a checkpoint proven consistent with it, and it is rewritten atomically
//!   under a lock, re-reading the stored one inside the lock, so concurrent runs never roll it back.
//! - The timestamp key: named by the log key in a signed statement (`/v1/log/timestamp-key`),
//!   pinned beside the log key the first time it is needed. The registry cosigns the checkpoint it
//!   serves with it, at most a minute ago; a checkpoint whose newest timestamp is older than the
//!   registry's `max_age` (default 24 h) is refused as frozen ([`Session::check_fresh`]).
//! - A fork (two views of history that cannot both be true) or a rollback (a checkpoint smaller
//!   than the trusted one) is a hard error; both checkpoints and any proof are saved as evidence
//!   before the error is reported.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use gridreg_protocol::api::{ConsistencyProof, decode_hashes};
use gridreg_protocol::checkpoint::{Advance, CheckpointError, ForkEvidence, check_against_trusted};
use gridreg_protocol::cosignature::parse_timestamp_key_statement;
use gridreg_protocol::{CosignerKey, KeySet, SignedCheckpoint, VerifierKey, key_label, note};

use super::config::{self, Config, RegistryEntry, Remote};
use super::fsutil;
use super::http::Api;
use crate::exit::Failure;

/// The client's state directory.
pub fn state_dir() -> anyhow::Result<PathBuf> {
    if let Some(p) = config::env_path("GRIDREG_STATE_DIR") {
        return Ok(p);
    }
    let base = config::env_path("XDG_STATE_HOME")
        .or_else(|| config::env_path("HOME").map(|h| h.join(".local").join("state")))
        .context("cannot find a state directory: set $GRIDREG_STATE_DIR or $HOME")?;
    Ok(base.join("gridreg"))
}

/// How far in the future a timestamp may be before it is refused (clocks differ a little).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A registry with its log key settled: the API plus what the client trusts about its log.
pub struct Session {
    pub remote: Remote,
    pub api: Api,
    pub log_key: VerifierKey,
    /// The registry's `max_age`, or the command's `--max-age`.
    pub max_age: Duration,
    timestamp_key: OnceLock<CosignerKey>,
    config_path: PathBuf,
    state: PathBuf,
}

/// Which registry a command talks to, and what the command overrides for this one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// `--registry NAME|URL`; `None` is `$GRIDREG_REGISTRY` or the configured default.
    pub registry: Option<&'a str>,
    /// `--max-age`, over the registry's configured `max_age`.
    pub max_age: Option<Duration>,
}

/// Opens a session with the registry `target` names (or the default), pinning the log key on
/// first contact.
pub fn connect(target: Target) -> anyhow::Result<Session> {
    let config_path = config::path()?;
    let config = Config::load(&config_path)?;
    let remote = config.resolve(target.registry)?;
    let api = Api::new(&remote.url, remote.token.clone());
    let log_key = match &remote.log_key {
        Some(k) => k.clone(),
        None => pin_on_first_use(&api, &remote, &config_path)?,
    };
    let timestamp_key = OnceLock::new();
    if let Some(k) = &remote.timestamp_key {
        let _ = timestamp_key.set(k.clone());
    }
    Ok(Session {
        max_age: target.max_age.unwrap_or(remote.max_age),
        remote,
        api,
        log_key,
        timestamp_key,
        config_path,
        state: state_dir()?,
    })
}

fn pin_on_first_use(api: &Api, remote: &Remote, config_path: &Path) -> anyhow::Result<VerifierKey> {
    let text = api.get_text("/v1/log/key")?;
    let key = VerifierKey::parse(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{}: /v1/log/key is not a verifier key NAME+KEYID+BASE64: {e}",
            remote.url
        )
    })?;
    // Re-read under a lock: another run may have pinned a key meanwhile.
    let _lock = fsutil::lock(&config_path.with_extension("lock"))?;
    let mut config = Config::load(config_path)?;
    let name = if remote.configured {
        remote.name.clone()
    } else {
        config::name_for_url(&remote.url)
    };
    let entry = config
        .registries
        .entry(name.clone())
        .or_insert_with(|| RegistryEntry {
            url: remote.url.clone(),
            log_key: None,
            timestamp_key: None,
            max_age: None,
            token: None,
            token_env: None,
            witnesses: Vec::new(),
            quorum: None,
        });
    if let Some(pinned) = &entry.log_key {
        let pinned = VerifierKey::parse(pinned)?;
        if pinned != key {
            return Err(Failure(format!(
                "registry {name} now presents log key {key}, but {pinned} was pinned meanwhile"
            ))
            .into());
        }
        return Ok(pinned);
    }
    entry.log_key = Some(key.to_string());
    if config.default.is_none() && config.registries.len() == 1 {
        config.default = Some(name.clone());
    }
    config.save(config_path)?;
    eprintln!(
        "warning: TRUST ON FIRST USE: pinned the log key of {} as\n    {key}\n  in {} (registry {name}).\n  Compare it with the key the registry's operator publishes; every checkpoint must be signed by it from now on.",
        remote.url,
        config_path.display()
    );
    Ok(key)
}

impl Session {
    pub fn origin(&self) -> &str {
        self.log_key.name()
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.state.join("checkpoints").join(self.log_file_name())
    }

    /// The cache of verified record signers for this log (`client::signers`).
    pub fn signers_path(&self) -> PathBuf {
        self.state.join("verified").join(self.log_file_name())
    }

    /// The directory of the chains this client verified in this log (`client::held`).
    pub fn held_dir(&self) -> PathBuf {
        self.state.join("held").join(self.log_file_name())
    }

    /// A file name for this log: its origin, made safe, and its key id.
    fn log_file_name(&self) -> String {
        let safe: String = self
            .origin()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        key_label(&safe, self.log_key.id())
    }

    /// The last checkpoint this client trusted for the log, re-verified.
    pub fn trusted(&self) -> anyhow::Result<Option<SignedCheckpoint>> {
        let path = self.checkpoint_path();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let cp = SignedCheckpoint::verify(&text, self.origin(), &self.log_key).map_err(|e| {
            anyhow::anyhow!(
                "the stored checkpoint {} does not verify under the pinned log key: {e}",
                path.display()
            )
        })?;
        Ok(Some(cp))
    }

    /// Verifies a signed checkpoint text under the pinned log key.
    pub fn verify_checkpoint(&self, text: &str) -> anyhow::Result<SignedCheckpoint> {
        SignedCheckpoint::verify(text.as_bytes(), self.origin(), &self.log_key).map_err(|e| {
            let hint = match e {
                CheckpointError::NotSignedByLog(_) => format!(
                    "; the registry at {} is not the log whose key was pinned (a wrong or rotated key, or another server)",
                    self.remote.url
                ),
                _ => String::new(),
            };
            Failure(format!("checkpoint signature: {e}{hint}")).into()
        })
    }

    /// Fetches and verifies the registry's latest checkpoint (signature only).
    pub fn latest(&self) -> anyhow::Result<SignedCheckpoint> {
        let text = self.api.get_text("/v1/log/checkpoint")?;
        self.verify_checkpoint(&text)
    }

    /// The registry's timestamp key: the pinned one, or the one the log key names in
    /// `/v1/log/timestamp-key`, pinned beside the log key on first use.
    pub fn timestamp_key(&self) -> anyhow::Result<&CosignerKey> {
        if let Some(k) = self.timestamp_key.get() {
            return Ok(k);
        }
        let text = self.api.get_text("/v1/log/timestamp-key")?;
        let verified = note::verify(text.as_bytes(), &KeySet::from_keys([self.log_key.clone()]))
            .map_err(|e| {
                Failure(format!(
                    "the registry's timestamp-key statement is not signed by the pinned log key {}: {e}",
                    self.log_key.label()
                ))
            })?;
        let key = parse_timestamp_key_statement(verified.text(), self.origin())
            .map_err(|e| Failure(format!("the registry's timestamp-key statement: {e}")))?;
        self.pin_timestamp_key(&key)?;
        Ok(self.timestamp_key.get_or_init(|| key))
    }

    fn pin_timestamp_key(&self, key: &CosignerKey) -> anyhow::Result<()> {
        let _lock = fsutil::lock(&self.config_path.with_extension("lock"))?;
        let mut config = Config::load(&self.config_path)?;
        let name = if self.remote.configured {
            self.remote.name.clone()
        } else {
            config::name_for_url(&self.remote.url)
        };
        // The entry exists once the log key was pinned; a log key given only for this run has
        // nowhere to keep the pin, and the statement is fetched again next time.
        let Some(entry) = config.registries.get_mut(&name) else {
            return Ok(());
        };
        match &entry.timestamp_key {
            Some(pinned) if CosignerKey::parse(pinned).is_ok_and(|p| &p == key) => Ok(()),
            Some(pinned) => Err(Failure(format!(
                "registry {name}: the log key now names timestamp key {key}, but {pinned} was pinned meanwhile"
            ))
            .into()),
            None => {
                entry.timestamp_key = Some(key.to_string());
                config.save(&self.config_path)
            }
        }
    }

    /// Checks that `checkpoint` carries valid cosignatures by at least the quorum of the
    /// configured witnesses; the error names those that cosigned and those that did not.
    pub fn check_witnesses(&self, checkpoint: &SignedCheckpoint) -> Result<(), String> {
        let quorum = self.remote.quorum;
        if quorum == 0 || self.remote.witnesses.is_empty() {
            return Ok(());
        }
        let note = checkpoint.signed_note();
        let mut signed = Vec::new();
        let mut missing = Vec::new();
        for w in &self.remote.witnesses {
            match w.cosigned_time(note) {
                Ok(_) => signed.push(w.label()),
                Err(e) => missing.push(e.to_string()),
            }
        }
        if signed.len() >= quorum {
            return Ok(());
        }
        let signed = if signed.is_empty() {
            "none".to_string()
        } else {
            signed.join(", ")
        };
        Err(format!(
            "witness quorum not met for the checkpoint of size {}: {} of {quorum} required cosignatures (of {} configured witnesses); cosigned by: {signed}; missing: {}",
            checkpoint.size(),
            self.remote.witnesses.len() - missing.len(),
            self.remote.witnesses.len(),
            missing.join("; ")
        ))
    }

    /// Checks that `checkpoint` carries a cosignature by the timestamp key (or a configured
    /// witness) no older than `max_age` and not from the future; returns its age. The newest
    /// of those times counts.
    pub fn check_fresh(&self, checkpoint: &SignedCheckpoint) -> anyhow::Result<Duration> {
        let key = self.timestamp_key()?;
        let note = checkpoint.signed_note();
        let witnessed = self
            .remote
            .witnesses
            .iter()
            .filter_map(|w| w.cosigned_time(note).ok())
            .max();
        let time = match (key.cosigned_time(note), witnessed) {
            (Ok(t), Some(w)) => t.max(w),
            (Ok(t), None) => t,
            (Err(_), Some(w)) => w,
            (Err(e), None) => {
                return Err(Failure(format!(
                    "{e}: a registry cosigns every checkpoint it serves with its timestamp key, so this one did not come from it as served"
                ))
                .into());
            }
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if time > now.saturating_add(MAX_CLOCK_SKEW.as_secs()) {
            return Err(Failure(format!(
                "the checkpoint is timestamped {} after this machine's clock ({} UTC); one of the two clocks is wrong",
                human(Duration::from_secs(time - now)),
                rfc3339(time)
            ))
            .into());
        }
        let age = Duration::from_secs(now.saturating_sub(time));
        if age > self.max_age {
            return Err(Failure(format!(
                "the registry's checkpoint (size {}) was last timestamped {} ago ({} UTC), longer ago than max_age {}: the registry, or a mirror or proxy in front of it, is frozen or serving an old view. If the registry is known to be down, accept an older view for one command with --max-age",
                checkpoint.size(),
                human(age),
                rfc3339(time),
                human(self.max_age)
            ))
            .into());
        }
        Ok(age)
    }

    /// The error for a checkpoint smaller than the trusted one, with both saved as evidence.
    pub fn rollback(&self, new: &SignedCheckpoint) -> anyhow::Result<anyhow::Error> {
        let Some(trusted) = self.trusted()? else {
            return Ok(anyhow::anyhow!("no trusted checkpoint to compare with"));
        };
        let evidence = self.save_evidence("rollback", &trusted, new, &[])?;
        Ok(Failure(format!(
            "LOG ROLLBACK DETECTED: the registry served a checkpoint of size {} but this client already trusts size {} of {}; evidence saved to {}",
            new.size(),
            trusted.size(),
            self.origin(),
            evidence.display()
        ))
        .into())
    }

    /// Checks `new` against the stored checkpoint, with a consistency proof from the registry,
    /// and stores it if it extends the trusted one. A fork or rollback saves evidence and fails.
    pub fn advance(&self, new: &SignedCheckpoint) -> anyhow::Result<Outcome> {
        let path = self.checkpoint_path();
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let _lock = fsutil::lock(std::path::Path::new(&lock_path))?;
        let Some(trusted) = self.trusted()? else {
            fsutil::write_atomic(&path, new.note.as_bytes())?;
            return Ok(Outcome::FirstSeen);
        };
        let (from, to) = if new.size() >= trusted.size() {
            (trusted.size(), new.size())
        } else {
            (new.size(), trusted.size())
        };
        let proof = if from == to || from == 0 {
            Vec::new()
        } else {
            match self.api.get_json::<ConsistencyProof>(&format!(
                "/v1/log/proof/consistency?from={from}&to={to}"
            )) {
                Ok(p) => decode_hashes(&p.hashes)
                    .map_err(|e| anyhow::anyhow!("consistency proof {from}..{to}: {e}"))?,
                Err(e) if new.size() < trusted.size() => {
                    let evidence = self.save_evidence("rollback", &trusted, new, &[])?;
                    return Err(Failure(format!(
                        "consistency: LOG ROLLBACK DETECTED: the registry's checkpoint has size {} but this client already trusted size {} of {}, and the registry cannot prove the smaller tree is a prefix ({e}); evidence saved to {}",
                        new.size(),
                        trusted.size(),
                        self.origin(),
                        evidence.display()
                    ))
                    .into());
                }
                Err(e) => return Err(e),
            }
        };
        match check_against_trusted(&trusted, new, &proof) {
            Ok(Advance::Newer) => {
                fsutil::write_atomic(&path, new.note.as_bytes())?;
                Ok(Outcome::Advanced {
                    from: trusted.size(),
                })
            }
            Ok(Advance::Same) => Ok(Outcome::Same),
            Ok(Advance::Older) => Ok(Outcome::Older {
                trusted: trusted.size(),
            }),
            Err(CheckpointError::Fork(ev)) => {
                let evidence = self.save_fork(&ev)?;
                Err(Failure(format!(
                    "consistency: {}\nevidence saved to {}",
                    ev.to_string().lines().next().unwrap_or("LOG FORK DETECTED"),
                    evidence.display()
                ))
                .into())
            }
            Err(e) => Err(Failure(format!("consistency: {e}")).into()),
        }
    }

    fn save_fork(&self, ev: &ForkEvidence) -> anyhow::Result<PathBuf> {
        self.save_evidence("fork", &ev.trusted, &ev.new, &ev.proof)
    }

    fn save_evidence(
        &self,
        kind: &str,
        trusted: &SignedCheckpoint,
        new: &SignedCheckpoint,
        proof: &[[u8; 32]],
    ) -> anyhow::Result<PathBuf> {
        use base64::Engine as _;
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let path = self
            .state
            .join("evidence")
            .join(format!("{kind}-{stamp}.txt"));
        let mut text = format!(
            "gridreg {kind} evidence\nregistry {}\nlog key {}\n\n-- trusted checkpoint --\n{}\n-- new checkpoint --\n{}\n-- consistency proof ({} hashes) --\n",
            self.remote.url,
            self.log_key,
            trusted.note,
            new.note,
            proof.len()
        );
        for h in proof {
            text.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
            text.push('\n');
        }
        fsutil::write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }
}

/// How the stored checkpoint moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No checkpoint was stored for this log; this one is trusted from now on.
    FirstSeen,
    Advanced {
        from: u64,
    },
    Same,
    /// The registry served an older (consistent) checkpoint; the stored one stays.
    Older {
        trusted: u64,
    },
}

impl Outcome {
    pub fn describe(&self, new_size: u64) -> String {
        match self {
            Outcome::FirstSeen => {
                format!("first checkpoint seen for this log (size {new_size}); stored")
            }
            Outcome::Advanced { from } => {
                format!("consistent with the stored checkpoint (size {from} -> {new_size})")
            }
            Outcome::Same => format!("same as the stored checkpoint (size {new_size})"),
            Outcome::Older { trusted } => format!(
                "a consistent prefix of the stored checkpoint (size {new_size} <= {trusted})"
            ),
        }
    }
}

/// A duration for people: `42 s`, `5 min`, `3 h 20 min`, `24 h`, `2 d 4 h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m) = (s / 3600, s % 3600 / 60);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ if s <= 86400 && m == 0 => format!("{h} h"),
        3600..86400 => format!("{h} h {m} min"),
        _ if s % 86400 / 3600 == 0 => format!("{} d", s / 86400),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let h = |s| human(Duration::from_secs(s));
        assert_eq!(h(42), "42 s");
        assert_eq!(h(300), "5 min");
        assert_eq!(h(12_000), "3 h 20 min");
        assert_eq!(h(3600), "1 h");
        assert_eq!(h(86_400), "24 h");
        assert_eq!(h(2 * 86_400 + 4 * 3600), "2 d 4 h");
        assert_eq!(h(7 * 86_400), "7 d");
    }
}
