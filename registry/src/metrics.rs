//! Prometheus counters kept in atomics and printed as text on `/metrics`: requests by status
//! class, request latency histogram, log size, publishes, and rejections by error code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gridreg_protocol::api::ErrorCode;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Index 0..5 for status classes 1xx..5xx.
    requests: [AtomicU64; 5],
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    log_size: AtomicU64,
    publishes: AtomicU64,
    /// By error code, in the order of the codes' names.
    rejections: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn request(&self, status: u16, took: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn set_log_size(&self, size: u64) {
        self.log_size.store(size, Ordering::Relaxed);
    }

    pub fn published(&self) {
        self.publishes.fetch_add(1, Ordering::Relaxed);
    }

    pub fn publishes(&self) -> u64 {
        self.publishes.load(Ordering::Relaxed)
    }

    pub fn rejection(&self, code: &ErrorCode) {
        let mut map = match self.rejections.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match map.get_mut(code.as_str()) {
            Some(n) => *n += 1,
            None => {
                map.insert(code.to_string(), 1);
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP gridreg_http_requests_total HTTP requests by status class.\n");
        out.push_str("# TYPE gridreg_http_requests_total counter\n");
        for (i, c) in self.requests.iter().enumerate() {
            let _ = writeln!(
                out,
                "gridreg_http_requests_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP gridreg_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE gridreg_http_request_duration_seconds histogram\n");
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "gridreg_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "gridreg_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "gridreg_http_request_duration_seconds_sum {}",
            self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "gridreg_http_request_duration_seconds_count {count}");
        out.push_str("# HELP gridreg_log_size Entries in the transparency log.\n");
        out.push_str("# TYPE gridreg_log_size gauge\n");
        let _ = writeln!(
            out,
            "gridreg_log_size {}",
            self.log_size.load(Ordering::Relaxed)
        );
        out.push_str("# HELP gridreg_publishes_total Records appended to the log.\n");
        out.push_str("# TYPE gridreg_publishes_total counter\n");
        let _ = writeln!(out, "gridreg_publishes_total {}", self.publishes());
        out.push_str("# HELP gridreg_rejections_total Records refused, by error code.\n");
        out.push_str("# TYPE gridreg_rejections_total counter\n");
        let map = match self.rejections.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for (code, n) in map {
            let _ = writeln!(out, "gridreg_rejections_total{{code=\"{code}\"}} {n}");
        }
        out
    }
}
