//! `gridreg run`'s engine room: judge a component's imports by the policy before anything is
//! compiled, link only the WASI interfaces it may use, grant only what the policy lets the command
//! line grant, and run its `wasi:cli/run` export in wasmtime under fuel, time and memory limits.

pub mod cache;
pub mod grants;
pub mod http;
pub mod linker;
pub mod names;
pub mod serve;

use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use gridreg_verifier::policy::{Date, Mode};
use gridreg_verifier::{Audit, Import, Kind, Policy};
use wasmtime::component::ResourceTable;
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use grants::{Capped, ResolvedHosts};

/// The store's data: WASI state, the HTTP hook, the names the guest may look up and the memory
/// limiter.
pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: http::AllowList,
    names: names::NameList,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl Host {
    /// The store's data for one instance: `wasi` built by [`wasi_ctx`], the HTTP allow-list and
    /// the names the guest may look up from the capped grants, and the memory cap.
    fn new(wasi: WasiCtx, capped: &Capped, max_memory: Option<usize>) -> Host {
        Host {
            wasi,
            http: WasiHttpCtx::new(),
            hooks: http::AllowList {
                hosts: capped.http_hosts.clone(),
                denied: Vec::new(),
            },
            names: names::NameList {
                allowed: capped
                    .socket_hosts
                    .iter()
                    .map(|rule| rule.host.trim_end_matches('.').to_string())
                    .collect(),
                denied: Vec::new(),
            },
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: max_memory,
                ..MemoryLimiter::default()
            },
        }
    }

    /// `wasi:sockets/ip-name-lookup` as the guest sees it: only the `--allow-host` names.
    fn name_lookup(&mut self) -> names::RestrictedLookup<'_> {
        names::RestrictedLookup {
            sockets: WasiSocketsCtxView {
                ctx: self.wasi.sockets(),
                table: &mut self.table,
            },
            names: &mut self.names,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps the store's total linear memory (all memories of all instances together) and remembers
/// a refused growth, so the end of the run can say why it ended.
#[derive(Debug, Default)]
struct MemoryLimiter {
    limit: Option<usize>,
    total: usize,
    refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total - current.min(self.total) + desired;
        if let Some(limit) = self.limit
            && total > limit
        {
            self.refused = Some(total);
            // An error (not `Ok(false)`) ends the run with a trap instead of letting the guest
            // carry on after a failed `memory.grow`.
            return Err(wasmtime::format_err!(
                "memory limit reached: the guest asked for {total} bytes of linear memory, the limit is {limit}"
            ));
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold references, a few bytes each: bound them so they cannot sidestep the memory limit.
        Ok(desired <= 1_000_000)
    }
}

/// How a run is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Unlimited,
    /// Wasmtime fuel units (roughly one per instruction).
    Fuel(u64),
    /// Wall-clock time, enforced by epoch interruption.
    Timeout(Duration),
}

/// Everything `gridreg run` was asked to do.
#[derive(Debug)]
pub struct Request<'a> {
    /// How to name the component in messages.
    pub name: &'a str,
    pub bytes: &'a [u8],
    pub audit: &'a Audit,
    pub policy: &'a Policy,
    pub today: Date,
    pub grants: grants::Grants,
    pub args: Vec<String>,
    pub budget: Budget,
    pub max_memory: Option<usize>,
    pub cache_dir: Option<PathBuf>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest returned or called `exit` with this code.
    Exited(i32),
    /// The run was stopped by gridreg; the message says why and `status` is the exit status.
    Stopped { status: u8, message: String },
}

/// How long after the time-out a guest blocked in a host call is given before the process ends.
const BLOCKED_GRACE: Duration = Duration::from_secs(1);

/// Exit status when the fuel or the time-out ran out (the `timeout` command's convention).
pub const STATUS_TIMEOUT: u8 = 124;
/// Exit status when the memory limit was reached.
pub const STATUS_MEMORY: u8 = 125;
/// Exit status when the guest trapped (128 + SIGABRT, as `wasmtime run` reports a trap).
pub const STATUS_TRAP: u8 = 134;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The policy refuses the component or a grant: a policy failure (exit 1).
    #[error("{0}")]
    Refused(String),
    /// The input or the flags are wrong (exit 2).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Wasmtime(#[from] wasmtime::Error),
}

/// What the run printed about itself besides the guest's output (warnings, cache events).
#[derive(Debug, Default)]
pub struct Notes {
    pub warnings: Vec<String>,
    pub cache: Option<cache::Lookup>,
}

impl Notes {
    /// A warning about the compiled-code cache, when the lookup went wrong.
    pub fn cache_warning(&self) -> Option<String> {
        match &self.cache {
            Some(cache::Lookup::Rebuilt(why)) => Some(format!(
                "the compiled-code cache entry was corrupt and has been rebuilt ({why})"
            )),
            Some(cache::Lookup::NotStored(why)) => {
                Some(format!("compiled code was not cached: {why}"))
            }
            _ => None,
        }
    }
}

/// The pre-check: every import must be allowed by the policy. Returns the refusals, one line
/// each, naming the import, its class and the rule.
pub fn refusals(audit: &Audit, policy: &Policy, today: Date) -> Vec<String> {
    let mut out: Vec<String> = audit
        .imports
        .iter()
        .filter_map(|i| policy.check_import(i, None, today).err())
        .map(|v| format!("{} [{}]", v.message, v.rule))
        .collect();
    if let Some(limit) = policy.max_size()
        && audit.size > limit
    {
        out.push(format!(
            "size {} bytes exceeds [limits].max_size ({limit} bytes) [size-limit]",
            audit.size
        ));
    }
    out
}

/// The gate `run` and `run --listen` both pass before anything is compiled: every import must be
/// allowed by the policy (in warn mode a refusal becomes a warning), and the command line's
/// grants are capped by it.
fn admit(
    name: &str,
    audit: &Audit,
    policy: &Policy,
    today: Date,
    grants: &grants::Grants,
    notes: &mut Notes,
) -> Result<Capped, RunError> {
    let enforce = policy.mode() == Mode::Enforce;
    let refused = refusals(audit, policy, today);
    if !refused.is_empty() {
        let list = refused.join("\n  ");
        if enforce {
            return Err(RunError::Refused(format!(
                "policy `{}` refuses to run `{name}`:\n  {list}",
                policy.name()
            )));
        }
        notes.warnings.push(format!(
            "policy `{}` (warn mode) would refuse `{name}`:\n  {list}",
            policy.name()
        ));
    }
    grants::cap(
        grants,
        policy,
        &audit.imports,
        today,
        enforce,
        &mut notes.warnings,
    )
    .map_err(|e| {
        if e.is_policy() {
            RunError::Refused(e.to_string())
        } else {
            RunError::Input(e.to_string())
        }
    })
}

/// Runs the component. Nothing is compiled or instantiated before the policy has accepted every
/// import and every grant.
pub fn run(req: Request<'_>, notes: &mut Notes) -> Result<Outcome, RunError> {
    if req.audit.kind != Kind::Component {
        return Err(RunError::Input(format!(
            "`{}` is a core module: gridreg run expects a component exporting wasi:cli/run \
             (preview 1 modules can be adapted with `wasm-tools component new --adapt`)",
            req.name
        )));
    }
    if !exports_command(req.audit) {
        return Err(RunError::Input(format!(
            "`{}` does not export wasi:cli/run@0.2.x: expected a command component, found exports [{}]",
            req.name,
            req.audit.exports.join(", ")
        )));
    }

    let capped = admit(
        req.name,
        req.audit,
        req.policy,
        req.today,
        &req.grants,
        notes,
    )?;
    let sockets = resolve_sockets(&capped)?;
    let wasi = wasi_ctx(
        req.name,
        &req.args,
        &capped,
        sockets.as_ref(),
        Stdio::Command,
    )?;

    let mut config = Config::new();
    match req.budget {
        Budget::Fuel(_) => {
            config.consume_fuel(true);
        }
        Budget::Timeout(_) => {
            config.epoch_interruption(true);
        }
        Budget::Unlimited => {}
    }
    let engine = Engine::new(&config)?;
    let (component, lookup) = cache::load_or_compile(
        &engine,
        req.cache_dir.as_deref(),
        &req.audit.digest,
        req.bytes,
    )?;
    notes.cache = Some(lookup);

    let imports: Vec<Import> = req.audit.imports.clone();
    let linker = linker::build(&engine, &imports, linker::Flavour::Sync)
        .map_err(|e| RunError::Refused(e.to_string()))?;

    let host = Host::new(wasi, &capped, req.max_memory);
    let mut store = Store::new(&engine, host);
    store.limiter(|h| &mut h.limiter);
    let mut watchdog = None;
    match req.budget {
        Budget::Fuel(n) => store.set_fuel(n)?,
        Budget::Timeout(d) => {
            store.set_epoch_deadline(1);
            let (tx, rx) = mpsc::channel::<()>();
            let engine = engine.clone();
            watchdog = Some((
                tx,
                std::thread::spawn(move || {
                    // Woken early (by the sender being dropped) when the guest finishes first.
                    if rx.recv_timeout(d) != Err(mpsc::RecvTimeoutError::Timeout) {
                        return;
                    }
                    engine.increment_epoch();
                    // Epoch interruption only fires in guest code. A guest blocked in a host call
                    // (waiting on a socket, say) never gets there, so after a grace period the
                    // whole process ends with the same status.
                    if rx.recv_timeout(BLOCKED_GRACE) == Err(mpsc::RecvTimeoutError::Timeout) {
                        eprintln!(
                            "gridreg run: stopped: time-out after {} (--timeout; the guest was \
                             blocked in a host call)",
                            format_duration(d)
                        );
                        std::process::exit(i32::from(STATUS_TIMEOUT));
                    }
                }),
            ));
        }
        Budget::Unlimited => {}
    }

    let result =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
            .and_then(|cmd| cmd.wasi_cli_run().call_run(&mut store));
    if let Some((tx, handle)) = watchdog {
        drop(tx);
        let _ = handle.join();
    }
    let denied = std::mem::take(&mut store.data_mut().hooks.denied);
    for d in denied {
        notes.warnings.push(format!(
            "an outgoing HTTP request to {d} was denied: not in the --allow-host list"
        ));
    }
    let mut lookups = std::mem::take(&mut store.data_mut().names.denied);
    lookups.dedup();
    for name in lookups {
        notes.warnings.push(format!(
            "a name lookup of {name:?} was denied: not in the --allow-host list (no query was sent)"
        ));
    }
    Ok(outcome(result, &store, req.budget))
}

/// Maps the guest's result (or error) onto an outcome with a message a person can act on.
fn outcome(
    result: wasmtime::Result<Result<(), ()>>,
    store: &Store<Host>,
    budget: Budget,
) -> Outcome {
    let err = match result {
        Ok(Ok(())) => return Outcome::Exited(0),
        Ok(Err(())) => return Outcome::Exited(1),
        Err(e) => e,
    };
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return Outcome::Exited(exit.0);
    }
    if let Some(total) = store.data().limiter.refused {
        let limit = store.data().limiter.limit.unwrap_or(0);
        return Outcome::Stopped {
            status: STATUS_MEMORY,
            message: format!(
                "stopped: memory limit reached (the guest asked for {} of linear memory, --max-memory is {})",
                crate::input::human_size(total as u64),
                crate::input::human_size(limit as u64)
            ),
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            let n = match budget {
                Budget::Fuel(n) => n,
                _ => 0,
            };
            Outcome::Stopped {
                status: STATUS_TIMEOUT,
                message: format!("stopped: the guest used all of its fuel ({n} units, --fuel)"),
            }
        }
        Some(Trap::Interrupt) => {
            let d = match budget {
                Budget::Timeout(d) => d,
                _ => Duration::ZERO,
            };
            Outcome::Stopped {
                status: STATUS_TIMEOUT,
                message: format!("stopped: time-out after {} (--timeout)", format_duration(d)),
            }
        }
        _ => {
            let mut message = format!("the guest trapped: {err}");
            for cause in err.chain().skip(1) {
                message.push_str(&format!("\n  caused by: {cause}"));
            }
            Outcome::Stopped {
                status: STATUS_TRAP,
                message,
            }
        }
    }
}

/// Which of gridreg's standard streams the guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdio {
    /// `run`: stdin, stdout and stderr.
    Command,
    /// `run --listen`: stdout and stderr (into the server's log); stdin stays the server's.
    Server,
}

/// The guest's WASI context: stdio, its arguments, and exactly the capped grants. Nothing is
/// inherited from gridreg's own environment, directories or network.
/// Whether the component exports `wasi:cli/run@0.2.x`, the command `run` calls.
pub fn exports_command(audit: &Audit) -> bool {
    audit
        .exports
        .iter()
        .any(|e| e.starts_with("wasi:cli/run@0.2."))
}

/// Resolves the `--allow-host` socket rules once, before any guest starts: a server builds a
/// context per request, and the list must mean the same addresses for all of them.
fn resolve_sockets(capped: &Capped) -> Result<Option<Arc<ResolvedHosts>>, RunError> {
    if capped.socket_hosts.is_empty() {
        return Ok(None);
    }
    ResolvedHosts::resolve(&capped.socket_hosts)
        .map(|r| Some(Arc::new(r)))
        .map_err(RunError::Input)
}

fn wasi_ctx(
    name: &str,
    args: &[String],
    capped: &Capped,
    sockets: Option<&Arc<ResolvedHosts>>,
    stdio: Stdio,
) -> Result<WasiCtx, RunError> {
    let mut b = WasiCtxBuilder::new();
    match stdio {
        Stdio::Command => {
            b.inherit_stdio();
        }
        Stdio::Server => {
            b.inherit_stdout().inherit_stderr();
        }
    }
    let program = std::path::Path::new(name)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(name);
    b.arg(program);
    b.args(args);
    for (k, v) in &capped.env {
        b.env(k, v);
    }
    for d in &capped.dirs {
        let perms = if d.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(&d.host, &d.guest, perms).map_err(|e| {
            RunError::Input(format!(
                "--dir: cannot open host directory {}: {e}",
                d.host.display()
            ))
        })?;
    }
    b.allow_tcp(sockets.is_some());
    b.allow_udp(sockets.is_some());
    b.allow_ip_name_lookup(sockets.is_some());
    if let Some(resolved) = sockets {
        let resolved = Arc::clone(resolved);
        b.socket_addr_check(move |addr, usage| {
            let ok = match usage {
                // Connecting binds implicitly to the wildcard address; that is not a grant of a
                // local port, so only such binds are allowed.
                SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                    addr.ip().is_unspecified() && addr.port() == 0
                }
                SocketAddrUse::TcpConnect | SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => {
                    resolved.allows(addr)
                }
                // Listening and accepting serve others: never granted by --allow-host.
                _ => false,
            };
            Box::pin(async move { ok })
        });
    }
    Ok(b.build())
}

/// `--timeout` values: `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, ""), |i| s.split_at(i));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration such as 500ms, 10s or 2m, found {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "expected a duration unit ms, s, m or h, found {unit:?} in {s:?}"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("expected a positive duration, found {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub(crate) fn format_duration(d: Duration) -> String {
    if d.as_millis() < 1000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A `--max-memory` value: a size as [`gridreg_verifier::parse_size`] reads it (`64MiB`, `64M`,
/// `1GiB`, `100MB`, bytes), above zero and addressable here.
pub fn parse_memory_limit(s: &str) -> Result<usize, String> {
    let bytes = gridreg_verifier::parse_size(s)?;
    if bytes == 0 {
        return Err(format!("expected a size above zero, found {s:?}"));
    }
    usize::try_from(bytes).map_err(|_| format!("{s:?} is larger than this machine can address"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_memory_limit("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_memory_limit("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_memory_limit("100MB").unwrap(), 100_000_000);
        assert_eq!(parse_memory_limit("4096").unwrap(), 4096);
        assert!(parse_memory_limit("0").is_err());
        assert!(parse_memory_limit("12XB").is_err());
        assert!(parse_memory_limit("99999999999999999999GiB").is_err());
    }

    #[test]
    fn limiter_counts_all_memories_together() {
        let mut l = MemoryLimiter {
            limit: Some(100),
            ..MemoryLimiter::default()
        };
        assert!(l.memory_growing(0, 60, None).unwrap());
        // A second memory: 60 + 50 > 100.
        assert!(l.memory_growing(0, 50, None).is_err());
        assert_eq!(l.refused, Some(110));
        // Growing the first memory within the limit is fine.
        assert!(l.memory_growing(60, 90, None).unwrap());
        assert_eq!(l.total, 90);
    }
}
