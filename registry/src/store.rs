//! The metadata store seam: log entries, stored hashes, checkpoints, derived package rows,
//! namespace policies and tokens. [`crate::sqlite::SqliteStore`] is the default implementation;
//! [`crate::postgres::PostgresStore`] is the one several replicas can share.
//!
//! The trait returns boxed futures so it can be used as `Arc<dyn Store>`.

use std::future::Future;
use std::pin::Pin;

use gridreg_protocol::Hash;

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
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Release => "release",
            EntryKind::Namespace => "namespace",
            EntryKind::Yank => "yank",
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
}

/// One new log entry.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub index: u64,
    pub body: Vec<u8>,
    pub kind: EntryKind,
    pub namespace: String,
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
    /// With [`StageRequest::follow`]: the newest checkpoint (`None` only for a log that never
    /// signed one) ...
    pub latest: Option<CheckpointRow>,
    /// ... and the namespace records from [`Follow::namespaces_from`] up to its size, in log order.
    pub namespace_entries: Entries,
}

/// A held [`Store::sequencer_lock`]. Release it with [`SequencerLock::release`]; dropping it
/// without releasing also frees it (by closing its connection).
pub trait SequencerLock: Send {
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Metadata, log and derived rows.
pub trait Store: Send + Sync + 'static {
    fn meta<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    fn set_meta<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The newest checkpoint, or `None` for an empty log that never signed one.
    fn latest_checkpoint(&self) -> BoxFuture<'_, Result<Option<CheckpointRow>, StoreError>>;
    /// Number of leaves stored (equals the newest checkpoint's size in a consistent store).
    fn log_size(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Stored hashes at `indexes` (sorted ascending), in the same order; missing ones are an error.
    fn read_hashes(&self, indexes: Vec<u64>) -> BoxFuture<'_, Result<Vec<Hash>, StoreError>>;
    /// Entries with `start <= index < end`.
    fn entries(&self, start: u64, end: u64) -> BoxFuture<'_, Result<Entries, StoreError>>;
    /// Namespace records in log order, for one namespace or for all.
    fn namespace_entries<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Entries, StoreError>>;
    /// Namespace records (of every namespace) with `start <= index < end`, in log order: what a
    /// sequencer following other replicas applies to the namespace state it already has.
    fn namespace_entries_between(
        &self,
        start: u64,
        end: u64,
    ) -> BoxFuture<'_, Result<Entries, StoreError>>;
    /// Whether the release exists, and whether it is yanked.
    fn release_state<'a>(
        &'a self,
        package: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<bool>, StoreError>>;
    /// Everything a sequencer reads before staging a batch, once per batch. A store shared by
    /// replicas answers from one snapshot, in one round trip, so the versions and policies are
    /// exactly those of the returned checkpoint's log; a store that one process owns may read
    /// them one after the other, as long as nothing it returns is older than the checkpoint.
    fn stage(&self, req: StageRequest) -> BoxFuture<'_, Result<Staged, StoreError>>;
    /// Writes a whole sequencer batch in one durable transaction, or nothing.
    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), StoreError>>;

    fn search<'a>(&'a self, s: &'a Search) -> BoxFuture<'a, Result<Vec<SearchHit>, StoreError>>;
    fn versions<'a>(
        &'a self,
        package: &'a str,
    ) -> BoxFuture<'a, Result<Vec<VersionRow>, StoreError>>;
    fn release<'a>(
        &'a self,
        package: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReleaseRow>, StoreError>>;
    /// Stores a release's WIT text, extracted on its first read, unless a concurrent read stored
    /// it first (the text is a function of the content, so either copy is the same).
    fn set_wit<'a>(
        &'a self,
        package: &'a str,
        version: &'a str,
        wit: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Number of releases (tests and metrics).
    fn release_count(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    fn policy<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    fn set_policy<'a>(
        &'a self,
        namespace: &'a str,
        policy: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    fn create_token(&self, token: TokenRow) -> BoxFuture<'_, Result<(), StoreError>>;
    fn token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<TokenRow>, StoreError>>;
    /// Marks a token revoked; returns whether it existed and was live.
    fn revoke_token<'a>(
        &'a self,
        id: &'a str,
        when: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRow>, StoreError>>;

    /// With a store several replicas share: waits for, then holds, a lock that lets one
    /// sequencer at a time build and commit a batch, so no replica builds and signs a batch it
    /// then loses to another. Correctness does not rest on it (commit still compares the tree
    /// state under a row lock); it only saves wasted work. `None` where one process owns the store.
    fn sequencer_lock(&self) -> BoxFuture<'_, Result<Option<Box<dyn SequencerLock>>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    /// Closes the connections, waiting for them to finish.
    fn close(&self) -> BoxFuture<'_, ()>;
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
