//! The kv service's HTTP routes: text bodies in, text or JSON out.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Path, State as Shared};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;

use super::store::{Command, Outcome, State, Store, StoreError};

/// What every handler shares: the store, with `stale-read` the snapshot reads
/// are served from, and with `racy-cas` the pause between a cas's check and write.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub(crate) store: Arc<Store>,
    pub(crate) racy_cas_delay: Option<Duration>,
    pub(crate) snapshot: Option<Arc<RwLock<Arc<State>>>>,
}

impl App {
    /// Runs `f` on the state reads should see: the live one, or the snapshot.
    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        match &self.snapshot {
            None => self.store.read(f),
            Some(snapshot) => {
                let state = Arc::clone(&snapshot.read().expect("kv snapshot lock poisoned"));
                f(&state)
            }
        }
    }
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/kv/{key}", get(get_key).put(put_key).delete(delete_key))
        .route("/kv/{key}/cas", post(cas_key))
        .route("/set/{name}", get(read_set))
        .route("/set/{name}/{element}", post(add_element))
        .with_state(app)
}

async fn get_key(Shared(app): Shared<App>, Path(key): Path<String>) -> Response {
    match app.read(|state| state.get(&key).map(str::to_string)) {
        Some(value) => (StatusCode::OK, value).into_response(),
        None => not_found(),
    }
}

async fn put_key(Shared(app): Shared<App>, Path(key): Path<String>, value: String) -> Response {
    execute(app, Command::Put { key, value }).await
}

async fn delete_key(Shared(app): Shared<App>, Path(key): Path<String>) -> Response {
    execute(app, Command::Delete { key }).await
}

async fn cas_key(Shared(app): Shared<App>, Path(key): Path<String>, body: String) -> Response {
    let (from, to) = match parse_cas(&body) {
        Ok(from_to) => from_to,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    match app.racy_cas_delay {
        None => execute(app, Command::Cas { key, from, to }).await,
        Some(delay) => racy_cas(app, delay, key, from, to).await,
    }
}

/// The `racy-cas` bug: the check and the write are two steps with a pause in
/// between and no lock held across it, so the write may clobber a value the
/// check never saw.
async fn racy_cas(app: App, delay: Duration, key: String, from: String, to: String) -> Response {
    let command = Command::Cas { key: key.clone(), from, to: to.clone() };
    let (outcome, _) = app.store.read(|state| state.plan(command));
    if outcome != Outcome::Done(to.clone()) {
        return respond(Ok(Ok(outcome)));
    }
    tokio::time::sleep(delay).await;
    execute(app, Command::Put { key, value: to }).await
}

async fn read_set(Shared(app): Shared<App>, Path(name): Path<String>) -> Response {
    let elements = app.read(|state| state.elements(&name));
    match serde_json::to_string(&elements) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => internal_error(&format!("encode set: {e}")),
    }
}

async fn add_element(Shared(app): Shared<App>, Path((set, element)): Path<(String, String)>) -> Response {
    execute(app, Command::SetAdd { set, element }).await
}

/// Runs a mutation on a blocking thread, because the correct build fsyncs.
async fn execute(app: App, command: Command) -> Response {
    let store = Arc::clone(&app.store);
    respond(tokio::task::spawn_blocking(move || store.execute(command)).await)
}

fn respond(result: Result<Result<Outcome, StoreError>, tokio::task::JoinError>) -> Response {
    match result {
        Ok(Ok(Outcome::Done(body))) => (StatusCode::OK, body).into_response(),
        Ok(Ok(Outcome::NotFound)) => not_found(),
        Ok(Ok(Outcome::Mismatch)) => (StatusCode::CONFLICT, "mismatch").into_response(),
        Ok(Err(e)) => internal_error(&format!("storage error: failed to {e}")),
        Err(e) => internal_error(&format!("storage task failed: {e}")),
    }
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found").into_response()
}

fn internal_error(why: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, why.to_string()).into_response()
}

/// Reads `{"from": .., "to": ..}`; strings are taken as they are and numbers in
/// their JSON text, so a driver may send `{"from": 1, "to": 2}`.
pub(crate) fn parse_cas(body: &str) -> Result<(String, String), String> {
    let json: Value = serde_json::from_str(body).map_err(|e| format!("bad cas body: {e}"))?;
    let field = |name: &str| match json.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(format!("bad cas body: `{name}` must be a string or a number")),
    };
    Ok((field("from")?, field("to")?))
}

#[cfg(test)]
mod tests {
    use super::parse_cas;

    #[test]
    fn parses_cas_bodies() {
        let ok = |from: &str, to: &str| Ok((from.to_string(), to.to_string()));
        assert_eq!(parse_cas(r#"{"from":"a","to":"b"}"#), ok("a", "b"));
        assert_eq!(parse_cas(r#"{"from":1,"to":2,"x":null}"#), ok("1", "2"));
        assert!(parse_cas(r#"{"from":"a"}"#).is_err());
        assert!(parse_cas(r#"{"from":null,"to":"b"}"#).is_err());
        assert!(parse_cas("nope").is_err());
    }
}
