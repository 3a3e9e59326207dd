//! The sync server: an action log in SQLite (`DIR/sync.db`) with a server sequence, `POST /push` and `GET /pull`.
//!
//! Invariant: `server_seq` only grows, and (in the correct build) an event id
//! is in the log at most once, so a push retried after its reply was lost
//! appends nothing new. Each push is one transaction, synced before the reply
//! (`synchronous=FULL`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State as Shared};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::event::Event;
use crate::log::Logger;

/// The server's database file in its data directory.
pub const DB_FILE: &str = "sync.db";
/// Most events one pull returns.
pub const MAX_PULL: u64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    server_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    action TEXT NOT NULL,
    clock INTEGER NOT NULL,
    fields TEXT NOT NULL,
    received_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_event_id ON events (event_id);
";

/// Why the action log could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("create data dir {path}: {source}")]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("use the database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
}

/// An event as stored, with its place in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    pub server_seq: u64,
    #[serde(flatten)]
    pub event: Event,
}

/// What a push did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    /// Event ids appended by this push.
    pub accepted: Vec<String>,
    /// Event ids already in the log, not appended again.
    pub duplicates: Vec<String>,
    pub last_seq: u64,
}

/// The action log.
#[derive(Debug)]
pub struct ActionLog {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The `duplicate-event-on-retry` bug: skip the event id check.
    dedupe: bool,
}

impl ActionLog {
    /// Opens (creating if needed) `dir/sync.db`.
    pub fn open(dir: &Path, dedupe: bool) -> Result<ActionLog, LogError> {
        std::fs::create_dir_all(dir).map_err(|source| LogError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let sqlite = |source| LogError::Sqlite { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        Ok(ActionLog { path, conn: Mutex::new(conn), dedupe })
    }

    /// Appends the events whose ids are new (all of them with the bug), in one transaction.
    pub fn push(&self, events: &[Event]) -> Result<Pushed, LogError> {
        let sqlite = |source| LogError::Sqlite { path: self.path.clone(), source };
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sqlite)?;
        let mut pushed = Pushed::default();
        for event in events {
            let known: Option<i64> = if self.dedupe {
                tx.query_row("SELECT 1 FROM events WHERE event_id = ?1", [&event.event_id], |row| row.get(0))
                    .optional()
                    .map_err(sqlite)?
            } else {
                None
            };
            if known.is_some() {
                pushed.duplicates.push(event.event_id.clone());
                continue;
            }
            let fields = serde_json::to_string(&event.fields).expect("event fields always encode as JSON");
            tx.execute(
                "INSERT INTO events (event_id, actor, entity_id, action, clock, fields, received_unix_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    event.event_id,
                    event.actor,
                    event.entity_id,
                    event.action,
                    event.clock as i64,
                    fields,
                    now_ms()
                ],
            )
            .map_err(sqlite)?;
            pushed.accepted.push(event.event_id.clone());
        }
        pushed.last_seq = last_seq(&tx).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(pushed)
    }

    /// Up to `limit` events after `after`, in `server_seq` order, and the log's last sequence.
    pub fn pull(&self, after: u64, limit: u64) -> Result<(Vec<Logged>, u64), LogError> {
        let sqlite = |source| LogError::Sqlite { path: self.path.clone(), source };
        let conn = self.lock();
        let mut query = conn
            .prepare(
                "SELECT server_seq, event_id, actor, entity_id, action, clock, fields FROM events
                 WHERE server_seq > ?1 ORDER BY server_seq LIMIT ?2",
            )
            .map_err(sqlite)?;
        let rows = query
            .query_map(params![after as i64, limit as i64], |row| {
                let fields: String = row.get(6)?;
                let fields = serde_json::from_str(&fields).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
                })?;
                let event = Event {
                    event_id: row.get(1)?,
                    actor: row.get(2)?,
                    entity_id: row.get(3)?,
                    action: row.get(4)?,
                    clock: row.get::<_, i64>(5)? as u64,
                    fields,
                };
                Ok(Logged { server_seq: row.get::<_, i64>(0)? as u64, event })
            })
            .map_err(sqlite)?;
        let events = rows.collect::<Result<Vec<_>, _>>().map_err(sqlite)?;
        let last = last_seq(&conn).map_err(sqlite)?;
        Ok((events, last))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic mid-transaction rolls the transaction back when it drops.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn last_seq(conn: &Connection) -> Result<u64, rusqlite::Error> {
    conn.query_row("SELECT COALESCE(MAX(server_seq), 0) FROM events", [], |row| row.get::<_, i64>(0)).map(|n| n as u64)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct App {
    pub(crate) log: Arc<ActionLog>,
    pub(crate) logger: Logger,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/push", post(push))
        .route("/pull", get(pull))
        .with_state(app)
}

#[derive(Debug, Deserialize)]
struct PushBody {
    events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
struct PullQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u64>,
}

async fn push(Shared(app): Shared<App>, body: String) -> Response {
    let body: PushBody = match serde_json::from_str(&body) {
        Ok(body) => body,
        Err(e) => return bad_request(&app, "push", format!("bad body: {e}")),
    };
    if let Some(e) = body.events.iter().find_map(|event| event.validate().err()) {
        return bad_request(&app, "push", e.to_string());
    }
    let n_events = body.events.len();
    let log = Arc::clone(&app.log);
    match tokio::task::spawn_blocking(move || log.push(&body.events)).await {
        Ok(Ok(pushed)) => {
            let fields = [
                ("events", n_events.into()),
                ("accepted", pushed.accepted.len().into()),
                ("duplicates", pushed.duplicates.len().into()),
                ("last_seq", pushed.last_seq.into()),
            ];
            app.logger.info("push", &fields);
            json_reply(&pushed)
        }
        Ok(Err(e)) => internal_error(&app, "push", format!("storage error: failed to {e}")),
        Err(e) => internal_error(&app, "push", format!("storage task failed: {e}")),
    }
}

async fn pull(
    Shared(app): Shared<App>,
    query: Result<Query<PullQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(query)) => query,
        Err(e) => return bad_request(&app, "pull", e.body_text()),
    };
    let limit = query.limit.unwrap_or(1000).clamp(1, MAX_PULL);
    let log = Arc::clone(&app.log);
    match tokio::task::spawn_blocking(move || log.pull(query.after, limit)).await {
        Ok(Ok((events, last_seq))) => {
            let fields =
                [("after", query.after.into()), ("events", events.len().into()), ("last_seq", last_seq.into())];
            app.logger.info("pull", &fields);
            json_reply(&json!({"events": events, "last_seq": last_seq}))
        }
        Ok(Err(e)) => internal_error(&app, "pull", format!("storage error: failed to {e}")),
        Err(e) => internal_error(&app, "pull", format!("storage task failed: {e}")),
    }
}

fn json_reply(value: &impl Serialize) -> Response {
    let text = serde_json::to_string(value).expect("a sync reply always encodes as JSON");
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn bad_request(app: &App, op: &str, error: String) -> Response {
    app.logger.warn("bad request", &[("op", op.into()), ("error", Value::from(error.as_str()))]);
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response()
}

fn internal_error(app: &App, op: &str, error: String) -> Response {
    app.logger.error("request failed", &[("op", op.into()), ("error", Value::from(error.as_str()))]);
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"error": error}))).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn event(id: &str) -> Event {
        let fields = BTreeMap::from([("title".to_string(), Some("t".to_string()))]);
        Event {
            event_id: id.to_string(),
            actor: "a".to_string(),
            entity_id: "e".to_string(),
            action: "create".to_string(),
            clock: 1,
            fields,
        }
    }

    #[test]
    fn a_retried_push_is_deduplicated_unless_the_bug_is_on() {
        for (dedupe, expected_len) in [(true, 2), (false, 3)] {
            let dir = tempfile::tempdir().unwrap();
            let log = ActionLog::open(dir.path(), dedupe).unwrap();
            let first = log.push(&[event("x"), event("y")]).unwrap();
            assert_eq!((first.accepted.len(), first.last_seq), (2, 2));
            let retry = log.push(&[event("y")]).unwrap();
            assert_eq!(retry.duplicates.len(), usize::from(dedupe), "dedupe {dedupe}");
            let (events, last) = log.pull(0, 100).unwrap();
            assert_eq!((events.len(), last), (expected_len, expected_len as u64));
            let seqs: Vec<u64> = events.iter().map(|e| e.server_seq).collect();
            assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
            assert_eq!(log.pull(1, 1).unwrap().0[0].event.event_id, "y");
        }
    }

    #[test]
    fn the_log_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        ActionLog::open(dir.path(), true).unwrap().push(&[event("x")]).unwrap();
        let log = ActionLog::open(dir.path(), true).unwrap();
        assert_eq!(log.push(&[event("x")]).unwrap().duplicates, ["x"]);
        assert_eq!(log.pull(0, 10).unwrap().0.len(), 1);
    }
}
