//! The metadata store: log entries, stored hashes, checkpoints, derived package rows,
//! namespace policies and tokens, on SQLite ([`sqlite`], the default) or PostgreSQL
//! ([`postgres`], which several replicas can share).
//!
//! [`Store`] is written once for both backends: its queries are SQL that both accept, read into
//! typed rows. What the backends must do differently (the log's size, stored hashes, the
//! staging read and the commit, the replicas' sequencer lock) is the small [`Log`] trait that
//! each implements; checks on a batch run in [`Store::commit`] before either backend sees it.

pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::pin::Pin;

use gridreg_protocol::{Hash, Head};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Log entries as (index, exact leaf bytes).
pub type Entries = Vec<(u64, Vec<u8>)>;

/// A store failure. `Conflict` means the log moved under the caller (another sequencer wrote):
/// nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(String),
    #[error("log conflict: expected the log to hold {expected} entries, found {found}")]
    Conflict { expected: u64, found: u64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("a checkpoint for size {size} is already stored; a size never gets a second one")]
    CheckpointExists { size: u64 },
}

/// The newest signed checkpoint.
#[derive(Debug, Clone)]
pub struct CheckpointRow {
    pub size: u64,
    pub root: Hash,
    pub body: String,
}

/// What kind of record a log entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Release,
    Namespace,
    Yank,
    /// A map entry (docs/protocol.md §6.9): the head map's root, ending every batch.
    Map,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Release => "release",
            EntryKind::Namespace => "namespace",
            EntryKind::Yank => "yank",
            EntryKind::Map => "map",
        }
    }
}

/// A release's derived row, computed from the record and the audited bytes before sequencing.
#[derive(Debug, Clone)]
pub struct NewRelease {
    pub package: String,
    pub version: String,
    pub digest: String,
    pub size: u64,
    pub kind: String,
    pub capabilities: Vec<String>,
    pub audit_json: String,
    /// (name, class)
    pub imports: Vec<(String, String)>,
    pub exports: Vec<String>,
}

/// What an entry changes besides the log itself.
#[derive(Debug, Clone)]
pub enum Derived {
    Release(Box<NewRelease>),
    Namespace,
    Yank {
        package: String,
        version: String,
        reason: String,
    },
    /// A map entry derives nothing.
    Map,
}

/// One new log entry.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub index: u64,
    pub body: Vec<u8>,
    pub kind: EntryKind,
    pub namespace: String,
    /// The chain the record extends (`namespace acme`, `package acme:auth`); `None` for a map
    /// entry, which belongs to no chain.
    pub chain: Option<String>,
    /// SHA-256(0x00 || body): what the next record of the chain names in its `prev`.
    pub leaf: Hash,
    pub derived: Derived,
}

/// Everything one sequencer batch writes, committed atomically: the log held `start` entries
/// before it and holds `checkpoint.size` after.
#[derive(Debug, Clone)]
pub struct Batch {
    pub start: u64,
    pub entries: Vec<NewEntry>,
    /// Index of `hashes[0]` in the stored-hash array.
    pub hash_start: u64,
    pub hashes: Vec<Hash>,
    pub checkpoint: CheckpointRow,
}

/// One version of a package, as listed on the package endpoint.
#[derive(Debug, Clone)]
pub struct VersionRow {
    pub version: String,
    pub digest: String,
    pub size: u64,
    pub log_index: u64,
    pub yanked: bool,
    pub yank_reason: Option<String>,
    pub capabilities: Vec<String>,
}

/// One release with everything the release endpoint shows.
#[derive(Debug, Clone)]
pub struct ReleaseRow {
    pub package: String,
    pub row: VersionRow,
    pub record: String,
    /// `component` or `module`.
    pub kind: String,
    pub audit_json: String,
    /// `None` until first asked for (see [`crate::routes::wit`]), and always for a module.
    pub wit: Option<String>,
}

/// A release's version, content kind and signed record ([`Store::release_records`]).
#[derive(Debug, Clone)]
pub struct ReleaseRecord {
    pub version: String,
    /// `component` or `module`.
    pub kind: String,
    pub record: String,
}

/// Search filters; empty fields match everything. `imports` and `exports` match name prefixes
/// (`wasi:sockets` matches `wasi:sockets/tcp@0.2.6`).
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub q: Option<String>,
    pub capability: Option<String>,
    pub imports: Option<String>,
    pub exports: Option<String>,
    pub limit: u32,
}

/// A release that matched a search.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub package: String,
    pub row: VersionRow,
}

/// An access token row.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: String,
    pub hash: [u8; 32],
    pub scope: String,
    pub namespace: Option<String>,
    pub created: String,
    pub revoked: Option<String>,
}

/// The (package, version) pairs that exist, each mapped to whether it is yanked.
pub type ExistingVersions = std::collections::HashMap<(String, String), bool>;

/// What a sequencer reads before staging a batch: see [`Store::stage`].
#[derive(Debug, Clone, Default)]
pub struct StageRequest {
    /// The (package, version) pairs the batch releases or yanks.
    pub versions: Vec<(String, String)>,
    /// The chains the batch's records extend, whose heads they must name.
    pub chains: Vec<String>,
    /// The namespaces the batch releases into, whose policies judge it.
    pub namespaces: Vec<String>,
    /// With replicas sharing the store: also where the log stands now.
    pub follow: Option<Follow>,
}

/// What a sequencer following other replicas already knows of the log.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Namespace records from this log index on are returned (0: all of them).
    pub namespaces_from: u64,
    /// The log size the caller last saw: stored hashes committed since may be prefetched.
    pub known_size: u64,
}

/// What [`Store::stage`] read.
#[derive(Debug, Default)]
pub struct Staged {
    /// The batch's versions that exist, each with whether it is yanked.
    pub versions: ExistingVersions,
    /// The policy texts of the requested namespaces that have one.
    pub policies: std::collections::HashMap<String, String>,
    /// The heads of the requested chains that exist.
    pub heads: std::collections::HashMap<String, Head>,
    /// With [`StageRequest::follow`]: the newest checkpoint (`None` only for a log that never
    /// signed one) ...
    pub latest: Option<CheckpointRow>,
    /// ... and the namespace records from [`Follow::namespaces_from`] up to its size, in log order.
    pub namespace_entries: Entries,
    /// Stored hashes the read prefetched (committed, so safe to keep in memory).
    pub hashes: Vec<(u64, Hash)>,
}

/// A held [`Log::sequencer_lock`]. Release it with [`SequencerLock::release`]; dropping it
/// without releasing also frees it (by closing its connection).
pub trait SequencerLock: Send {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// What the two backends do differently: the log's write path and the reads it rests on.
/// SQLite is owned by one process, so a transaction is enough; PostgreSQL is shared by
/// replicas, so its commit is one compare-and-swap statement and its staging read one snapshot.
/// Everything else ([`Store`]) is written once for both.
pub trait Log: Send + Sync + 'static {
    /// Number of leaves stored (equals the newest checkpoint's size in a consistent store).
    fn size(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// The stored hashes at `indexes` that exist, as (index, hash) pairs in any order.
    fn read_hashes(&self, indexes: Vec<u64>)
    -> BoxFuture<'_, Result<Vec<(u64, Hash)>, StoreError>>;
    /// The stored hashes at `indexes` (increasing) concatenated in that order, as a tile
    /// (docs/protocol.md §7.12) is: one answer row where the backend can, rather than a row per
    /// hash. [`StoreError::Corrupt`] when one is missing.
    fn read_concatenated(&self, indexes: Vec<u64>) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let mut read = self.read_hashes(indexes.clone()).await?;
            read.sort_unstable_by_key(|(i, _)| *i);
            concatenated(&indexes, read.into_iter())
        })
    }
    /// Everything of `req` read from one snapshot in one round trip, where replicas share the
    /// store. `None` where one process owns it: [`Store::stage`] then reads the parts one after
    /// another, which is exact because nothing else writes.
    fn stage<'a>(
        &'a self,
        req: &'a StageRequest,
    ) -> BoxFuture<'a, Result<Option<Staged>, StoreError>>;
    /// Writes a whole checked batch ([`BatchRows`] already derived from it) in one durable
    /// transaction, or nothing: [`StoreError::Conflict`] when the log no longer holds
    /// `batch.start` entries.
    fn commit<'a>(
        &'a self,
        batch: &'a Batch,
        rows: BatchRows,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// With a store several replicas share: waits for, then holds, a lock that lets one
    /// sequencer at a time build and commit a batch, so no replica builds and signs a batch it
    /// then loses to another. Correctness does not rest on it (commit still compares the tree
    /// state); it only saves wasted work. `None` where one process owns the store.
    fn sequencer_lock(&self) -> BoxFuture<'_, Result<Option<Box<dyn SequencerLock>>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A backend's [`Log`] with the stored hashes it read or committed recently kept in memory.
struct CachedLog<L> {
    inner: L,
    hashes: HashCache,
}

impl<L: Log> Log for CachedLog<L> {
    fn size(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.size()
    }

    fn read_hashes(
        &self,
        indexes: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<(u64, Hash)>, StoreError>> {
        Box::pin(async move {
            let (found, missing) = self.hashes.lookup(&indexes);
            let mut found: Vec<(u64, Hash)> = found.into_iter().collect();
            if !missing.is_empty() {
                let read = self.inner.read_hashes(missing).await?;
                self.hashes.insert(read.iter().copied());
                found.extend(read);
            }
            Ok(found)
        })
    }

    // Tiles come from the cache when it holds all of their hashes; otherwise from the store in
    // one answer, without filling the cache kept for proofs and appends.
    fn read_concatenated(&self, indexes: Vec<u64>) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let (found, missing) = self.hashes.lookup(&indexes);
            if missing.is_empty() {
                let mut found: Vec<(u64, Hash)> = found.into_iter().collect();
                found.sort_unstable_by_key(|(i, _)| *i);
                return concatenated(&indexes, found.into_iter());
            }
            self.inner.read_concatenated(indexes).await
        })
    }

    fn stage<'a>(
        &'a self,
        req: &'a StageRequest,
    ) -> BoxFuture<'a, Result<Option<Staged>, StoreError>> {
        Box::pin(async move {
            let mut staged = self.inner.stage(req).await?;
            if let Some(s) = &mut staged {
                self.hashes
                    .insert(std::mem::take(&mut s.hashes).into_iter());
            }
            Ok(staged)
        })
    }

    fn commit<'a>(
        &'a self,
        batch: &'a Batch,
        rows: BatchRows,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.commit(batch, rows).await?;
            // Only committed hashes are kept: they never change, whichever replica wrote them.
            self.hashes
                .insert_committed(batch.hash_start, &batch.hashes);
            Ok(())
        })
    }

    fn sequencer_lock(&self) -> BoxFuture<'_, Result<Option<Box<dyn SequencerLock>>, StoreError>> {
        self.inner.sequencer_lock()
    }
}

/// The connection pool of either backend.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$p` bound to the pool and `$db` to its database type. The body is one
/// text for both backends: SQL both accept (`$N` placeholders, which SQLite reads as numbered
/// parameters) and typed rows, so the two cannot drift apart.
macro_rules! with_pool {
    ($pool:expr, |$p:ident, $db:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => {
                #[allow(dead_code)]
                type $db = sqlx::Sqlite;
                $body
            }
            Pool::Postgres($p) => {
                #[allow(dead_code)]
                type $db = sqlx::Postgres;
                $body
            }
        }
    };
}

impl Pool {
    /// The function `f(haystack, needle)` that is > 0 when the needle occurs in the haystack.
    fn position_fn(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => "instr",
            Pool::Postgres(_) => "strpos",
        }
    }
}

/// `indexes`' hashes concatenated, from `read` (index, hash) in increasing index order.
fn concatenated(
    indexes: &[u64],
    read: impl Iterator<Item = (u64, Hash)>,
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(indexes.len() * 32);
    let mut read = read.peekable();
    for &i in indexes {
        while read.next_if(|(idx, _)| *idx < i).is_some() {}
        match read.next() {
            Some((idx, h)) if idx == i => out.extend_from_slice(&h),
            _ => return Err(StoreError::Corrupt(format!("stored hash {i} is missing"))),
        }
    }
    Ok(out)
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// A count or index as the signed 64-bit integer both databases store.
fn int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n)
        .map_err(|_| StoreError::Corrupt(format!("{n} does not fit in a 64-bit integer column")))
}

/// A stored integer that must not be negative.
fn uint(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
}

fn hash(bytes: &[u8]) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "expected a 32-byte hash, found {} bytes",
            bytes.len()
        ))
    })
}

/// A stored chain head: an entry's index and leaf hash.
fn head_row(idx: i64, leaf: &[u8]) -> Result<Head, StoreError> {
    Ok(Head {
        index: uint(idx, "log index")?,
        leaf: hash(leaf)?,
    })
}

/// `(chain, idx, leaf)` rows as chain heads.
fn chain_heads_of(rows: Vec<(String, i64, Vec<u8>)>) -> Result<Vec<(String, Head)>, StoreError> {
    rows.into_iter()
        .map(|(chain, idx, leaf)| Ok((chain, head_row(idx, &leaf)?)))
        .collect()
}

/// `(idx, body)` rows as log entries.
fn entries_of(rows: Vec<(i64, Vec<u8>)>) -> Result<Entries, StoreError> {
    rows.into_iter()
        .map(|(idx, body)| Ok((uint(idx, "log index")?, body)))
        .collect()
}

const VERSION_COLUMNS: &str =
    "r.package, r.version, r.digest, r.size, r.idx, r.yank_idx, r.yank_reason, r.capabilities";

/// A `releases` row as [`VERSION_COLUMNS`] selects it.
#[derive(Debug, sqlx::FromRow)]
struct VersionColumns {
    package: String,
    version: String,
    digest: String,
    size: i64,
    idx: i64,
    yank_idx: Option<i64>,
    yank_reason: Option<String>,
    capabilities: String,
}

impl VersionColumns {
    fn into_row(self) -> Result<(String, VersionRow), StoreError> {
        let row = VersionRow {
            version: self.version,
            digest: self.digest,
            size: uint(self.size, "size")?,
            log_index: uint(self.idx, "log index")?,
            yanked: self.yank_idx.is_some(),
            yank_reason: self.yank_reason,
            capabilities: serde_json::from_str(&self.capabilities)
                .map_err(|e| StoreError::Corrupt(format!("capabilities column: {e}")))?,
        };
        Ok((self.package, row))
    }
}

/// [`VERSION_COLUMNS`] and what the release endpoint adds.
#[derive(Debug, sqlx::FromRow)]
struct ReleaseColumns {
    #[sqlx(flatten)]
    version: VersionColumns,
    kind: String,
    audit: String,
    wit: Option<String>,
    body: Vec<u8>,
}

#[derive(Debug, sqlx::FromRow)]
struct ReleaseRecordColumns {
    version: String,
    kind: String,
    body: Vec<u8>,
}

#[derive(Debug, sqlx::FromRow)]
struct TokenColumns {
    id: String,
    hash: Vec<u8>,
    scope: String,
    namespace: Option<String>,
    created: String,
    revoked: Option<String>,
}

impl TryFrom<TokenColumns> for TokenRow {
    type Error = StoreError;
    fn try_from(t: TokenColumns) -> Result<Self, StoreError> {
        Ok(TokenRow {
            id: t.id,
            hash: hash(&t.hash)?,
            scope: t.scope,
            namespace: t.namespace,
            created: t.created,
            revoked: t.revoked,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct CheckpointColumns {
    size: i64,
    root: Vec<u8>,
    body: String,
}

impl TryFrom<CheckpointColumns> for CheckpointRow {
    type Error = StoreError;
    fn try_from(c: CheckpointColumns) -> Result<Self, StoreError> {
        Ok(CheckpointRow {
            size: uint(c.size, "checkpoint size")?,
            root: hash(&c.root)?,
            body: c.body,
        })
    }
}

/// Rows per query in chunked reads, well under SQLite's 32766 bound variables.
const CHUNK: usize = 2000;

/// Checks that a batch describes what it claims (contiguous indexes from `start`, stored hashes
/// that continue the stored ones, a checkpoint for the resulting size) before anything is
/// written, whichever backend writes it.
fn check_batch(batch: &Batch) -> Result<(), StoreError> {
    for (k, e) in batch.entries.iter().enumerate() {
        if e.index != batch.start + k as u64 {
            return Err(StoreError::Corrupt(format!(
                "batch entry {k} has index {}, expected {}",
                e.index,
                batch.start + k as u64
            )));
        }
    }
    let end = batch.start + batch.entries.len() as u64;
    if batch.checkpoint.size != end {
        return Err(StoreError::Corrupt(format!(
            "batch from {} with {} entries carries a checkpoint for size {}, expected {end}",
            batch.start,
            batch.entries.len(),
            batch.checkpoint.size
        )));
    }
    Ok(())
}

/// A batch's rows, one vector per column of each table, derived once for both backends.
#[derive(Debug, Default)]
pub struct BatchRows {
    pub entry_idx: Vec<i64>,
    pub entry_body: Vec<Vec<u8>>,
    pub entry_kind: Vec<&'static str>,
    pub entry_namespace: Vec<String>,
    pub entry_chain: Vec<Option<String>>,
    pub entry_leaf: Vec<Vec<u8>>,
    pub hash_idx: Vec<i64>,
    pub hash: Vec<Vec<u8>>,
    pub rel: ReleaseRows,
    /// Yanks of releases committed earlier; a yank of a release in this same batch is written
    /// into that release's row instead, so a batch never updates a row it inserts.
    pub yank_idx: Vec<i64>,
    pub yank_package: Vec<String>,
    pub yank_version: Vec<String>,
    pub yank_reason: Vec<String>,
    pub imp_idx: Vec<i64>,
    pub imp_name: Vec<String>,
    pub imp_class: Vec<String>,
    pub exp_idx: Vec<i64>,
    pub exp_name: Vec<String>,
    pub checkpoint_size: i64,
    pub start: i64,
}

/// The release rows of one batch, one vector per column.
#[derive(Debug, Default)]
pub struct ReleaseRows {
    pub package: Vec<String>,
    pub version: Vec<String>,
    pub idx: Vec<i64>,
    pub digest: Vec<String>,
    pub size: Vec<i64>,
    pub kind: Vec<String>,
    pub capabilities: Vec<String>,
    pub audit: Vec<String>,
    pub yank_idx: Vec<Option<i64>>,
    pub yank_reason: Vec<Option<String>>,
}

impl BatchRows {
    fn of(batch: &Batch) -> Result<Self, StoreError> {
        let mut c = Self {
            checkpoint_size: int(batch.checkpoint.size)?,
            start: int(batch.start)?,
            ..Self::default()
        };
        let hash_start = int(batch.hash_start)?;
        for (i, h) in batch.hashes.iter().enumerate() {
            c.hash_idx.push(hash_start + i as i64);
            c.hash.push(h.to_vec());
        }
        // Where each release of this batch sits in the release columns, to fold a later yank of
        // it in this batch into its row.
        let mut in_batch: std::collections::HashMap<(&str, &str), usize> =
            std::collections::HashMap::new();
        for e in &batch.entries {
            let idx = int(e.index)?;
            c.entry_idx.push(idx);
            c.entry_body.push(e.body.clone());
            c.entry_kind.push(e.kind.as_str());
            c.entry_namespace.push(e.namespace.clone());
            c.entry_chain.push(e.chain.clone());
            c.entry_leaf.push(e.leaf.to_vec());
            match &e.derived {
                Derived::Release(r) => {
                    in_batch.insert((&r.package, &r.version), c.rel.idx.len());
                    c.rel.package.push(r.package.clone());
                    c.rel.version.push(r.version.clone());
                    c.rel.idx.push(idx);
                    c.rel.digest.push(r.digest.clone());
                    c.rel.size.push(int(r.size)?);
                    c.rel.kind.push(r.kind.clone());
                    c.rel.capabilities.push(
                        serde_json::to_string(&r.capabilities).unwrap_or_else(|_| "[]".into()),
                    );
                    c.rel.audit.push(r.audit_json.clone());
                    c.rel.yank_idx.push(None);
                    c.rel.yank_reason.push(None);
                    for (n, class) in &r.imports {
                        c.imp_idx.push(idx);
                        c.imp_name.push(n.clone());
                        c.imp_class.push(class.clone());
                    }
                    for n in &r.exports {
                        c.exp_idx.push(idx);
                        c.exp_name.push(n.clone());
                    }
                }
                Derived::Yank {
                    package,
                    version,
                    reason,
                } => match in_batch.get(&(package.as_str(), version.as_str())) {
                    Some(&k) if c.rel.yank_idx[k].is_none() => {
                        c.rel.yank_idx[k] = Some(idx);
                        c.rel.yank_reason[k] = Some(reason.clone());
                    }
                    Some(_) => {}
                    None => {
                        c.yank_idx.push(idx);
                        c.yank_package.push(package.clone());
                        c.yank_version.push(version.clone());
                        c.yank_reason.push(reason.clone());
                    }
                },
                Derived::Namespace | Derived::Map => {}
            }
        }
        Ok(c)
    }
}

/// Metadata, log and derived rows, on SQLite ([`sqlite::open`]) or PostgreSQL
/// ([`postgres::open`]). Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The backend's log behind a [`CachedLog`].
    log: std::sync::Arc<dyn Log>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Store {
    fn new(pool: Pool, log: impl Log) -> Self {
        let log = std::sync::Arc::new(CachedLog {
            inner: log,
            hashes: HashCache::default(),
        });
        Self { pool, log }
    }

    /// The log (with its hash cache), to wrap (fault-injection tests) with [`Store::with_log`].
    pub fn log(&self) -> std::sync::Arc<dyn Log> {
        self.log.clone()
    }

    /// The same store writing through `log`, which must be a wrapper of [`Store::log`].
    pub fn with_log(self, log: std::sync::Arc<dyn Log>) -> Self {
        Self { log, ..self }
    }

    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        with_pool!(&self.pool, |p, _Db| {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await
        })
        .map_err(db)
    }

    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p, _Db| {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(p)
            .await
            .map(drop)
        })
        .map_err(db)
    }

    /// The newest checkpoint, or `None` for an empty log that never signed one.
    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        let row: Option<CheckpointColumns> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as("SELECT size, root, body FROM checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(p)
                .await
        })
        .map_err(db)?;
        row.map(CheckpointRow::try_from).transpose()
    }

    /// Number of leaves stored (equals the newest checkpoint's size in a consistent store).
    pub async fn log_size(&self) -> Result<u64, StoreError> {
        self.log.size().await
    }

    /// Stored hashes at `indexes`, in the same order; missing ones are an error. Recently read
    /// or committed ones come from memory.
    pub async fn read_hashes(&self, indexes: Vec<u64>) -> Result<Vec<Hash>, StoreError> {
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        let found: std::collections::HashMap<u64, Hash> = self
            .log
            .read_hashes(indexes.clone())
            .await?
            .into_iter()
            .collect();
        indexes
            .iter()
            .map(|i| {
                found
                    .get(i)
                    .copied()
                    .ok_or_else(|| StoreError::Corrupt(format!("stored hash {i} is missing")))
            })
            .collect()
    }

    /// The bytes of a tile the log holds (docs/protocol.md §7.12): a hash tile's hashes
    /// concatenated in order, or an entry bundle; the HTTP route and the bucket export both
    /// serve exactly these.
    pub async fn tile_bytes(
        &self,
        tile: &gridreg_protocol::tiles::Tile,
    ) -> Result<Vec<u8>, StoreError> {
        use gridreg_protocol::tiles::{TileKind, encode_bundle};
        match tile.kind {
            TileKind::Hashes { .. } => self.log.read_concatenated(tile.stored_indexes()).await,
            TileKind::Entries => {
                let range = tile.positions();
                let entries = self.entries(range.start, range.end).await?;
                if entries.len() as u64 != range.end - range.start {
                    return Err(StoreError::Corrupt(format!(
                        "{tile}: {} entries stored for {}..{}",
                        entries.len(),
                        range.start,
                        range.end
                    )));
                }
                encode_bundle(entries.iter().map(|(_, body)| body.as_slice()))
                    .map_err(|e| StoreError::Corrupt(format!("{tile}: {e}")))
            }
        }
    }

    /// Entries with `start <= index < end`.
    pub async fn entries(&self, start: u64, end: u64) -> Result<Entries, StoreError> {
        let (start, end) = (int(start)?, int(end)?);
        let rows = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT idx, body FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            )
            .bind(start)
            .bind(end)
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        entries_of(rows)
    }

    /// Namespace records in log order, for one namespace or for all.
    pub async fn namespace_entries(&self, namespace: Option<&str>) -> Result<Entries, StoreError> {
        let rows = with_pool!(&self.pool, |p, _Db| match namespace {
            Some(ns) => {
                sqlx::query_as(
                    "SELECT idx, body FROM entries WHERE namespace = $1 AND kind = 'namespace' \
                     ORDER BY idx",
                )
                .bind(ns)
                .fetch_all(p)
                .await
            }
            None => {
                sqlx::query_as(
                    "SELECT idx, body FROM entries WHERE kind = 'namespace' ORDER BY idx",
                )
                .fetch_all(p)
                .await
            }
        })
        .map_err(db)?;
        entries_of(rows)
    }

    /// Namespace records (of every namespace) with `start <= index < end`, in log order: what a
    /// sequencer following other replicas applies to the namespace state it already has.
    pub async fn namespace_entries_between(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Entries, StoreError> {
        let (start, end) = (int(start)?, int(end)?);
        let rows = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT idx, body FROM entries WHERE kind = 'namespace' AND idx >= $1 AND idx < $2 \
                 ORDER BY idx",
            )
            .bind(start)
            .bind(end)
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        entries_of(rows)
    }

    /// Whether the release exists, and whether it is yanked.
    /// Whether any release names the content `digest` (`sha256:<hex>`).
    pub async fn digest_released(&self, digest: &str) -> Result<bool, StoreError> {
        let found: Option<i64> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_scalar("SELECT idx FROM releases WHERE digest = $1 LIMIT 1")
                .bind(digest)
                .fetch_optional(p)
                .await
        })
        .map_err(db)?;
        Ok(found.is_some())
    }

    pub async fn release_state(
        &self,
        package: &str,
        version: &str,
    ) -> Result<Option<bool>, StoreError> {
        let row: Option<Option<i64>> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_scalar("SELECT yank_idx FROM releases WHERE package = $1 AND version = $2")
                .bind(package)
                .bind(version)
                .fetch_optional(p)
                .await
        })
        .map_err(db)?;
        Ok(row.map(|y| y.is_some()))
    }

    /// Which of the (package, version) pairs exist, each with whether it is yanked.
    async fn release_states(
        &self,
        keys: &[(String, String)],
    ) -> Result<ExistingVersions, StoreError> {
        let mut out = ExistingVersions::new();
        for chunk in keys.chunks(CHUNK) {
            let rows: Vec<(String, String, Option<i64>)> = with_pool!(&self.pool, |p, Db| {
                let mut q = sqlx::QueryBuilder::<Db>::new(
                    "SELECT package, version, yank_idx FROM releases WHERE (package, version) IN (",
                );
                q.push_values(chunk, |mut b, (p, v)| {
                    b.push_bind(p.clone()).push_bind(v.clone());
                });
                q.push(")");
                q.build_query_as().fetch_all(p).await
            })
            .map_err(db)?;
            out.extend(rows.into_iter().map(|(p, v, y)| ((p, v), y.is_some())));
        }
        Ok(out)
    }

    /// Everything a sequencer reads before staging a batch, once per batch. A store shared by
    /// replicas answers from one snapshot, in one round trip ([`Log::stage`]), so the versions
    /// and policies are exactly those of the returned checkpoint's log; a store that one process
    /// owns reads them one after the other, the checkpoint first, so nothing is older than it.
    pub async fn stage(&self, req: StageRequest) -> Result<Staged, StoreError> {
        if let Some(staged) = self.log.stage(&req).await? {
            return Ok(staged);
        }
        let mut staged = Staged::default();
        if let Some(follow) = req.follow {
            staged.latest = self.latest_checkpoint().await?;
            if let Some(cp) = &staged.latest
                && follow.namespaces_from < cp.size
            {
                staged.namespace_entries = self
                    .namespace_entries_between(follow.namespaces_from, cp.size)
                    .await?;
            }
        }
        staged.versions = self.release_states(&req.versions).await?;
        for chain in req.chains {
            if let Some(head) = self.chain_head(&chain).await? {
                staged.heads.insert(chain, head);
            }
        }
        for ns in req.namespaces {
            if let Some(text) = self.policy(&ns).await? {
                staged.policies.insert(ns, text);
            }
        }
        Ok(staged)
    }

    /// The newest entry of `chain` (`namespace acme`, `package acme:auth`), if it has one.
    pub async fn chain_head(&self, chain: &str) -> Result<Option<Head>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = with_pool!(&self.pool, |p, Db| {
            sqlx::query_as(
                "SELECT idx, leaf FROM entries WHERE chain = $1 ORDER BY idx DESC LIMIT 1",
            )
            .bind(chain)
            .fetch_optional(p)
            .await
        })
        .map_err(db)?;
        row.map(|(idx, leaf)| head_row(idx, &leaf)).transpose()
    }

    /// The head of every chain as of log size `size` (its newest entry below `size`): what the
    /// head map of that size holds (docs/protocol.md §6.8).
    pub async fn chain_heads_below(&self, size: u64) -> Result<Vec<(String, Head)>, StoreError> {
        let size = int(size)?;
        let rows: Vec<(String, i64, Vec<u8>)> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT e.chain, e.idx, e.leaf FROM entries e JOIN \
                 (SELECT chain, max(idx) AS m FROM entries \
                  WHERE chain IS NOT NULL AND idx < $1 GROUP BY chain) h ON e.idx = h.m",
            )
            .bind(size)
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        chain_heads_of(rows)
    }

    /// The chain entries with `start <= index < end` in log order, as (chain, head): what a
    /// head map that describes the log up to `start` applies to describe it up to `end`.
    pub async fn chain_heads_between(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<(String, Head)>, StoreError> {
        let (start, end) = (int(start)?, int(end)?);
        let rows: Vec<(String, i64, Vec<u8>)> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT chain, idx, leaf FROM entries \
                 WHERE chain IS NOT NULL AND idx >= $1 AND idx < $2 ORDER BY idx",
            )
            .bind(start)
            .bind(end)
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        chain_heads_of(rows)
    }

    /// The entries of `chain` below log index `below`, newest first, at most `limit`.
    pub async fn chain_entries(
        &self,
        chain: &str,
        below: u64,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        let below = int(below)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT idx, body FROM entries WHERE chain = $1 AND idx < $2 \
                 ORDER BY idx DESC LIMIT $3",
            )
            .bind(chain)
            .bind(below)
            .bind(limit)
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        entries_of(rows)
    }

    /// The kind of the entry at `index`, if there is one (`None` for a kind this build does not
    /// know, which only a newer build writes).
    pub async fn entry_kind(&self, index: u64) -> Result<Option<EntryKind>, StoreError> {
        let index = int(index)?;
        let kind: Option<String> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_scalar("SELECT kind FROM entries WHERE idx = $1")
                .bind(index)
                .fetch_optional(p)
                .await
        })
        .map_err(db)?;
        Ok(kind.and_then(|k| match k.as_str() {
            "release" => Some(EntryKind::Release),
            "namespace" => Some(EntryKind::Namespace),
            "yank" => Some(EntryKind::Yank),
            "map" => Some(EntryKind::Map),
            _ => None,
        }))
    }

    /// Writes a whole sequencer batch in one durable transaction, or nothing.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        check_batch(&batch)?;
        let rows = BatchRows::of(&batch)?;
        self.log.commit(&batch, rows).await
    }

    /// See [`Log::sequencer_lock`].
    pub async fn sequencer_lock(&self) -> Result<Option<Box<dyn SequencerLock>>, StoreError> {
        self.log.sequencer_lock().await
    }

    pub async fn search(&self, s: &Search) -> Result<Vec<SearchHit>, StoreError> {
        let position = self.pool.position_fn();
        let rows: Vec<VersionColumns> = with_pool!(&self.pool, |p, Db| {
            let mut q = sqlx::QueryBuilder::<Db>::new(format!(
                "SELECT {VERSION_COLUMNS} FROM releases r WHERE 1 = 1"
            ));
            if let Some(text) = &s.q {
                q.push(format!(" AND {position}(r.package, "))
                    .push_bind(text.clone())
                    .push(") > 0");
            }
            if let Some(class) = &s.capability {
                q.push(
                    " AND EXISTS (SELECT 1 FROM release_imports i WHERE i.idx = r.idx AND i.class = ",
                )
                .push_bind(class.clone())
                .push(")");
            }
            for (table, prefix) in [("release_imports", &s.imports), ("release_exports", &s.exports)] {
                if let Some(prefix) = prefix {
                    // substr and length count characters on both backends.
                    q.push(format!(
                        " AND EXISTS (SELECT 1 FROM {table} n WHERE n.idx = r.idx \
                         AND substr(n.name, 1, length("
                    ))
                    .push_bind(prefix.clone())
                    .push(")) = ")
                    .push_bind(prefix.clone())
                    .push(")");
                }
            }
            q.push(" ORDER BY r.package, r.idx LIMIT ")
                .push_bind(i64::from(s.limit));
            q.build_query_as().fetch_all(p).await
        })
        .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                let (package, row) = r.into_row()?;
                Ok(SearchHit { package, row })
            })
            .collect()
    }

    pub async fn versions(&self, package: &str) -> Result<Vec<VersionRow>, StoreError> {
        let rows: Vec<VersionColumns> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM releases r WHERE r.package = $1 ORDER BY r.idx"
            )))
            .bind(package)
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        rows.into_iter().map(|r| Ok(r.into_row()?.1)).collect()
    }

    pub async fn release(
        &self,
        package: &str,
        version: &str,
    ) -> Result<Option<ReleaseRow>, StoreError> {
        let row: Option<ReleaseColumns> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS}, r.kind, r.audit, r.wit, e.body FROM releases r \
                 JOIN entries e ON e.idx = r.idx WHERE r.package = $1 AND r.version = $2"
            )))
            .bind(package)
            .bind(version)
            .fetch_optional(p)
            .await
        })
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let (package, row) = r.version.into_row()?;
        Ok(Some(ReleaseRow {
            package,
            row,
            record: String::from_utf8(r.body)
                .map_err(|_| StoreError::Corrupt("a log entry is not UTF-8".into()))?,
            kind: r.kind,
            audit_json: r.audit,
            wit: r.wit,
        }))
    }

    /// Every release of `package` in log order: its version, content kind (`component` or
    /// `module`) and signed record, for deriving its OCI manifest (docs/protocol.md §9).
    pub async fn release_records(&self, package: &str) -> Result<Vec<ReleaseRecord>, StoreError> {
        let rows: Vec<ReleaseRecordColumns> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT r.version, r.kind, e.body FROM releases r JOIN entries e ON e.idx = r.idx \
                 WHERE r.package = $1 ORDER BY r.idx",
            )
            .bind(package)
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(ReleaseRecord {
                    version: r.version,
                    kind: r.kind,
                    record: String::from_utf8(r.body)
                        .map_err(|_| StoreError::Corrupt("a log entry is not UTF-8".into()))?,
                })
            })
            .collect()
    }

    /// Stores a release's WIT text, extracted on its first read, unless a concurrent read stored
    /// it first (the text is a function of the content, so either copy is the same).
    pub async fn set_wit(&self, package: &str, version: &str, wit: &str) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p, _Db| {
            sqlx::query(
                "UPDATE releases SET wit = $1 WHERE package = $2 AND version = $3 AND wit IS NULL",
            )
            .bind(wit)
            .bind(package)
            .bind(version)
            .execute(p)
            .await
            .map(drop)
        })
        .map_err(db)
    }

    /// Number of releases (tests and metrics).
    pub async fn release_count(&self) -> Result<u64, StoreError> {
        let n: i64 = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_scalar("SELECT count(*) FROM releases")
                .fetch_one(p)
                .await
        })
        .map_err(db)?;
        uint(n, "release count")
    }

    pub async fn policy(&self, namespace: &str) -> Result<Option<String>, StoreError> {
        with_pool!(&self.pool, |p, _Db| {
            sqlx::query_scalar("SELECT policy FROM namespace_policies WHERE namespace = $1")
                .bind(namespace)
                .fetch_optional(p)
                .await
        })
        .map_err(db)
    }

    pub async fn set_policy(
        &self,
        namespace: &str,
        policy: Option<&str>,
    ) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p, _Db| match policy {
            Some(text) => {
                sqlx::query(
                    "INSERT INTO namespace_policies (namespace, policy) VALUES ($1, $2) \
                     ON CONFLICT (namespace) DO UPDATE SET policy = excluded.policy",
                )
                .bind(namespace)
                .bind(text)
                .execute(p)
                .await
                .map(drop)
            }
            None => {
                sqlx::query("DELETE FROM namespace_policies WHERE namespace = $1")
                    .bind(namespace)
                    .execute(p)
                    .await
                    .map(drop)
            }
        })
        .map_err(db)
    }

    pub async fn create_token(&self, token: TokenRow) -> Result<(), StoreError> {
        with_pool!(&self.pool, |p, _Db| {
            sqlx::query(
                "INSERT INTO tokens (id, hash, scope, namespace, created) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.id)
            .bind(token.hash.to_vec())
            .bind(&token.scope)
            .bind(token.namespace.as_deref())
            .bind(&token.created)
            .execute(p)
            .await
            .map(drop)
        })
        .map_err(db)
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let row: Option<TokenColumns> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT id, hash, scope, namespace, created, revoked FROM tokens WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(p)
            .await
        })
        .map_err(db)?;
        row.map(TokenRow::try_from).transpose()
    }

    /// Marks a token revoked; returns whether it existed and was live.
    pub async fn revoke_token(&self, id: &str, when: &str) -> Result<bool, StoreError> {
        let affected = with_pool!(&self.pool, |p, _Db| {
            sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
                .bind(when)
                .bind(id)
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(db)?;
        Ok(affected == 1)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError> {
        let rows: Vec<TokenColumns> = with_pool!(&self.pool, |p, _Db| {
            sqlx::query_as(
                "SELECT id, hash, scope, namespace, created, revoked FROM tokens \
                 ORDER BY created, id",
            )
            .fetch_all(p)
            .await
        })
        .map_err(db)?;
        rows.into_iter().map(TokenRow::try_from).collect()
    }

    /// Closes the connections, waiting for them to finish.
    pub async fn close(&self) {
        with_pool!(&self.pool, |p, _Db| p.close().await)
    }
}

/// Most stored hashes kept in memory (about 15 MiB).
pub const HASH_CACHE_MAX: usize = 1 << 18;

/// Stored hashes never change once committed (whichever replica committed them), so the ones
/// read or written recently are kept in memory: inclusion proofs for fresh entries and the sequencer's next append then need no
/// query. Filled only from committed data (after a commit succeeds, or from a read). When full
/// it starts over, which is cheap: the hashes a busy log needs are refilled by the next reads.
#[derive(Debug, Default)]
pub struct HashCache {
    map: std::sync::Mutex<std::collections::HashMap<u64, Hash>>,
}

impl HashCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Hash>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached hashes among `indexes`, and the indexes still to read from the database.
    pub fn lookup(&self, indexes: &[u64]) -> (std::collections::HashMap<u64, Hash>, Vec<u64>) {
        let cached = self.lock();
        let mut found = std::collections::HashMap::with_capacity(indexes.len());
        let mut missing = Vec::new();
        for &i in indexes {
            match cached.get(&i) {
                Some(h) => {
                    found.insert(i, *h);
                }
                None => missing.push(i),
            }
        }
        (found, missing)
    }

    /// Remembers the hashes a commit stored, `hashes[k]` at index `start + k`.
    pub fn insert_committed(&self, start: u64, hashes: &[Hash]) {
        self.insert(
            hashes
                .iter()
                .enumerate()
                .map(|(k, h)| (start + k as u64, *h)),
        );
    }

    pub fn insert(&self, hashes: impl ExactSizeIterator<Item = (u64, Hash)>) {
        let mut map = self.lock();
        if map.len() + hashes.len() > HASH_CACHE_MAX {
            map.clear();
        }
        map.extend(hashes.take(HASH_CACHE_MAX));
    }
}
