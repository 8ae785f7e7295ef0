//! `gridreg witness serve`: a C2SP tlog-witness (docs/protocol.md §7.13).
//!
//! `POST /add-checkpoint` verifies the checkpoint's signature against the log keys configured
//! for its origin (in the handler, so verification runs on every core), then hands it to one
//! writer task. The writer judges requests one after another against the latest checkpoint it
//! holds per origin ([`judge`]), writes every change of a batch in one SQLite transaction
//! (`synchronous=FULL`), and only then answers; the handler cosigns after that. So the check of
//! the old size and the durable update are atomic, concurrent requests share one fsync, and a
//! crash at any point leaves a state from which the witness never cosigns two roots for one size
//! of one log. A request that a valid log signature backs but that shows a fork (another root at
//! a cosigned size, a proof that does not verify) is kept as evidence.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::timestamp::unix_now;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gridreg_protocol::checkpoint::Checkpoint;
use gridreg_protocol::witness::{
    AddCheckpoint, Latest, MAX_REQUEST_LEN, Refusal, SIZE_CONTENT_TYPE, judge,
};
use gridreg_protocol::{Cosigner, CosignerKey, KeySet, VerifierKey};
use http_body_util::BodyExt as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

/// Requests one durable write covers at most.
const MAX_BATCH: usize = 1024;
/// Evidence rows kept (the newest).
const MAX_EVIDENCE: i64 = 1000;

/// What a witness is given.
#[derive(Debug, Clone)]
pub struct WitnessConfig {
    /// Directory of `witness.db`.
    pub data: PathBuf,
    pub key: Cosigner,
    /// Each log's origin and a key its checkpoints must be signed with (an origin may have
    /// several).
    pub logs: Vec<(String, VerifierKey)>,
}

/// Why a witness could not start.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("{path}: {message}")]
    Database { path: String, message: String },
    #[error("no log configured: give at least one --log ORIGIN=KEY")]
    NoLogs,
    #[error(
        "--log {origin}={key}: the key's name is {name}, not the origin; use the key a log signs its checkpoints with"
    )]
    KeyNameMismatch {
        origin: String,
        key: String,
        name: String,
    },
}

/// A running witness: its router and the writer task behind it.
pub struct Witness {
    shared: Arc<Shared>,
    writer: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.shared.key.verifier())
            .field("logs", &self.shared.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Shared {
    key: Cosigner,
    logs: HashMap<String, KeySet>,
    jobs: mpsc::Sender<Job>,
    cosigned: AtomicU64,
    refused: AtomicU64,
}

struct Job {
    origin: String,
    request: AddCheckpoint,
    checkpoint: Checkpoint,
    reply: oneshot::Sender<Result<(), Verdict>>,
}

/// A refusal, or a failure of the witness's own storage.
enum Verdict {
    Refused(Refusal),
    Storage(String),
}

impl Witness {
    /// Opens (creating) `DATA/witness.db` and starts the writer.
    pub async fn open(config: WitnessConfig) -> Result<Self, WitnessError> {
        if config.logs.is_empty() {
            return Err(WitnessError::NoLogs);
        }
        let mut logs: HashMap<String, KeySet> = HashMap::new();
        for (origin, key) in &config.logs {
            if key.name() != origin {
                return Err(WitnessError::KeyNameMismatch {
                    origin: origin.clone(),
                    key: key.to_string(),
                    name: key.name().to_string(),
                });
            }
            logs.entry(origin.clone()).or_default().insert(key.clone());
        }
        let path = config.data.join("witness.db");
        let db_err = |e: sqlx::Error| WitnessError::Database {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&config.data).map_err(|e| WitnessError::Database {
            path: config.data.display().to_string(),
            message: e.to_string(),
        })?;
        let pool = open_db(&path).await.map_err(db_err)?;
        let state = load(&pool).await.map_err(db_err)?;
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        let writer = tokio::spawn(write_loop(pool, state, rx));
        Ok(Self {
            shared: Arc::new(Shared {
                key: config.key,
                logs,
                jobs: tx,
                cosigned: AtomicU64::new(0),
                refused: AtomicU64::new(0),
            }),
            writer,
        })
    }

    pub fn verifier(&self) -> CosignerKey {
        self.shared.key.verifier()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/metrics", get(metrics))
            .with_state(self.shared.clone())
    }

    /// Stops the writer once every router is gone (what is queued is answered first).
    pub async fn stop(self) {
        let Witness { shared, writer } = self;
        drop(shared);
        let _ = writer.await;
    }
}

async fn open_db(path: &Path) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS cosigned (
            origin TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            root BLOB NOT NULL,
            checkpoint TEXT NOT NULL,
            time INTEGER NOT NULL
        )",
    )
    .execute(&pool)
    .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS evidence (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            origin TEXT NOT NULL,
            time INTEGER NOT NULL,
            reason TEXT NOT NULL,
            request TEXT NOT NULL
        )",
    )
    .execute(&pool)
    .await?;
    Ok(pool)
}

async fn load(pool: &SqlitePool) -> Result<HashMap<String, Latest>, sqlx::Error> {
    let rows: Vec<(String, i64, Vec<u8>)> =
        sqlx::query_as("SELECT origin, size, root FROM cosigned")
            .fetch_all(pool)
            .await?;
    let mut out = HashMap::new();
    for (origin, size, root) in rows {
        let (Ok(size), Ok(root)) = (u64::try_from(size), <[u8; 32]>::try_from(root.as_slice()))
        else {
            // Never written by this code; refusing to serve the origin is safer than guessing.
            return Err(sqlx::Error::Protocol(format!(
                "the stored checkpoint of {origin} is corrupt"
            )));
        };
        out.insert(origin, Latest { size, root });
    }
    Ok(out)
}

/// The writer: judge a batch in order, persist its changes at once, then answer.
async fn write_loop(
    pool: SqlitePool,
    mut state: HashMap<String, Latest>,
    mut rx: mpsc::Receiver<Job>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut changed: HashMap<String, (Latest, String)> = HashMap::new();
        let mut evidence: Vec<(String, String, String)> = Vec::new();
        let mut results = Vec::with_capacity(batch.len());
        for job in &batch {
            let latest = state.get(&job.origin).copied();
            let result = judge(&job.request, &job.checkpoint, latest);
            match &result {
                Ok(()) => {
                    let new = Latest {
                        size: job.checkpoint.size,
                        root: job.checkpoint.root,
                    };
                    if latest != Some(new) {
                        state.insert(job.origin.clone(), new);
                        changed.insert(job.origin.clone(), (new, job.request.checkpoint.to_text()));
                    }
                }
                Err(r @ (Refusal::RootMismatch { .. } | Refusal::BadProof { .. })) => {
                    tracing::warn!(origin = %job.origin, refusal = %r, "a validly signed checkpoint that does not extend the cosigned one: kept as evidence");
                    evidence.push((
                        job.origin.clone(),
                        r.to_string(),
                        gridreg_protocol::witness::AddCheckpoint::body(
                            job.request.old,
                            &job.request.proof,
                            &job.request.checkpoint.to_text(),
                        ),
                    ));
                }
                Err(_) => {}
            }
            results.push(result.map_err(Verdict::Refused));
        }
        if (!changed.is_empty() || !evidence.is_empty())
            && let Err(e) = persist(&pool, &changed, &evidence).await
        {
            tracing::error!(error = %e, "the witness state could not be written; nothing was cosigned");
            // What is on disk is the truth: reload it, and cosign nothing of this batch.
            match load(&pool).await {
                Ok(s) => state = s,
                Err(e) => tracing::error!(error = %e, "reloading the witness state"),
            }
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(Verdict::Storage(e.to_string()));
                }
            }
        }
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

async fn persist(
    pool: &SqlitePool,
    changed: &HashMap<String, (Latest, String)>,
    evidence: &[(String, String, String)],
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let time = i64::try_from(unix_now()).unwrap_or(i64::MAX);
    for (origin, (latest, note)) in changed {
        let size = i64::try_from(latest.size).map_err(|_| {
            sqlx::Error::Protocol(format!("size {} does not fit the database", latest.size))
        })?;
        sqlx::query(
            "INSERT INTO cosigned (origin, size, root, checkpoint, time) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root,
             checkpoint = excluded.checkpoint, time = excluded.time",
        )
        .bind(origin)
        .bind(size)
        .bind(latest.root.as_slice())
        .bind(note)
        .bind(time)
        .execute(&mut *tx)
        .await?;
    }
    for (origin, reason, request) in evidence {
        sqlx::query("INSERT INTO evidence (origin, time, reason, request) VALUES (?, ?, ?, ?)")
            .bind(origin)
            .bind(time)
            .bind(reason)
            .bind(request)
            .execute(&mut *tx)
            .await?;
    }
    if !evidence.is_empty() {
        sqlx::query("DELETE FROM evidence WHERE id <= (SELECT MAX(id) FROM evidence) - ?")
            .bind(MAX_EVIDENCE)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        message + "\n",
    )
        .into_response()
}

fn refused(shared: &Shared, r: &Refusal) -> Response {
    shared.refused.fetch_add(1, Ordering::Relaxed);
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    match r.latest_size() {
        Some(size) => (
            status,
            [(CONTENT_TYPE, HeaderValue::from_static(SIZE_CONTENT_TYPE))],
            format!("{size}\n"),
        )
            .into_response(),
        None => text(status, r.to_string()),
    }
}

async fn add_checkpoint(State(shared): State<Arc<Shared>>, body: Body) -> Response {
    let bytes: Bytes = match http_body_util::Limited::new(body, MAX_REQUEST_LEN)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("expected a request of at most {MAX_REQUEST_LEN} bytes, found more"),
            );
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the request: {e}")),
    };
    let request = match AddCheckpoint::parse(&bytes) {
        Ok(r) => r,
        Err(r) => return refused(&shared, &r),
    };
    let origin = request
        .checkpoint
        .text
        .split('\n')
        .next()
        .unwrap_or_default()
        .to_string();
    let Some(keys) = shared.logs.get(&origin) else {
        return refused(&shared, &Refusal::UnknownOrigin(origin));
    };
    let checkpoint = match request.verified_checkpoint(keys) {
        Ok(c) => c,
        Err(r) => return refused(&shared, &r),
    };
    let (reply, answer) = oneshot::channel();
    let body_text = request.checkpoint.text.clone();
    let job = Job {
        origin,
        request,
        checkpoint,
        reply,
    };
    if shared.jobs.send(job).await.is_err() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the witness is stopping".into(),
        );
    }
    match answer.await {
        Ok(Ok(())) => {
            shared.cosigned.fetch_add(1, Ordering::Relaxed);
            let line = shared.key.cosign(&body_text, unix_now()).line();
            text(StatusCode::OK, line.trim_end().to_string())
        }
        Ok(Err(Verdict::Refused(r))) => refused(&shared, &r),
        Ok(Err(Verdict::Storage(e))) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the witness could not record the checkpoint ({e}); nothing was cosigned"),
        ),
        Err(_) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the witness is stopping".into(),
        ),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = format!(
        "# TYPE gridreg_witness_cosigned_total counter\ngridreg_witness_cosigned_total {}\n# TYPE gridreg_witness_refused_total counter\ngridreg_witness_refused_total {}\n",
        shared.cosigned.load(Ordering::Relaxed),
        shared.refused.load(Ordering::Relaxed)
    );
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
