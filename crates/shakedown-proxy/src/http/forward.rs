//! One client connection of the HTTP fault layer: each request is planned by
//! the rules, then answered in the upstream's place, aborted, or forwarded with
//! its body streaming through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::rules::{self, End, Plan};
use super::{Counters, Shared, REQUEST_HEADERS_TIMEOUT};

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Returned by the request handler to make hyper close the client connection
/// without writing a response.
#[derive(Debug, thiserror::Error)]
#[error("abort the client connection (injected fault)")]
struct Aborted;

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
enum UpstreamError {
    #[error("connect to the upstream {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("send the request upstream: {0}")]
    Send(hyper::Error),
    #[error("receive the upstream's response headers within {0:?}")]
    HeadersTimeout(Duration),
}

/// Serves one client connection until it closes, errs or is aborted. Garbage
/// that does not parse as HTTP/1.1 is answered 400 by hyper and closed.
pub(super) async fn serve_connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let service = service_fn(move |request| handle(request, Arc::clone(&shared)));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_HEADERS_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = connection.await {
        tracing::debug!(%peer, error = %e, "http fault layer client connection ended");
    }
}

/// Plans `request` from the rules in force, waits the delays, then ends it.
async fn handle(request: Request<Incoming>, shared: Arc<Shared>) -> Result<Response<ProxyBody>, Aborted> {
    let plan = plan_for(&request, &shared);
    let counters = &shared.counters;
    if plan.n_delays > 0 {
        Counters::add(&counters.delay, plan.n_delays.into());
        tokio::time::sleep(plan.delay).await;
    }
    match plan.end {
        None => Ok(forward_or_bad_gateway(request, &shared).await),
        Some(End::Status { status, retry_after, body }) => {
            Counters::add(&counters.status, 1);
            Ok(injected(status, retry_after, body))
        }
        Some(End::AbortBefore) => {
            Counters::add(&counters.abort_before, 1);
            Err(Aborted)
        }
        Some(End::AbortAfter) => {
            Counters::add(&counters.abort_after, 1);
            let response = forward_or_bad_gateway(request, &shared).await;
            // Read the whole answer, so the upstream finishes the request
            // as it would for a client that lost the response on the way back.
            let _ = tokio::time::timeout(shared.response_headers_timeout, response.into_body().collect()).await;
            Err(Aborted)
        }
    }
}

fn plan_for(request: &Request<Incoming>, shared: &Shared) -> Plan {
    let rules = Arc::clone(&shared.rules.lock().expect("http rules lock poisoned"));
    if rules.is_empty() {
        return Plan::default();
    }
    let mut rng = shared.rng.lock().expect("http rng lock poisoned");
    rules::plan(&rules, request.method(), request.uri().path(), &mut rng)
}

/// Forwards `request`, answering 502 or 504 itself when the upstream cannot
/// be reached or does not answer in time, as a real reverse proxy does.
async fn forward_or_bad_gateway(request: Request<Incoming>, shared: &Shared) -> Response<ProxyBody> {
    Counters::add(&shared.counters.forwarded, 1);
    match forward(request, shared).await {
        Ok(response) => response.map(BodyExt::boxed),
        Err(e) => {
            Counters::add(&shared.counters.upstream_errors, 1);
            tracing::debug!(error = %e, "http fault layer could not forward");
            let status = match e {
                UpstreamError::HeadersTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Connect { .. } | UpstreamError::Send(_) => StatusCode::BAD_GATEWAY,
            };
            text_response(status, format!("failed to {e}"))
        }
    }
}

/// Sends `request` on a fresh upstream connection, its body streaming through.
async fn forward(request: Request<Incoming>, shared: &Shared) -> Result<Response<Incoming>, UpstreamError> {
    let addr = shared.upstream;
    let connect_error = |reason: String| UpstreamError::Connect { addr, reason };
    let stream = tokio::time::timeout(shared.connect_timeout, shared.connector.connect(addr))
        .await
        .map_err(|_| connect_error(format!("timed out after {:?}", shared.connect_timeout)))?
        .map_err(|e| connect_error(e.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(UpstreamError::Send)?;
    // The connection task ends with the response body, or when the sender
    // and the response are dropped (the client went away).
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "http fault layer upstream connection ended");
        }
    });
    let timeout = shared.response_headers_timeout;
    match tokio::time::timeout(timeout, sender.send_request(request)).await {
        Ok(result) => result.map_err(UpstreamError::Send),
        Err(_) => Err(UpstreamError::HeadersTimeout(timeout)),
    }
}

/// The answer of a `status` rule, with its `Retry-After` header if any.
fn injected(status: u16, retry_after: Option<u32>, body: String) -> Response<ProxyBody> {
    // Rules are validated when set, so the code is a valid status.
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = text_response(status, body);
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn text_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
