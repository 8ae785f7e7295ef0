//! The PostgreSQL implementation of [`Store`], for deployments where several `gridreg serve`
//! replicas share one database.
//!
//! The log size lives in the single `tree_state` row. [`Store::commit`] locks that row with
//! `SELECT ... FOR UPDATE`, refuses with [`StoreError::Conflict`] unless it still holds the size
//! the batch was built on, and writes the leaves, hashes, checkpoint, derived rows and the new
//! size in the same transaction. So however many sequencers run, batches land one after another,
//! each on the tree it was computed from, and `checkpoints.size` being the primary key means one
//! size never gets two roots.
//!
//! Queries are plain `sqlx::query` strings (not the compile-time checked macros), so building
//! the crate needs no database. Bulk inserts pass one array per column to `UNNEST`, so a batch
//! costs one round trip per table however many entries it holds.

use std::collections::HashMap;

use gridreg_protocol::Hash;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row as _};

use crate::store::{
    Batch, BoxFuture, CheckpointRow, Derived, Entries, ExistingVersions, ReleaseRow, Search,
    SearchHit, Store, StoreError, TokenRow, VersionRow,
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

async fn commit_batch(pool: &PgPool, batch: Batch) -> Result<(), StoreError> {
    check_batch(&batch)?;
    let mut tx = pool.begin().await.map_err(db)?;
    // Compare-and-swap on the log size under the row lock: another sequencer's commit either
    // finished before this SELECT (and we see its size) or waits until this transaction ends.
    let found: i64 = sqlx::query_scalar("SELECT size FROM tree_state WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let found = u64::try_from(found)
        .map_err(|_| StoreError::Corrupt(format!("negative log size {found}")))?;
    if found != batch.start {
        return Err(StoreError::Conflict {
            expected: batch.start,
            found,
        });
    }
    // An empty batch (the first start's checkpoint of the empty tree) does not move the size,
    // so a second replica starting at once would pass the check above: refuse it here instead
    // of signing size 0 twice.
    let cp = &batch.checkpoint;
    let existing: Option<i64> = sqlx::query_scalar("SELECT size FROM checkpoints WHERE size = $1")
        .bind(int(cp.size)?)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    if existing.is_some() {
        return Err(StoreError::CheckpointExists { size: cp.size });
    }

    if !batch.entries.is_empty() {
        let mut idx = Vec::with_capacity(batch.entries.len());
        let mut body = Vec::with_capacity(batch.entries.len());
        let mut kind = Vec::with_capacity(batch.entries.len());
        let mut namespace = Vec::with_capacity(batch.entries.len());
        for e in &batch.entries {
            idx.push(int(e.index)?);
            body.push(e.body.clone());
            kind.push(e.kind.as_str().to_string());
            namespace.push(e.namespace.clone());
        }
        sqlx::query(
            "INSERT INTO entries (idx, body, kind, namespace) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::TEXT[], $4::TEXT[])",
        )
        .bind(idx)
        .bind(body)
        .bind(kind)
        .bind(namespace)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    if !batch.hashes.is_empty() {
        let hash_start = int(batch.hash_start)?;
        let idx: Vec<i64> = (0..batch.hashes.len() as i64)
            .map(|i| hash_start + i)
            .collect();
        let hashes: Vec<Vec<u8>> = batch.hashes.iter().map(|h| h.to_vec()).collect();
        sqlx::query(
            "INSERT INTO hashes (idx, hash) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])",
        )
        .bind(idx)
        .bind(hashes)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }

    let mut rel = ReleaseColumns::default();
    let (mut imp_idx, mut imp_name, mut imp_class) = (Vec::new(), Vec::new(), Vec::new());
    let (mut exp_idx, mut exp_name) = (Vec::new(), Vec::new());
    let mut yanks = Vec::new();
    for e in &batch.entries {
        match &e.derived {
            Derived::Release(r) => {
                let idx = int(e.index)?;
                rel.package.push(r.package.clone());
                rel.version.push(r.version.clone());
                rel.idx.push(idx);
                rel.digest.push(r.digest.clone());
                rel.size.push(int(r.size)?);
                rel.kind.push(r.kind.clone());
                rel.capabilities
                    .push(serde_json::to_string(&r.capabilities).unwrap_or_else(|_| "[]".into()));
                rel.audit.push(r.audit_json.clone());
                rel.wit.push(r.wit.clone());
                for (n, c) in &r.imports {
                    imp_idx.push(idx);
                    imp_name.push(n.clone());
                    imp_class.push(c.clone());
                }
                for n in &r.exports {
                    exp_idx.push(idx);
                    exp_name.push(n.clone());
                }
            }
            Derived::Yank {
                package,
                version,
                reason,
            } => yanks.push((int(e.index)?, package, version, reason)),
            Derived::Namespace => {}
        }
    }
    if !rel.idx.is_empty() {
        sqlx::query(
            "INSERT INTO releases (package, version, idx, digest, size, kind, capabilities, audit, wit) \
             SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::BIGINT[], \
             $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[])",
        )
        .bind(rel.package)
        .bind(rel.version)
        .bind(rel.idx)
        .bind(rel.digest)
        .bind(rel.size)
        .bind(rel.kind)
        .bind(rel.capabilities)
        .bind(rel.audit)
        .bind(rel.wit)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    // A yank may name a release of this same batch, so yanks run after the release insert.
    for (idx, package, version, reason) in yanks {
        sqlx::query(
            "UPDATE releases SET yank_idx = $1, yank_reason = $2 \
             WHERE package = $3 AND version = $4 AND yank_idx IS NULL",
        )
        .bind(idx)
        .bind(reason)
        .bind(package)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    if !imp_idx.is_empty() {
        sqlx::query(
            "INSERT INTO release_imports (idx, name, class) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[])",
        )
        .bind(imp_idx)
        .bind(imp_name)
        .bind(imp_class)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    if !exp_idx.is_empty() {
        sqlx::query(
            "INSERT INTO release_exports (idx, name) SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[])",
        )
        .bind(exp_idx)
        .bind(exp_name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    sqlx::query("INSERT INTO checkpoints (size, root, body) VALUES ($1, $2, $3)")
        .bind(int(cp.size)?)
        .bind(cp.root.to_vec())
        .bind(&cp.body)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query("UPDATE tree_state SET size = $1 WHERE id = 1")
        .bind(int(cp.size)?)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // COMMIT returns once the WAL record is flushed (synchronous_commit = on, the default); a
    // crash before that leaves none of the batch behind.
    tx.commit().await.map_err(db)
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
    wit: Vec<Option<String>>,
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
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar("SELECT size FROM tree_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative log size {n}")))
        })
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

    fn release_context<'a>(
        &'a self,
        package: &'a str,
        version: &'a str,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<crate::store::ReleaseContext, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT \
                   EXISTS (SELECT 1 FROM releases WHERE package = $1 AND version = $2) AS found, \
                   (SELECT yank_idx IS NOT NULL FROM releases WHERE package = $1 AND version = $2) AS yanked, \
                   (SELECT policy FROM namespace_policies WHERE namespace = $3) AS policy",
            )
            .bind(package)
            .bind(version)
            .bind(namespace)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
            let found: bool = row.try_get("found").map_err(db)?;
            let yanked: Option<bool> = row.try_get("yanked").map_err(db)?;
            let policy: Option<String> = row.try_get("policy").map_err(db)?;
            Ok(crate::store::ReleaseContext {
                exists: found.then_some(yanked.unwrap_or(false)),
                policy,
            })
        })
    }

    fn release_states(
        &self,
        keys: Vec<(String, String)>,
    ) -> BoxFuture<'_, Result<ExistingVersions, StoreError>> {
        Box::pin(async move {
            let mut out = HashMap::new();
            if keys.is_empty() {
                return Ok(out);
            }
            let (packages, versions): (Vec<String>, Vec<String>) = keys.into_iter().unzip();
            let rows = sqlx::query(
                "SELECT r.package, r.version, r.yank_idx FROM releases r \
                 JOIN UNNEST($1::TEXT[], $2::TEXT[]) AS k (package, version) \
                 ON r.package = k.package AND r.version = k.version",
            )
            .bind(packages)
            .bind(versions)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            for row in rows {
                let yank: Option<i64> = row.try_get("yank_idx").map_err(db)?;
                out.insert(
                    (
                        row.try_get("package").map_err(db)?,
                        row.try_get("version").map_err(db)?,
                    ),
                    yank.is_some(),
                );
            }
            Ok(out)
        })
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
                "SELECT {VERSION_COLUMNS}, r.audit, r.wit, e.body FROM releases r \
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
                audit_json: row.try_get("audit").map_err(db)?,
                wit: row.try_get("wit").map_err(db)?,
            }))
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
