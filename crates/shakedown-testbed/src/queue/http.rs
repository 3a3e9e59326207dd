//! The queue service's HTTP routes: text payloads in, ids as text and jobs as JSON out.
//!
//! | route | replies |
//! |---|---|
//! | `POST /jobs[?key=K]`, body = payload | 200 id; 409 when a live job holds K; 400 K with the old build |
//! | `GET /jobs?state=pending\|claimed\|done\|cancelled` | 200 JSON array of payloads, in id order |
//! | `POST /claim` | 200 `{"id","payload"}`; 204 when nothing is claimable |
//! | `POST /jobs/{id}/complete` | 200 id; 404; 409 `not claimed` |
//! | `POST /jobs/{id}/cancel` | 200 `{"id","payload"}`; 404; 409 `not pending: STATE` |
//! | `POST /keys/{key}/cancel`, `POST /keys/{key}/complete` | as by id, for the live job holding the key; 404 when none; 400 with the old build |
//! | `GET /admin/stats` | sqlite: 200 `{"engine","pending","claimed","done","cancelled"}`; other engines: 404 |

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State as Shared};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use super::store::{Cancellation, Completion, Enqueued, Job, JobId, JobState, NewJob, Store, StoreError};
use super::Build;

/// What every handler shares: the engine, the build and, with `double-claim`,
/// the pause between picking a job and marking it claimed.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) build: Build,
    pub(crate) double_claim_delay: Option<Duration>,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/jobs", post(enqueue).get(list_jobs))
        .route("/claim", post(claim))
        .route("/jobs/{id}/complete", post(complete))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/keys/{key}/complete", post(complete_by_key))
        .route("/keys/{key}/cancel", post(cancel_by_key))
        .route("/admin/stats", get(stats))
        .with_state(app)
}

#[derive(Debug, Deserialize)]
struct EnqueueQuery {
    key: Option<String>,
}

async fn enqueue(Shared(app): Shared<App>, Query(query): Query<EnqueueQuery>, payload: String) -> Response {
    if let Some(refusal) = query.key.as_ref().and_then(|_| keys_refused(&app)) {
        return refusal;
    }
    let job = NewJob { payload, key: query.key };
    match blocking(&app, move |store| store.enqueue(job)).await {
        Ok(Enqueued::Added(id)) => (StatusCode::OK, id.to_string()).into_response(),
        Ok(Enqueued::Duplicate(holder)) => {
            (StatusCode::CONFLICT, format!("duplicate key: held by live job {holder}")).into_response()
        }
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
async fn double_claim(app: &App, delay: Duration) -> Result<Option<Job>, Response> {
    let Some(job) = blocking(app, |store| store.peek_claimable(Instant::now())).await? else {
        return Ok(None);
    };
    tokio::time::sleep(delay).await;
    let id = job.id;
    blocking(app, move |store| store.claim_unchecked(id, Instant::now())).await?;
    Ok(Some(job))
}

async fn complete(Shared(app): Shared<App>, Path(id): Path<u64>) -> Response {
    complete_job(&app, JobId(id)).await
}

async fn cancel(Shared(app): Shared<App>, Path(id): Path<u64>) -> Response {
    cancel_job(&app, JobId(id)).await
}

async fn complete_by_key(Shared(app): Shared<App>, Path(key): Path<String>) -> Response {
    match live_job(&app, key).await {
        Ok(id) => complete_job(&app, id).await,
        Err(response) => response,
    }
}

async fn cancel_by_key(Shared(app): Shared<App>, Path(key): Path<String>) -> Response {
    match live_job(&app, key).await {
        Ok(id) => cancel_job(&app, id).await,
        Err(response) => response,
    }
}

async fn complete_job(app: &App, id: JobId) -> Response {
    match blocking(app, move |store| store.complete(id)).await {
        Ok(Completion::Done) => (StatusCode::OK, id.to_string()).into_response(),
        Ok(Completion::Unknown) => (StatusCode::NOT_FOUND, "not found").into_response(),
        Ok(Completion::NotClaimed) => (StatusCode::CONFLICT, "not claimed").into_response(),
        Err(response) => response,
    }
}

async fn cancel_job(app: &App, id: JobId) -> Response {
    match blocking(app, move |store| store.cancel(id, Instant::now())).await {
        Ok(Cancellation::Cancelled(job)) => json(&job),
        Ok(Cancellation::Unknown) => (StatusCode::NOT_FOUND, "not found").into_response(),
        Ok(Cancellation::NotPending(state)) => {
            (StatusCode::CONFLICT, format!("not pending: {}", state.name())).into_response()
        }
        Err(response) => response,
    }
}

/// The live job holding `key`, or the reply saying why there is none. A job
/// found here may finish before the caller acts on it; complete and cancel
/// check its state again.
async fn live_job(app: &App, key: String) -> Result<JobId, Response> {
    if let Some(refusal) = keys_refused(app) {
        return Err(refusal);
    }
    let holder = blocking(app, move |store| store.live_job_with_key(&key)).await?;
    holder.ok_or_else(|| (StatusCode::NOT_FOUND, "no live job with this key").into_response())
}

/// The old build predates unique keys: it refuses them (400) rather than ignore them.
fn keys_refused(app: &App) -> Option<Response> {
    match app.build {
        Build::New => None,
        Build::Old => Some((StatusCode::BAD_REQUEST, "unique keys need the new build").into_response()),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: JobState,
}

async fn list_jobs(Shared(app): Shared<App>, Query(query): Query<ListQuery>) -> Response {
    match blocking(&app, move |store| store.payloads(query.state, Instant::now())).await {
        Ok(payloads) => json(&payloads),
        Err(response) => response,
    }
}

async fn stats(Shared(app): Shared<App>) -> Response {
    let engine = app.store.engine();
    match blocking(&app, |store| store.stats(Instant::now())).await {
        Ok(Some(stats)) => json(&stats),
        Ok(None) => (StatusCode::NOT_FOUND, format!("the {engine} engine keeps no admin stats")).into_response(),
        Err(response) => response,
    }
}

/// Runs an engine call on a blocking thread, because the engines fsync or
/// wait for SQLite's lock; failures become 500 responses with the error text.
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
