//! The control API's HTTP/1.1 server loop, with the limits `axum::serve`
//! does not offer: a deadline on each request's headers (which also closes
//! idle keep-alive connections), a deadline on each whole request, a cap on
//! connections served at once, and an accept loop that survives running out
//! of descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::ApiError;

/// The pause after a failed accept (say, out of descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// How long a stopping server lets requests in flight finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long answering a connection over the cap may take.
const BUSY_TIMEOUT: Duration = Duration::from_millis(200);

/// Limits on the control API's clients; `ApiLimits::default()` is what
/// `serve_api` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// How long a client may take to send a request's headers, counted from
    /// the first byte it may send (so idle keep-alive connections close too).
    pub header_read_timeout: Duration,
    /// How long a request may take from its headers to its answer, body included.
    pub request_timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
}

impl Default for ApiLimits {
    /// 10 s for headers, 30 s per request, 256 connections: toxiproxy
    /// clients send small requests one at a time.
    fn default() -> ApiLimits {
        ApiLimits {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Accepts and serves connections until `shutdown` completes, then lets
/// requests in flight finish (for at most `SHUTDOWN_GRACE`).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) if connections.len() < limits.max_connections => {
                connections.spawn(serve_connection(stream, peer, app.clone(), limits, closing_rx.clone()));
            }
            Ok((stream, peer)) => {
                tracing::warn!(%peer, max = limits.max_connections, "control API at its connection cap; refused a client");
                connections.spawn(refuse_busy(stream));
            }
            Err(err) => {
                tracing::warn!(error = %err, "control API failed to accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    let _ = closing.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

/// Serves one connection's requests until it closes, breaks a limit, or the
/// server stops: then a request in flight finishes first, and a connection
/// between requests (idle, or with a request head still arriving) closes.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: ApiLimits,
    mut closing: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = in_flight.clone();
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let (app, counted) = (app.clone(), counted.clone());
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            let response = answer(app, request, limits.request_timeout).await;
            counted.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = async { closing.wait_for(|closing| *closing).await.map(|_| ()) } => {
            if in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, error = %err, "control API connection ended");
    }
}

/// The router's answer to `request`, or 408 when it takes over `limit`
/// (reading the body included).
async fn answer(app: Router, request: hyper::Request<Incoming>, limit: Duration) -> Response {
    match tokio::time::timeout(limit, app.oneshot(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            let message = format!("serve request: not complete within {limit:?}");
            ApiError::new(StatusCode::REQUEST_TIMEOUT, message).into_response()
        }
    }
}

/// Tells a client over the cap to come back later, then closes. Reading what
/// it sent (briefly) before closing keeps the close a FIN: closing with
/// unread bytes would reset the connection and could discard the answer.
async fn refuse_busy(mut stream: TcpStream) {
    let body = r#"{"error":"serve request: the control API is at its connection limit; retry later","status":503}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer_then_drain = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        for _ in 0..16 {
            if stream.read(&mut sink).await? == 0 {
                break;
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(BUSY_TIMEOUT, answer_then_drain).await;
}
