//! The HTTP listener: every connection served by hyper with a read deadline (for each request
//! head, for each pause in a request body, and for an idle keep-alive connection), a cap on open
//! connections that never leaves `/healthz` unanswered, and a graceful shutdown with a deadline.
//!
//! Connections beyond [`Limits::max_connections`] are not left in the kernel's queue: up to as
//! many again are accepted as **overflow** connections, which answer one request each, `/healthz`
//! through the router and anything else `503` with `retry-after: 1`, under a short head deadline.
//! Beyond both caps a connection is closed as soon as it is accepted. So a client that holds
//! connections open (half-sent heads, idle keep-alives) can delay others by at most the head
//! deadline, and a liveness probe always gets an answer.

use std::future::Future;
use std::sync::Arc;
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
    /// After the shutdown signal, longest to wait for in-flight requests before closing.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            read_timeout: Duration::from_secs(10),
            max_connections: 1024,
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
        if let Ok(permit) = served.clone().try_acquire_owned() {
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
