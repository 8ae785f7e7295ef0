//! Outgoing HTTP for guests: wasmtime-wasi-http opens its own connections, which the socket
//! address check never sees, so the host allow-list is enforced here, in the send hook, before a
//! request leaves the machine.

use std::future::Future;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use super::grants::HostRule;

/// The hook: requests to hosts on the list go out through wasmtime-wasi-http's own client; all
/// others are answered `HTTP-request-denied` without any connection.
#[derive(Debug, Default)]
pub struct AllowList {
    pub hosts: Vec<HostRule>,
    /// The destinations refused so far, for the run's closing report.
    pub denied: Vec<String>,
}

impl AllowList {
    /// Whether a request to this URI may go out: its host (as written) and port (explicit, or the
    /// scheme's default) must match an entry.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let Some(host) = uri.host() else {
            return false;
        };
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        self.hosts.iter().any(|r| r.matches_name(host, port))
    }
}

type Sent = wasmtime_wasi_http::Result<(
    http::Response<WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for AllowList {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        drop(fut);
        if !self.allows(request.uri()) {
            let authority = request
                .uri()
                .authority()
                .map_or_else(|| request.uri().to_string(), |a| a.to_string());
            self.denied.push(authority);
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::runtime::grants::parse_host;

    #[test]
    fn allow_list_matches_host_and_port() {
        let list = AllowList {
            hosts: vec![
                parse_host("127.0.0.1:8080").unwrap(),
                parse_host("example.com").unwrap(),
            ],
            denied: Vec::new(),
        };
        let ok = |u: &str| list.allows(&u.parse::<http::Uri>().unwrap());
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(!ok("http://127.0.0.1:8081/x"));
        assert!(!ok("http://127.0.0.1/x"));
        assert!(ok("https://EXAMPLE.com/"));
        assert!(ok("http://example.com:9999/"));
        assert!(!ok("http://example.org/"));
        assert!(!ok("/relative"));
    }
}
