//! The sequencer: the one task that appends to the log. Publishers send validated records
//! through a channel and wait on a oneshot reply; the sequencer takes everything pending (up to
//! [`MAX_BATCH`]), re-checks it against the namespace state and the versions already taken,
//! integrates the accepted leaves, signs one checkpoint, commits everything in one store
//! transaction, and only then answers. One fsync covers the whole batch.
//!
//! With a shared store (PostgreSQL, several replicas) other sequencers append too. Then this one
//! re-reads the stored tree state before staging each batch and every [`Sequencer::with_refresh`]
//! interval while idle, so its view (newest checkpoint, namespace state) follows the others; and
//! when the store refuses a batch because another replica extended the log first, it reloads and
//! rebuilds the batch from the same, still unanswered, submissions.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gridreg_protocol::api::ErrorCode;
use gridreg_protocol::bundle::MapEntry;
use gridreg_protocol::map::{HeadMap, MapKey};
use gridreg_protocol::merkle;
use gridreg_protocol::namespace::NamespaceError;
use gridreg_protocol::{Checkpoint, Head, NamespaceState, Prev, Record, SignerKey, VerifierKey};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::log::{LogError, with_hashes};
use crate::metrics::Metrics;
use crate::policy::BatchPolicies;
pub use crate::rejection::Rejection;
use crate::store::{
    Batch, CheckpointRow, Derived, EntryKind, ExistingVersions, Follow, NewEntry, StageRequest,
    Store, StoreError,
};

/// Most records integrated under one checkpoint.
pub const MAX_BATCH: usize = 1024;

/// How many times a batch is rebuilt after losing the race to another replica before its
/// publishers get an internal error. Every loss means another replica's batch landed.
const MAX_ATTEMPTS: u32 = 64;

/// A validated record waiting for a log index.
#[derive(Debug)]
pub struct Submission {
    /// The exact signed-note bytes: the leaf.
    pub leaf: Vec<u8>,
    pub record: Record,
    /// The keys whose signatures on `leaf` verified.
    pub signers: Vec<VerifierKey>,
    /// The release row (audit, surface) computed by the publisher's task.
    pub derived: Derived,
    /// A release's audit, which its namespace's policy is judged on.
    pub audit: Option<Box<gridreg_verifier::Audit>>,
    pub reply: oneshot::Sender<Result<Accepted, Rejection>>,
}

/// The record is durable at `index` and covered by `checkpoint`.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub index: u64,
    pub checkpoint: Arc<CheckpointRow>,
}

/// Longest a request waits for its replica's view to catch up with the stored log.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(2);

/// What readers share with the sequencer: the newest durable checkpoint and the namespace state.
#[derive(Debug)]
pub struct LogView {
    latest: RwLock<Arc<CheckpointRow>>,
    namespaces: RwLock<NamespaceState>,
    /// Set when other replicas append to the same store.
    shared: AtomicBool,
    /// Readers wake the sequencer to refresh now rather than at its next tick.
    wake: Notify,
    /// The view's size, for readers waiting for it to reach a size.
    size: watch::Sender<u64>,
    /// The head map (docs/protocol.md §6.8) and the log size it describes.
    map: RwLock<MapState>,
}

/// The sequencer's head map: the head of every chain among the first `covers` entries. While a
/// batch is being committed the map already holds its heads and `covers` is `None`; readers
/// then wait for the commit rather than prove from a map no checkpoint covers yet.
#[derive(Debug)]
struct MapState {
    map: HeadMap,
    covers: Option<u64>,
}

/// A reader's consistent view for proofs: the newest checkpoint and the head map that its last
/// entry (a map entry) commits to.
#[derive(Debug)]
pub struct MapSnapshot<'a> {
    pub checkpoint: Arc<CheckpointRow>,
    pub map: &'a HeadMap,
}

impl LogView {
    /// With replicas sharing the store: waits (briefly) until this view covers everything the
    /// store held when called, so a request judged here sees what another replica already
    /// acknowledged (a claim made through one replica, then a publish through another). Does
    /// nothing on a store this process has to itself.
    pub async fn catch_up(&self, store: &Store) -> Result<(), StoreError> {
        if !self.shared.load(Ordering::Relaxed) {
            return Ok(());
        }
        let stored = store.log_size().await?;
        if self.latest().size >= stored {
            return Ok(());
        }
        let mut rx = self.size.subscribe();
        self.wake.notify_one();
        // On time-out the request goes on with the view it has: it may then be refused as if
        // the other replica's entries did not exist yet, never accepted wrongly (the sequencer
        // judges every record again on the stored tree).
        let _ = tokio::time::timeout(CATCH_UP_TIMEOUT, rx.wait_for(|s| *s >= stored)).await;
        Ok(())
    }

    /// Follows the view's size: changes whenever a newer checkpoint becomes durable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.size.subscribe()
    }

    /// The newest checkpoint that is durable (never one still being committed).
    pub fn latest(&self) -> Arc<CheckpointRow> {
        match self.latest.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Runs `f` on the namespace state (which may include records of a batch being committed;
    /// readers use it only to pick which signatures to verify, never to authorise).
    pub fn with_namespaces<T>(&self, f: impl FnOnce(&NamespaceState) -> T) -> T {
        match self.namespaces.read() {
            Ok(g) => f(&g),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    fn set_latest(&self, cp: Arc<CheckpointRow>) {
        let size = cp.size;
        match self.latest.write() {
            Ok(mut g) => *g = cp,
            Err(poisoned) => *poisoned.into_inner() = cp,
        }
        self.size.send_replace(size);
    }

    /// Runs `f` on the newest checkpoint and the head map of exactly that size, waiting (at
    /// most [`CATCH_UP_TIMEOUT`]) while a batch is being committed. `None` when no such pair
    /// came about in that time, or the log is empty.
    pub async fn with_map<T>(&self, f: impl FnOnce(MapSnapshot<'_>) -> T) -> Option<T> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
        let mut rx = self.size.subscribe();
        loop {
            // Marked seen before reading, so a commit after this point wakes the wait below.
            rx.borrow_and_update();
            // The checkpoint first: a map that covers it was committed with it.
            let checkpoint = self.latest();
            {
                let guard = match self.map.read() {
                    Ok(g) => g,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if checkpoint.size > 0 && guard.covers == Some(checkpoint.size) {
                    return Some(f(MapSnapshot {
                        checkpoint,
                        map: &guard.map,
                    }));
                }
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return None;
            }
        }
    }

    fn map_mut<T>(&self, f: impl FnOnce(&mut MapState) -> T) -> T {
        match self.map.write() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn namespaces_mut<T>(&self, f: impl FnOnce(&mut NamespaceState) -> T) -> T {
        match self.namespaces.write() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(
        "the store is inconsistent: the newest checkpoint has size {checkpoint} but {entries} entries are stored"
    )]
    Inconsistent { checkpoint: u64, entries: u64 },
    #[error("signing a checkpoint: {0}")]
    Sign(String),
    #[error("building the head map: {0}")]
    Map(String),
}

/// The sequencer task's state.
pub struct Sequencer {
    store: Arc<Store>,
    key: SignerKey,
    origin: String,
    view: Arc<LogView>,
    metrics: Arc<Metrics>,
    size: u64,
    /// Set when other sequencers share the store: how often to look for their appends.
    refresh_every: Option<Duration>,
    /// The log size the view's namespace state describes exactly; `None` while it holds records
    /// of a batch not (yet) committed. Following other replicas applies only the namespace
    /// records after it, instead of replaying every one.
    namespaces_at: Option<u64>,
    /// The log does not end in a map entry (a store written before map entries existed): the
    /// sequencer appends one before anything else.
    needs_map: bool,
}

/// What one attempt at a batch came to.
enum Attempt {
    /// Every submission has its answer.
    Done,
    /// Another sequencer extended the log first; nothing was written and nobody answered.
    Lost(Vec<Submission>),
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("origin", &self.origin)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Rebuilds the namespace state from the namespace records alone: releases and yanks never
/// change it, so replaying only namespace records at their own indexes gives the same state.
async fn load_namespaces(store: &Store) -> Result<NamespaceState, OpenError> {
    let mut state = NamespaceState::new();
    apply_namespace_entries(&mut state, store.namespace_entries(None).await?);
    Ok(state)
}

/// [`load_namespaces`] up to (not including) log index `size`: the state a checkpoint of that
/// size describes, even while another replica appends.
async fn load_namespaces_below(store: &Store, size: u64) -> Result<NamespaceState, OpenError> {
    let mut state = NamespaceState::new();
    apply_namespace_entries(&mut state, store.namespace_entries_between(0, size).await?);
    Ok(state)
}

/// The head map of the first `size` entries, from the stored chain heads.
async fn load_map(store: &Store, size: u64) -> Result<HeadMap, OpenError> {
    let heads = store.chain_heads_below(size).await?;
    HeadMap::from_keyed(
        heads
            .into_iter()
            .map(|(chain, head)| (MapKey::of_str(&chain), head)),
    )
    .map_err(|e| OpenError::Map(e.to_string()))
}

/// Applies namespace records in log order. An entry the state machine refuses (the sequencer
/// never appends one, so this is a bug, or an entry of record format v1 in an old store) is
/// reported with its index and skipped: no stored entry can stop the registry from starting.
fn apply_namespace_entries(
    state: &mut NamespaceState,
    entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
) {
    for (index, body) in entries {
        if let Err(e) = state.apply_entry(index, &body) {
            tracing::error!(
                index,
                error = %e,
                "a stored namespace record does not replay; it is skipped (please report this)"
            );
        }
    }
}

impl Sequencer {
    /// Opens the log: checks the store is consistent, signs the empty checkpoint on first start,
    /// rebuilds the namespace state. Returns the sequencer and the view readers share.
    pub async fn open(
        store: Arc<Store>,
        key: SignerKey,
        origin: String,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, Arc<LogView>), OpenError> {
        // Another replica may commit between these two reads. A store this process has to
        // itself never moves between them, so only a disagreement that persists is reported.
        let mut tries = 0;
        let (entries, latest) = loop {
            let entries = store.log_size().await?;
            let latest = store.latest_checkpoint().await?;
            tries += 1;
            if latest
                .as_ref()
                .map_or(entries == 0, |cp| cp.size == entries)
                || tries == 5
            {
                break (entries, latest);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let latest = match latest {
            Some(cp) => cp,
            None if entries == 0 => {
                // First start: the empty tree gets its checkpoint so readers always have one.
                let signed = Checkpoint::new(&origin, 0, merkle::EMPTY_ROOT)
                    .sign(&[&key])
                    .map_err(|e| OpenError::Sign(e.to_string()))?;
                let cp = CheckpointRow {
                    size: 0,
                    root: merkle::EMPTY_ROOT,
                    body: signed.note,
                };
                let first = store
                    .commit(Batch {
                        start: 0,
                        entries: Vec::new(),
                        hash_start: 0,
                        hashes: Vec::new(),
                        checkpoint: cp.clone(),
                    })
                    .await;
                match first {
                    Ok(()) => cp,
                    // Another replica on the same database signed the empty tree (or more)
                    // first: serve what it stored, never a second signature of our own.
                    Err(StoreError::CheckpointExists { .. } | StoreError::Conflict { .. }) => {
                        return Box::pin(Self::open(store, key, origin, metrics)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                return Err(OpenError::Inconsistent {
                    checkpoint: 0,
                    entries,
                });
            }
        };
        if latest.size != entries {
            return Err(OpenError::Inconsistent {
                checkpoint: latest.size,
                entries,
            });
        }
        let namespaces = load_namespaces_below(store.as_ref(), latest.size).await?;
        let map = load_map(store.as_ref(), latest.size).await?;
        let needs_map = match latest.size.checked_sub(1) {
            Some(last) => store.entry_kind(last).await? != Some(EntryKind::Map),
            None => false,
        };
        metrics.set_log_size(latest.size);
        let view = Arc::new(LogView {
            latest: RwLock::new(Arc::new(latest.clone())),
            namespaces: RwLock::new(namespaces),
            shared: AtomicBool::new(false),
            wake: Notify::new(),
            size: watch::Sender::new(latest.size),
            map: RwLock::new(MapState {
                map,
                covers: Some(latest.size),
            }),
        });
        Ok((
            Self {
                store,
                key,
                origin,
                view: view.clone(),
                metrics,
                size: latest.size,
                refresh_every: None,
                namespaces_at: Some(latest.size),
                needs_map,
            },
            view,
        ))
    }

    /// Declares that other sequencers (replicas) append to the same store, and how often to
    /// look for their appends while idle.
    pub fn with_refresh(mut self, every: Duration) -> Self {
        self.refresh_every = Some(every);
        self.view.shared.store(true, Ordering::Relaxed);
        self
    }

    /// Catches up with what other sequencers committed: the newest stored checkpoint becomes
    /// the view's, and the namespace state is rebuilt from the namespace records it covers.
    /// Reading the checkpoint first and ignoring later entries keeps the two consistent even
    /// while another replica commits. Does nothing when the stored size has not moved.
    async fn refresh(&mut self) -> Result<(), OpenError> {
        if self.store.log_size().await? == self.size {
            return Ok(());
        }
        self.stage(StageRequest {
            follow: Some(self.follow()),
            ..StageRequest::default()
        })
        .await
        .map(drop)
    }

    /// One [`Store::stage`] read. With [`StageRequest::follow`], the view is first brought to
    /// where the log stands in that read. Returns the versions and policies it read.
    async fn stage(
        &mut self,
        req: StageRequest,
    ) -> Result<
        (
            ExistingVersions,
            HashMap<String, String>,
            HashMap<String, Head>,
        ),
        OpenError,
    > {
        let follow = req.follow;
        let staged = self.store.stage(req).await?;
        if let Some(follow) = follow {
            self.follow_to(follow, staged.latest, staged.namespace_entries)
                .await?;
        }
        Ok((staged.versions, staged.policies, staged.heads))
    }

    /// What this sequencer knows of the log, for [`Store::stage`] to read what is new.
    fn follow(&self) -> Follow {
        Follow {
            // Without an exact state, all namespace records are read and the state rebuilt.
            namespaces_from: self.namespaces_at.unwrap_or(0),
            known_size: self.size,
        }
    }

    /// Makes `latest` (read with `follow`) the view's checkpoint and brings the namespace state
    /// to its size, from `added`: the namespace records from `follow.namespaces_from` on.
    async fn follow_to(
        &mut self,
        follow: Follow,
        latest: Option<CheckpointRow>,
        added: crate::store::Entries,
    ) -> Result<(), OpenError> {
        let Some(latest) = latest else {
            return Err(OpenError::Inconsistent {
                checkpoint: 0,
                entries: self.store.log_size().await?,
            });
        };
        if latest.size == self.size && self.namespaces_at == Some(latest.size) {
            return Ok(());
        }
        let added = added.into_iter().filter(|(index, _)| *index < latest.size);
        match self.namespaces_at {
            // The state is exact at `at`: apply the namespace records appended since.
            Some(at) if at == follow.namespaces_from && at <= latest.size => {
                self.namespaces_at = None;
                self.view
                    .namespaces_mut(|ns| apply_namespace_entries(ns, added));
            }
            // No exact state: `added` holds every namespace record; rebuild from them.
            _ if follow.namespaces_from == 0 => {
                let mut state = NamespaceState::new();
                apply_namespace_entries(&mut state, added);
                self.view.namespaces_mut(|ns| *ns = state);
            }
            _ => {
                let state = load_namespaces_below(self.store.as_ref(), latest.size).await?;
                self.view.namespaces_mut(|ns| *ns = state);
            }
        }
        self.follow_map(latest.size).await?;
        self.namespaces_at = Some(latest.size);
        self.size = latest.size;
        self.metrics.set_log_size(latest.size);
        // The view only moves forward: a checkpoint already served stays the floor.
        if latest.size >= self.view.latest().size {
            self.view.set_latest(Arc::new(latest));
        }
        Ok(())
    }

    /// Brings the head map to describe the first `size` entries: applies the chain heads
    /// appended since it last described the log exactly, or rebuilds it when it did not.
    async fn follow_map(&mut self, size: u64) -> Result<(), OpenError> {
        let covers = self.view.map_mut(|m| m.covers);
        match covers {
            Some(c) if c == size => Ok(()),
            Some(c) if c < size => {
                let heads = self.store.chain_heads_between(c, size).await?;
                let applied = self.view.map_mut(|m| {
                    let r = m.map.apply_keyed(
                        heads
                            .iter()
                            .map(|(chain, head)| (MapKey::of_str(chain), *head)),
                    );
                    m.covers = r.is_ok().then_some(size);
                    r
                });
                applied.map_err(|e| OpenError::Map(e.to_string()))
            }
            _ => self.reload_map(size).await,
        }
    }

    /// Rebuilds the head map from the store for the first `size` entries.
    async fn reload_map(&mut self, size: u64) -> Result<(), OpenError> {
        let map = load_map(self.store.as_ref(), size).await?;
        self.view.map_mut(|m| {
            m.map = map;
            m.covers = Some(size);
        });
        Ok(())
    }

    /// Runs until every sender is dropped (the server has shut down and every in-flight publish
    /// has been answered).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Submission>) {
        if self.needs_map {
            // A log written before map entries existed: end it with one, so bundles can be
            // served before the next publish.
            self.sequence(Vec::new(), &mut rx).await;
        }
        let mut tick = self.refresh_every.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let view = self.view.clone();
        loop {
            let first = match &mut tick {
                None => rx.recv().await,
                Some(t) => tokio::select! {
                    s = rx.recv() => s,
                    () = view.wake.notified() => {
                        if let Err(e) = self.refresh().await {
                            tracing::error!(error = %e, "refreshing the log view failed");
                        }
                        continue;
                    }
                    _ = t.tick() => {
                        if let Err(e) = self.refresh().await {
                            tracing::error!(error = %e, "refreshing the log view failed");
                        }
                        continue;
                    }
                },
            };
            let Some(first) = first else { break };
            let mut pending = vec![first];
            while pending.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(s) => pending.push(s),
                    Err(_) => break,
                }
            }
            self.sequence(pending, &mut rx).await;
        }
        tracing::info!(size = self.size, "sequencer stopped");
    }

    /// Sequences one batch; with a shared store, first catches up with other replicas and
    /// rebuilds the batch whenever one of them wins the race to the tree-state lock.
    async fn sequence(
        &mut self,
        mut pending: Vec<Submission>,
        rx: &mut mpsc::Receiver<Submission>,
    ) {
        if self.refresh_every.is_none() {
            self.attempt(pending, false).await;
            return;
        }
        // Take turns with the other replicas' sequencers, so this batch is built on the tree it
        // will be committed to (the commit still checks, under the tree-state row lock).
        let lock = match self.store.sequencer_lock().await {
            Ok(l) => l,
            Err(e) => {
                let accepted = pending.into_iter().map(|s| (0, s)).collect();
                return self.fail(accepted, e.to_string()).await;
            }
        };
        // Whatever arrived while waiting for the turn joins this batch: under contention the
        // batches grow, and the commits (the part replicas take turns on) get fewer.
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => pending.push(s),
                Err(_) => break,
            }
        }
        // Each attempt first catches up with what the others committed (in the same read as
        // its versions and policies).
        for attempt in 1..=MAX_ATTEMPTS {
            match self.attempt(pending, attempt < MAX_ATTEMPTS).await {
                Attempt::Done => break,
                Attempt::Lost(again) => {
                    tracing::debug!(attempt, "another replica extended the log; rebuilding");
                    pending = again;
                }
            }
        }
        if let Some(lock) = lock {
            lock.release().await;
        }
    }

    /// The whole commit path for one batch, top to bottom. With `may_lose`, a commit refused
    /// because the log moved hands the accepted submissions back unanswered.
    async fn attempt(&mut self, pending: Vec<Submission>, may_lose: bool) -> Attempt {
        // A batch of nothing appends only a map entry (see `needs_map`).
        let only_map = pending.is_empty();
        // 1. Stage. Read which versions the store already holds and the policies of the
        // batch's namespaces (with replicas, in the same read: where the log now stands, which
        // the view follows first). Then decide record by record in arrival order: a version
        // taken earlier (in the store or in this batch) loses, and the namespace state decides
        // authorisation at the exact index the record would get, so two conflicting records in
        // one batch cannot both win.
        let keys: Vec<Option<(String, String)>> = pending
            .iter()
            .map(|s| match &s.record {
                Record::Release(r) => Some((r.package.to_string(), r.version.to_string())),
                Record::Yank(y) => Some((y.package.to_string(), y.version.to_string())),
                Record::Namespace(_) => None,
            })
            .collect();
        // The server-side policies of the namespaces this batch releases into.
        let mut release_namespaces: Vec<String> = pending
            .iter()
            .filter_map(|s| match &s.record {
                Record::Release(r) => Some(r.package.namespace().to_string()),
                _ => None,
            })
            .collect();
        release_namespaces.sort_unstable();
        release_namespaces.dedup();
        // The chains the batch extends: each record must name its chain's head.
        let chains: Vec<String> = pending
            .iter()
            .map(|s| s.record.chain().to_string())
            .collect();
        let mut wanted_chains = chains.clone();
        wanted_chains.sort_unstable();
        wanted_chains.dedup();
        let staged = self
            .stage(StageRequest {
                versions: keys.iter().flatten().cloned().collect(),
                chains: wanted_chains,
                namespaces: release_namespaces,
                follow: self.refresh_every.map(|_| self.follow()),
            })
            .await;
        let (found, policies, mut heads) = match staged {
            Ok(staged) => staged,
            Err(e) => {
                let pending = pending.into_iter().map(|s| (0, s)).collect();
                self.fail(pending, e.to_string()).await;
                return Attempt::Done;
            }
        };
        let start = self.size;
        let policies = BatchPolicies::parse(policies);
        let existing: Vec<Option<Option<bool>>> = keys
            .into_iter()
            .map(|k| k.map(|k| found.get(&k).copied()))
            .collect();
        let mut accepted: Vec<(u64, Submission)> = Vec::with_capacity(pending.len());
        let mut released: HashSet<(String, String)> = HashSet::new();
        let mut yanked: HashSet<(String, String)> = HashSet::new();
        let mut rejected = Vec::new();
        // From here until the commit lands, the namespace state holds this batch's records.
        self.namespaces_at = None;
        self.view.namespaces_mut(|ns| {
            for ((s, stored), chain) in pending.into_iter().zip(existing).zip(chains) {
                let stored = stored.flatten();
                let index = start + accepted.len() as u64;
                let check = match &s.record {
                    Record::Release(r) => {
                        let key = (r.package.to_string(), r.version.to_string());
                        if stored.is_some() || released.contains(&key) {
                            Err(Rejection::VersionExists {
                                package: key.0,
                                version: key.1,
                            })
                        } else {
                            match &s.audit {
                                Some(audit) => policies.judge(r, audit),
                                None => Err(Rejection::Internal(
                                    "a release reached the sequencer without its audit".into(),
                                )),
                            }
                            .map(|()| Some((true, key)))
                        }
                    }
                    Record::Yank(y) => {
                        let key = (y.package.to_string(), y.version.to_string());
                        if stored == Some(true) || yanked.contains(&key) {
                            Err(Rejection::AlreadyYanked {
                                package: key.0,
                                version: key.1,
                            })
                        } else if stored.is_none() && !released.contains(&key) {
                            Err(Rejection::NoSuchRelease {
                                package: key.0,
                                version: key.1,
                            })
                        } else {
                            Ok(Some((false, key)))
                        }
                    }
                    Record::Namespace(_) => Ok(None),
                };
                // A record extends its chain only at the head as it stands at this index
                // (records earlier in this batch included): a replayed record names an old
                // head and is refused here, whoever sends it. Checked after the version checks
                // (a taken version is the better answer) and before the namespace state moves.
                let result = check
                    .and_then(|mark| {
                        let head = Prev::after(heads.get(&chain).copied());
                        let found = s.record.prev();
                        if found == head {
                            Ok(mark)
                        } else {
                            Err(Rejection::StalePrev {
                                chain: chain.clone(),
                                head,
                                found,
                            })
                        }
                    })
                    .and_then(|mark| {
                        ns.apply(index, &s.record, &s.signers)?;
                        Ok(mark)
                    });
                if result.is_ok() {
                    heads.insert(chain, Head::of(index, &s.leaf));
                }
                match result {
                    Ok(Some((true, key))) => {
                        released.insert(key);
                        accepted.push((index, s));
                    }
                    Ok(Some((false, key))) => {
                        yanked.insert(key);
                        accepted.push((index, s));
                    }
                    Ok(None) => accepted.push((index, s)),
                    Err(e) => rejected.push((s, e)),
                }
            }
        });
        // The publish handler counts each refusal it answers (metrics::rejection), once.
        for (s, why) in rejected {
            let _ = s.reply.send(Err(why));
        }
        if accepted.is_empty() && !only_map {
            return Attempt::Done;
        }

        // 2. The map entry ending the batch: the head map with this batch's heads applied.
        // Readers wait while the map is ahead of the newest checkpoint (`covers` is `None`).
        let map_index = start + accepted.len() as u64;
        let mapped =
            self.view.map_mut(|m| {
                m.covers = None;
                m.map
                    .apply_keyed(accepted.iter().map(|(index, s)| {
                        (MapKey::of(&s.record.chain()), Head::of(*index, &s.leaf))
                    }))
                    .map(|()| m.map.root())
            });
        let map_leaf = match mapped.map_err(|e| e.to_string()).and_then(|root| {
            MapEntry {
                size: map_index,
                root,
            }
            .sign(&self.key)
            .map_err(|e| e.to_string())
        }) {
            Ok(body) => body.into_bytes(),
            Err(e) => {
                self.fail(accepted, format!("the map entry: {e}")).await;
                return Attempt::Done;
            }
        };

        // 3. Integrate: the new stored hashes and the new root, computed from the stored tree.
        let new_size = map_index + 1;
        let leaves: Vec<_> = accepted
            .iter()
            .map(|(_, s)| merkle::leaf_hash(&s.leaf))
            .chain(std::iter::once(merkle::leaf_hash(&map_leaf)))
            .collect();
        let base_len = merkle::stored_hash_count(start);
        let integrated = async {
            let hashes = with_hashes(self.store.as_ref(), base_len, &[], |r| {
                merkle::append_leaves(start, &leaves, r)
            })
            .await?;
            let root = with_hashes(self.store.as_ref(), base_len, &hashes, |r| {
                merkle::tree_hash(new_size, r)
            })
            .await?;
            Ok::<_, LogError>((hashes, root))
        }
        .await;
        let (hashes, root) = match integrated {
            Ok(v) => v,
            Err(e) => {
                self.fail(accepted, e.to_string()).await;
                return Attempt::Done;
            }
        };

        // 4. Sign one checkpoint for the new size. Nothing has been served or stored yet: a crash
        // here loses only this unsent signature, and restart signs again for whatever it stores.
        let signed = match Checkpoint::new(&self.origin, new_size, root).sign(&[&self.key]) {
            Ok(s) => s,
            Err(e) => {
                self.fail(accepted, e.to_string()).await;
                return Attempt::Done;
            }
        };
        let checkpoint = CheckpointRow {
            size: new_size,
            root,
            body: signed.note,
        };

        // 5. Commit leaves, hashes, checkpoint and derived rows in ONE transaction. A crash before
        // the commit returns leaves the store at `start` with no trace of the batch (WAL rollback)
        // and no publisher was answered; a crash after it leaves the batch durable, and restart
        // serves this checkpoint, which no client has seen yet, so no served checkpoint is lost.
        let entries = accepted
            .iter()
            .zip(&leaves)
            .map(|((index, s), leaf)| NewEntry {
                index: *index,
                body: s.leaf.clone(),
                chain: Some(s.record.chain().to_string()),
                leaf: *leaf,
                kind: match s.record {
                    Record::Release(_) => EntryKind::Release,
                    Record::Namespace(_) => EntryKind::Namespace,
                    Record::Yank(_) => EntryKind::Yank,
                },
                namespace: s.record.namespace().to_string(),
                derived: s.derived.clone(),
            })
            .chain(std::iter::once(NewEntry {
                index: map_index,
                body: map_leaf,
                chain: None,
                leaf: leaves[leaves.len() - 1],
                kind: EntryKind::Map,
                namespace: String::new(),
                derived: Derived::Map,
            }))
            .collect();
        let batch = Batch {
            start,
            entries,
            hash_start: base_len,
            hashes,
            checkpoint: checkpoint.clone(),
        };
        // With replicas, the store refuses the batch unless the log still holds `start`
        // entries (a row lock on the tree state): then the checkpoint just signed is dropped
        // unseen, the view reloads, and the same submissions are staged again on the new tree.
        match self.store.commit(batch).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. } | StoreError::CheckpointExists { .. }) if may_lose => {
                // The next attempt's read catches up with the log that won (the map is
                // rebuilt there: it holds this batch's heads).
                return Attempt::Lost(accepted.into_iter().map(|(_, s)| s).collect());
            }
            Err(e) => {
                self.fail(accepted, e.to_string()).await;
                return Attempt::Done;
            }
        }

        // 6. Publish: the checkpoint becomes visible to readers, then each publisher gets its
        // index. Only now is a publish acknowledged, so every acknowledged record is durable.
        self.size = new_size;
        self.namespaces_at = Some(new_size);
        self.needs_map = false;
        self.view.map_mut(|m| m.covers = Some(new_size));
        let checkpoint = Arc::new(checkpoint);
        self.view.set_latest(checkpoint.clone());
        self.metrics.set_log_size(new_size);
        for (index, s) in accepted {
            self.metrics.published();
            let _ = s.reply.send(Ok(Accepted {
                index,
                checkpoint: checkpoint.clone(),
            }));
        }
        Attempt::Done
    }

    /// A batch could not be made durable: answer everyone with an internal error and reload the
    /// namespace state and size from the store, which holds exactly what was committed before.
    async fn fail(&mut self, accepted: Vec<(u64, Submission)>, why: String) {
        tracing::error!(error = %why, "sequencer batch failed");
        for (_, s) in accepted {
            let _ = s.reply.send(Err(Rejection::Internal(why.clone())));
        }
        match (
            load_namespaces(self.store.as_ref()).await,
            self.store.log_size().await,
        ) {
            (Ok(state), Ok(size)) => {
                self.view.namespaces_mut(|ns| *ns = state);
                self.size = size;
                self.namespaces_at = None;
                if let Err(e) = self.reload_map(size).await {
                    tracing::error!(error = %e, "reloading the head map failed");
                }
            }
            (Err(e), _) => tracing::error!(error = %e, "reloading namespace state failed"),
            (_, Err(e)) => tracing::error!(error = %e, "reloading log size failed"),
        }
    }
}

/// The error code a rejection is reported under (also its metrics label).
pub fn rejection_code(r: &Rejection) -> ErrorCode {
    match r {
        Rejection::VersionExists { .. } => ErrorCode::VersionExists,
        Rejection::NoSuchRelease { .. } => ErrorCode::NotFound,
        Rejection::AlreadyYanked { .. } => ErrorCode::AlreadyYanked,
        Rejection::Namespace(e) => namespace_code(e),
        Rejection::StalePrev { .. } => ErrorCode::StalePrev,
        Rejection::PolicyViolation(_) => ErrorCode::PolicyViolation,
        Rejection::Internal(_) => ErrorCode::Internal,
    }
}

/// The error code for a namespace state-machine refusal.
pub fn namespace_code(e: &NamespaceError) -> ErrorCode {
    match e {
        NamespaceError::AlreadyClaimed(_) => ErrorCode::NamespaceClaimed,
        NamespaceError::NotOwner { .. } => ErrorCode::NotOwner,
        NamespaceError::NotAuthorised { .. } | NamespaceError::ClaimNotSelfSigned { .. } => {
            ErrorCode::NotAuthorised
        }
        NamespaceError::Unclaimed(_) => ErrorCode::NamespaceUnclaimed,
        NamespaceError::AlreadyGranted { .. }
        | NamespaceError::NotGranted { .. }
        | NamespaceError::LastOwner { .. } => ErrorCode::NamespaceConflict,
        NamespaceError::OutOfOrder { .. } => ErrorCode::Internal,
    }
}
