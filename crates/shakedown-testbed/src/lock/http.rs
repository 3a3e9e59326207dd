//! The lock server's HTTP routes: JSON in, JSON out, one log line per request.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State as Shared};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{valid_key, Acquired, Refusal, Store, StoreError};
use crate::log::Logger;

/// Longest lease a client may ask for.
const MAX_TTL_MS: u64 = 10 * 60 * 1000;

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub(crate) store: Arc<Store>,
    pub(crate) name: String,
    pub(crate) log: Logger,
    /// Set once a shutdown began: new leases are refused with 503.
    pub(crate) draining: Arc<AtomicBool>,
    /// Leases granted through this server and not released through it yet:
    /// the drain waits for them.
    pub(crate) granted: Arc<Mutex<BTreeSet<(String, u64)>>>,
}

impl App {
    pub(crate) fn n_granted(&self) -> usize {
        lock(&self.granted).len()
    }
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/acquire", post(acquire))
        .route("/v1/state", get(read_state))
        .route("/v1/write", post(write_state))
        .route("/v1/release", post(release))
        .with_state(app)
}

#[derive(Debug, Deserialize)]
struct AcquireBody {
    key: String,
    owner: String,
    ttl_ms: u64,
}

#[derive(Debug, Deserialize)]
struct KeyQuery {
    key: String,
}

#[derive(Debug, Deserialize)]
struct WriteBody {
    key: String,
    token: u64,
    version: u64,
    content: String,
}

#[derive(Debug, Deserialize)]
struct ReleaseBody {
    key: String,
    token: u64,
}

async fn acquire(Shared(app): Shared<App>, body: String) -> Response {
    let body = match parse_body::<AcquireBody>(&body) {
        Ok(body) => body,
        Err(e) => return app.reply("acquire", "", StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    if let Some(bad) = bad_request(&body.key, body.ttl_ms).or_else(|| body.owner.is_empty().then_some("empty owner")) {
        return app.reply("acquire", &body.key, StatusCode::BAD_REQUEST, json!({"error": bad}));
    }
    let (store, key, owner) = (Arc::clone(&app.store), body.key.clone(), body.owner.clone());
    let ttl = Duration::from_millis(body.ttl_ms);
    let draining = app.draining.load(Ordering::SeqCst);
    let outcome = blocking(move || {
        // While draining only a holder may renew: no new leases start here.
        if draining && store.read(&key)?.live_lease(now_ms()).is_none_or(|lease| lease.owner != owner) {
            return Ok(None);
        }
        store.acquire(&key, &owner, ttl, now_ms()).map(Some)
    })
    .await;
    let (status, reply) = match outcome {
        Ok(Some(Acquired::Granted { lease, renewed })) => {
            lock(&app.granted).insert((body.key.clone(), lease.token));
            let reply = json!({"key": body.key, "owner": lease.owner, "token": lease.token,
                "expires_unix_ms": lease.expires_unix_ms, "renewed": renewed});
            (StatusCode::OK, reply)
        }
        Ok(Some(Acquired::Held { lease })) => (
            StatusCode::CONFLICT,
            json!({"error": "held", "owner": lease.owner, "expires_unix_ms": lease.expires_unix_ms}),
        ),
        Ok(None) => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "draining"})),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
    };
    app.reply("acquire", &body.key, status, reply)
}

async fn read_state(
    Shared(app): Shared<App>,
    query: Result<Query<KeyQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let key = match query {
        Ok(Query(query)) => query.key,
        Err(e) => return app.reply("read", "", StatusCode::BAD_REQUEST, json!({"error": e.body_text()})),
    };
    if let Some(bad) = bad_request(&key, 0) {
        return app.reply("read", &key, StatusCode::BAD_REQUEST, json!({"error": bad}));
    }
    let store = Arc::clone(&app.store);
    let read_key = key.clone();
    let (status, reply) = match blocking(move || store.read(&read_key)).await {
        Ok(record) => {
            let lease = record.live_lease(now_ms()).cloned();
            let reply = json!({"key": key, "content": record.content, "version": record.version,
                "fencing": record.fencing, "lease": lease});
            (StatusCode::OK, reply)
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
    };
    app.reply("read", &key, status, reply)
}

async fn write_state(Shared(app): Shared<App>, body: String) -> Response {
    let body = match parse_body::<WriteBody>(&body) {
        Ok(body) => body,
        Err(e) => return app.reply("write", "", StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    if let Some(bad) = bad_request(&body.key, 0) {
        return app.reply("write", &body.key, StatusCode::BAD_REQUEST, json!({"error": bad}));
    }
    let store = Arc::clone(&app.store);
    let (key, token, version, content) = (body.key.clone(), body.token, body.version, body.content);
    let outcome = blocking(move || store.write(&key, token, version, &content, now_ms())).await;
    let (status, reply) = match outcome {
        Ok(Ok(version)) => (StatusCode::OK, json!({"key": body.key, "version": version})),
        Ok(Err(refusal)) => (StatusCode::CONFLICT, refusal_json(&refusal)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
    };
    app.reply("write", &body.key, status, reply)
}

async fn release(Shared(app): Shared<App>, body: String) -> Response {
    let body = match parse_body::<ReleaseBody>(&body) {
        Ok(body) => body,
        Err(e) => return app.reply("release", "", StatusCode::BAD_REQUEST, json!({"error": e})),
    };
    if let Some(bad) = bad_request(&body.key, 0) {
        return app.reply("release", &body.key, StatusCode::BAD_REQUEST, json!({"error": bad}));
    }
    let (store, key, token) = (Arc::clone(&app.store), body.key.clone(), body.token);
    let (status, reply) = match blocking(move || store.release(&key, token, now_ms())).await {
        Ok(Ok(())) => {
            lock(&app.granted).remove(&(body.key.clone(), body.token));
            (StatusCode::OK, json!({"key": body.key, "released": true}))
        }
        Ok(Err(refusal)) => (StatusCode::CONFLICT, refusal_json(&refusal)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, json!({"error": e})),
    };
    app.reply("release", &body.key, status, reply)
}

impl App {
    /// Logs the request's outcome and answers with `body` as JSON.
    fn reply(&self, op: &str, key: &str, status: StatusCode, body: Value) -> Response {
        let mut fields = vec![
            ("server", Value::from(self.name.as_str())),
            ("op", op.into()),
            ("key", key.into()),
            ("status", status.as_u16().into()),
        ];
        for name in ["token", "version", "error"] {
            if let Some(value) = body.get(name) {
                fields.push((name, value.clone()));
            }
        }
        if status.is_server_error() {
            self.log.error("request", &fields);
        } else {
            self.log.info("request", &fields);
        }
        (status, Json(body)).into_response()
    }
}

/// Reads a JSON body whatever its content type, so `curl -d` works as it is.
fn parse_body<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|e| format!("bad body: {e}"))
}

fn bad_request(key: &str, ttl_ms: u64) -> Option<&'static str> {
    if !valid_key(key) {
        return Some("bad key: 1 to 200 of letters, digits and . _ - / :");
    }
    (ttl_ms > MAX_TTL_MS).then_some("ttl_ms is over 10 minutes")
}

fn refusal_json(refusal: &Refusal) -> Value {
    match refusal {
        Refusal::StaleToken { current } => json!({"error": "stale token", "current_token": current}),
        Refusal::StaleVersion { current } => json!({"error": "stale version", "current_version": current}),
    }
}

/// Runs a store call on a blocking thread (it fsyncs and may wait for the
/// other server's lock); failures become the error text.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("storage error: failed to {e}")),
        Err(e) => Err(format!("storage task failed: {e}")),
    }
}

pub(crate) fn now_ms() -> u64 {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    u64::try_from(unix_ms).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded sets are updated in one call each, so a poisoned one is whole.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
