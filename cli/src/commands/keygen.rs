//! `gridreg keygen`: makes a new Ed25519 signer key, writes it to a private file and prints the
//! verifier key that others put in their namespace records and policies.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use gridreg_protocol::{Cosigner, SignerKey};

use crate::exit::Status;

/// Make a new signing key.
///
/// Writes the signer key (secret) to FILE, readable only by you, and prints the verifier key
/// (public) on standard output. Give the verifier key to whoever needs to check your signatures:
/// a namespace owner grants it a role, a policy lists it under [signers].
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg keygen --name acme-release                 writes acme-release.key
  gridreg keygen --name ci -o ~/.config/gridreg/ci.key
  VK=$(gridreg keygen --name alice)                  keep the verifier key in a variable
  gridreg keygen --witness --name w1.example        a witness's cosigner key
  gridreg keygen --name alice --json                 machine output (name, key_id,
                                                     verifier_key, signer_key_file)

Exit status: 0 the key was written; 2 bad name, or FILE exists or cannot be written.")]
pub struct Opts {
    /// Key name: shown on every signature line (no spaces, no `+`).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Where to write the signer key [default: NAME.key in the current directory]. An existing
    /// file is never overwritten.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Print a JSON object instead of the bare verifier key.
    #[arg(long)]
    pub json: bool,
    /// Make a witness's cosigner key (C2SP tlog-cosignature, for `gridreg witness serve`)
    /// instead of a signer key for records.
    #[arg(long)]
    pub witness: bool,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let cannot = || format!("cannot make a key named `{}`", self.name);
        let (secret, verifier, id) = if self.witness {
            let key = Cosigner::generate(&self.name).with_context(cannot)?;
            let v = key.verifier();
            (key.to_secret_string(), v.to_string(), v.id())
        } else {
            let key = SignerKey::generate(&self.name).with_context(cannot)?;
            (key.to_secret_string(), key.verifier().to_string(), key.id())
        };
        let path = self
            .output
            .unwrap_or_else(|| PathBuf::from(format!("{}.key", self.name)));
        write_secret(&path, &format!("{secret}\n"))?;
        if self.json {
            let out = serde_json::json!({
                "name": self.name,
                "key_id": format!("{id:08x}"),
                "verifier_key": verifier,
                "signer_key_file": path.display().to_string(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("{verifier}");
        }
        eprintln!(
            "wrote signer key to {} (keep it secret); the verifier key is printed above",
            path.display()
        );
        Ok(Status::Ok)
    }
}

/// Creates `path` with mode 0600 and writes `text`, refusing to replace an existing file: a lost
/// signer key cannot be recovered, so overwriting one by accident must be impossible.
fn write_secret(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!(
                "{} already exists; refusing to overwrite a key file (choose another path with -o)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
