//! `gridreg witness serve`: a C2SP tlog-witness for other logs (gridreg registries or any log
//! with Ed25519 checkpoints). The work is in `gridreg_registry::witness::server`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gridreg_protocol::{Cosigner, VerifierKey};
use gridreg_registry::listen::{self, Limits};
use gridreg_registry::witness::server::{Witness, WitnessConfig};

use crate::exit::Status;

const EXAMPLES: &str = "Examples:
  gridreg keygen --witness --name w1.example -o w1.key     make the witness's cosigner key
  gridreg witness serve --key w1.key --data ./w1 \\
      --log reg.example.com/log=reg.example.com/log+1a2b3c4d+AQ... --addr 0.0.0.0:7480
  gridreg serve --witness http://w1.example:7480=w1.example+5e6f7a8b+BA...   a registry using it
  gridreg registry add main https://reg.example.com --witness w1.example+5e6f7a8b+BA... --quorum 1

Exit status: 0 stopped cleanly; 2 the key, data directory, address or a --log is unusable.";

/// Run a transparency-log witness (C2SP tlog-witness).
///
/// A witness cosigns a log's checkpoint only if it is signed by a key given for that log and
/// is consistent with the last checkpoint the witness cosigned for it, so a log cannot show two
/// different histories to two clients that require the witness's cosignature. Its state (the
/// last size and root per log) is in DATA/witness.db, written durably before any cosignature.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct Opts {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Serve POST /add-checkpoint (and /healthz, /metrics).
    Serve(Serve),
}

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct Serve {
    /// Data directory (witness.db).
    #[arg(long, value_name = "DIR", default_value = "./gridreg-witness")]
    pub data: PathBuf,
    /// The witness's cosigner key file (`gridreg keygen --witness`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// A log to witness: its origin, `=`, a verifier key its checkpoints are signed with (a
    /// bare key stands for KEY_NAME=KEY). Repeat for more logs or more keys of one log.
    #[arg(long = "log", value_name = "ORIGIN=KEY", required = true)]
    pub logs: Vec<String>,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7480")]
    pub addr: String,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let Action::Serve(s) = self.action;
        let key_text = std::fs::read_to_string(&s.key)
            .with_context(|| format!("cannot read the witness key {}", s.key.display()))?;
        let key = Cosigner::parse_key_file(&key_text).with_context(|| {
            format!(
                "{}: expected a cosigner key PRIVATE+KEY+NAME+KEYID+BASE64 (gridreg keygen --witness)",
                s.key.display()
            )
        })?;
        let mut logs = Vec::new();
        for l in &s.logs {
            let (origin, key) = match l.split_once('=') {
                // A verifier key's base64 may end in `=`: split only where a key follows.
                Some((o, k)) if VerifierKey::parse(k).is_ok() => (o.to_string(), k),
                _ => (String::new(), l.as_str()),
            };
            let key = VerifierKey::parse(key).with_context(|| {
                format!("--log {l}: expected ORIGIN=KEY or KEY, with KEY a verifier key NAME+KEYID+BASE64")
            })?;
            let origin = if origin.is_empty() {
                key.name().to_string()
            } else {
                origin
            };
            logs.push((origin, key));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(async move {
            super::serve::init_tracing();
            let witness = Witness::open(WitnessConfig {
                data: s.data.clone(),
                key,
                logs: logs.clone(),
            })
            .await
            .with_context(|| format!("cannot open the witness in {}", s.data.display()))?;
            let listener = tokio::net::TcpListener::bind(&s.addr)
                .await
                .with_context(|| format!("cannot listen on {}", s.addr))?;
            let addr = listener.local_addr()?;
            let origins: Vec<&str> = logs.iter().map(|(o, _)| o.as_str()).collect();
            tracing::info!(%addr, key = %witness.verifier(), logs = ?origins, "witnessing");
            println!("{}", witness.verifier());
            listen::serve(
                listener,
                witness.router(),
                Limits::default(),
                super::serve::shutdown_signal(),
            )
            .await;
            witness.stop().await;
            Ok(Status::Ok)
        })
    }
}
