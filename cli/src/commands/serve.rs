//! `gridreg serve`: runs the registry over a data directory, and `gridreg serve token ...`
//! manages the access tokens of a private registry. The work is in gridreg-registry.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use gridreg_protocol::api::DEFAULT_REGISTRY_ADDR;
use gridreg_registry::auth::{Scope, create_token};
use gridreg_registry::blob::BlobLocation;
use gridreg_registry::listen::Limits;
use gridreg_registry::server::{DEFAULT_ORIGIN, open_metadata};
use gridreg_registry::{Config, Registry};
use gridreg_verifier::parse_size;

use crate::client::config::parse_duration;
use crate::exit::Status;

/// Run the registry server.
///
/// Serves the registry API over SQLite and content-addressed files under --data (created on
/// first start, with a new log key in DATA/log.key). With --database-url, metadata and the log
/// live in PostgreSQL instead (the log key stays under --data); several replicas with the same
/// log key may share one database. With --blobs s3://BUCKET?endpoint=URL, content lives in an
/// S3-compatible bucket (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), which
/// replicas share. Every accepted record is appended to the
/// transparency log; publishers are answered once their record is durable. OCI clients (wkg,
/// oras, skopeo) pull releases read-only under /v2/, package ns:name as repository ns/name. SIGTERM or ctrl-c
/// stops accepting connections, finishes in-flight publishes, and exits.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  gridreg serve                                   ./gridreg-data on 127.0.0.1:7411
  gridreg serve --data /srv/gridreg --addr 0.0.0.0:7411 --origin reg.example.com/log
  gridreg serve --require-token                   private: every request needs a token
  gridreg serve --database-url postgres://gridreg@db.internal/gridreg --data /srv/gridreg
  gridreg serve --blobs file:///mnt/blobs           content under /mnt/blobs/sha256/
  gridreg serve --blobs 's3://gridreg?endpoint=http://127.0.0.1:9000&region=us-east-1'
  gridreg serve --witness http://w1.example:7480=w1.example+1a2b3c4d+BC...   with a witness
  gridreg serve token create --scope publish --namespace acme
  gridreg serve token list
  gridreg serve token revoke 1a2b3c4d5e6f7a8b
  skopeo inspect --tls-verify=false docker://127.0.0.1:7411/acme/hello:1.0.0   OCI read side

Exit status: 0 stopped cleanly; 2 the data directory, address or options are unusable."
)]
pub struct Opts {
    /// Data directory (database, blobs unless --blobs says otherwise, log key).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "./gridreg-data",
        global = true
    )]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_REGISTRY_ADDR)]
    pub addr: String,
    /// The log's origin (checkpoint first line); fixed at first start.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ORIGIN)]
    pub origin: String,
    /// Largest content upload accepted.
    #[arg(long, value_name = "SIZE", default_value = "100MiB", value_parser = parse_size)]
    pub max_blob_size: u64,
    /// Memory that audits of uploaded content in progress may hold together; publishes beyond it
    /// wait their turn (an audit holds about twice its blob's size; one larger than this runs alone).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_audit_memory: u64,
    /// Delete uploaded content that no release names once it is this old (90s, 30m, 1h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub upload_ttl: std::time::Duration,
    /// Bytes of uploads no release names yet that all clients together may have; uploads beyond
    /// it get 429 upload_quota until pending ones are published or deleted.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = parse_size)]
    pub max_pending_uploads: u64,
    /// The same for one client: a token, or a client address when no token is given (behind a
    /// proxy every anonymous client has the proxy's address: use --require-token there).
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size)]
    pub max_pending_uploads_per_client: u64,
    /// Require a bearer token for every read and write (a private registry).
    #[arg(long)]
    pub require_token: bool,
    /// Keep metadata and the log in this PostgreSQL database instead of SQLite under --data.
    #[arg(
        long,
        value_name = "URL",
        env = "GRIDREG_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,
    /// Where content lives: file://DIR, or s3://BUCKET?endpoint=URL&region=R for an
    /// S3-compatible bucket [default: files under DATA/blobs].
    #[arg(long, value_name = "URL", env = "GRIDREG_BLOBS", value_parser = BlobLocation::parse)]
    pub blobs: Option<BlobLocation>,
    /// Longest a client may take to send a request's head or pause while sending a body, and
    /// longest an idle keep-alive connection stays open (90s, 30m, ...).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub read_timeout: std::time::Duration,
    /// Most connections served at once. As many again are answered one request each
    /// (`/healthz`, anything else 503); beyond that, new connections are closed at once.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Most of those one client may hold (an IPv4 address or an IPv6 /64; its further
    /// connections get the overflow answer). 0: no per-client cap (behind a reverse proxy, where
    /// every client has the proxy's address).
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_connections_per_client: u32,
    /// On SIGTERM or Ctrl-C, longest to let in-flight requests finish before closing them.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Submit every new checkpoint to this C2SP tlog-witness and serve its cosignatures
    /// (URL of its add-checkpoint prefix, `=`, its cosigner key); repeat for more witnesses.
    #[arg(long = "witness", value_name = "URL=KEY")]
    pub witnesses: Vec<gridreg_registry::witness::submit::WitnessTarget>,
    #[command(subcommand)]
    pub action: Option<Action>,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Manage access tokens (works on the data directory; the server need not run).
    #[command(subcommand)]
    Token(TokenAction),
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it (it is shown only once).
    Create {
        /// read, publish or admin (each includes the ones before it).
        #[arg(long, value_parser = Scope::parse)]
        scope: Scope,
        /// Limit publishing and admin rights to this namespace.
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
    },
    /// List tokens (ids, scopes, namespaces; never secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

impl Opts {
    pub fn run(self) -> anyhow::Result<Status> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        runtime.block_on(self.run_async())
    }

    async fn run_async(self) -> anyhow::Result<Status> {
        match self.action {
            Some(Action::Token(t)) => token(&self.data, self.database_url.as_deref(), t).await,
            None => {
                init_tracing();
                let config = Config {
                    data: self.data,
                    origin: self.origin,
                    max_blob_size: self.max_blob_size,
                    require_token: self.require_token,
                    database_url: self.database_url,
                    blobs: self.blobs,
                    max_audit_memory: self.max_audit_memory,
                    upload_ttl: self.upload_ttl,
                    max_pending_uploads: self.max_pending_uploads,
                    max_pending_uploads_per_client: self.max_pending_uploads_per_client,
                    witnesses: self.witnesses,
                    limits: Limits {
                        read_timeout: self.read_timeout,
                        max_connections: self.max_connections as usize,
                        max_connections_per_client: self.max_connections_per_client as usize,
                        shutdown_timeout: self.shutdown_timeout,
                    },
                };
                let registry = Registry::open(&config).await.with_context(|| {
                    format!("cannot open the registry in {}", config.data.display())
                })?;
                let listener = tokio::net::TcpListener::bind(&self.addr)
                    .await
                    .with_context(|| format!("cannot listen on {}", self.addr))?;
                let database = if config.database_url.is_some() {
                    "postgres"
                } else {
                    "sqlite"
                };
                let blobs = config.blobs.as_ref().map_or_else(
                    || format!("file://{}", config.data.join("blobs").display()),
                    ToString::to_string,
                );
                let addr = listener.local_addr()?;
                tracing::info!(%addr, data = %config.data.display(), database, %blobs, origin = %config.origin, "serving");
                // OCI clients pull `ns:name@V` as `<addr>/ns/name:V` (docs/protocol.md §7.11).
                tracing::info!(
                    "OCI clients pull from {addr}/<namespace>/<name>:<version>; for wkg, add to \
                     ~/.config/wasm-pkg/config.toml: default_registry = \"{addr}\" and, \
                     without TLS in front, [registry.\"{addr}\".oci] protocol = \"http\""
                );
                registry.serve(listener, shutdown_signal()).await?;
                Ok(Status::Ok)
            }
        }
    }
}

async fn token(
    data: &std::path::Path,
    database_url: Option<&str>,
    action: TokenAction,
) -> anyhow::Result<Status> {
    let store = open_metadata(data, database_url).await?;
    match action {
        TokenAction::Create { scope, namespace } => {
            if let Some(ns) = &namespace {
                gridreg_protocol::Namespace::parse(ns)
                    .with_context(|| format!("bad namespace `{ns}`"))?;
            }
            let (text, row) = create_token(store.as_ref(), scope, namespace).await?;
            println!("{text}");
            eprintln!(
                "token {} ({}) created; it is not shown again",
                row.id, row.scope
            );
        }
        TokenAction::List => {
            for t in store.tokens().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.scope,
                    t.namespace.as_deref().unwrap_or("*"),
                    t.created,
                    t.revoked
                        .as_deref()
                        .map_or("live".to_string(), |r| format!("revoked {r}"))
                );
            }
        }
        TokenAction::Revoke { id } => {
            let now = gridreg_protocol::Timestamp::now().to_string();
            if !store.revoke_token(&id, &now).await? {
                anyhow::bail!("expected a live token with id `{id}`, found none");
            }
            eprintln!("token {id} revoked");
        }
    }
    store.close().await;
    Ok(Status::Ok)
}

/// Logs to stderr, `info` unless `RUST_LOG` says otherwise.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal and without NO_COLOR: log files and journald get
        // plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .try_init();
}

/// Resolves on ctrl-c or SIGTERM, and says so in the log.
pub(crate) async fn shutdown_signal() {
    crate::signal::shutdown().await;
    tracing::info!("shutting down: finishing in-flight requests");
}
