//! What the client trusts about a log, and how that trust moves forward.
//!
//! - The log key: pinned in the configuration at first contact (trust on first use, said loudly)
//!   or set by `gridreg registry add --log-key`. Every checkpoint must verify under it.
//! - The last checkpoint seen, per log (origin and key id), under the user's state directory
//!   (`$GRIDREG_STATE_DIR`, else `$XDG_STATE_HOME/gridreg`, else `$HOME/.local/state/gridreg`).
//!   It only ever moves to a checkpoint proven consistent with it, and it is rewritten atomically
//!   under a lock, re-reading the stored one inside the lock, so concurrent runs never roll it back.
//! - A fork (two views of history that cannot both be true) or a rollback (the log shrank) is a
//!   hard error; both checkpoints and the proof are saved as evidence before the error is reported.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use gridreg_protocol::api::{ConsistencyProof, decode_hashes};
use gridreg_protocol::checkpoint::{Advance, CheckpointError, ForkEvidence, check_against_trusted};
use gridreg_protocol::{SignedCheckpoint, VerifierKey, key_label};

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

/// A registry with its log key settled: the API plus what the client trusts about its log.
pub struct Session {
    pub remote: Remote,
    pub api: Api,
    pub log_key: VerifierKey,
    state: PathBuf,
}

/// Opens a session with the registry `flag` names (or the default), pinning the log key on
/// first contact.
pub fn connect(flag: Option<&str>) -> anyhow::Result<Session> {
    let config_path = config::path()?;
    let config = Config::load(&config_path)?;
    let remote = config.resolve(flag)?;
    let api = Api::new(&remote.url, remote.token.clone());
    let log_key = match &remote.log_key {
        Some(k) => k.clone(),
        None => pin_on_first_use(&api, &remote, &config_path)?,
    };
    Ok(Session {
        remote,
        api,
        log_key,
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
            token: None,
            token_env: None,
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
        self.state
            .join("checkpoints")
            .join(key_label(&safe, self.log_key.id()))
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
