//! The queue service's HTTP routes: text payloads in, ids as text and jobs as JSON out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State as Shared};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::store::{ClaimedJob, Completion, JobId, JobState, Store, StoreError};

/// What every handler shares: the engine and, with `double-claim`, the pause
/// between picking a job and marking it claimed.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) double_claim_delay: Option<Duration>,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/jobs", post(enqueue).get(list_jobs))
        .route("/claim", post(claim))
        .route("/jobs/{id}/complete", post(complete))
        .with_state(app)
}

async fn enqueue(Shared(app): Shared<App>, payload: String) -> Response {
    match blocking(&app, move |store| store.enqueue(payload)).await {
        Ok(id) => (StatusCode::OK, id.to_string()).into_response(),
        Err(response) => response,
    }
}

async fn claim(Shared(app): Shared<App>) -> Response {
    let claimed = match app.double_claim_delay {
        None => blocking(&app, |store| store.claim(Instant::now())).await,
        Some(delay) => double_claim(&app, delay).await,
    };
    match claimed {
        Ok(Some(job)) => json(&job),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    }
}

/// The `double-claim` bug: picking a job and marking it claimed are two steps
/// with a pause in between, so concurrent claimers can pick the same job.
async fn double_claim(app: &App, delay: Duration) -> Result<Option<ClaimedJob>, Response> {
    let Some(job) = app.store.peek_claimable(Instant::now()) else {
        return Ok(None);
    };
    tokio::time::sleep(delay).await;
    let id = job.id;
    blocking(app, move |store| store.claim_unchecked(id, Instant::now())).await?;
    Ok(Some(job))
}

async fn complete(Shared(app): Shared<App>, Path(id): Path<u64>) -> Response {
    let id = JobId(id);
    match blocking(&app, move |store| store.complete(id)).await {
        Ok(Completion::Done) => (StatusCode::OK, id.to_string()).into_response(),
        Ok(Completion::Unknown) => (StatusCode::NOT_FOUND, "not found").into_response(),
        Ok(Completion::NotClaimed) => (StatusCode::CONFLICT, "not claimed").into_response(),
        Err(response) => response,
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: JobState,
}

async fn list_jobs(Shared(app): Shared<App>, Query(query): Query<ListQuery>) -> Response {
    json(&app.store.payloads(query.state, Instant::now()))
}

/// Runs an engine call on a blocking thread, because the correct build fsyncs;
/// failures become 500 responses.
async fn blocking<T, F>(app: &App, f: F) -> Result<T, Response>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(&app.store);
    match tokio::task::spawn_blocking(move || f(store.as_ref())).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(internal_error(&format!("storage error: failed to {e}"))),
        Err(e) => Err(internal_error(&format!("storage task failed: {e}"))),
    }
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(text) => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => internal_error(&format!("encode response: {e}")),
    }
}

fn internal_error(why: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, why.to_string()).into_response()
}
