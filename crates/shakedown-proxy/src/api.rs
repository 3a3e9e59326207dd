//! The toxiproxy 2.x compatible control API over a `Registry`: the same
//! routes, JSON shapes, status codes and `{"error", "status"}` bodies, so
//! toxiproxy's client libraries drive shakedown's proxy unchanged. Requests
//! pass a guard against web pages first (`guard.rs`), and the server limits
//! slow and excess clients (`server.rs`).

mod guard;
mod server;

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::registry::{ProxyPatch, ProxySpec, Registry};
use crate::toxic::{Toxic, ToxicJson};
use crate::ProxyError;

pub use server::ApiLimits;

type Reg = State<Arc<Registry>>;
type ApiResult = Result<Response, ApiError>;

/// Serves the API on `listener` with the default [`ApiLimits`] until
/// `shutdown` completes. The listener must be bound to loopback. Links stay
/// up after it returns; call `Registry::shutdown` to stop them.
pub async fn serve_api(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_api_with(listener, registry, ApiLimits::default(), shutdown).await
}

/// [`serve_api`] with other limits on slow and excess clients.
pub async fn serve_api_with(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    limits: ApiLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        let reason = format!("the control API must listen on loopback, not {addr}");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, reason));
    }
    if limits.max_connections == 0 {
        let reason = "the control API needs max_connections of at least 1".to_string();
        return Err(io::Error::new(io::ErrorKind::InvalidInput, reason));
    }
    crate::limits::ensure_nofile_limit();
    server::serve(listener, router(registry), limits, shutdown).await;
    Ok(())
}

/// The API's routes behind the guard against web pages, for embedding in
/// another server.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/reset", post(reset))
        .route("/populate", post(populate))
        .route("/proxies", get(list).post(create))
        .route("/proxies/{proxy}", get(show).post(update).delete(remove))
        .route("/proxies/{proxy}/toxics", get(list_toxics).post(add_toxic))
        .route("/proxies/{proxy}/toxics/{toxic}", get(show_toxic).post(update_toxic).delete(remove_toxic))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "find route: no such route".into()) })
        .layer(axum::middleware::from_fn(guard::guard))
        .with_state(registry)
}

/// An error answer: `{"error": message, "status": code}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: String) -> ApiError {
        ApiError { status, message }
    }
}

impl From<ProxyError> for ApiError {
    fn from(err: ProxyError) -> ApiError {
        let status = match &err {
            ProxyError::ProxyNotFound(_) | ProxyError::ToxicNotFound(_) => StatusCode::NOT_FOUND,
            ProxyError::ProxyExists(_) | ProxyError::ToxicExists(_) => StatusCode::CONFLICT,
            ProxyError::InvalidToxic(_)
            | ProxyError::InvalidProxy(_)
            | ProxyError::NotLoopback(_)
            | ProxyError::Resolve { .. } => StatusCode::BAD_REQUEST,
            ProxyError::Listen { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "status": self.status.as_u16() });
        (self.status, Json(body)).into_response()
    }
}

/// Reads a JSON body; an empty body reads as `{}` (toxiproxy's clients send
/// none on some POSTs).
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    serde_json::from_slice(text).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("read request body: {e}")))
}

fn ok(status: StatusCode, value: impl serde::Serialize) -> ApiResult {
    Ok((status, Json(value)).into_response())
}

async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

async fn reset(State(reg): Reg) -> ApiResult {
    reg.reset().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn populate(State(reg): Reg, bytes: Bytes) -> ApiResult {
    let specs: Vec<ProxySpec> = body(&bytes)?;
    ok(StatusCode::CREATED, json!({ "proxies": reg.populate(specs).await? }))
}

async fn list(State(reg): Reg) -> ApiResult {
    ok(StatusCode::OK, reg.list().await)
}

async fn create(State(reg): Reg, bytes: Bytes) -> ApiResult {
    let spec: ProxySpec = body(&bytes)?;
    if spec.name.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "read proxy: missing required field: name".into()));
    }
    ok(StatusCode::CREATED, reg.create(spec).await?)
}

async fn show(State(reg): Reg, Path(proxy): Path<String>) -> ApiResult {
    ok(StatusCode::OK, reg.get(&proxy).await?)
}

async fn update(State(reg): Reg, Path(proxy): Path<String>, bytes: Bytes) -> ApiResult {
    let patch: ProxyPatch = body(&bytes)?;
    ok(StatusCode::OK, reg.update(&proxy, patch).await?)
}

async fn remove(State(reg): Reg, Path(proxy): Path<String>) -> ApiResult {
    reg.remove(&proxy).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_toxics(State(reg): Reg, Path(proxy): Path<String>) -> ApiResult {
    let toxics: Vec<Value> = reg.link(&proxy).await?.toxics().iter().map(Toxic::to_json).collect();
    ok(StatusCode::OK, toxics)
}

async fn add_toxic(State(reg): Reg, Path(proxy): Path<String>, bytes: Bytes) -> ApiResult {
    let link = reg.link(&proxy).await?;
    let toxic = Toxic::from_json(body::<ToxicJson>(&bytes)?)?;
    link.add_toxic(toxic.clone())?;
    ok(StatusCode::OK, toxic.to_json())
}

async fn show_toxic(State(reg): Reg, Path((proxy, name)): Path<(String, String)>) -> ApiResult {
    let toxic = reg.link(&proxy).await?.toxic(&name).ok_or(ProxyError::ToxicNotFound(name))?;
    ok(StatusCode::OK, toxic.to_json())
}

async fn update_toxic(State(reg): Reg, Path((proxy, name)): Path<(String, String)>, bytes: Bytes) -> ApiResult {
    let link = reg.link(&proxy).await?;
    let current = link.toxic(&name).ok_or(ProxyError::ToxicNotFound(name))?;
    let toxic = current.updated(body::<ToxicJson>(&bytes)?)?;
    link.update_toxic(toxic.clone())?;
    ok(StatusCode::OK, toxic.to_json())
}

async fn remove_toxic(State(reg): Reg, Path((proxy, name)): Path<(String, String)>) -> ApiResult {
    reg.link(&proxy).await?.remove_toxic(&name)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
