//! `gridreg registry add|list|remove`: the named registries in the client configuration.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use crate::client::config::{self, Config, RegistryEntry};
use crate::client::{fsutil, parse_verifier};
use crate::exit::Status;

/// Manage the registries this client knows (in ~/.config/gridreg/config.toml or $GRIDREG_CONFIG).
///
/// Each registry has a URL, optionally a token (or the name of an environment variable holding
/// one), and the log's verifier key. Without --log-key the key is pinned at first contact (trust
/// on first use) and printed; with it, the client never trusts anything else.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg registry add acme https://reg.acme.example --log-key 'reg.acme.example/log+1a2b3c4d+AQ...' --default
  gridreg registry add local 127.0.0.1:7411 --token-env GRIDREG_TOKEN
  gridreg registry add acme https://reg.acme.example --witness 'w1.example+5e6f7a8b+BA...' \
      --witness 'w2.example+9c0d1e2f+BA...' --quorum 1     checkpoints need 1 of 2 witnesses
  gridreg registry list
  gridreg registry remove acme")]
pub struct Opts {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Add (or replace) a named registry.
    Add(Add),
    /// List the configured registries.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Forget a registry.
    Remove {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct Add {
    #[arg(value_name = "NAME")]
    pub name: String,
    #[arg(value_name = "URL")]
    pub url: String,
    /// The log's verifier key (or a file holding it); skips trust on first use.
    #[arg(long, value_name = "KEY")]
    pub log_key: Option<String>,
    /// A bearer token (stored in the configuration file).
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_env")]
    pub token: Option<String>,
    /// Read the token from this environment variable at each use.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Refuse checkpoints whose timestamp is older than this (90s, 30m, 24h, 7d; default 24h):
    /// a registry or mirror that stopped renewing it is frozen or replaying an old view.
    #[arg(long, value_name = "DURATION", value_parser = config::parse_duration)]
    pub max_age: Option<std::time::Duration>,
    /// A witness's cosigner key (C2SP tlog-cosignature, NAME+KEYID+BASE64); repeat for more.
    /// Checkpoints must carry valid cosignatures from --quorum of them.
    #[arg(long = "witness", value_name = "KEY")]
    pub witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned a checkpoint [default: all].
    #[arg(long, value_name = "K", requires = "witnesses", value_parser = clap::value_parser!(u32).range(1..))]
    pub quorum: Option<u32>,
    /// Make it the default registry.
    #[arg(long)]
    pub default: bool,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let path = config::path()?;
        let _lock = fsutil::lock(&path.with_extension("lock"))?;
        let mut cfg = Config::load(&path)?;
        match self.action {
            Action::Add(a) => {
                if a.name.is_empty()
                    || !a
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    bail!(
                        "registry names are letters, digits, `-` and `_`; found {:?}",
                        a.name
                    );
                }
                let url = config::normalise_url(&a.url)?;
                let log_key = a
                    .log_key
                    .as_deref()
                    .map(parse_verifier)
                    .transpose()
                    .context("--log-key")?;
                let mut witnesses = Vec::new();
                for w in &a.witnesses {
                    let k = gridreg_protocol::CosignerKey::parse(w.trim()).with_context(|| {
                        format!(
                            "--witness {w}: expected a witness's cosigner key NAME+KEYID+BASE64"
                        )
                    })?;
                    witnesses.push(k.to_string());
                }
                let quorum = a.quorum.map(|q| q as usize);
                if let Some(q) = quorum
                    && q > witnesses.len()
                {
                    bail!(
                        "--quorum {q}: expected at most the number of --witness keys ({})",
                        witnesses.len()
                    );
                }
                cfg.registries.insert(
                    a.name.clone(),
                    RegistryEntry {
                        url: url.clone(),
                        log_key: log_key.as_ref().map(ToString::to_string),
                        timestamp_key: None,
                        max_age: a.max_age.map(|d| format!("{}s", d.as_secs())),
                        token: a.token,
                        token_env: a.token_env,
                        witnesses,
                        quorum,
                    },
                );
                if a.default || cfg.default.is_none() {
                    cfg.default = Some(a.name.clone());
                }
                cfg.save(&path)?;
                match log_key {
                    Some(k) => println!("added {} ({url}), log key {k}", a.name),
                    None => println!(
                        "added {} ({url}); its log key will be pinned at first contact",
                        a.name
                    ),
                }
            }
            Action::List { json } => {
                if json {
                    let list: Vec<serde_json::Value> = cfg
                        .registries
                        .iter()
                        .map(|(n, e)| {
                            serde_json::json!({
                                "name": n,
                                "url": e.url,
                                "log_key": e.log_key,
                                "timestamp_key": e.timestamp_key,
                                "max_age": e.max_age.as_deref().unwrap_or("24h"),
                                "token": e.token.as_ref().map(|_| "<set>"),
                                "token_env": e.token_env,
                                "witnesses": e.witnesses,
                                "quorum": e.quorum.unwrap_or(e.witnesses.len()),
                                "default": cfg.default.as_deref() == Some(n.as_str()),
                            })
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else if cfg.registries.is_empty() {
                    println!(
                        "no registries configured ({}); commands use http://127.0.0.1:7411",
                        path.display()
                    );
                } else {
                    for (n, e) in &cfg.registries {
                        let mark = if cfg.default.as_deref() == Some(n.as_str()) {
                            "*"
                        } else {
                            " "
                        };
                        println!(
                            "{mark} {n:<16} {:<32} {}",
                            e.url,
                            e.log_key.as_deref().unwrap_or("(log key not pinned yet)")
                        );
                    }
                }
            }
            Action::Remove { name } => {
                if cfg.registries.remove(&name).is_none() {
                    bail!("no registry named {name:?} in {}", path.display());
                }
                if cfg.default.as_deref() == Some(name.as_str()) {
                    cfg.default = None;
                }
                cfg.save(&path)?;
                println!("removed {name}");
            }
        }
        Ok(Status::Ok)
    }
}
