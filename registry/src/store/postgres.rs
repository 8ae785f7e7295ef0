//! The PostgreSQL [`Log`], for deployments where several `gridreg serve` replicas share one
//! database.
//!
//! The log size lives in the single `tree_state` row. A commit is one statement that
//! moves that row's size only if it still is the size the batch was built on (else
//! [`StoreError::Conflict`]) and, in the same statement, writes the leaves, hashes, checkpoint
//! and derived rows. So however many sequencers run, batches land one after another,
//! each on the tree it was computed from, and `checkpoints.size` being the primary key means one
//! size never gets two roots.
//!
//! Bulk inserts pass one array per column to `UNNEST`, so a batch costs one round trip however
//! many entries and tables it touches.

use gridreg_protocol::{Hash, Head};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{
    Batch, BatchRows, BoxFuture, CheckpointRow, Log, Pool, SequencerLock, StageRequest, Staged,
    Store, StoreError, db, hash, int, uint,
};

/// Connections per replica; the sequencer holds one for a batch, readers share the rest.
const MAX_CONNECTIONS: u32 = 8;

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

impl SequencerLock for AdvisoryLock {
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

/// Connects to the database at `url` (`postgres://user@host:port/db`) and runs the migrations.
/// Several replicas may do this at once: sqlx serialises migrations with an advisory lock.
pub async fn open(url: &str) -> Result<Store, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect(url)
        .await
        .map_err(|e| StoreError::Database(format!("connecting to {}: {e}", redact_url(url))))?;
    sqlx::migrate!("../migrations/postgres")
        .run(&pool)
        .await
        .map_err(|e| StoreError::Database(format!("migrating: {e}")))?;
    Ok(Store::new(Pool::Postgres(pool.clone()), PgLog { pool }))
}

/// The log in a PostgreSQL database that replicas share.
#[derive(Debug)]
struct PgLog {
    pool: PgPool,
}

/// Most stored hashes [`STAGE`] prefetches: the newest ones, which the next append needs.
const STAGE_HASHES: i64 = 4096;

/// Everything a sequencer reads before staging a batch, as one statement, so from one snapshot
/// and in one round trip (under the replicas' lock, every round trip delays all of them). Each
/// row is tagged with what it is: `v` an existing version of the batch ($1, $2; `n` its yank
/// index), `p` a namespace policy ($3); and when following other replicas ($4): `c` the newest
/// checkpoint, `e` a namespace record from index $5 on, `h` a stored hash from index $6 on; and
/// `d` the head (newest entry: index and leaf hash) of each chain in $8.
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
(SELECT 'h', NULL, NULL, idx, hash FROM hashes WHERE $4 AND idx >= $6::BIGINT ORDER BY idx DESC LIMIT $7)
UNION ALL
SELECT 'd', q.chain, NULL, d.idx, d.leaf FROM UNNEST($8::TEXT[]) AS q (chain)
    CROSS JOIN LATERAL (SELECT idx, leaf FROM entries WHERE chain = q.chain \
                        ORDER BY idx DESC LIMIT 1) AS d";

/// One row of [`STAGE`]; which columns are set depends on the tag `k`.
#[derive(Debug, sqlx::FromRow)]
struct StageRow {
    k: String,
    a: Option<String>,
    b: Option<String>,
    n: Option<i64>,
    bin: Option<Vec<u8>>,
}

impl StageRow {
    fn lacks(&self, col: &str) -> StoreError {
        StoreError::Corrupt(format!("staging row {} lacks {col}", self.k))
    }
    fn text(&mut self, col: &str) -> Result<String, StoreError> {
        let v = if col == "a" {
            self.a.take()
        } else {
            self.b.take()
        };
        v.ok_or_else(|| self.lacks(col))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, StoreError> {
        self.bin.take().ok_or_else(|| self.lacks("bin"))
    }
    fn number(&self) -> Result<u64, StoreError> {
        uint(self.n.ok_or_else(|| self.lacks("n"))?, "staging row number")
    }
}

/// Runs [`STAGE`] and sorts its rows out.
async fn stage(pool: &PgPool, req: &StageRequest) -> Result<Staged, StoreError> {
    let (packages, versions): (Vec<&str>, Vec<&str>) = req
        .versions
        .iter()
        .map(|(p, v)| (p.as_str(), v.as_str()))
        .unzip();
    let follow = req.follow;
    let (namespaces_from, hashes_from) = match follow {
        Some(f) => (
            f.namespaces_from,
            gridreg_protocol::merkle::stored_hash_count(f.known_size),
        ),
        None => (0, 0),
    };
    let rows: Vec<StageRow> = sqlx::query_as(STAGE)
        .bind(packages)
        .bind(versions)
        .bind(&req.namespaces)
        .bind(follow.is_some())
        .bind(int(namespaces_from)?)
        .bind(int(hashes_from)?)
        .bind(STAGE_HASHES)
        .bind(&req.chains)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    let mut staged = Staged::default();
    for mut row in rows {
        match row.k.as_str() {
            "v" => {
                let yanked = row.n.is_some();
                staged
                    .versions
                    .insert((row.text("a")?, row.text("b")?), yanked);
            }
            "p" => {
                staged.policies.insert(row.text("a")?, row.text("b")?);
            }
            "c" => {
                staged.latest = Some(CheckpointRow {
                    size: row.number()?,
                    root: hash(&row.bytes()?)?,
                    body: row.text("b")?,
                });
            }
            "e" => staged.namespace_entries.push((row.number()?, row.bytes()?)),
            "h" => staged.hashes.push((row.number()?, hash(&row.bytes()?)?)),
            "d" => {
                let head = Head {
                    index: row.number()?,
                    leaf: hash(&row.bytes()?)?,
                };
                staged.heads.insert(row.text("a")?, head);
            }
            other => {
                return Err(StoreError::Corrupt(format!("unknown staging row {other}")));
            }
        }
    }
    // One snapshot: no record or hash beyond the checkpoint exists in it, and all are committed.
    staged
        .namespace_entries
        .sort_unstable_by_key(|(idx, _)| *idx);
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
    INSERT INTO entries (idx, body, kind, namespace, chain, leaf)
    SELECT u.* FROM UNNEST($3::BIGINT[], $4::BYTEA[], $5::TEXT[], $6::TEXT[], $30::TEXT[], \
                           $31::BYTEA[]) AS u
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

/// The log size: the one `tree_state` row.
async fn tree_size(pool: &PgPool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT size FROM tree_state WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(db)?;
    uint(n, "log size")
}

async fn commit(pool: &PgPool, batch: &Batch, c: BatchRows) -> Result<(), StoreError> {
    let cp = &batch.checkpoint;
    let result = sqlx::query_scalar::<_, bool>(COMMIT_BATCH)
        .bind(c.checkpoint_size)
        .bind(c.start)
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
        .bind(c.entry_chain)
        .bind(c.entry_leaf)
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

impl Log for PgLog {
    fn size(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(tree_size(&self.pool))
    }

    fn read_hashes(
        &self,
        indexes: Vec<u64>,
    ) -> BoxFuture<'_, Result<Vec<(u64, Hash)>, StoreError>> {
        Box::pin(async move {
            let wanted = indexes
                .iter()
                .map(|&i| int(i))
                .collect::<Result<Vec<_>, _>>()?;
            let rows: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT idx, hash FROM hashes WHERE idx = ANY($1)")
                    .bind(wanted)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            rows.into_iter()
                .map(|(idx, h)| Ok((uint(idx, "log index")?, hash(&h)?)))
                .collect()
        })
    }

    // One row: the hashes concatenated in index order, and how many there were.
    fn read_concatenated(&self, indexes: Vec<u64>) -> BoxFuture<'_, Result<Vec<u8>, StoreError>> {
        Box::pin(async move {
            let wanted = indexes
                .iter()
                .map(|&i| int(i))
                .collect::<Result<Vec<_>, _>>()?;
            let (count, bytes): (i64, Option<Vec<u8>>) = sqlx::query_as(
                "SELECT count(*), string_agg(hash, ''::bytea ORDER BY idx) \
                 FROM hashes WHERE idx = ANY($1)",
            )
            .bind(wanted)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
            let bytes = bytes.unwrap_or_default();
            if uint(count, "hash count")? != indexes.len() as u64
                || bytes.len() != indexes.len() * 32
            {
                return Err(StoreError::Corrupt(format!(
                    "expected {} stored hashes, found {count}",
                    indexes.len()
                )));
            }
            Ok(bytes)
        })
    }

    fn stage<'a>(
        &'a self,
        req: &'a StageRequest,
    ) -> BoxFuture<'a, Result<Option<Staged>, StoreError>> {
        Box::pin(async move { stage(&self.pool, req).await.map(Some) })
    }

    fn commit<'a>(
        &'a self,
        batch: &'a Batch,
        rows: BatchRows,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(commit(&self.pool, batch, rows))
    }

    fn sequencer_lock(&self) -> BoxFuture<'_, Result<Option<Box<dyn SequencerLock>>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(db)?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(SEQUENCER_LOCK_KEY)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
            Ok(Some(
                Box::new(AdvisoryLock { conn: Some(conn) }) as Box<dyn SequencerLock>
            ))
        })
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
