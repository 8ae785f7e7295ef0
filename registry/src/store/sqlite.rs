//! The SQLite [`Log`]: one file under the data directory, WAL journal, and `synchronous=FULL`
//! so a committed sequencer batch survives power loss. One process owns the file, so a batch is
//! a transaction that first checks the log size, and staging reads need no snapshot.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use gridreg_protocol::Hash;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::{
    Batch, BatchRows, BoxFuture, CHUNK, Log, Pool, StageRequest, Staged, Store, StoreError, db,
    hash, uint,
};

/// Opens (creating if needed) the database at `path` and runs the migrations.
pub async fn open(path: &Path) -> Result<Store, StoreError> {
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
    Ok(Store::new(Pool::Sqlite(pool.clone()), SqliteLog { pool }))
}

/// The log in a SQLite file.
#[derive(Debug)]
struct SqliteLog {
    pool: SqlitePool,
}

/// Entries are numbered from 0 without gaps, so the size is the largest index + 1: a lookup on
/// the primary key, where count(*) would scan the table.
const SIZE: &str = "SELECT coalesce(max(idx) + 1, 0) FROM entries";

impl Log for SqliteLog {
    fn size(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar(SIZE)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            uint(n, "log size")
        })
    }

    fn read_hashes(
        &self,
        indexes: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<(u64, Hash)>, StoreError>> {
        Box::pin(async move {
            let mut read = Vec::with_capacity(indexes.len());
            for chunk in indexes.chunks(CHUNK) {
                let mut q =
                    QueryBuilder::<Sqlite>::new("SELECT idx, hash FROM hashes WHERE idx IN (");
                let mut sep = q.separated(", ");
                for &i in chunk {
                    sep.push_bind(super::int(i)?);
                }
                q.push(")");
                let rows: Vec<(i64, Vec<u8>)> =
                    q.build_query_as().fetch_all(&self.pool).await.map_err(db)?;
                for (idx, h) in rows {
                    read.push((uint(idx, "log index")?, hash(&h)?));
                }
            }
            Ok(read)
        })
    }

    // One row: the hashes as hex, concatenated in index order, and how many there were.
    fn read_concatenated(&self, indexes: Vec<u64>) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(indexes.len() * 32);
            for chunk in indexes.chunks(CHUNK) {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "SELECT count(*), coalesce(group_concat(hex(hash), '' ORDER BY idx), '') \
                     FROM hashes WHERE idx IN (",
                );
                let mut sep = q.separated(", ");
                for &i in chunk {
                    sep.push_bind(super::int(i)?);
                }
                q.push(")");
                let (count, hex_text): (i64, String) =
                    q.build_query_as().fetch_one(&self.pool).await.map_err(db)?;
                if uint(count, "hash count")? != chunk.len() as u64 {
                    return Err(StoreError::Corrupt(format!(
                        "{} of {} stored hashes are missing",
                        chunk.len() as u64 - uint(count, "hash count")?,
                        chunk.len()
                    )));
                }
                out.extend(
                    hex::decode(&hex_text)
                        .map_err(|e| StoreError::Corrupt(format!("stored hashes: {e}")))?,
                );
            }
            if out.len() != indexes.len() * 32 {
                return Err(StoreError::Corrupt("a stored hash is not 32 bytes".into()));
            }
            Ok(out)
        })
    }

    fn stage<'a>(
        &'a self,
        _req: &'a StageRequest,
    ) -> BoxFuture<'a, Result<Option<Staged>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    fn commit<'a>(
        &'a self,
        batch: &'a Batch,
        rows: BatchRows,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(commit(&self.pool, batch, rows))
    }
}

/// Inserts `n` rows into `table (columns)` in chunks, binding row `i`'s values with `bind`.
async fn insert_rows(
    tx: &mut sqlx::SqliteConnection,
    table_and_columns: &str,
    n: usize,
    bind: impl Fn(&mut sqlx::query_builder::Separated<'_, Sqlite, &'static str>, usize),
) -> Result<(), StoreError> {
    for start in (0..n).step_by(CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(format!("INSERT INTO {table_and_columns} "));
        q.push_values(start..n.min(start + CHUNK), |mut b, i| bind(&mut b, i));
        q.build().execute(&mut *tx).await.map_err(db)?;
    }
    Ok(())
}

async fn commit(pool: &SqlitePool, batch: &Batch, c: BatchRows) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    // Compare-and-swap on the log size: a batch only lands on the tree it was computed from.
    let found: i64 = sqlx::query_scalar(SIZE)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let found = uint(found, "log size")?;
    if found != batch.start {
        return Err(StoreError::Conflict {
            expected: batch.start,
            found,
        });
    }
    let n = c.entry_idx.len();
    insert_rows(
        &mut tx,
        "entries (idx, body, kind, namespace, chain, leaf)",
        n,
        |b, i| {
            b.push_bind(c.entry_idx[i])
                .push_bind(c.entry_body[i].clone())
                .push_bind(c.entry_kind[i])
                .push_bind(c.entry_namespace[i].clone())
                .push_bind(c.entry_chain[i].clone())
                .push_bind(c.entry_leaf[i].clone());
        },
    )
    .await?;
    insert_rows(&mut tx, "hashes (idx, hash)", c.hash_idx.len(), |b, i| {
        b.push_bind(c.hash_idx[i]).push_bind(c.hash[i].clone());
    })
    .await?;
    let r = &c.rel;
    insert_rows(
        &mut tx,
        "releases (package, version, idx, digest, size, kind, capabilities, audit, yank_idx, \
         yank_reason)",
        r.idx.len(),
        |b, i| {
            b.push_bind(r.package[i].clone())
                .push_bind(r.version[i].clone())
                .push_bind(r.idx[i])
                .push_bind(r.digest[i].clone())
                .push_bind(r.size[i])
                .push_bind(r.kind[i].clone())
                .push_bind(r.capabilities[i].clone())
                .push_bind(r.audit[i].clone())
                .push_bind(r.yank_idx[i])
                .push_bind(r.yank_reason[i].clone());
        },
    )
    .await?;
    for i in 0..c.yank_idx.len() {
        sqlx::query(
            "UPDATE releases SET yank_idx = $1, yank_reason = $2 \
             WHERE package = $3 AND version = $4 AND yank_idx IS NULL",
        )
        .bind(c.yank_idx[i])
        .bind(&c.yank_reason[i])
        .bind(&c.yank_package[i])
        .bind(&c.yank_version[i])
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    insert_rows(
        &mut tx,
        "release_imports (idx, name, class)",
        c.imp_idx.len(),
        |b, i| {
            b.push_bind(c.imp_idx[i])
                .push_bind(c.imp_name[i].clone())
                .push_bind(c.imp_class[i].clone());
        },
    )
    .await?;
    insert_rows(
        &mut tx,
        "release_exports (idx, name)",
        c.exp_idx.len(),
        |b, i| {
            b.push_bind(c.exp_idx[i]).push_bind(c.exp_name[i].clone());
        },
    )
    .await?;
    sqlx::query("INSERT INTO checkpoints (size, root, body) VALUES ($1, $2, $3)")
        .bind(c.checkpoint_size)
        .bind(batch.checkpoint.root.to_vec())
        .bind(&batch.checkpoint.body)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    // With WAL and synchronous=FULL, COMMIT returns only after the WAL is fsynced.
    tx.commit().await.map_err(db)
}
