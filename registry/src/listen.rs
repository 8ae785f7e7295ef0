//! The HTTP listener: every connection served by hyper with a read deadline (for each request
//! head, for each pause in a request body, and for an idle keep-alive connection), a cap on open
//! connections that never leaves `/healthz` unanswered, and a graceful shutdown with a deadline.
//!
//! Connections beyond [`Limits::max_connections`] are not left in the kernel's queue: up to as
//! many again are accepted as **overflow** connections, which answer one request each, `/healthz`
//! through the router and anything else `503` with `retry-after: 1`, under a short head deadline.
//! Beyond both caps a connection is closed as soon as it is accepted. One client (an IPv4
//! address, or an IPv6 /64 network: see [`client_network`]) may hold at most
//! [`Limits::max_connections_per_client`] of the served connections; its further ones are
//! overflow connections too. So a client that holds connections open (half-sent heads, idle
//! keep-alives) cannot take the served connections from the others, can delay them by at most
//! the head deadline when many clients do it together, and a liveness probe always gets an
//! answer.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, header};
use axum::response::IntoResponse as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::error::ApiError;

/// The address a request's connection came from, in the request's extensions. Absent for a
/// request that did not come through [`serve`] (tests driving the router directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Connection and time limits of the listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest a client may take to send a request head or pause while sending a body, and
    /// longest an idle keep-alive connection is kept.
    pub read_timeout: Duration,
    /// Most connections served at once; as many again get the overflow answer.
    pub max_connections: usize,
    /// Most of the served connections one client network may hold (0: no cap of its own).
    pub max_connections_per_client: usize,
    /// After the shutdown signal, longest to wait for in-flight requests before closing.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_client: 256,
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// How long an overflow connection has to send its request head.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an overflow connection lives in all.
const OVERFLOW_LIFETIME: Duration = Duration::from_secs(5);
/// After a failed `accept` (out of file descriptors, say), how long to wait before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The client network a connection from `ip` counts against: an IPv4 address itself, an IPv6
/// address's /64 network (a site may use any address in its /64, so counting addresses one by
/// one would give it 2^64 shares), and an IPv4-mapped IPv6 address as the IPv4 address.
pub fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from_bits(
                v6.to_bits() & !u128::from(u64::MAX),
            )),
        },
        v4 => v4,
    }
}

/// Served connections open per client network, within a cap.
struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One served connection counted against its client network until dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    network: IpAddr,
}

impl PerClient {
    /// A slot for a connection from `ip`, or `None` when its network holds `max` already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let network = client_network(ip);
        if self.max > 0 {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.entry(network).or_insert(0);
            if *n >= self.max {
                return None;
            }
            *n += 1;
        }
        Some(ClientSlot {
            clients: self.clone(),
            network,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if self.clients.max == 0 {
            return;
        }
        let mut open = self.clients.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.network) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.network);
            }
        }
    }
}

/// How the listener stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished within the shutdown deadline.
    Drained,
    /// The deadline passed with connections still open; they were dropped.
    DeadlinePassed,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish (idle connections are closed at once) for at most
/// `limits.shutdown_timeout`, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Stopped {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.read_timeout))
        .keep_alive_timeout(limits.read_timeout);
    let mut overflow_builder = Builder::new(TokioExecutor::new());
    overflow_builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(OVERFLOW_HEADER_TIMEOUT)
        .keep_alive(false);
    // A body that stalls longer than the read deadline fails the handler reading it (a 400 that
    // says so), which frees the connection; a slow but moving upload goes on.
    let router = tower::ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.read_timeout))
        .service(router);
    let served = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(PerClient {
        max: limits.max_connections_per_client,
        open: Mutex::new(HashMap::new()),
    });
    let overflow = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    // Every connection's task, so those still open at the deadline can be stopped: each holds
    // a copy of the router, and the registry's sequencer stops only when the last one is gone.
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let io = TokioIo::new(stream);
        let slot = per_client.take(peer.ip()).and_then(|slot| {
            let permit = served.clone().try_acquire_owned().ok()?;
            Some((slot, permit))
        });
        if let Some(permit) = slot {
            let service = TowerToHyperService::new(router.clone().map_request(
                move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    req
                },
            ));
            let conn = graceful.watch(builder.serve_connection(io, service).into_owned());
            tasks.spawn(async move {
                let _ = conn.await;
                drop(permit);
            });
        } else if let Ok(permit) = overflow.clone().try_acquire_owned() {
            let router = router.clone();
            let service = tower::service_fn(move |req: Request<Incoming>| {
                let router = router.clone();
                async move {
                    if req.uri().path() == "/healthz" {
                        router.oneshot(req).await
                    } else {
                        Ok(busy())
                    }
                }
            });
            let conn = graceful.watch(
                overflow_builder
                    .serve_connection(io, TowerToHyperService::new(service))
                    .into_owned(),
            );
            tasks.spawn(async move {
                let _ = tokio::time::timeout(OVERFLOW_LIFETIME, conn).await;
                drop(permit);
            });
        } else {
            drop(io);
        }
    }
    drop(listener);
    let stopped = tokio::select! {
        () = graceful.shutdown() => Stopped::Drained,
        () = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!(
                open = tasks.len(),
                deadline_s = limits.shutdown_timeout.as_secs_f64(),
                "shutdown deadline passed with connections still open; closing them"
            );
            Stopped::DeadlinePassed
        }
    };
    // A request cut here was never answered, so no acknowledged publish is lost: a record it
    // submitted is either committed by the sequencer, which drains its queue, or not at all.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    stopped
}

/// The answer to a request on an overflow connection other than `/healthz`.
fn busy() -> Response<Body> {
    let mut r = ApiError::Unavailable(
        "the registry is serving as many connections as it allows; try again shortly".into(),
    )
    .into_response();
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_network_is_an_ipv4_address_or_an_ipv6_64() {
        assert_eq!(client_network(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(client_network(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(
            client_network(ip("2001:db8:1:2:ffff:1:2:3")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(
            client_network(ip("2001:db8:1:2::1")),
            client_network(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn per_client_slots_are_capped_and_given_back() {
        let clients = Arc::new(PerClient {
            max: 2,
            open: Mutex::new(HashMap::new()),
        });
        let a = clients.take(ip("2001:db8::1")).unwrap();
        let b = clients.take(ip("2001:db8::2")).unwrap();
        // A third address of the same /64 is past the cap; another network is not.
        assert!(clients.take(ip("2001:db8::3")).is_none());
        let other = clients.take(ip("192.0.2.1")).unwrap();
        drop(a);
        let c = clients.take(ip("2001:db8::3")).unwrap();
        drop((b, c, other));
        assert!(clients.open.lock().unwrap().is_empty());

        let uncapped = Arc::new(PerClient {
            max: 0,
            open: Mutex::new(HashMap::new()),
        });
        let many: Vec<_> = (0..100)
            .map(|_| uncapped.take(ip("192.0.2.1")).unwrap())
            .collect();
        assert!(uncapped.open.lock().unwrap().is_empty());
        drop(many);
    }
}
