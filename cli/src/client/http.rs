//! The HTTP side of the client: one blocking agent per command, bearer tokens, the registry's
//! JSON error body turned into a readable error, bounded reads, and streaming transfers that hash
//! as they go and show progress on a terminal.

use std::io::{IsTerminal as _, Read, Write};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gridreg_protocol::Digest;
use gridreg_protocol::api::{ErrorBody, ErrorCode};
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

/// Longest JSON or text answer read into memory (pages of log entries are the largest).
const MAX_TEXT: u64 = 64 * 1024 * 1024;

/// An answer the registry gave with an error status, or no answer at all.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    /// `None` when the registry could not be reached.
    pub status: Option<u16>,
    /// The `error.code` of the JSON body, when there was one.
    pub code: Option<ErrorCode>,
    /// The `error.head` of a `stale_prev` answer: the chain's head now, in `prev` form.
    pub head: Option<String>,
    pub message: String,
}

impl HttpError {
    /// No such package, release, namespace or content.
    pub fn is_not_found(&self) -> bool {
        self.means(|c| *c == ErrorCode::NotFound)
    }

    /// Nothing was stored and the registry asks for another try.
    pub fn is_unavailable(&self) -> bool {
        self.means(|c| *c == ErrorCode::Unavailable)
    }

    /// A release naming content the registry does not hold (never uploaded, or deleted after
    /// the upload TTL).
    pub fn is_content_missing(&self) -> bool {
        self.code == Some(ErrorCode::ContentMissing)
    }

    /// Refused because the record's `prev` is not its chain's head.
    pub fn is_stale_prev(&self) -> bool {
        self.code == Some(ErrorCode::StalePrev)
    }

    /// Refused because the log already holds something in the way (see [`ErrorCode::is_conflict`]).
    pub fn is_conflict(&self) -> bool {
        self.means(ErrorCode::is_conflict)
    }

    /// Whether the answer's code is one `wanted` accepts. An answer without a code this client
    /// knows (no JSON body, as from a HEAD request or a proxy, or a code from a newer registry)
    /// is judged by its status: whether a code served with that status is one `wanted` accepts.
    fn means(&self, wanted: impl Fn(&ErrorCode) -> bool) -> bool {
        match &self.code {
            Some(code) if !matches!(code, ErrorCode::Other(_)) => wanted(code),
            _ => self.status.is_some_and(|status| {
                ErrorCode::KNOWN
                    .iter()
                    .any(|c| c.status() == Some(status) && wanted(c))
            }),
        }
    }
}

/// A registry's HTTP API.
pub struct Api {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    /// Wall time spent waiting on the registry (requests and transfers, minus hashing).
    network: std::cell::Cell<Duration>,
}

impl Api {
    pub fn new(base: &str, token: Option<String>) -> Api {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(300))
            .timeout_write(Duration::from_secs(300))
            .user_agent(concat!("gridreg/", env!("CARGO_PKG_VERSION")))
            .build();
        Api {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token,
            network: std::cell::Cell::new(Duration::ZERO),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Total time spent waiting on the registry so far.
    pub fn network_time(&self) -> Duration {
        self.network.get()
    }

    fn charge(&self, since: Instant, minus: Duration) {
        self.network
            .set(self.network.get() + since.elapsed().saturating_sub(minus));
    }

    fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = self.agent.request(method, &format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.set("Authorization", &format!("Bearer {t}")),
            None => req,
        }
    }

    fn call(
        &self,
        what: &str,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<ureq::Response, HttpError> {
        match result {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(status, resp)) => {
                let body = read_limited(resp.into_reader(), 64 * 1024).unwrap_or_default();
                let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
                let (code, detail, head) = match parsed {
                    Some(b) => (Some(b.error.code), b.error.message, b.error.head),
                    None => (
                        None,
                        String::from_utf8_lossy(&body).trim().to_string(),
                        None,
                    ),
                };
                let message = match &code {
                    Some(c) => format!("{what}: the registry answered {status} {c}: {detail}"),
                    None if detail.is_empty() => format!("{what}: the registry answered {status}"),
                    None => format!("{what}: the registry answered {status}: {detail}"),
                };
                Err(HttpError {
                    status: Some(status),
                    code,
                    head,
                    message,
                })
            }
            Err(ureq::Error::Transport(t)) => Err(HttpError {
                status: None,
                code: None,
                head: None,
                message: format!(
                    "{what}: cannot reach the registry at {}: {t} (is `gridreg serve` running there?)",
                    self.base
                ),
            }),
        }
    }

    /// `GET path` as text.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let what = format!("GET {path}");
        let start = Instant::now();
        let resp = self.call(&what, self.request("GET", path).call());
        let bytes = resp
            .map_err(anyhow::Error::from)
            .and_then(|r| read_limited(r.into_reader(), MAX_TEXT).with_context(|| what.clone()));
        self.charge(start, Duration::ZERO);
        let bytes = bytes?;
        String::from_utf8(bytes).with_context(|| format!("{what}: the answer is not UTF-8"))
    }

    /// `GET path` as bytes, at most `max` of them.
    pub fn get_bytes(&self, path: &str, max: u64) -> anyhow::Result<Vec<u8>> {
        let what = format!("GET {path}");
        let start = Instant::now();
        let resp = self.call(&what, self.request("GET", path).call());
        let bytes = resp
            .map_err(anyhow::Error::from)
            .and_then(|r| read_limited(r.into_reader(), max).with_context(|| what.clone()));
        self.charge(start, Duration::ZERO);
        bytes
    }

    /// `GET path` as JSON of type `T`.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.get_json_sized(path).map(|(v, _)| v)
    }

    /// [`Api::get_json`], with the size of the answer in bytes.
    pub fn get_json_sized<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<(T, usize)> {
        let text = self.get_text(path)?;
        let value = serde_json::from_str(&text).with_context(|| {
            format!(
                "GET {path}: the registry's answer is not the expected JSON: {}",
                snippet(&text)
            )
        })?;
        Ok((value, text.len()))
    }

    /// `POST path` with a text body; the answer as JSON.
    pub fn post_text<T: DeserializeOwned>(&self, path: &str, body: &str) -> anyhow::Result<T> {
        let what = format!("POST {path}");
        let start = Instant::now();
        let resp = self.call(
            &what,
            self.request("POST", path)
                .set("Content-Type", "text/plain; charset=utf-8")
                .send_string(body),
        );
        let bytes = resp
            .map_err(anyhow::Error::from)
            .and_then(|r| read_limited(r.into_reader(), MAX_TEXT).with_context(|| what.clone()));
        self.charge(start, Duration::ZERO);
        let bytes = bytes?;
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{what}: the registry's answer is not the expected JSON: {}",
                snippet(&String::from_utf8_lossy(&bytes))
            )
        })
    }

    /// Whether `HEAD path` answers 200 (content already uploaded).
    pub fn exists(&self, path: &str) -> anyhow::Result<bool> {
        let start = Instant::now();
        let r = self.call(&format!("HEAD {path}"), self.request("HEAD", path).call());
        self.charge(start, Duration::ZERO);
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// `PUT path` streaming `size` bytes from `body`.
    pub fn put_stream(&self, path: &str, body: impl Read, size: u64) -> anyhow::Result<()> {
        let what = format!("PUT {path}");
        let progress = Progress::new("uploading", size);
        let reader = ProgressReader {
            inner: body,
            progress,
        };
        self.call(
            &what,
            self.request("PUT", path)
                .set("Content-Type", "application/wasm")
                .set("Content-Length", &size.to_string())
                .send(reader),
        )?;
        Ok(())
    }

    /// `GET path` streamed into `out`, reading at most `max` bytes, hashing as it goes.
    pub fn download(
        &self,
        path: &str,
        out: &mut impl Write,
        expected: u64,
        max: u64,
    ) -> anyhow::Result<Download> {
        let what = format!("GET {path}");
        let start = Instant::now();
        let resp = self.call(&what, self.request("GET", path).call())?;
        let mut reader = resp.into_reader().take(max.saturating_add(1));
        let mut progress = Progress::new("downloading", expected);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let mut hashing = Duration::ZERO;
        loop {
            let n = reader
                .read(&mut buf)
                .with_context(|| format!("{what}: reading the download"))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > max {
                anyhow::bail!("{what}: the download is larger than the expected {max} bytes");
            }
            let t = Instant::now();
            hasher.update(&buf[..n]);
            hashing += t.elapsed();
            out.write_all(&buf[..n])
                .with_context(|| format!("{what}: writing the download"))?;
            progress.advance(n as u64);
        }
        progress.finish();
        let t = Instant::now();
        let digest = Digest(hasher.finalize().into());
        hashing += t.elapsed();
        self.charge(start, hashing);
        Ok(Download {
            size: total,
            digest,
            hashing,
        })
    }
}

/// What [`Api::download`] read.
#[derive(Debug, Clone, Copy)]
pub struct Download {
    pub size: u64,
    pub digest: Digest,
    /// Time spent hashing (the client-side cost of the transfer).
    pub hashing: Duration,
}

fn read_limited(r: impl Read, max: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!(
            "the answer is larger than {max} bytes"
        )));
    }
    Ok(out)
}

fn snippet(text: &str) -> String {
    let t: String = text.chars().take(200).collect();
    if t.len() < text.len() {
        format!("{t}...")
    } else {
        t
    }
}

/// A one-line progress display on stderr, only when stderr is a terminal and the transfer is
/// big enough to be worth watching.
struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    shown: bool,
    last: Instant,
    on: bool,
}

impl Progress {
    fn new(label: &'static str, total: u64) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            shown: false,
            last: Instant::now(),
            on: total >= 4 * 1024 * 1024 && std::io::stderr().is_terminal(),
        }
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.on && self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.shown = true;
            let pct = self.done.saturating_mul(100) / self.total.max(1);
            eprint!(
                "\r{} {:.1} / {:.1} MiB ({pct}%)   ",
                self.label,
                self.done as f64 / 1048576.0,
                self.total as f64 / 1048576.0
            );
        }
    }

    fn finish(&mut self) {
        if self.shown {
            eprint!("\r{:60}\r", "");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

struct ProgressReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        if n == 0 {
            self.progress.finish();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>, code: Option<&str>) -> HttpError {
        HttpError {
            status,
            code: code.map(ErrorCode::parse),
            head: None,
            message: String::new(),
        }
    }

    #[test]
    fn decisions_go_by_code_and_by_status_without_one() {
        // The registry's own answers: the code decides.
        assert!(answer(Some(404), Some("not_found")).is_not_found());
        assert!(answer(Some(503), Some("unavailable")).is_unavailable());
        assert!(answer(Some(409), Some("version_exists")).is_conflict());
        assert!(answer(Some(409), Some("stale_prev")).is_stale_prev());
        assert!(answer(Some(409), Some("stale_prev")).is_conflict());
        assert!(!answer(Some(409), Some("version_exists")).is_stale_prev());
        assert!(answer(Some(409), Some("namespace_claimed")).is_conflict());
        assert!(!answer(Some(403), Some("not_owner")).is_conflict());
        assert!(!answer(Some(500), Some("internal")).is_unavailable());
        // No body (a HEAD, a proxy's page) or a newer registry's code: the status decides.
        assert!(answer(Some(404), None).is_not_found());
        assert!(answer(Some(503), None).is_unavailable());
        assert!(answer(Some(409), Some("quota_exceeded")).is_conflict());
        assert!(!answer(Some(400), None).is_not_found());
        // No answer at all is none of these.
        let unanswered = answer(None, None);
        assert!(!unanswered.is_not_found() && !unanswered.is_unavailable());
        assert!(!unanswered.is_conflict());
    }
}
