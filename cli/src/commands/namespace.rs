//! `gridreg namespace claim|grant|revoke|show`: signed namespace records, posted to the log and
//! checked like a publish.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use gridreg_protocol::record::{NamespaceOp, NamespaceRecord, Role};
use gridreg_protocol::{ChainKey, Namespace, Record, Timestamp};

use crate::client::{self, trust, verify};
use crate::commands::RegistryOpt;
use crate::exit::Status;

/// Claim a namespace, or grant and revoke keys' roles in it.
///
/// Every change is a record signed by your key and appended to the registry's transparency log:
/// a claim is signed by the key that becomes the owner; a grant or revoke by a current owner.
/// Owners may grant and revoke; publishers may publish and yank.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg namespace claim acme --key alice.key
  gridreg namespace grant acme --key alice.key --to \"$(cat ci.pub)\" --role publish
  gridreg namespace grant acme --key alice.key --to ci.key --role publish
  gridreg namespace revoke acme --key alice.key --to ci.key --role publish
  gridreg namespace show acme

Exit status: 0 done; 1 the registry's answer did not verify; 2 bad input or the registry refused
the record (for example: already claimed, not an owner).")]
pub struct Opts {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Take an unclaimed namespace; your key becomes its owner.
    Claim(Change),
    /// Give a key a role in a namespace (signed by an owner).
    Grant(Grant),
    /// Take a key's role away (signed by an owner).
    Revoke(Grant),
    /// Print the namespace's keys, replayed and verified from its log records.
    Show(Show),
}

#[derive(Debug, Args)]
pub struct Change {
    /// The namespace (lowercase kebab, as in WIT package names).
    #[arg(value_name = "NS")]
    pub namespace: String,
    /// Your signer key file.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    #[command(flatten)]
    pub registry: RegistryOpt,
}

#[derive(Debug, Args)]
pub struct Grant {
    #[command(flatten)]
    pub change: Change,
    /// The key whose role changes: a verifier key, or a file holding a verifier or signer key.
    #[arg(long, value_name = "KEY")]
    pub to: String,
    #[arg(long, value_enum, default_value_t = RoleArg::Publish)]
    pub role: RoleArg,
}

#[derive(Debug, Args)]
pub struct Show {
    #[arg(value_name = "NS")]
    pub namespace: String,
    #[command(flatten)]
    pub registry: RegistryOpt,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Owner,
    Publish,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        match self.action {
            Action::Claim(c) => {
                let signer = client::load_signer(&c.key)?;
                let key = signer.verifier();
                post(&c, NamespaceOp::Claim, key, Role::Owner)
            }
            Action::Grant(g) => {
                let key = client::parse_verifier(&g.to).context("--to")?;
                post(&g.change, NamespaceOp::Grant, key, role(g.role))
            }
            Action::Revoke(g) => {
                let key = client::parse_verifier(&g.to).context("--to")?;
                post(&g.change, NamespaceOp::Revoke, key, role(g.role))
            }
            Action::Show(s) => show(&s),
        }
    }
}

fn role(r: RoleArg) -> Role {
    match r {
        RoleArg::Owner => Role::Owner,
        RoleArg::Publish => Role::Publish,
    }
}

fn post(
    c: &Change,
    op: NamespaceOp,
    key: gridreg_protocol::VerifierKey,
    role: Role,
) -> anyhow::Result<Status> {
    let namespace = Namespace::parse(&c.namespace).context("namespace")?;
    let signer = client::load_signer(&c.key)?;
    let session = trust::connect(c.registry.get())?;
    let chain = ChainKey::Namespace(namespace.clone());
    let done = client::submit_chained(&session, &chain, |prev| {
        let record = Record::Namespace(NamespaceRecord {
            namespace: namespace.clone(),
            prev,
            op,
            key: key.clone(),
            role,
            time: Timestamp::now(),
        });
        record.sign(&[&signer]).context("signing the record")
    })?;
    let what = match op {
        NamespaceOp::Claim => format!("claimed {namespace}; owner {key}"),
        NamespaceOp::Grant => format!("granted {role} in {namespace} to {key}"),
        NamespaceOp::Revoke => format!("revoked {role} in {namespace} from {key}"),
    };
    println!(
        "{what}\n  at log index {} (verified in checkpoint {})",
        done.index,
        done.checkpoint.size()
    );
    Ok(Status::Ok)
}

fn show(s: &Show) -> anyhow::Result<Status> {
    let namespace = Namespace::parse(&s.namespace).context("namespace")?;
    let session = trust::connect(s.registry.get())?;
    let (proven, checkpoint) = verify::namespace_evidence(&session, &namespace)?;
    if proven.head.is_none() {
        return Err(anyhow::anyhow!(
            "namespace {namespace} is not claimed at {} (the head map proves it absent as of log size {})",
            session.remote.url,
            checkpoint.size()
        ));
    }
    let state = proven.state;
    let current = state.current(&namespace);
    if s.json {
        let members: Vec<serde_json::Value> = current
            .iter()
            .map(|(k, r)| serde_json::json!({"key": k.to_string(), "role": r.to_string()}))
            .collect();
        let history: Vec<serde_json::Value> = state
            .history(&namespace)
            .iter()
            .map(|m| serde_json::json!({"key": m.key.to_string(), "role": m.role.to_string(), "from": m.from, "until": m.until}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "namespace": namespace.to_string(),
                "members": members,
                "history": history,
                "checkpoint_size": checkpoint.size(),
            }))?
        );
    } else {
        println!(
            "namespace {namespace} ({} records, its whole chain proven by the head map at checkpoint {})",
            proven.records,
            checkpoint.size()
        );
        for (k, r) in current {
            println!("  {r:<8} {k}");
        }
    }
    Ok(Status::Ok)
}
