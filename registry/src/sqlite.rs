//! The SQLite implementation of [`Store`]: one file under the data directory, WAL journal, and
//! `synchronous=FULL` so a committed sequencer batch survives power loss.
//!
//! Queries are plain `sqlx::query` strings (not the compile-time checked macros), so building
//! the crate needs no database; each query is short and covered by the router tests.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use gridreg_protocol::Hash;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _, Sqlite};

use crate::store::{
    Batch, BoxFuture, CheckpointRow, Derived, Entries, ReleaseRow, Search, SearchHit, StageRequest,
    Staged, Store, StoreError, TokenRow, VersionRow,
};

/// Rows per multi-row INSERT, well under SQLite's 32766 bound variables.
const INSERT_CHUNK: usize = 2000;

/// Metadata in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    hashes: std::sync::Arc<crate::store::HashCache>,
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n)
        .map_err(|_| StoreError::Corrupt(format!("{n} does not fit in an integer column")))
}

fn uint(row: &SqliteRow, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col).map_err(db)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {col}: {v}")))
}

/// `(idx, body)` rows as log entries.
fn entries_of(rows: &[SqliteRow]) -> Result<Entries, StoreError> {
    rows.iter()
        .map(|r| Ok((uint(r, "idx")?, r.try_get("body").map_err(db)?)))
        .collect()
}

fn hash(bytes: &[u8]) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| {
        StoreError::Corrupt(format!(
            "expected a 32-byte hash, found {} bytes",
            bytes.len()
        ))
    })
}

impl SqliteStore {
    /// Which of the (package, version) pairs exist, each with whether it is yanked.
    async fn release_states(
        &self,
        keys: &[(String, String)],
    ) -> Result<crate::store::ExistingVersions, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in keys.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT package, version, yank_idx FROM releases WHERE (package, version) IN (",
            );
            q.push_values(chunk, |mut b, (p, v)| {
                b.push_bind(p.clone()).push_bind(v.clone());
            });
            q.push(")");
            for row in q.build().fetch_all(&self.pool).await.map_err(db)? {
                let yank: Option<i64> = row.try_get("yank_idx").map_err(db)?;
                out.insert(
                    (
                        row.try_get("package").map_err(db)?,
                        row.try_get("version").map_err(db)?,
                    ),
                    yank.is_some(),
                );
            }
        }
        Ok(out)
    }

    /// Opens (creating if needed) the database at `path` and runs the migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(db)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(db)?;
        sqlx::migrate!("../migrations/sqlite")
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

fn version_row(row: &SqliteRow) -> Result<VersionRow, StoreError> {
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

fn token_row(row: &SqliteRow) -> Result<TokenRow, StoreError> {
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

async fn commit_batch(pool: &SqlitePool, batch: Batch) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    // Compare-and-swap on the log size: a batch only lands on the tree it was computed from.
    // Entries are numbered from 0 without gaps, so the size is the largest index + 1: a lookup
    // on the primary key, where count(*) would scan the table.
    let found: i64 = sqlx::query_scalar("SELECT coalesce(max(idx) + 1, 0) FROM entries")
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let found = u64::try_from(found).unwrap_or(0);
    if found != batch.start {
        return Err(StoreError::Conflict {
            expected: batch.start,
            found,
        });
    }
    for chunk in batch.entries.chunks(INSERT_CHUNK) {
        let mut q =
            QueryBuilder::<Sqlite>::new("INSERT INTO entries (idx, body, kind, namespace) ");
        let mut rows = Vec::with_capacity(chunk.len());
        for e in chunk {
            rows.push((
                int(e.index)?,
                e.body.clone(),
                e.kind.as_str(),
                e.namespace.clone(),
            ));
        }
        q.push_values(rows, |mut b, (idx, body, kind, ns)| {
            b.push_bind(idx)
                .push_bind(body)
                .push_bind(kind)
                .push_bind(ns);
        });
        q.build().execute(&mut *tx).await.map_err(db)?;
    }
    let hash_start = int(batch.hash_start)?;
    for (c, chunk) in batch.hashes.chunks(INSERT_CHUNK).enumerate() {
        let base = hash_start + (c * INSERT_CHUNK) as i64;
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO hashes (idx, hash) ");
        q.push_values(chunk.iter().enumerate(), |mut b, (i, h)| {
            b.push_bind(base + i as i64).push_bind(h.to_vec());
        });
        q.build().execute(&mut *tx).await.map_err(db)?;
    }
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    for e in &batch.entries {
        match &e.derived {
            Derived::Release(r) => {
                let idx = int(e.index)?;
                sqlx::query(
                    "INSERT INTO releases (package, version, idx, digest, size, kind, capabilities, audit) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&r.package)
                .bind(&r.version)
                .bind(idx)
                .bind(&r.digest)
                .bind(int(r.size)?)
                .bind(&r.kind)
                .bind(serde_json::to_string(&r.capabilities).unwrap_or_else(|_| "[]".into()))
                .bind(&r.audit_json)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                imports.extend(r.imports.iter().map(|(n, c)| (idx, n.clone(), c.clone())));
                exports.extend(r.exports.iter().map(|n| (idx, n.clone())));
            }
            Derived::Yank {
                package,
                version,
                reason,
            } => {
                sqlx::query(
                    "UPDATE releases SET yank_idx = ?, yank_reason = ? \
                     WHERE package = ? AND version = ? AND yank_idx IS NULL",
                )
                .bind(int(e.index)?)
                .bind(reason)
                .bind(package)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            Derived::Namespace => {}
        }
    }
    for chunk in imports.chunks(INSERT_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO release_imports (idx, name, class) ");
        q.push_values(chunk, |mut b, (idx, n, c)| {
            b.push_bind(*idx).push_bind(n.clone()).push_bind(c.clone());
        });
        q.build().execute(&mut *tx).await.map_err(db)?;
    }
    for chunk in exports.chunks(INSERT_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO release_exports (idx, name) ");
        q.push_values(chunk, |mut b, (idx, n)| {
            b.push_bind(*idx).push_bind(n.clone());
        });
        q.build().execute(&mut *tx).await.map_err(db)?;
    }
    let cp = &batch.checkpoint;
    sqlx::query("INSERT INTO checkpoints (size, root, body) VALUES (?, ?, ?)")
        .bind(int(cp.size)?)
        .bind(cp.root.to_vec())
        .bind(&cp.body)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // With WAL and synchronous=FULL, COMMIT returns only after the WAL is fsynced.
    tx.commit().await.map_err(db)
}

impl Store for SqliteStore {
    fn meta<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        Box::pin(async move {
            sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
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
            sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
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
            let n: i64 = sqlx::query_scalar("SELECT coalesce(max(idx) + 1, 0) FROM entries")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn read_hashes(&self, indexes: Vec<u64>) -> BoxFuture<'_, Result<Vec<Hash>, StoreError>> {
        Box::pin(async move {
            if indexes.is_empty() {
                return Ok(Vec::new());
            }
            let (mut found, missing) = self.hashes.lookup(&indexes);
            let mut read = Vec::with_capacity(missing.len());
            for chunk in missing.chunks(INSERT_CHUNK) {
                let mut q =
                    QueryBuilder::<Sqlite>::new("SELECT idx, hash FROM hashes WHERE idx IN (");
                let mut sep = q.separated(", ");
                for &i in chunk {
                    sep.push_bind(int(i)?);
                }
                q.push(")");
                for row in q.build().fetch_all(&self.pool).await.map_err(db)? {
                    let h: Vec<u8> = row.try_get("hash").map_err(db)?;
                    read.push((uint(&row, "idx")?, hash(&h)?));
                }
            }
            found.extend(read.iter().copied());
            self.hashes.insert(read.into_iter());
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
                "SELECT idx, body FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
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
            let rows = match namespace {
                Some(ns) => sqlx::query(
                    "SELECT idx, body FROM entries WHERE namespace = ? AND kind = 'namespace' ORDER BY idx",
                )
                .bind(ns)
                .fetch_all(&self.pool)
                .await,
                None => sqlx::query("SELECT idx, body FROM entries WHERE kind = 'namespace' ORDER BY idx")
                    .fetch_all(&self.pool)
                    .await,
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
                "SELECT idx, body FROM entries WHERE kind = 'namespace' AND idx >= ? AND idx < ? \
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
                "SELECT yank_idx FROM releases WHERE package = ? AND version = ?",
            )
            .bind(package)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
            Ok(row.map(|y| y.is_some()))
        })
    }

    /// The checkpoint first, so the versions and policies read after it are never older; one
    /// process owns this store, so nothing moves between the reads anyway.
    fn stage(&self, req: StageRequest) -> BoxFuture<'_, Result<Staged, StoreError>> {
        Box::pin(async move {
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
            for ns in req.namespaces {
                if let Some(text) = self.policy(&ns).await? {
                    staged.policies.insert(ns, text);
                }
            }
            Ok(staged)
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
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {VERSION_COLUMNS} FROM releases r WHERE 1 = 1"
            ));
            if let Some(text) = &s.q {
                q.push(" AND instr(r.package, ")
                    .push_bind(text.clone())
                    .push(") > 0");
            }
            if let Some(class) = &s.capability {
                q.push(" AND EXISTS (SELECT 1 FROM release_imports i WHERE i.idx = r.idx AND i.class = ")
                    .push_bind(class.clone())
                    .push(")");
            }
            if let Some(prefix) = &s.imports {
                q.push(" AND EXISTS (SELECT 1 FROM release_imports i WHERE i.idx = r.idx AND substr(i.name, 1, ")
                    .push_bind(prefix.chars().count() as i64)
                    .push(") = ")
                    .push_bind(prefix.clone())
                    .push(")");
            }
            if let Some(prefix) = &s.exports {
                q.push(" AND EXISTS (SELECT 1 FROM release_exports x WHERE x.idx = r.idx AND substr(x.name, 1, ")
                    .push_bind(prefix.chars().count() as i64)
                    .push(") = ")
                    .push_bind(prefix.clone())
                    .push(")");
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
                "SELECT {VERSION_COLUMNS} FROM releases r WHERE r.package = ? ORDER BY r.idx"
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
                 JOIN entries e ON e.idx = r.idx WHERE r.package = ? AND r.version = ?"
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
                "UPDATE releases SET wit = ? WHERE package = ? AND version = ? AND wit IS NULL",
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
            sqlx::query_scalar("SELECT policy FROM namespace_policies WHERE namespace = ?")
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
                        "INSERT INTO namespace_policies (namespace, policy) VALUES (?, ?) \
                     ON CONFLICT (namespace) DO UPDATE SET policy = excluded.policy",
                    )
                    .bind(namespace)
                    .bind(p)
                    .execute(&self.pool)
                    .await
                }
                None => {
                    sqlx::query("DELETE FROM namespace_policies WHERE namespace = ?")
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
                "INSERT INTO tokens (id, hash, scope, namespace, created) VALUES (?, ?, ?, ?, ?)",
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
                "SELECT id, hash, scope, namespace, created, revoked FROM tokens WHERE id = ?",
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
            let r = sqlx::query("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL")
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
            let rows = sqlx::query("SELECT id, hash, scope, namespace, created, revoked FROM tokens ORDER BY created, id")
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
