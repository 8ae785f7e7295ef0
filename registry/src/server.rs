//! Opening a registry over a data directory (store, blobs, log key, sequencer) and serving it
//! with graceful shutdown. Metadata lives in SQLite under the data directory unless
//! [`Config::database_url`] names a PostgreSQL database. [`crate::routes::app`] builds the
//! router from the shared [`AppState`].

use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use gridreg_protocol::SignerKey;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::blob::files::FileBlobStore;
use crate::blob::s3::S3BlobStore;
use crate::blob::{BlobError, BlobLocation, BlobStore};
use crate::gc::{self, Pins};
use crate::listen::{self, Limits};
use crate::metrics::Metrics;
use crate::paths::DataDir;
use crate::sequencer::{OpenError, Sequencer};
use crate::state::{AppState, Shared};
use crate::store::{Store, StoreError};
use crate::timestamp::Timestamper;

/// The origin a bare `gridreg serve` uses.
pub const DEFAULT_ORIGIN: &str = "gridreg.local/log";
/// How often a replica on a shared database looks for other replicas' appends while idle
/// (it also looks before every batch it sequences).
pub const REPLICA_REFRESH: std::time::Duration = std::time::Duration::from_millis(50);
/// Default upload limit: 100 MiB.
pub const DEFAULT_MAX_BLOB_SIZE: u64 = 100 * 1024 * 1024;

/// How to run a registry.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    pub origin: String,
    pub max_blob_size: u64,
    /// Require a bearer token for reads and writes (a private registry).
    pub require_token: bool,
    /// `postgres://...`: keep metadata and the log in this PostgreSQL database instead of
    /// SQLite under `data` (the log key stays under `data`). Several replicas may share
    /// one database.
    pub database_url: Option<String>,
    /// Where blobs live: `None` is files under `data/blobs`; replicas share an S3 bucket.
    pub blobs: Option<BlobLocation>,
    /// Connection and time limits of the listener.
    pub limits: Limits,
    /// Memory that audits of content in progress may hold together, in bytes.
    pub max_audit_memory: u64,
    /// Uploads no release names are deleted once older than this.
    pub upload_ttl: std::time::Duration,
    /// Bytes uploaded and not yet named by a release, all uploaders together.
    pub max_pending_uploads: u64,
    /// The same for one uploader (a token, or a client address).
    pub max_pending_uploads_per_client: u64,
    /// Witnesses every new checkpoint is submitted to (docs/protocol.md §7.13).
    pub witnesses: Vec<crate::witness::submit::WitnessTarget>,
}

impl Config {
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            origin: DEFAULT_ORIGIN.to_string(),
            max_blob_size: DEFAULT_MAX_BLOB_SIZE,
            require_token: false,
            database_url: None,
            blobs: None,
            limits: Limits::default(),
            max_audit_memory: crate::audits::DEFAULT_AUDIT_MEMORY,
            upload_ttl: crate::gc::DEFAULT_UPLOAD_TTL,
            max_pending_uploads: crate::uploads::DEFAULT_MAX_PENDING,
            max_pending_uploads_per_client: crate::uploads::DEFAULT_MAX_PENDING_PER_CLIENT,
            witnesses: Vec::new(),
        }
    }
}

/// Why a registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("log key {path}: {message}")]
    LogKey { path: PathBuf, message: String },
    #[error(
        "this data directory belongs to the log `{stored}`, refusing to serve it as `{requested}`"
    )]
    OriginMismatch { stored: String, requested: String },
    #[error(
        "the database's log is signed by `{stored}` but {path} holds `{found}`; every replica needs the same log key"
    )]
    LogKeyMismatch {
        stored: String,
        found: String,
        path: PathBuf,
    },
    #[error("expected a database URL starting with postgres:// or postgresql://, found `{0}`")]
    DatabaseUrl(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Log(#[from] OpenError),
}

/// A running registry: the shared state plus the sequencer task.
#[derive(Debug)]
pub struct Registry {
    pub state: AppState,
    sequencer: JoinHandle<()>,
    /// The collector of unnamed uploads, stopped with the registry.
    collector: JoinHandle<()>,
    /// The witness submitters and the bucket's tile exporter, stopped with the registry.
    background: Vec<JoinHandle<()>>,
    limits: Limits,
}

/// Opens just the metadata store of a data directory (for `gridreg serve token ...`).
pub async fn open_store(data: &std::path::Path) -> Result<Store, StartError> {
    let dir = DataDir::new(data);
    std::fs::create_dir_all(dir.root()).map_err(|source| StartError::DataDir {
        path: dir.root().to_path_buf(),
        source,
    })?;
    Ok(crate::store::sqlite::open(&dir.database()).await?)
}

/// Opens the metadata store: PostgreSQL at `database_url` when given, else SQLite in `data`
/// (for `gridreg serve token ...` and [`Registry::open`]).
pub async fn open_metadata(
    data: &std::path::Path,
    database_url: Option<&str>,
) -> Result<Arc<Store>, StartError> {
    match database_url {
        Some(url) => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(StartError::DatabaseUrl(crate::store::postgres::redact_url(
                    url,
                )));
            }
            Ok(Arc::new(crate::store::postgres::open(url).await?))
        }
        None => Ok(Arc::new(open_store(data).await?)),
    }
}

/// Opens the blob store `location` names (files under `DATA/blobs` when `None`).
pub async fn open_blobs(
    dir: &DataDir,
    location: Option<&BlobLocation>,
) -> Result<Arc<dyn BlobStore>, StartError> {
    Ok(match location {
        None => Arc::new(FileBlobStore::open(dir.clone()).await?),
        Some(BlobLocation::Dir(d)) => {
            Arc::new(FileBlobStore::open_dir(crate::paths::BlobDir::new(d)).await?)
        }
        Some(BlobLocation::S3 {
            bucket,
            endpoint,
            region,
            credentials,
        }) => Arc::new(
            S3BlobStore::open(
                bucket,
                endpoint.as_deref(),
                region.as_deref(),
                credentials.as_ref(),
            )
            .await?,
        ),
    })
}

/// Deletes uploads no release names once older than `ttl`, every [`gc::interval`]; after a
/// pass, uploads stored before its horizon no longer count as pending.
async fn collect_forever(
    store: Arc<Store>,
    blobs: Arc<dyn BlobStore>,
    pins: Arc<Pins>,
    uploads: Arc<crate::uploads::Uploads>,
    ttl: std::time::Duration,
) {
    let mut tick = tokio::time::interval(gc::interval(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = std::time::Instant::now();
        match gc::collect(&store, &blobs, &pins, ttl).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(deleted = n, "deleted uploads no release names");
                }
                if let Some(horizon) = started.checked_sub(ttl) {
                    uploads.forget_before(horizon);
                }
            }
            Err(e) => tracing::warn!(error = %e, "collecting unnamed uploads failed"),
        }
    }
}

/// Reads the log key, or makes one on first start (mode 0600, never overwriting).
fn load_or_create_key(dir: &DataDir, origin: &str) -> Result<SignerKey, StartError> {
    let path = dir.log_key();
    let err = |message: String| StartError::LogKey {
        path: path.clone(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => SignerKey::parse_key_file(&text).map_err(|e| err(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SignerKey::generate(origin).map_err(|e| err(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                options.mode(0o600);
            }
            let mut file = options.open(&path).map_err(|e| err(e.to_string()))?;
            file.write_all(format!("{}\n", key.to_secret_string()).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| err(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

impl Registry {
    /// Opens (or initialises) the registry in `config.data` and starts the sequencer.
    pub async fn open(config: &Config) -> Result<Registry, StartError> {
        let dir = DataDir::new(&config.data);
        std::fs::create_dir_all(dir.root()).map_err(|source| StartError::DataDir {
            path: dir.root().to_path_buf(),
            source,
        })?;
        let store = open_metadata(&config.data, config.database_url.as_deref()).await?;
        match store.meta("origin").await? {
            Some(stored) if stored != config.origin => {
                return Err(StartError::OriginMismatch {
                    stored,
                    requested: config.origin.clone(),
                });
            }
            Some(_) => {}
            None => store.set_meta("origin", &config.origin).await?,
        }
        let key = load_or_create_key(&dir, &config.origin)?;
        if config.database_url.is_some() {
            // Replicas sharing a database must sign with one key, or clients would see
            // checkpoints from one log under two keys.
            let mine = key.verifier().to_string();
            match store.meta("log_key").await? {
                Some(stored) if stored != mine => {
                    return Err(StartError::LogKeyMismatch {
                        stored,
                        found: mine,
                        path: dir.log_key(),
                    });
                }
                Some(_) => {}
                None => store.set_meta("log_key", &mine).await?,
            }
        }
        let blobs = open_blobs(&dir, config.blobs.as_ref()).await?;
        let metrics = Arc::new(Metrics::new());
        let log_key: Arc<str> = key.verifier().to_string().into();
        let timestamp = Arc::new(Timestamper::new(&key).map_err(|e| StartError::LogKey {
            path: dir.log_key(),
            message: format!("deriving the timestamp key: {e}"),
        })?);
        let (sequencer, view) =
            Sequencer::open(store.clone(), key, config.origin.clone(), metrics.clone()).await?;
        // Replicas on one database each run a sequencer; each follows the others' appends.
        let sequencer = if config.database_url.is_some() {
            sequencer.with_refresh(REPLICA_REFRESH)
        } else {
            sequencer
        };
        let (submit, rx) = mpsc::channel(4 * crate::sequencer::MAX_BATCH);
        let task = tokio::spawn(sequencer.run(rx));
        let pins = Arc::new(Pins::default());
        let uploads = Arc::new(crate::uploads::Uploads::new(
            config.max_pending_uploads,
            config.max_pending_uploads_per_client,
        ));
        let collector = tokio::spawn(collect_forever(
            store.clone(),
            blobs.clone(),
            pins.clone(),
            uploads.clone(),
            config.upload_ttl,
        ));
        let witnesses = Arc::new(crate::witness::submit::Witnesses::new(
            config.witnesses.clone(),
        ));
        let mut background = witnesses.start(store.clone(), view.clone());
        if blobs.serves_static() {
            background.push(tokio::spawn(
                crate::export::Exporter {
                    store: store.clone(),
                    blobs: blobs.clone(),
                    view: view.clone(),
                    timestamp: timestamp.clone(),
                    witnesses: witnesses.clone(),
                }
                .run(),
            ));
        }
        Ok(Registry {
            state: AppState::new(Shared {
                store,
                blobs,
                audits: Arc::new(crate::audits::Audits::new(config.max_audit_memory)),
                pins,
                view,
                metrics,
                submit,
                origin: config.origin.clone().into(),
                log_key,
                timestamp,
                max_blob_size: config.max_blob_size,
                require_token: config.require_token,
                oci: Arc::default(),
                witnesses,
                tiles: Arc::default(),
                uploads,
            }),
            sequencer: task,
            collector,
            background,
            limits: config.limits,
        })
    }

    /// The router over this registry's state.
    pub fn router(&self) -> axum::Router {
        crate::routes::app(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests (publishes waiting on
    /// the log included) for at most the shutdown deadline, and stops the sequencer once every
    /// publisher has had its answer.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let router = self.router();
        listen::serve(listener, router, self.limits, shutdown).await;
        self.stop().await;
        Ok(())
    }

    /// Stops the sequencer wherever it is, answering nobody: what a crash (`kill -9`) does to
    /// the log. A batch being committed either lands whole or not at all; publishers waiting on
    /// it get `unavailable`. Routers built from this state answer `unavailable` to publishes.
    pub async fn abort(self) {
        let Registry {
            state,
            sequencer,
            collector,
            background,
            ..
        } = self;
        collector.abort();
        for task in background {
            task.abort();
        }
        sequencer.abort();
        let _ = sequencer.await;
        drop(state);
    }

    /// Drops this handle's state and waits for the sequencer to answer what is pending and stop.
    /// Routers built from the state must be dropped first, or this waits for them.
    pub async fn stop(self) {
        let Registry {
            state,
            sequencer,
            collector,
            background,
            ..
        } = self;
        collector.abort();
        for task in background {
            task.abort();
        }
        drop(state);
        if let Err(e) = sequencer.await {
            tracing::error!(error = %e, "sequencer task failed");
        }
    }
}
