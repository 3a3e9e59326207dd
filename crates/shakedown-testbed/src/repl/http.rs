//! The repl service's HTTP routes, the kv service's API: writes and cas on the
//! primary, answered once the replica acked them; reads from the replica.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::frame::fits;
use super::primary::{Applied, Primary};
use super::replica::Replica;

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub primary: Arc<Primary>,
    pub replica: Arc<Replica>,
    pub ack_timeout: Duration,
    /// The `ack-on-timeout` bug: answer 200 when the replica's ack is late.
    pub ack_on_timeout: bool,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/kv/{key}", get(get_key).put(put_key))
        .route("/kv/{key}/cas", post(cas_key))
        .with_state(app)
}

async fn get_key(State(app): State<App>, Path(key): Path<String>) -> Response {
    match app.replica.get(&key) {
        Some(value) => (StatusCode::OK, value).into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn put_key(State(app): State<App>, Path(key): Path<String>, value: String) -> Response {
    if !fits(&key, &value) {
        return too_large();
    }
    let applied = app.primary.put(key, value);
    replicated(&app, applied).await
}

async fn cas_key(State(app): State<App>, Path(key): Path<String>, body: String) -> Response {
    let (from, to) = match crate::kv::parse_cas(&body) {
        Ok(from_to) => from_to,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if !fits(&key, &to) {
        return too_large();
    }
    let applied = app.primary.cas(key, &from, to);
    replicated(&app, applied).await
}

/// Answers a write once the replica acked it. A late ack is 504, since the
/// write stays queued and may still reach the replica; the bug answers 200.
async fn replicated(app: &App, applied: Applied) -> Response {
    let (value, acked) = match applied {
        Applied::Queued { value, acked } => (value, acked),
        Applied::NotFound => return (StatusCode::NOT_FOUND, "not found").into_response(),
        Applied::Mismatch => return (StatusCode::CONFLICT, "mismatch").into_response(),
        Applied::Backlogged => return (StatusCode::SERVICE_UNAVAILABLE, "replication backlog full").into_response(),
    };
    match tokio::time::timeout(app.ack_timeout, acked).await {
        Ok(Ok(())) => (StatusCode::OK, value).into_response(),
        Err(_) if app.ack_on_timeout => (StatusCode::OK, value).into_response(),
        // A dropped ack sender means the write left the queue unacked, which
        // the primary never does; still, its fate is unknown: 504 as well.
        Ok(Err(_)) | Err(_) => (StatusCode::GATEWAY_TIMEOUT, "replication ack timed out").into_response(),
    }
}

fn too_large() -> Response {
    (StatusCode::PAYLOAD_TOO_LARGE, "too large to replicate").into_response()
}
