//! `gridreg run`: run a command component in wasmtime with only what the policy grants, or serve
//! an HTTP handler component (`--listen`) with a fresh instance per request.

use anyhow::{Context, bail};
use clap::Args;
use gridreg_verifier::audit;

use crate::client;
use crate::commands::RegistryOpt;
use crate::exit::{Failure, Status};
use crate::input;
use crate::output::{Style, paint};
use crate::policy_file;
use crate::runtime::{self, Budget, Notes, Outcome, RunError, grants, serve};

/// Where a handler component is served when --listen is not given.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// --listen's time budget per request when --timeout is not given.
const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// --listen's memory cap per instance when --max-memory is not given.
const DEFAULT_INSTANCE_MEMORY: usize = 256 << 20;
/// Requests that may wait for a free instance, per instance slot.
const QUEUE_PER_SLOT: usize = 8;

/// `HOST:PORT` for --listen; `localhost` is 127.0.0.1.
fn parse_listen(addr: &str) -> anyhow::Result<std::net::SocketAddr> {
    let spelled = addr.replace("localhost:", "127.0.0.1:");
    spelled.parse().map_err(|_| {
        anyhow::anyhow!(
            "--listen: expected HOST:PORT with an IP address (127.0.0.1:8080, [::1]:8080, \
             0.0.0.0:0), found {addr:?}"
        )
    })
}

/// Run a `wasi:cli/run` component in wasmtime, linking only what the policy grants, or serve a
/// `wasi:http/incoming-handler` component over HTTP.
///
/// The component's imports are judged by the policy first: one the policy refuses stops the run
/// before anything is compiled, naming the import, its class and the rule. The guest then gets
/// stdio and its arguments, and nothing else unless granted here: no inherited environment, no
/// directories, no network. Grants are capped by the policy too (asking for --allow-host under a
/// policy that denies network is an error). Compiled code is cached in the user's cache directory
/// ($GRIDREG_CACHE_DIR, $XDG_CACHE_HOME/gridreg/compiled or ~/.cache/gridreg/compiled).
///
/// With --listen (or for a component that exports wasi:http/incoming-handler@0.2.x and no
/// wasi:cli/run) the component is served over HTTP/1.1 after the same checks: every request gets a
/// fresh instance under --timeout, --max-memory and --fuel, at most --max-concurrency run at
/// once, one access-log line per request goes to stderr, and SIGTERM or Ctrl-C finishes the
/// requests in flight (within --shutdown-timeout) before exiting.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  gridreg run hello.wasm
  gridreg run app.wasm --policy ci --env GREETING=hi -- --verbose
  gridreg run reader.wasm --policy my.toml --dir ./data::/data          read-only preopen
  gridreg run writer.wasm --policy my.toml --dir ./out::/out:rw         read-write preopen
  gridreg run client.wasm --policy my.toml --allow-host api.example.com:443
  gridreg run untrusted.wasm --timeout 5s --max-memory 64MiB
  gridreg run handler.wasm --listen 127.0.0.1:8080 --policy http-proxy
  gridreg run service.wasm --listen 0.0.0.0:8080 --env AUTH_TOKEN=s3cret --max-concurrency 16

Exit status: the guest's own exit code when it ends by itself; 1 the policy refuses the component
or a grant (or the guest exits 1); 2 usage or input error; 124 --timeout or --fuel ran out;
125 --max-memory was reached; 134 the guest trapped. With --listen: 0 after a clean shutdown,
1 refused by the policy, 2 usage or input error; a failed request is answered 500 and the server
goes on.")]
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
    /// Stop the guest after this many units of fuel (about one per instruction); with --listen,
    /// per request.
    #[arg(long, value_name = "N", conflicts_with = "timeout")]
    pub fuel: Option<u64>,
    /// Stop the guest after this much wall-clock time: 500ms, 10s, 2m. With --listen, per
    /// request (default 30s).
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<String>,
    /// Cap the guest's linear memory (all memories together): 64MiB (or 64M), 1GiB, bytes. With
    /// --listen, per instance (default 256MiB).
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<String>,
    /// Serve the component's wasi:http/incoming-handler on this address (HOST:PORT; port 0 picks
    /// a free one). Without it, a component that exports a handler and no wasi:cli/run is served
    /// on 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// With --listen: instances running at once; more requests wait (see --queue-timeout).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_concurrency: usize,
    /// With --listen: how long a request waits for a free instance before it gets 503.
    #[arg(long, value_name = "DUR", default_value = "1s")]
    pub queue_timeout: String,
    /// With --listen: after SIGTERM or Ctrl-C, how long requests in flight may take to finish.
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub shutdown_timeout: String,
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
        let listen = match &self.listen {
            Some(addr) => Some(addr.as_str()),
            None if !runtime::exports_command(&audit) && serve::exports_handler(&audit) => {
                Some(DEFAULT_LISTEN)
            }
            None => None,
        };
        if let Some(addr) = listen {
            if !self.args.is_empty() {
                bail!(
                    "--listen: a served component gets no arguments, found {} after `--`",
                    self.args.len()
                );
            }
            let limits = serve::Limits {
                timeout: match budget {
                    Budget::Timeout(d) => d,
                    _ => DEFAULT_REQUEST_TIMEOUT,
                },
                fuel: match budget {
                    Budget::Fuel(n) => Some(n),
                    _ => None,
                },
                max_memory: max_memory.unwrap_or(DEFAULT_INSTANCE_MEMORY),
                max_concurrency: self.max_concurrency,
                max_queue: self.max_concurrency.saturating_mul(QUEUE_PER_SLOT),
                queue_timeout: runtime::parse_duration(&self.queue_timeout)
                    .map_err(|e| anyhow::anyhow!("--queue-timeout: {e}"))?,
                shutdown_timeout: runtime::parse_duration(&self.shutdown_timeout)
                    .map_err(|e| anyhow::anyhow!("--shutdown-timeout: {e}"))?,
            };
            let addr = parse_listen(addr)?;
            let mut notes = Notes::default();
            let result = serve::serve(
                serve::ServeRequest {
                    name: &input.name,
                    bytes: &input.bytes,
                    audit: &audit,
                    policy: &policy,
                    today,
                    grants: asked,
                    limits,
                    cache_dir,
                    addr,
                },
                &mut notes,
                |lines| {
                    for (i, line) in lines.iter().enumerate() {
                        if i + 1 == lines.len() {
                            eprintln!("{}: {line}", paint(Style::Good, "gridreg run"));
                        } else {
                            eprintln!("{}: {line}", paint(Style::Warn, "warning"));
                        }
                    }
                },
            );
            for w in &notes.warnings {
                eprintln!("{}: {w}", paint(Style::Warn, "warning"));
            }
            return match result {
                Ok(()) => Ok(Status::Ok),
                Err(e) => Err(run_error(e, "serve", &input.name)),
            };
        }
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
        // With --no-cache there is nothing to warn about.
        if let Some(w) = notes.cache_warning()
            && !self.no_cache
        {
            eprintln!("{}: {w}", paint(Style::Warn, "warning"));
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
            Err(e) => Err(run_error(e, "run", &input.name)),
        }
    }
}

/// A refusal by the policy is a policy failure (exit 1); anything else an input error (exit 2).
fn run_error(e: RunError, verb: &str, name: &str) -> anyhow::Error {
    match e {
        RunError::Refused(msg) => Failure(msg).into(),
        RunError::Input(msg) => anyhow::Error::msg(msg),
        RunError::Wasmtime(e) => anyhow::Error::from(e).context(format!("cannot {verb} `{name}`")),
    }
}
