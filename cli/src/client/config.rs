//! The client's configuration file: named registries (URL, token, the log key pinned at first
//! contact) and which one is the default.
//!
//! ```toml
//! default = "local"
//!
//! [registries.local]
//! url = "http://127.0.0.1:7411"
//! log_key = "gridreg.local/log+1a2b3c4d+AQ..."   # pinned; checkpoints must verify under it
//! timestamp_key = "gridreg.local/log/timestamp+5e6f7a8b+BA..."  # pinned; named by the log key
//! max_age = "24h"                                 # oldest checkpoint timestamp accepted
//! token_env = "GRIDREG_TOKEN"                     # or: token = "grt_..."
//! witnesses = ["w1.example+5e6f7a8b+BA..."]       # C2SP witnesses' cosigner keys
//! quorum = 1                                      # valid witness cosignatures required
//! ```
//!
//! It lives at `$GRIDREG_CONFIG`, else `$XDG_CONFIG_HOME/gridreg/config.toml`, else
//! `$HOME/.config/gridreg/config.toml`. Writes go to a temporary file that is renamed over the old
//! one, so a crash never leaves half a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use std::time::Duration;

use gridreg_protocol::api::DEFAULT_REGISTRY_ADDR;
use gridreg_protocol::{CosignerKey, VerifierKey};
use serde::{Deserialize, Serialize};

use super::fsutil;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Name of the registry used when `--registry` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    pub url: String,
    /// The log's verifier key (`ORIGIN+KEYID+BASE64`); `None` until first contact pins it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_key: Option<String>,
    /// The timestamp key the log key names (`/v1/log/timestamp-key`), pinned with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_key: Option<String>,
    /// Oldest timestamp on a checkpoint this client accepts, like `90s`, `30m`, `24h`, `7d`
    /// (default [`DEFAULT_MAX_AGE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Name of an environment variable holding the token (keeps it out of the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// Witnesses' cosigner keys (`NAME+KEYID+BASE64`, C2SP tlog-cosignature).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<String>,
    /// How many of `witnesses` must have cosigned a checkpoint (default: all of them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<usize>,
}

/// How old a checkpoint's timestamp may be when a registry sets no `max_age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses a duration written as a whole number and a unit: `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 90s, 30m, 24h or 7d, found `{s}`");
    let unit_at = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = s.split_at(unit_at);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(60 * 60),
        "d" => n.checked_mul(24 * 60 * 60),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_secs(secs))
}

/// Where the configuration file is.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = env_path("GRIDREG_CONFIG") {
        return Ok(p);
    }
    let base = env_path("XDG_CONFIG_HOME")
        .or_else(|| env_path("HOME").map(|h| h.join(".config")))
        .context("cannot find the configuration file: set $GRIDREG_CONFIG or $HOME")?;
    Ok(base.join("gridreg").join("config.toml"))
}

pub(crate) fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Config {
    /// Reads the configuration; a missing file is an empty configuration.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        for (name, entry) in &config.registries {
            if let Some(k) = &entry.log_key {
                VerifierKey::parse(k).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: registries.{name}.log_key: expected a verifier key NAME+KEYID+BASE64: {e}",
                        path.display()
                    )
                })?;
            }
            if let Some(k) = &entry.timestamp_key {
                CosignerKey::parse(k).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: registries.{name}.timestamp_key: expected a cosigner key NAME+KEYID+BASE64: {e}",
                        path.display()
                    )
                })?;
            }
            for k in &entry.witnesses {
                CosignerKey::parse(k).map_err(|e| {
                    anyhow::anyhow!(
                        "{}: registries.{name}.witnesses: expected a cosigner key NAME+KEYID+BASE64, found {k:?}: {e}",
                        path.display()
                    )
                })?;
            }
            if let Some(q) = entry.quorum
                && (q == 0 || q > entry.witnesses.len())
            {
                bail!(
                    "{}: registries.{name}.quorum = {q}: expected 1 to the number of witnesses ({})",
                    path.display(),
                    entry.witnesses.len()
                );
            }
            if let Some(a) = &entry.max_age {
                parse_duration(a).map_err(|e| {
                    anyhow::anyhow!("{}: registries.{name}.max_age: {e}", path.display())
                })?;
            }
        }
        if let Some(d) = &config.default
            && !config.registries.contains_key(d)
        {
            bail!(
                "{}: default = {d:?}, but there is no [registries.{d}]",
                path.display()
            );
        }
        Ok(config)
    }

    /// Writes the configuration atomically, creating its directory.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self).context("encoding the configuration")?;
        let header = "# gridreg client configuration; see `gridreg registry --help`.\n";
        fsutil::write_atomic(path, format!("{header}{text}").as_bytes())
    }
}

/// The registry a command talks to, resolved from `--registry` and the configuration.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The configured name, or the URL when it is not configured.
    pub name: String,
    pub url: String,
    pub token: Option<String>,
    /// The pinned log key, if any.
    pub log_key: Option<VerifierKey>,
    /// The pinned timestamp key, if any.
    pub timestamp_key: Option<CosignerKey>,
    pub max_age: Duration,
    /// Witness keys whose cosignatures count, and how many are required (0: none).
    pub witnesses: Vec<CosignerKey>,
    pub quorum: usize,
    /// Whether this registry has an entry in the configuration (pins are saved there).
    pub configured: bool,
}

/// Normalises a registry URL: adds `http://` to a bare `host:port`, drops trailing slashes.
pub fn normalise_url(raw: &str) -> anyhow::Result<String> {
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let url = url.trim_end_matches('/').to_string();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(url),
        _ => bail!("expected a registry URL like http://host:port or https://host, found {raw:?}"),
    }
}

/// A name for a registry first seen by URL: its host and port.
pub fn name_for_url(url: &str) -> String {
    let host = url.split_once("://").map_or(url, |(_, h)| h);
    host.split('/')
        .next()
        .unwrap_or(host)
        .replace([':', '.'], "-")
}

impl Config {
    /// Resolves `--registry NAME|URL` (or the default) to a registry.
    pub fn resolve(&self, flag: Option<&str>) -> anyhow::Result<Remote> {
        let wanted = flag.map(str::to_string).or_else(|| {
            std::env::var("GRIDREG_REGISTRY")
                .ok()
                .filter(|s| !s.is_empty())
        });
        let by_name = |name: &str| -> anyhow::Result<Remote> {
            let e = &self.registries[name];
            Ok(Remote {
                name: name.to_string(),
                url: normalise_url(&e.url)?,
                token: token_of(name, e)?,
                log_key: e
                    .log_key
                    .as_deref()
                    .map(VerifierKey::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("registry {name}: log_key: {e}"))?,
                timestamp_key: e
                    .timestamp_key
                    .as_deref()
                    .map(CosignerKey::parse)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("registry {name}: timestamp_key: {e}"))?,
                max_age: e
                    .max_age
                    .as_deref()
                    .map(parse_duration)
                    .transpose()
                    .map_err(|e| anyhow::anyhow!("registry {name}: max_age: {e}"))?
                    .unwrap_or(DEFAULT_MAX_AGE),
                witnesses: e
                    .witnesses
                    .iter()
                    .map(|k| CosignerKey::parse(k))
                    .collect::<Result<_, _>>()
                    .map_err(|e| anyhow::anyhow!("registry {name}: witnesses: {e}"))?,
                quorum: e.quorum.unwrap_or(e.witnesses.len()),
                configured: true,
            })
        };
        // A URL uses its configured entry (and so its pinned key) when it has one.
        let by_url = |raw: &str| -> anyhow::Result<Remote> {
            let url = normalise_url(raw)?;
            match self.name_of_url(&url) {
                Some(name) => by_name(&name),
                None => Ok(Remote {
                    name: url.clone(),
                    url,
                    token: None,
                    log_key: None,
                    timestamp_key: None,
                    max_age: DEFAULT_MAX_AGE,
                    witnesses: Vec::new(),
                    quorum: 0,
                    configured: false,
                }),
            }
        };
        match wanted {
            Some(w) if self.registries.contains_key(&w) => by_name(&w),
            Some(w) => {
                if !w.contains("://") && !w.contains(':') {
                    let known: Vec<&str> = self.registries.keys().map(String::as_str).collect();
                    bail!(
                        "no registry named {w:?} in the configuration (known: {}); give a URL or `gridreg registry add {w} URL`",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    );
                }
                by_url(&w)
            }
            None => match &self.default {
                Some(d) => by_name(d),
                None => by_url(DEFAULT_REGISTRY_ADDR),
            },
        }
    }

    fn name_of_url(&self, url: &str) -> Option<String> {
        self.registries
            .iter()
            .find(|(_, e)| normalise_url(&e.url).is_ok_and(|u| u == url))
            .map(|(n, _)| n.clone())
    }
}

fn token_of(name: &str, e: &RegistryEntry) -> anyhow::Result<Option<String>> {
    if let Some(var) = &e.token_env {
        return match std::env::var(var) {
            Ok(t) if !t.is_empty() => Ok(Some(t)),
            _ => bail!("registry {name}: token_env = {var:?}, but ${var} is not set"),
        };
    }
    Ok(e.token.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            normalise_url("127.0.0.1:7411").unwrap(),
            "http://127.0.0.1:7411"
        );
        assert_eq!(
            normalise_url("https://reg.example.com/").unwrap(),
            "https://reg.example.com"
        );
        assert!(normalise_url("http://").is_err());
        assert_eq!(name_for_url("http://127.0.0.1:7411"), "127-0-0-1-7411");
    }

    #[test]
    fn resolves_names_urls_and_the_default() {
        let mut c = Config::default();
        c.registries.insert(
            "acme".into(),
            RegistryEntry {
                url: "https://reg.acme.test/".into(),
                log_key: None,
                timestamp_key: None,
                max_age: None,
                token: Some("grt_x".into()),
                token_env: None,
                witnesses: Vec::new(),
                quorum: None,
            },
        );
        let r = c.resolve(Some("acme")).unwrap();
        assert_eq!(r.url, "https://reg.acme.test");
        assert_eq!(r.token.as_deref(), Some("grt_x"));
        // A URL that is configured picks up its entry.
        assert_eq!(
            c.resolve(Some("https://reg.acme.test")).unwrap().name,
            "acme"
        );
        assert!(!c.resolve(Some("http://other:1")).unwrap().configured);
        let err = c.resolve(Some("nope")).unwrap_err().to_string();
        assert!(err.contains("no registry named \"nope\""), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("24h"), Ok(DEFAULT_MAX_AGE));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in [
            "",
            "h",
            "24",
            "1.5h",
            "-1h",
            "24 h",
            "99999999999999999999d",
            "1w",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_files_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[registries.a]\nurl = \"http://x\"\nlog_key = \"nope\"\n",
        )
        .unwrap();
        let err = Config::load(&p).unwrap_err().to_string();
        assert!(err.contains("registries.a.log_key"), "{err}");
        std::fs::write(&p, "default = \"b\"\n").unwrap();
        assert!(
            Config::load(&p)
                .unwrap_err()
                .to_string()
                .contains("no [registries.b]")
        );
        std::fs::write(&p, "colour = 1\n").unwrap();
        assert!(Config::load(&p).is_err());
        assert_eq!(
            Config::load(&dir.path().join("missing")).unwrap(),
            Config::default()
        );
    }
}
