//! `gridreg run --listen`: serve a `wasi:http/incoming-handler@0.2.x` component over HTTP/1.1.
//!
//! The component passes the same gate as `gridreg run` before the socket is bound (every import
//! allowed by the policy, every grant capped by it), is compiled once (through the compiled-code
//! cache) and pre-instantiated, and then every request gets a fresh instance from wasmtime's
//! pooling allocator, so nothing a request leaves behind reaches the next. Each instance runs
//! under a time budget (epoch interruption, checked every [`TICK`]), a linear-memory cap and
//! optionally fuel; a request that exceeds one is answered 500 with a fixed body (the reason goes
//! to the server's log, never to the client) and the server goes on.
//!
//! At most `max_concurrency` instances run at once. A request beyond that waits up to
//! `queue_timeout` for a slot (at most `max_queue` requests wait), then gets 503. One access-log
//! line per request goes to stderr. SIGTERM or Ctrl-C stops accepting, lets in-flight requests
//! finish for at most `shutdown_timeout`, and returns.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gridreg_verifier::policy::Date;
use gridreg_verifier::{Audit, Kind, Policy};
use http_body_util::BodyExt as _;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use super::grants::ResolvedHosts;
use super::grants::{Capped, Grants};
use super::{Host, Notes, RunError, Stdio, admit, cache, linker, resolve_sockets, wasi_ctx};

/// How often the engine's epoch advances: the granularity of the time budget.
pub const TICK: Duration = Duration::from_millis(10);

/// After the time budget, how long a guest blocked in a host call (where epoch interruption
/// cannot reach it) is given before its request is abandoned.
const BLOCKED_GRACE: Duration = Duration::from_secs(1);

/// Longest a client may take to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; beyond this a new connection is closed as soon as it is accepted.
const MAX_CONNECTIONS: usize = 4096;

/// After a failed `accept` (out of file descriptors, say), how long to wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Pool slots per instance: composed components hold several core instances, memories and
/// tables (a componentize-py component about a dozen core instances, two memories).
const CORE_INSTANCES_PER_INSTANCE: u32 = 64;
const MEMORIES_PER_INSTANCE: u32 = 8;
const TABLES_PER_INSTANCE: u32 = 32;
/// Table elements per table: CPython's function table is larger than wasmtime's default.
const TABLE_ELEMENTS: usize = 200_000;

/// The body every guest failure is answered with: what went wrong is logged, not sent.
const FAILED_BODY: &str = "internal server error: the handler failed (the server's log says why)\n";

/// Per-request and server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock budget of one request's instance.
    pub timeout: Duration,
    /// Fuel per request, when asked for.
    pub fuel: Option<u64>,
    /// Linear memory of one instance, all memories together.
    pub max_memory: usize,
    /// Instances running at once.
    pub max_concurrency: usize,
    /// Requests waiting for a free instance at once; beyond it 503 at once.
    pub max_queue: usize,
    /// Longest a request waits for a free instance before 503.
    pub queue_timeout: Duration,
    /// After SIGTERM or Ctrl-C, longest to wait for in-flight requests.
    pub shutdown_timeout: Duration,
}

/// Everything `gridreg run --listen` was asked to do.
#[derive(Debug)]
pub struct ServeRequest<'a> {
    pub name: &'a str,
    pub bytes: &'a [u8],
    pub audit: &'a Audit,
    pub policy: &'a Policy,
    pub today: Date,
    pub grants: Grants,
    pub limits: Limits,
    pub cache_dir: Option<PathBuf>,
    pub addr: SocketAddr,
}

/// Whether the component exports an HTTP handler `run --listen` can serve.
pub fn exports_handler(audit: &Audit) -> bool {
    audit
        .exports
        .iter()
        .any(|e| e.starts_with("wasi:http/incoming-handler@0.2."))
}

/// Everything a request handler needs, shared by all connections.
struct Server {
    engine: Engine,
    pre: ProxyPre<Host>,
    name: String,
    capped: Capped,
    /// The `--allow-host` socket rules, resolved once at start.
    sockets: Option<Arc<ResolvedHosts>>,
    limits: Limits,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// How a request ended, for the access log.
enum Ended {
    /// The guest answered with this status.
    Answered(u16),
    /// The server answered for the guest: status and the reason for the log.
    Failed(u16, String),
}

/// Checks, compiles and serves until SIGTERM or Ctrl-C. Nothing is compiled before the policy
/// has accepted every import and every grant, and nothing is bound before the component has
/// been pre-instantiated against exactly the granted interfaces.
pub fn serve(
    req: ServeRequest<'_>,
    notes: &mut Notes,
    on_ready: impl FnOnce(&[String]),
) -> Result<(), RunError> {
    if req.audit.kind != Kind::Component {
        return Err(RunError::Input(format!(
            "`{}` is a core module: gridreg run --listen expects a component exporting \
             wasi:http/incoming-handler@0.2.x",
            req.name
        )));
    }
    if !exports_handler(req.audit) {
        return Err(RunError::Input(format!(
            "`{}` does not export wasi:http/incoming-handler@0.2.x: expected an HTTP handler \
             component, found exports [{}]",
            req.name,
            req.audit.exports.join(", ")
        )));
    }
    if req.limits.max_concurrency == 0 {
        return Err(RunError::Input(
            "--max-concurrency: expected at least 1, found 0".to_string(),
        ));
    }
    let capped = admit(
        req.name,
        req.audit,
        req.policy,
        req.today,
        &req.grants,
        notes,
    )?;
    // The socket allow-list is resolved once for every request; the guest's context is built
    // once before serving, so a bad --dir fails now, not per request.
    let sockets = resolve_sockets(&capped)?;
    wasi_ctx(req.name, &[], &capped, sockets.as_ref(), Stdio::Server)?;

    let engine = engine(&req.limits)?;
    let (component, lookup) = cache::load_or_compile(
        &engine,
        req.cache_dir.as_deref(),
        &req.audit.digest,
        req.bytes,
    )?;
    notes.cache = Some(lookup);
    if let Some(w) = notes.cache_warning()
        && req.cache_dir.is_some()
    {
        notes.warnings.push(w);
    }
    let linker = linker::build(&engine, &req.audit.imports, linker::Flavour::Async)
        .map_err(|e| RunError::Refused(e.to_string()))?;
    let pre = pre_instantiate(&linker, &component)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Input(format!("cannot start the server's runtime: {e}")))?;
    let server = Arc::new(Server {
        engine,
        pre,
        name: req.name.to_string(),
        capped,
        sockets,
        limits: req.limits,
        slots: Arc::new(Semaphore::new(req.limits.max_concurrency)),
        waiting: AtomicUsize::new(0),
    });
    let served = runtime.block_on(async move {
        let listener = TcpListener::bind(req.addr)
            .await
            .map_err(|e| RunError::Input(format!("--listen {}: cannot bind: {e}", req.addr)))?;
        let local = listener
            .local_addr()
            .map_err(|e| RunError::Input(format!("--listen {}: {e}", req.addr)))?;
        let mut lines = std::mem::take(&mut notes.warnings);
        lines.push(format!(
            "serving `{}` on http://{local}/ (policy `{}`; {} at once, {} and {} per request)",
            req.name,
            req.policy.name(),
            req.limits.max_concurrency,
            super::format_duration(req.limits.timeout),
            crate::input::human_size(req.limits.max_memory as u64),
        ));
        on_ready(&lines);
        accept_loop(server, listener).await;
        Ok(())
    });
    // Past the shutdown deadline nothing may hold the exit: dropping the runtime would wait for
    // every task, including a guest still inside its time budget.
    runtime.shutdown_background();
    served
}

/// The engine: epoch interruption always (the time budget), fuel when asked, and the pooling
/// allocator sized for `max_concurrency` instances of `max_memory` each.
fn engine(limits: &Limits) -> Result<Engine, RunError> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    if limits.fuel.is_some() {
        config.consume_fuel(true);
    }
    let slots = u32::try_from(limits.max_concurrency)
        .unwrap_or(u32::MAX)
        .saturating_add(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_INSTANCE))
        .total_memories(slots.saturating_mul(MEMORIES_PER_INSTANCE))
        .total_tables(slots.saturating_mul(TABLES_PER_INSTANCE))
        .total_stacks(slots)
        .total_gc_heaps(slots)
        .max_memory_size(limits.max_memory)
        .table_elements(TABLE_ELEMENTS)
        .max_core_instance_size(8 << 20)
        .max_component_instance_size(8 << 20);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(|e| {
        RunError::Input(format!(
            "cannot reserve the instance pool for --max-concurrency {} (lower it, or \
             --max-memory): {e}",
            limits.max_concurrency
        ))
    })
}

fn pre_instantiate(
    linker: &wasmtime::component::Linker<Host>,
    component: &Component,
) -> Result<ProxyPre<Host>, RunError> {
    let pre = linker.instantiate_pre(component)?;
    ProxyPre::new(pre).map_err(|e| {
        RunError::Input(format!(
            "cannot serve this component: its wasi:http/incoming-handler export does not \
             match wasi:http 0.2: {e}"
        ))
    })
}

/// Accepts connections until SIGTERM or Ctrl-C, then drains them.
async fn accept_loop(server: Arc<Server>, listener: TcpListener) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let ticker = spawn_ticker(server.engine.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true);
    let shutdown = crate::signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("gridreg run: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.handle(req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let deadline = server.limits.shutdown_timeout;
    eprintln!(
        "gridreg run: shutting down: finishing requests in flight (at most {})",
        super::format_duration(deadline)
    );
    if tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "gridreg run: the shutdown deadline passed with requests in flight; they were dropped"
        );
    }
    ticker.abort();
}

/// Advances the engine's epoch every [`TICK`]: each store's deadline is counted in ticks.
fn spawn_ticker(engine: Engine) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            engine.increment_epoch();
        }
    })
}

type Answer = hyper::Response<HyperOutgoingBody>;

impl Server {
    /// One request: wait for a slot, run a fresh instance, log one line.
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>) -> Answer {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let (answer, ended) = self.clone().dispatch(req).await;
        let (status, why) = match &ended {
            Ended::Answered(s) => (*s, None),
            Ended::Failed(s, why) => (*s, Some(why.as_str())),
        };
        let took = started.elapsed();
        match why {
            None => eprintln!(
                "{method} {} {status} {:.1}ms",
                log_safe(&path),
                took.as_secs_f64() * 1e3
            ),
            Some(why) => eprintln!(
                "{method} {} {status} {:.1}ms: {why}",
                log_safe(&path),
                took.as_secs_f64() * 1e3
            ),
        }
        answer
    }

    async fn dispatch(self: Arc<Self>, req: hyper::Request<Incoming>) -> (Answer, Ended) {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.limits.max_queue {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return busy("the queue is full");
                }
                let waited = tokio::time::timeout(
                    self.limits.queue_timeout,
                    self.slots.clone().acquire_owned(),
                )
                .await;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                match waited {
                    Ok(Ok(p)) => p,
                    _ => return busy("no instance became free in time"),
                }
            }
        };
        // The slot is held until the guest has finished, including the body it streams after
        // the response head has gone out.
        let (tx, rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<String>();
        let store = match self.new_store() {
            Ok(s) => s,
            Err(e) => return failed(500, format!("cannot set up the instance: {e}")),
        };
        let me = self.clone();
        let budget = self.limits.timeout + BLOCKED_GRACE;
        let task = async move {
            let mut store = store;
            let run = async {
                let proxy = me.pre.instantiate_async(&mut store).await?;
                let request = store
                    .data_mut()
                    .http()
                    .new_incoming_request(Scheme::Http, req)?;
                let out = store.data_mut().http().new_response_outparam(tx)?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            };
            let outcome = match tokio::time::timeout(budget, run).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(me.explain(&store, &e)),
                Err(_) => Some(format!(
                    "time budget of {} exceeded while the guest was blocked in a host call",
                    super::format_duration(me.limits.timeout)
                )),
            };
            for d in std::mem::take(&mut store.data_mut().hooks.denied) {
                eprintln!(
                    "gridreg run: an outgoing HTTP request to {d} was denied: not in the \
                     --allow-host list"
                );
            }
            if let Some(outcome) = outcome {
                let _ = done_tx.send(outcome);
            }
        };
        tokio::spawn(async move {
            task.await;
            drop(permit);
        });
        match rx.await {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                (resp, Ended::Answered(status))
            }
            Ok(Err(code)) => failed(500, format!("the guest answered with an error: {code:?}")),
            // The guest ended (trapped, ran out of time or memory) without setting a response.
            Err(_) => {
                let why = done_rx
                    .await
                    .unwrap_or_else(|_| "the guest returned without setting a response".into());
                failed(500, why)
            }
        }
    }

    /// A store for one request: the capped grants, the memory cap, the time budget, the fuel.
    fn new_store(&self) -> Result<Store<Host>, RunError> {
        let wasi = wasi_ctx(
            &self.name,
            &[],
            &self.capped,
            self.sockets.as_ref(),
            Stdio::Server,
        )?;
        let host = Host::new(wasi, &self.capped, Some(self.limits.max_memory));
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limiter);
        if let Some(fuel) = self.limits.fuel {
            store.set_fuel(fuel)?;
        }
        // Ticks until the budget is spent; between ticks the guest yields, so a busy guest
        // never holds a worker thread of the runtime from other requests for longer than a tick.
        let ticks = (self.limits.timeout.as_nanos() / TICK.as_nanos()).max(1);
        let mut left = u64::try_from(ticks).unwrap_or(u64::MAX);
        store.epoch_deadline_callback(move |_| {
            left = left.saturating_sub(1);
            if left == 0 {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// Why the guest failed, in words for the log.
    fn explain(&self, store: &Store<Host>, err: &wasmtime::Error) -> String {
        if let Some(total) = store.data().limiter.refused {
            return format!(
                "memory cap reached: the guest asked for {} of linear memory, --max-memory is {}",
                crate::input::human_size(total as u64),
                crate::input::human_size(self.limits.max_memory as u64)
            );
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!(
                "time budget of {} exceeded",
                super::format_duration(self.limits.timeout)
            ),
            Some(Trap::OutOfFuel) => format!(
                "fuel of {} units used up",
                self.limits.fuel.unwrap_or_default()
            ),
            _ => {
                let mut message = format!("the guest trapped: {err}");
                for cause in err.chain().skip(1) {
                    message.push_str(&format!(": {cause}"));
                }
                message.replace('\n', " ")
            }
        }
    }
}

/// A path as it goes into the log: control characters escaped, so a request cannot forge lines.
fn log_safe(path: &str) -> String {
    path.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn text(status: u16, body: &'static str) -> Answer {
    let body = http_body_util::Full::new(Bytes::from_static(body.as_bytes()))
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn failed(status: u16, why: String) -> (Answer, Ended) {
    (text(status, FAILED_BODY), Ended::Failed(status, why))
}

fn busy(why: &str) -> (Answer, Ended) {
    let mut resp = text(
        503,
        "service unavailable: every instance is busy, retry shortly\n",
    );
    resp.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    (resp, Ended::Failed(503, why.to_string()))
}
