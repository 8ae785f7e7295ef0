//! The PostgreSQL implementation of [`Store`], for deployments where several `gridreg serve`
//! replicas share one database.
//!
//! The log size lives in the single `tree_state` row. [`Store::commit`] is one statement that
//! moves that row's size only if it still is the size the batch was built on (else
//! [`StoreError::Conflict`]) and, in the same statement, writes the leaves, hashes, checkpoint
//! and derived rows. So however many sequencers run, batches land one after another,
//! each on the tree it was computed from, and `checkpoints.size` being the primary key means one
//! size never gets two roots.
//!
//! Queries are plain `sqlx::query` strings (not the compile-time checked macros), so building
//! the crate needs no database. Bulk inserts pass one array per column to `UNNEST`, so a batch
//! costs one round trip however many entries and tables it touches.

use std::collections::HashMap;

use gridreg_protocol::Hash;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row as _};

use crate::store::{
    Batch, BoxFuture, CheckpointRow, Derived, Entries, ReleaseRow, Search, SearchHit, StageRequest,
    Staged, Store, StoreError, TokenRow, VersionRow,
};

/// Connections per replica; the sequencer holds one for a batch, readers share the rest.
const MAX_CONNECTIONS: u32 = 8;

/// Metadata in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    hashes: std::sync::Arc<crate::store::HashCache>,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n)
        .map_err(|_| StoreError::Corrupt(format!("{n} does not fit in a BIGINT column")))
}

fn uint(row: &PgRow, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col).map_err(db)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {col}: {v}")))
}

fn hash(bytes: &[u8]) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "expected a 32-byte hash, found {} bytes",
            bytes.len()
        ))
    })
}

/// Hides the password of a `postgres://user:password@host/db` URL for error messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// The advisory lock key sequencers take turns on (any constant; "gridreg" in ASCII).
const SEQUENCER_LOCK_KEY: i64 = 0x0067_7269_6472_6567;

/// A session-level advisory lock on one pooled connection.
struct AdvisoryLock {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
}

impl crate::store::SequencerLock for AdvisoryLock {
    fn release(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        let conn = self.conn.take();
        Box::pin(async move {
            let Some(mut conn) = conn else { return };
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(SEQUENCER_LOCK_KEY)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                // Closing the session frees its locks.
                drop(conn.detach());
            }
        })
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        // Not released (a cancelled or panicking sequencer): close the session so the lock
        // cannot stay held by a connection back in the pool.
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`) and runs the
    /// migrations. Several replicas may do this at once: sqlx serialises migrations with an
    /// advisory lock.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect(url)
            .await
            .map_err(|e| StoreError::Database(format!("connecting to {}: {e}", redact_url(url))))?;
        sqlx::migrate!("../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrating: {e}")))?;
        Ok(Self {
            pool,
            hashes: std::sync::Arc::default(),
        })
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn version_row(row: &PgRow) -> Result<VersionRow, StoreError> {
    let caps: String = row.try_get("capabilities").map_err(db)?;
    let yank_idx: Option<i64> = row.try_get("yank_idx").map_err(db)?;
    Ok(VersionRow {
        version: row.try_get("version").map_err(db)?,
        digest: row.try_get("digest").map_err(db)?,
        size: uint(row, "size")?,
        log_index: uint(row, "idx")?,
        yanked: yank_idx.is_some(),
        yank_reason: row.try_get("yank_reason").map_err(db)?,
        capabilities: serde_json::from_str(&caps)
            .map_err(|e| StoreError::Corrupt(format!("capabilities column: {e}")))?,
    })
}

fn token_row(row: &PgRow) -> Result<TokenRow, StoreError> {
    let h: Vec<u8> = row.try_get("hash").map_err(db)?;
    Ok(TokenRow {
        id: row.try_get("id").map_err(db)?,
        hash: hash(&h)?,
        scope: row.try_get("scope").map_err(db)?,
        namespace: row.try_get("namespace").map_err(db)?,
        created: row.try_get("created").map_err(db)?,
        revoked: row.try_get("revoked").map_err(db)?,
    })
}

const VERSION_COLUMNS: &str =
    "r.package, r.version, r.digest, r.size, r.idx, r.yank_idx, r.yank_reason, r.capabilities";

/// Checks that a batch describes what it claims (contiguous indexes from `start`, a checkpoint
/// for the resulting size) before anything is written.
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

/// Most stored hashes [`STAGE`] prefetches: the newest ones, which the next append needs.
const STAGE_HASHES: i64 = 4096;

/// Everything a sequencer reads before staging a batch, as one statement, so from one snapshot
/// and in one round trip (under the replicas' lock, every round trip delays all of them). Each
/// row is tagged with what it is: `v` an existing version of the batch ($1, $2; `n` its yank
/// index), `p` a namespace policy ($3); and when following other replicas ($4): `c` the newest
/// checkpoint, `e` a namespace record from index $5 on, `h` a stored hash from index $6 on.
const STAGE: &str = "\
SELECT 'v' AS k, r.package AS a, r.version AS b, r.yank_idx AS n, NULL::BYTEA AS bin
    FROM releases r JOIN UNNEST($1::TEXT[], $2::TEXT[]) AS q (package, version)
    ON r.package = q.package AND r.version = q.version
UNION ALL
SELECT 'p', namespace, policy, NULL, NULL FROM namespace_policies WHERE namespace = ANY($3::TEXT[])
UNION ALL
(SELECT 'c', NULL, body, size, root FROM checkpoints WHERE $4::BOOLEAN ORDER BY size DESC LIMIT 1)
UNION ALL
SELECT 'e', NULL, NULL, idx, body FROM entries WHERE $4 AND kind = 'namespace' AND idx >= $5::BIGINT
UNION ALL
(SELECT 'h', NULL, NULL, idx, hash FROM hashes WHERE $4 AND idx >= $6::BIGINT ORDER BY idx DESC LIMIT $7)";

/// Runs [`STAGE`] and sorts its rows out; prefetched hashes go into `cache`.
async fn stage(
    pool: &PgPool,
    cache: &crate::store::HashCache,
    req: StageRequest,
) -> Result<Staged, StoreError> {
    let (packages, versions): (Vec<String>, Vec<String>) = req.versions.into_iter().unzip();
    let follow = req.follow;
    let (namespaces_from, hashes_from) = match follow {
        Some(f) => (
            f.namespaces_from,
            gridreg_protocol::merkle::stored_hash_count(f.known_size),
        ),
        None => (0, 0),
    };
    let rows = sqlx::query(STAGE)
        .bind(packages)
        .bind(versions)
        .bind(req.namespaces)
        .bind(follow.is_some())
        .bind(int(namespaces_from)?)
        .bind(int(hashes_from)?)
        .bind(STAGE_HASHES)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut staged = Staged::default();
    let mut hashes = Vec::new();
    for row in &rows {
        let kind: &str = row.try_get("k").map_err(db)?;
        let text = |col: &str| -> Result<String, StoreError> {
            row.try_get::<Option<String>, _>(col)
                .map_err(db)?
                .ok_or_else(|| StoreError::Corrupt(format!("staging row {kind} lacks {col}")))
        };
        let bytes = || -> Result<Vec<u8>, StoreError> {
            row.try_get::<Option<Vec<u8>>, _>("bin")
                .map_err(db)?
                .ok_or_else(|| StoreError::Corrupt(format!("staging row {kind} lacks bin")))
        };
        let number = || -> Result<u64, StoreError> {
            let n: Option<i64> = row.try_get("n").map_err(db)?;
            n.and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("staging row {kind} lacks n")))
        };
        match kind {
            "v" => {
                let yank: Option<i64> = row.try_get("n").map_err(db)?;
                staged
                    .versions
                    .insert((text("a")?, text("b")?), yank.is_some());
            }
            "p" => {
                staged.policies.insert(text("a")?, text("b")?);
            }
            "c" => {
                staged.latest = Some(CheckpointRow {
                    size: number()?,
                    root: hash(&bytes()?)?,
                    body: text("b")?,
                });
            }
            "e" => staged.namespace_entries.push((number()?, bytes()?)),
            "h" => hashes.push((number()?, hash(&bytes()?)?)),
            other => {
                return Err(StoreError::Corrupt(format!("unknown staging row {other}")));
            }
        }
    }
    // One snapshot: no record or hash beyond the checkpoint exists in it, and all are committed.
    staged
        .namespace_entries
        .sort_unstable_by_key(|(idx, _)| *idx);
    cache.insert(hashes.into_iter());
    Ok(staged)
}

/// The whole batch as one statement: the compare-and-swap on the log size and every insert are
/// data-modifying `WITH` parts of a single `INSERT`/`UPDATE` statement, which PostgreSQL runs
/// atomically in one implicit transaction, so a commit costs one round trip and one WAL flush
/// however many tables it touches (a sequencer holds the replicas' turn for exactly that long).
///
/// `ts` moves the size only if it still is `$2`, the size the batch was built on; every other part
/// inserts only when `ts` did, so a batch that lost the race writes nothing. Under READ COMMITTED
/// an `UPDATE` that waited for another sequencer's commit re-checks its `WHERE` on the new row, so
/// two batches for the same size cannot both land. Foreign keys are checked at the end of the
/// statement, after every part has run.
const COMMIT_BATCH: &str = "\
WITH ts AS (
    UPDATE tree_state SET size = $1 WHERE id = 1 AND size = $2 RETURNING size
), e AS (
    INSERT INTO entries (idx, body, kind, namespace)
    SELECT u.* FROM UNNEST($3::BIGINT[], $4::BYTEA[], $5::TEXT[], $6::TEXT[]) AS u
    WHERE EXISTS (SELECT 1 FROM ts)
), h AS (
    INSERT INTO hashes (idx, hash)
    SELECT u.* FROM UNNEST($7::BIGINT[], $8::BYTEA[]) AS u
    WHERE EXISTS (SELECT 1 FROM ts)
), r AS (
    INSERT INTO releases (package, version, idx, digest, size, kind, capabilities, audit, \
                          yank_idx, yank_reason)
    SELECT u.* FROM UNNEST($9::TEXT[], $10::TEXT[], $11::BIGINT[], $12::TEXT[], $13::BIGINT[], \
                           $14::TEXT[], $15::TEXT[], $16::TEXT[], $17::BIGINT[], \
                           $18::TEXT[]) AS u
    WHERE EXISTS (SELECT 1 FROM ts)
), y AS (
    UPDATE releases SET yank_idx = u.idx, yank_reason = u.reason
    FROM UNNEST($19::BIGINT[], $20::TEXT[], $21::TEXT[], $22::TEXT[]) AS u (idx, package, version, reason)
    WHERE releases.package = u.package AND releases.version = u.version
      AND releases.yank_idx IS NULL AND EXISTS (SELECT 1 FROM ts)
), i AS (
    INSERT INTO release_imports (idx, name, class)
    SELECT u.* FROM UNNEST($23::BIGINT[], $24::TEXT[], $25::TEXT[]) AS u
    WHERE EXISTS (SELECT 1 FROM ts)
), x AS (
    INSERT INTO release_exports (idx, name)
    SELECT u.* FROM UNNEST($26::BIGINT[], $27::TEXT[]) AS u
    WHERE EXISTS (SELECT 1 FROM ts)
), c AS (
    INSERT INTO checkpoints (size, root, body)
    SELECT $1, $28, $29 WHERE EXISTS (SELECT 1 FROM ts)
)
SELECT EXISTS (SELECT 1 FROM ts) AS moved";

/// The batch's rows, one vector per column of each table, for [`COMMIT_BATCH`].
#[derive(Default)]
struct BatchColumns {
    entry_idx: Vec<i64>,
    entry_body: Vec<Vec<u8>>,
    entry_kind: Vec<&'static str>,
    entry_namespace: Vec<String>,
    hash_idx: Vec<i64>,
    hash: Vec<Vec<u8>>,
    rel: ReleaseColumns,
    /// Yanks of releases committed earlier; a yank of a release in this same batch is written
    /// into that release's row instead (the parts of one statement do not see each other's rows).
    yank_idx: Vec<i64>,
    yank_package: Vec<String>,
    yank_version: Vec<String>,
    yank_reason: Vec<String>,
    imp_idx: Vec<i64>,
    imp_name: Vec<String>,
    imp_class: Vec<String>,
    exp_idx: Vec<i64>,
    exp_name: Vec<String>,
}

impl BatchColumns {
    fn of(batch: &Batch) -> Result<Self, StoreError> {
        let mut c = Self::default();
        let hash_start = int(batch.hash_start)?;
        for (i, h) in batch.hashes.iter().enumerate() {
            c.hash_idx.push(hash_start + i as i64);
            c.hash.push(h.to_vec());
        }
        // Where each release of this batch sits in the release columns, to fold a later yank of
        // it in this batch into its row.
        let mut in_batch: HashMap<(&str, &str), usize> = HashMap::new();
        for e in &batch.entries {
            let idx = int(e.index)?;
            c.entry_idx.push(idx);
            c.entry_body.push(e.body.clone());
            c.entry_kind.push(e.kind.as_str());
            c.entry_namespace.push(e.namespace.clone());
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
                Derived::Namespace => {}
            }
        }
        Ok(c)
    }
}

/// The log size: the one `tree_state` row.
async fn tree_size(pool: &PgPool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT size FROM tree_state WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative log size {n}")))
}

async fn commit_batch(pool: &PgPool, batch: Batch) -> Result<(), StoreError> {
    check_batch(&batch)?;
    let c = BatchColumns::of(&batch)?;
    let cp = &batch.checkpoint;
    let result = sqlx::query_scalar::<_, bool>(COMMIT_BATCH)
        .bind(int(cp.size)?)
        .bind(int(batch.start)?)
        .bind(c.entry_idx)
        .bind(c.entry_body)
        .bind(c.entry_kind)
        .bind(c.entry_namespace)
        .bind(c.hash_idx)
        .bind(c.hash)
        .bind(c.rel.package)
        .bind(c.rel.version)
        .bind(c.rel.idx)
        .bind(c.rel.digest)
        .bind(c.rel.size)
        .bind(c.rel.kind)
        .bind(c.rel.capabilities)
        .bind(c.rel.audit)
        .bind(c.rel.yank_idx)
        .bind(c.rel.yank_reason)
        .bind(c.yank_idx)
        .bind(c.yank_package)
        .bind(c.yank_version)
        .bind(c.yank_reason)
        .bind(c.imp_idx)
        .bind(c.imp_name)
        .bind(c.imp_class)
        .bind(c.exp_idx)
        .bind(c.exp_name)
        .bind(cp.root.to_vec())
        .bind(&cp.body)
        .fetch_one(pool)
        .await;
    // The statement returns once its WAL record is flushed (synchronous_commit = on, the
    // default); a crash before that leaves none of the batch behind.
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(StoreError::Conflict {
            expected: batch.start,
            found: tree_size(pool).await?,
        }),
        // An empty batch (the first start's checkpoint of the empty tree) does not move the
        // size, so a second replica starting at once passes `ts`; the checkpoint's primary key
        // refuses it rather than signing size 0 twice.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("checkpoints_pkey") => {
            Err(StoreError::CheckpointExists { size: cp.size })
        }
        Err(e) => Err(db(e)),
    }
}

/// The release rows of one batch, one vector per column, for `UNNEST`.
#[derive(Default)]
struct ReleaseColumns {
    package: Vec<String>,
    version: Vec<String>,
    idx: Vec<i64>,
    digest: Vec<String>,
    size: Vec<i64>,
    kind: Vec<String>,
    capabilities: Vec<String>,
    audit: Vec<String>,
    yank_idx: Vec<Option<i64>>,
    yank_reason: Vec<Option<String>>,
}

fn entries_of(rows: &[PgRow]) -> Result<Entries, StoreError> {
    rows.iter()
        .map(|r| Ok((uint(r, "idx")?, r.try_get("body").map_err(db)?)))
        .collect()
}

impl Store for PostgresStore {
    fn meta<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)
        })
    }

    fn set_meta<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO meta (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn latest_checkpoint(&self) -> BoxFuture<'_, Result<Option<CheckpointRow>, StoreError>> {
        Box::pin(async move {
            let row =
                sqlx::query("SELECT size, root, body FROM checkpoints ORDER BY size DESC LIMIT 1")
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
            let Some(row) = row else { return Ok(None) };
            let root: Vec<u8> = row.try_get("root").map_err(db)?;
            Ok(Some(CheckpointRow {
                size: uint(&row, "size")?,
                root: hash(&root)?,
                body: row.try_get("body").map_err(db)?,
            }))
        })
    }

    fn log_size(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(tree_size(&self.pool))
    }

    fn read_hashes(&self, indexes: Vec<u64>) -> BoxFuture<'_, Result<Vec<Hash>, StoreError>> {
        Box::pin(async move {
            if indexes.is_empty() {
                return Ok(Vec::new());
            }
            let (mut found, missing) = self.hashes.lookup(&indexes);
            if !missing.is_empty() {
                let wanted = missing
                    .iter()
                    .map(|&i| int(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let rows = sqlx::query("SELECT idx, hash FROM hashes WHERE idx = ANY($1)")
                    .bind(wanted)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
                let mut read = Vec::with_capacity(rows.len());
                for row in &rows {
                    let h: Vec<u8> = row.try_get("hash").map_err(db)?;
                    read.push((uint(row, "idx")?, hash(&h)?));
                }
                found.extend(read.iter().copied());
                self.hashes.insert(read.into_iter());
            }
            indexes
                .iter()
                .map(|i| {
                    found
                        .get(i)
                        .copied()
                        .ok_or_else(|| StoreError::Corrupt(format!("stored hash {i} is missing")))
                })
                .collect()
        })
    }

    fn entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Entries, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT idx, body FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
            )
            .bind(int(start)?)
            .bind(int(end)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            entries_of(&rows)
        })
    }

    fn namespace_entries<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Entries, StoreError>> {
        Box::pin(async move {
            let rows =
                match namespace {
                    Some(ns) => sqlx::query(
                        "SELECT idx, body FROM entries WHERE namespace = $1 AND kind = 'namespace' \
                         ORDER BY idx",
                    )
                    .bind(ns)
                    .fetch_all(&self.pool)
                    .await,
                    None => {
                        sqlx::query(
                            "SELECT idx, body FROM entries WHERE kind = 'namespace' ORDER BY idx",
                        )
                        .fetch_all(&self.pool)
                        .await
                    }
                }
                .map_err(db)?;
            entries_of(&rows)
        })
    }

    fn namespace_entries_between(
        &self,
        start: u64,
        end: u64,
    ) -> BoxFuture<'_, Result<Entries, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT idx, body FROM entries WHERE kind = 'namespace' AND idx >= $1 AND idx < $2 \
                 ORDER BY idx",
            )
            .bind(int(start)?)
            .bind(int(end)?)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            entries_of(&rows)
        })
    }

    fn release_state<'a>(
        &'a self,
        package: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<bool>, StoreError>> {
        Box::pin(async move {
            let row: Option<Option<i64>> = sqlx::query_scalar(
                "SELECT yank_idx FROM releases WHERE package = $1 AND version = $2",
            )
            .bind(package)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            Ok(row.map(|y| y.is_some()))
        })
    }

    fn stage(&self, req: StageRequest) -> BoxFuture<'_, Result<Staged, StoreError>> {
        Box::pin(stage(&self.pool, &self.hashes, req))
    }

    fn sequencer_lock(
        &self,
    ) -> BoxFuture<'_, Result<Option<Box<dyn crate::store::SequencerLock>>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(SEQUENCER_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            Ok(Some(
                Box::new(AdvisoryLock { conn: Some(conn) }) as Box<dyn crate::store::SequencerLock>
            ))
        })
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let start = batch.hash_start;
            let hashes = batch.hashes.clone();
            commit_batch(&self.pool, batch).await?;
            self.hashes.insert_committed(start, &hashes);
            Ok(())
        })
    }

    fn search<'a>(&'a self, s: &'a Search) -> BoxFuture<'a, Result<Vec<SearchHit>, StoreError>> {
        Box::pin(async move {
            let mut q = QueryBuilder::<Postgres>::new(format!(
                "SELECT {VERSION_COLUMNS} FROM releases r WHERE TRUE"
            ));
            if let Some(text) = &s.q {
                q.push(" AND strpos(r.package, ")
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
            if let Some(prefix) = &s.imports {
                q.push(
                    " AND EXISTS (SELECT 1 FROM release_imports i WHERE i.idx = r.idx \
                     AND starts_with(i.name, ",
                )
                .push_bind(prefix.clone())
                .push("))");
            }
            if let Some(prefix) = &s.exports {
                q.push(
                    " AND EXISTS (SELECT 1 FROM release_exports x WHERE x.idx = r.idx \
                     AND starts_with(x.name, ",
                )
                .push_bind(prefix.clone())
                .push("))");
            }
            q.push(" ORDER BY r.package, r.idx LIMIT ")
                .push_bind(i64::from(s.limit));
            let rows = q.build().fetch_all(&self.pool).await.map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(SearchHit {
                        package: r.try_get("package").map_err(db)?,
                        row: version_row(r)?,
                    })
                })
                .collect()
        })
    }

    fn versions<'a>(
        &'a self,
        package: &'a str,
    ) -> BoxFuture<'a, Result<Vec<VersionRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS} FROM releases r WHERE r.package = $1 ORDER BY r.idx"
            )))
            .bind(package)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(version_row).collect()
        })
    }

    fn release<'a>(
        &'a self,
        package: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReleaseRow>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {VERSION_COLUMNS}, r.kind, r.audit, r.wit, e.body FROM releases r \
                 JOIN entries e ON e.idx = r.idx WHERE r.package = $1 AND r.version = $2"
            )))
            .bind(package)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            let Some(row) = row else { return Ok(None) };
            let body: Vec<u8> = row.try_get("body").map_err(db)?;
            Ok(Some(ReleaseRow {
                package: row.try_get("package").map_err(db)?,
                row: version_row(&row)?,
                record: String::from_utf8(body)
                    .map_err(|_| StoreError::Corrupt("a log entry is not UTF-8".into()))?,
                kind: row.try_get("kind").map_err(db)?,
                audit_json: row.try_get("audit").map_err(db)?,
                wit: row.try_get("wit").map_err(db)?,
            }))
        })
    }

    fn set_wit<'a>(
        &'a self,
        package: &'a str,
        version: &'a str,
        wit: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "UPDATE releases SET wit = $1 WHERE package = $2 AND version = $3 AND wit IS NULL",
            )
            .bind(wit)
            .bind(package)
            .bind(version)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn release_count(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM releases")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn policy<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT policy FROM namespace_policies WHERE namespace = $1")
                .bind(namespace)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)
        })
    }

    fn set_policy<'a>(
        &'a self,
        namespace: &'a str,
        policy: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match policy {
                Some(p) => {
                    sqlx::query(
                        "INSERT INTO namespace_policies (namespace, policy) VALUES ($1, $2) \
                         ON CONFLICT (namespace) DO UPDATE SET policy = excluded.policy",
                    )
                    .bind(namespace)
                    .bind(p)
                    .execute(&self.pool)
                    .await
                }
                None => {
                    sqlx::query("DELETE FROM namespace_policies WHERE namespace = $1")
                        .bind(namespace)
                        .execute(&self.pool)
                        .await
                }
            }
            .map_err(db)?;
            Ok(())
        })
    }

    fn create_token(&self, token: TokenRow) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO tokens (id, hash, scope, namespace, created) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.id)
            .bind(token.hash.to_vec())
            .bind(&token.scope)
            .bind(token.namespace.as_deref())
            .bind(&token.created)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TokenRow>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT id, hash, scope, namespace, created, revoked FROM tokens WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            row.as_ref().map(token_row).transpose()
        })
    }

    fn revoke_token<'a>(
        &'a self,
        id: &'a str,
        when: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let r = sqlx::query("UPDATE tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
                .bind(when)
                .bind(id)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(r.rows_affected() == 1)
        })
    }

    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRow>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, hash, scope, namespace, created, revoked FROM tokens \
                 ORDER BY created, id",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter().map(token_row).collect()
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("nonsense"), "nonsense");
    }
}
