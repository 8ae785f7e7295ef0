//! `gridreg serve --witness URL=KEY`: the registry's side of C2SP tlog-witness
//! (docs/protocol.md §7.13). One task per witness submits every new checkpoint with a
//! consistency proof from the size the witness last cosigned (learned from its 409 answers),
//! renews the cosignature while the log stands still, and backs off while the witness fails.
//! The cosignatures gathered for the newest checkpoint are merged into the checkpoint the
//! registry serves. A witness being down never stops a publish: a publish waits for the
//! witnesses that are answering, for at most [`PUBLISH_WAIT`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gridreg_protocol::note::Signature;
use gridreg_protocol::witness::{AddCheckpoint, SIZE_CONTENT_TYPE, parse_size_body};
use gridreg_protocol::{CosignerKey, Note};
use tokio::sync::watch;

use crate::log::consistency_proof;
use crate::sequencer::LogView;
use crate::store::Store;
use crate::timestamp::unix_now;

/// A publish waits at most this long for answering witnesses to cosign its checkpoint.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(3);
/// A cosignature is renewed once it is this old, while the log does not grow.
pub const RENEW_AFTER: Duration = Duration::from_secs(60);
/// Longest wait between attempts while a witness fails.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// One request's time limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// 409 answers followed in a row before the attempt counts as failed.
const MAX_CONFLICTS: u32 = 3;
/// Longest answer read from a witness.
const MAX_ANSWER: usize = 64 * 1024;

/// A witness as `--witness URL=KEY` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessTarget {
    /// The submission prefix; `add-checkpoint` is appended.
    pub url: String,
    pub key: CosignerKey,
}

impl std::str::FromStr for WitnessTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (url, key) = s.split_once('=').ok_or_else(|| {
            format!("expected URL=KEY (a witness URL and its cosigning key), found `{s}`")
        })?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "expected an http:// or https:// witness URL, found `{url}`"
            ));
        }
        let key = CosignerKey::parse(key).map_err(|e| {
            format!("`{key}` is not a witness (cosigner) key NAME+KEYID+BASE64: {e}")
        })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            key,
        })
    }
}

/// One witness's cosignature of one checkpoint.
#[derive(Debug, Clone)]
struct Cosigned {
    /// The checkpoint body it covers.
    body: String,
    size: u64,
    signatures: Vec<Signature>,
    at: Instant,
}

/// What the registry knows of one witness.
#[derive(Debug, Default)]
struct Status {
    /// The size the witness last cosigned, as far as we know.
    known: Option<u64>,
    cosigned: Option<Cosigned>,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Tracked {
    target: WitnessTarget,
    status: Mutex<Status>,
    /// The size of the newest checkpoint it cosigned; publishes wait on it.
    size: watch::Sender<u64>,
}

/// What a page or `/metrics` shows of one witness.
#[derive(Debug, Clone)]
pub struct WitnessReport {
    pub name: String,
    pub url: String,
    pub cosigned_size: Option<u64>,
    pub last_error: Option<String>,
}

/// The registry's witnesses.
#[derive(Debug, Default)]
pub struct Witnesses {
    list: Vec<Arc<Tracked>>,
}

impl Witnesses {
    pub fn new(targets: Vec<WitnessTarget>) -> Self {
        Self {
            list: targets
                .into_iter()
                .map(|target| {
                    Arc::new(Tracked {
                        target,
                        status: Mutex::new(Status::default()),
                        size: watch::Sender::new(0),
                    })
                })
                .collect(),
        }
    }

    /// Starts one submitting task per witness.
    pub fn start(&self, store: Arc<Store>, view: Arc<LogView>) -> Vec<tokio::task::JoinHandle<()>> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("gridreg/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        self.list
            .iter()
            .map(|t| tokio::spawn(run(t.clone(), client.clone(), store.clone(), view.clone())))
            .collect()
    }

    /// A log-signed checkpoint as the registry serves it (the log endpoints, the tiles'
    /// `/checkpoint`, bundles, publish answers, the bucket): stamped by the timestamp key, with
    /// the witness cosignatures gathered for it.
    pub fn serve(&self, timestamp: &crate::timestamp::Timestamper, log_signed: &str) -> String {
        self.merge(&timestamp.stamp(log_signed))
    }

    /// `checkpoint` (a served checkpoint note) with every witness cosignature gathered for
    /// exactly its body merged in.
    fn merge(&self, checkpoint: &str) -> String {
        if self.list.is_empty() {
            return checkpoint.to_string();
        }
        let Ok(mut note) = Note::parse(checkpoint.as_bytes()) else {
            return checkpoint.to_string();
        };
        for t in &self.list {
            let status = lock(&t.status);
            if let Some(c) = &status.cosigned
                && c.body == note.text
            {
                note.signatures.extend(c.signatures.iter().cloned());
            }
        }
        note.to_text()
    }

    /// Waits until every witness that is answering has cosigned a checkpoint of at least
    /// `size`, for at most [`PUBLISH_WAIT`] in all.
    pub async fn wait_for(&self, size: u64) {
        let deadline = tokio::time::Instant::now() + PUBLISH_WAIT;
        for t in &self.list {
            if lock(&t.status).last_error.is_some() {
                continue;
            }
            let mut rx = t.size.subscribe();
            let _ = tokio::time::timeout_at(deadline, rx.wait_for(|s| *s >= size)).await;
        }
    }

    /// Each witness's state, for `/metrics` and the log page.
    pub fn report(&self) -> Vec<WitnessReport> {
        self.list
            .iter()
            .map(|t| {
                let s = lock(&t.status);
                WitnessReport {
                    name: t.target.key.label(),
                    url: t.target.url.clone(),
                    cosigned_size: s.cosigned.as_ref().map(|c| c.size),
                    last_error: s.last_error.clone(),
                }
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run(t: Arc<Tracked>, client: reqwest::Client, store: Arc<Store>, view: Arc<LogView>) {
    let mut changes = view.subscribe();
    let mut backoff = Duration::from_secs(1);
    loop {
        changes.borrow_and_update();
        let latest = view.latest();
        let due = {
            let s = lock(&t.status);
            match &s.cosigned {
                Some(c) => c.size != latest.size || c.at.elapsed() >= RENEW_AFTER,
                None => latest.size > 0,
            }
        };
        if due {
            // With replicas, the witness may hold a checkpoint another replica submitted that
            // this one's view has not caught up with yet: catch up before calling that a fork.
            if lock(&t.status).known.is_some_and(|k| k > latest.size) {
                if let Err(e) = view.catch_up(&store).await {
                    tracing::warn!(error = %e, "catching up with the stored log");
                }
                if view.latest().size > latest.size {
                    continue;
                }
            }
            match submit(&t, &client, &store, &latest.body, latest.size).await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    lock(&t.status).last_error = None;
                }
                Err(e) => {
                    tracing::warn!(witness = %t.target.key.label(), url = %t.target.url, error = %e, "the witness did not cosign; trying again in {}s", backoff.as_secs());
                    lock(&t.status).last_error = Some(e);
                    // While it fails, wait out the backoff even if the log grows meanwhile.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            () = tokio::time::sleep(RENEW_AFTER) => {}
        }
    }
}

/// Submits the log-signed checkpoint `note` of `size`, following 409 answers.
async fn submit(
    t: &Tracked,
    client: &reqwest::Client,
    store: &Store,
    note: &str,
    size: u64,
) -> Result<(), String> {
    let body_text = Note::parse(note.as_bytes())
        .map_err(|e| format!("the checkpoint does not parse: {e}"))?
        .text;
    for _ in 0..MAX_CONFLICTS {
        let old = lock(&t.status).known.unwrap_or(0);
        if old > size {
            return Err(format!(
                "the witness has cosigned size {old} of this log, but the log here has only {size} entries: another server signs with this log's key (a fork), or this one lost entries"
            ));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            consistency_proof(store, old, size)
                .await
                .map_err(|e| format!("proving {old}..{size}: {e}"))?
        };
        let request = AddCheckpoint::body(old, &proof, note);
        let resp = client
            .post(format!("{}/add-checkpoint", t.target.url))
            .body(request)
            .send()
            .await
            .map_err(|e| format!("POST {}/add-checkpoint: {e}", t.target.url))?;
        let status = resp.status();
        let is_size = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(SIZE_CONTENT_TYPE));
        let mut resp = resp;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the witness's answer: {e}"))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_ANSWER {
                return Err(format!(
                    "the witness's answer is longer than {MAX_ANSWER} bytes"
                ));
            }
        }
        let text = String::from_utf8_lossy(&bytes).to_string();
        match status.as_u16() {
            200 => {
                let signatures = cosignatures(&t.target.key, &body_text, &text)?;
                let mut s = lock(&t.status);
                s.known = Some(size);
                s.cosigned = Some(Cosigned {
                    body: body_text,
                    size,
                    signatures,
                    at: Instant::now(),
                });
                drop(s);
                t.size.send_replace(size);
                return Ok(());
            }
            409 if is_size => {
                let Some(theirs) = parse_size_body(&text) else {
                    return Err(format!(
                        "409 with a size body that does not parse: `{}`",
                        text.trim()
                    ));
                };
                if theirs == old {
                    // Same size, other root: the witness holds a different tree at this size.
                    return Err(format!(
                        "409: the witness cosigned another root at size {old}: this log forked (another server signs with its key) or the witness is wrong"
                    ));
                }
                lock(&t.status).known = Some(theirs);
            }
            code => {
                return Err(format!(
                    "{code}: {}",
                    text.trim().chars().take(300).collect::<String>()
                ));
            }
        }
    }
    Err(format!("{MAX_CONFLICTS} 409 answers in a row"))
}

/// The cosignature lines of `key` in a witness's answer, checked over `body`.
fn cosignatures(key: &CosignerKey, body: &str, answer: &str) -> Result<Vec<Signature>, String> {
    let note = Note::parse(format!("{body}\n{answer}").as_bytes())
        .map_err(|e| format!("the witness's answer is not signature lines: {e}"))?;
    let time = key
        .cosigned_time(&note)
        .map_err(|e| format!("the witness's answer: {e}"))?;
    let now = unix_now();
    if time > now + 300 || time + 300 < now {
        tracing::warn!(witness = %key.label(), time, now, "the witness's clock is off by more than 5 minutes");
    }
    Ok(note
        .signatures
        .into_iter()
        .filter(|s| s.name == key.name() && s.key_id == key.id())
        .collect())
}
