//! `gridreg run`: run a command component in wasmtime with only what the policy grants.

use anyhow::{Context, bail};
use clap::Args;
use gridreg_verifier::audit;

use crate::client;
use crate::commands::RegistryOpt;
use crate::exit::{Failure, Status};
use crate::input;
use crate::output::{Style, paint};
use crate::policy_file;
use crate::runtime::{self, Budget, Notes, Outcome, RunError, cache::Lookup, grants};

/// Run a `wasi:cli/run` component in wasmtime, linking only what the policy grants.
///
/// The component's imports are judged by the policy first: one the policy refuses stops the run
/// before anything is compiled, naming the import, its class and the rule. The guest then gets
/// stdio and its arguments, and nothing else unless granted here: no inherited environment, no
/// directories, no network. Grants are capped by the policy too (asking for --allow-host under a
/// policy that denies network is an error). Compiled code is cached in the user's cache directory
/// ($GRIDREG_CACHE_DIR, $XDG_CACHE_HOME/gridreg/compiled or ~/.cache/gridreg/compiled).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg run hello.wasm
  gridreg run app.wasm --policy ci --env GREETING=hi -- --verbose
  gridreg run reader.wasm --policy my.toml --dir ./data::/data          read-only preopen
  gridreg run writer.wasm --policy my.toml --dir ./out::/out:rw         read-write preopen
  gridreg run client.wasm --policy my.toml --allow-host api.example.com:443
  gridreg run untrusted.wasm --timeout 5s --max-memory 64MiB

Exit status: the guest's own exit code when it ends by itself; 1 the policy refuses the component
or a grant (or the guest exits 1); 2 usage or input error; 124 --timeout or --fuel ran out;
125 --max-memory was reached; 134 the guest trapped.")]
pub struct Opts {
    /// The component: a .wasm file, or a registry reference (`ns:name@1.2`) that is pulled
    /// and verified first (signature, key authorisation, log inclusion and consistency, and the
    /// policy), honouring ./gridreg.lock.
    #[arg(value_name = "FILE|REF")]
    pub file: String,
    #[command(flatten)]
    pub registry: RegistryOpt,
    /// Policy file, or a built-in policy name.
    #[arg(long, short, default_value = "default")]
    pub policy: String,
    /// Preopen a host directory: HOST::GUEST, read-only unless HOST::GUEST:rw.
    #[arg(long = "dir", value_name = "HOST::GUEST[:rw]")]
    pub dirs: Vec<String>,
    /// Set an environment variable for the guest (nothing is inherited).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Let the guest reach this host (TCP/UDP and outgoing HTTP, as far as the policy allows).
    /// The guest may look up only names given here; any other lookup is refused unsent.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    pub allow_hosts: Vec<String>,
    /// Stop the guest after this many units of fuel (about one per instruction).
    #[arg(long, value_name = "N", conflicts_with = "timeout")]
    pub fuel: Option<u64>,
    /// Stop the guest after this much wall-clock time: 500ms, 10s, 2m.
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<String>,
    /// Cap the guest's linear memory (all memories together): 64MiB (or 64M), 1GiB, bytes.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Do not read or write the compiled-code cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Judge exemption expiry as of this date (YYYY-MM-DD) instead of today (UTC).
    #[arg(long, value_name = "DATE", hide = true)]
    pub today: Option<String>,
    /// Arguments for the guest (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let policy = policy_file::load(&self.policy)?;
        let today = policy_file::today(self.today.as_deref())?;
        let budget = match (self.fuel, &self.timeout) {
            (Some(0), _) => bail!("--fuel: expected a positive number of units, found 0"),
            (Some(n), _) => Budget::Fuel(n),
            (None, Some(t)) => Budget::Timeout(
                runtime::parse_duration(t).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?,
            ),
            (None, None) => Budget::Unlimited,
        };
        let max_memory = match &self.max_memory {
            Some(s) => Some(
                runtime::parse_memory_limit(s).map_err(|e| anyhow::anyhow!("--max-memory: {e}"))?,
            ),
            None => None,
        };
        let mut asked = grants::Grants::default();
        for d in &self.dirs {
            asked.dirs.push(grants::parse_dir(d)?);
        }
        for e in &self.env {
            asked.env.push(grants::parse_env(e)?);
        }
        for h in &self.allow_hosts {
            asked.hosts.push(grants::parse_host(h)?);
        }

        let input =
            match client::fetch_reference(&self.file, self.registry.get(), Some(&policy), today)? {
                Some(fetched) => fetched,
                None => input::read(&self.file)?,
            };
        let audit =
            audit(&input.bytes).with_context(|| format!("`{}` is not valid", input.name))?;
        let cache_dir = if self.no_cache {
            None
        } else {
            runtime::cache::default_dir()
        };
        let mut notes = Notes::default();
        let result = runtime::run(
            runtime::Request {
                name: &input.name,
                bytes: &input.bytes,
                audit: &audit,
                policy: &policy,
                today,
                grants: asked,
                args: self.args,
                budget,
                max_memory,
                cache_dir: cache_dir.clone(),
            },
            &mut notes,
        );
        for w in &notes.warnings {
            eprintln!("{}: {w}", paint(Style::Warn, "warning"));
        }
        match &notes.cache {
            Some(Lookup::Rebuilt(why)) => eprintln!(
                "{}: the compiled-code cache entry was corrupt and has been rebuilt ({why})",
                paint(Style::Warn, "warning")
            ),
            Some(Lookup::NotStored(why)) if !self.no_cache => eprintln!(
                "{}: compiled code was not cached: {why}",
                paint(Style::Warn, "warning")
            ),
            _ => {}
        }
        match result {
            Ok(Outcome::Exited(0)) => Ok(Status::Ok),
            // A code the shell cannot carry (negative, or 256 and up, which would wrap to
            // success) is reported as a plain failure.
            Ok(Outcome::Exited(code)) => Ok(Status::Code(u8::try_from(code).unwrap_or(1))),
            Ok(Outcome::Stopped { status, message }) => {
                eprintln!("{}: {message}", paint(Style::Bad, "gridreg run"));
                Ok(Status::Code(status))
            }
            Err(RunError::Refused(msg)) => Err(Failure(msg).into()),
            Err(RunError::Input(msg)) => Err(anyhow::Error::msg(msg)),
            Err(RunError::Wasmtime(e)) => {
                Err(anyhow::Error::from(e).context(format!("cannot run `{}`", input.name)))
            }
        }
    }
}
