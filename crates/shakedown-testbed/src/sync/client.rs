//! The sync client: local changes into SQLite and a queue of pending events, push with retries, pull and merge.
//!
//! Tables in the `--db` file (the names scenario files query):
//! - `entities(id TEXT PRIMARY KEY, title TEXT, status TEXT, priority TEXT,
//!   assignee TEXT, deleted INTEGER NOT NULL, created_by TEXT)`: one row per
//!   entity, deleted ones included (`deleted` 1);
//! - `field_versions(entity_id, field, clock, actor)`: the version of the
//!   event that last set each field, what the merge compares;
//! - `pending_events(local_seq, event_id, event)`: local events not yet
//!   acknowledged by the server, in order (`event` is its JSON);
//! - `action_log(server_seq INTEGER PRIMARY KEY, event_id, actor, entity_id,
//!   action, clock, fields)`: the server's log as pulled (`fields` is JSON);
//! - `undo_stack(local_seq, entity_id, event_id, before)`: what `undo` sets back;
//! - `meta(key, value)`: `actor`, `replica`, `clock` (Lamport), `next_local`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde_json::{json, Value};

use super::event::{apply, Event, Merge, Row, FIELDS, USER_FIELDS};
use super::server::{Logged, Pushed};
use crate::lock::wire::{Endpoint, Reply, WireError};

/// Events sent in one push request.
const PUSH_BATCH: usize = 500;
/// Events asked for in one pull request.
const PULL_PAGE: usize = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entities (
    id TEXT PRIMARY KEY,
    title TEXT,
    status TEXT,
    priority TEXT,
    assignee TEXT,
    deleted INTEGER NOT NULL DEFAULT 0,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS field_versions (
    entity_id TEXT NOT NULL,
    field TEXT NOT NULL,
    clock INTEGER NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (entity_id, field)
);
CREATE TABLE IF NOT EXISTS pending_events (
    local_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS action_log (
    server_seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    action TEXT NOT NULL,
    clock INTEGER NOT NULL,
    fields TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS undo_stack (
    local_seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    before TEXT NOT NULL
);
";

/// How the client runs.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The local SQLite file; created if missing. One actor per file.
    pub db: PathBuf,
    /// The server's base URL, `http://HOST:PORT`.
    pub server: String,
    pub actor: String,
    /// [`Merge::WholeRow`] is the `whole-row-merge` bug.
    pub merge: Merge,
    /// Deadline for connecting and for each read or write of one request.
    pub timeout: Duration,
    /// How many times a push or pull whose connection broke or timed out is retried.
    pub retries: u32,
    /// Pause before each retry.
    pub retry_pause: Duration,
}

impl ClientOptions {
    /// The correct client: 5 s request timeout, 5 retries 200 ms apart.
    pub fn new(db: impl Into<PathBuf>, server: &str, actor: &str) -> ClientOptions {
        ClientOptions {
            db: db.into(),
            server: server.to_string(),
            actor: actor.to_string(),
            merge: Merge::FieldLevel,
            timeout: Duration::from_secs(5),
            retries: 5,
            retry_pause: Duration::from_millis(200),
        }
    }
}

/// What the client is asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Create { title: String, fields: Vec<(String, String)> },
    Update { id: String, fields: Vec<(String, String)> },
    Delete { id: String },
    Restore { id: String },
    Undo,
    Push,
    Pull,
    Sync,
    List,
    Events,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("use the database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("use the database {path}: it belongs to actor {owner:?}, not {actor:?}")]
    WrongActor { path: PathBuf, owner: String, actor: String },
    #[error("find entity {0:?}: not in the local state (pull first?)")]
    UnknownEntity(String),
    #[error("set field {0:?}: settable fields are title, status, priority and assignee")]
    BadField(String),
    #[error("update: no --field given")]
    NoFields,
    #[error("undo: no local action left to undo")]
    NothingToUndo,
    #[error("use the server URL: {0}")]
    BadServer(WireError),
    #[error("{op} after {attempts} attempts: {error}")]
    Unreachable { op: &'static str, attempts: u32, error: String },
    #[error("{op}: the server refused with {status}: {body}")]
    Refused { op: &'static str, status: u16, body: String },
    #[error("{op}: unexpected reply {body:?}")]
    BadReply { op: &'static str, body: String },
}

/// Runs `command` and returns what it prints: JSON.
pub fn run(options: &ClientOptions, command: &Command) -> Result<Value, ClientError> {
    let mut local = Local::open(options)?;
    match command {
        Command::Create { title, fields } => {
            let mut changes = parse_fields(fields)?;
            changes.insert("title".to_string(), Some(title.clone()));
            local.create(changes)
        }
        Command::Update { id, fields } => {
            if fields.is_empty() {
                return Err(ClientError::NoFields);
            }
            local.change(id, "update", parse_fields(fields)?)
        }
        Command::Delete { id } => local.change(id, "delete", flag("deleted", true)),
        Command::Restore { id } => local.change(id, "restore", flag("deleted", false)),
        Command::Undo => local.undo(),
        Command::Push => local.push(options).map(|pushed| push_summary(&pushed)),
        Command::Pull => local.pull(options),
        Command::Sync => {
            let pushed = local.push(options)?;
            let mut summary = local.pull(options)?;
            summary["pushed"] = pushed.accepted.len().into();
            summary["duplicates"] = pushed.duplicates.len().into();
            Ok(summary)
        }
        Command::List => local.list(),
        Command::Events => local.events(),
    }
}

fn parse_fields(fields: &[(String, String)]) -> Result<BTreeMap<String, Option<String>>, ClientError> {
    fields
        .iter()
        .map(|(name, value)| match USER_FIELDS.contains(&name.as_str()) {
            true => Ok((name.clone(), Some(value.clone()))),
            false => Err(ClientError::BadField(name.clone())),
        })
        .collect()
}

fn flag(name: &str, on: bool) -> BTreeMap<String, Option<String>> {
    BTreeMap::from([(name.to_string(), Some(if on { "1" } else { "0" }.to_string()))])
}

fn push_summary(pushed: &Pushed) -> Value {
    json!({"pushed": pushed.accepted.len(), "duplicates": pushed.duplicates.len(), "last_seq": pushed.last_seq})
}

/// The local database of one actor.
struct Local {
    conn: Connection,
    path: PathBuf,
    actor: String,
    replica: String,
    merge: Merge,
}

impl Local {
    fn open(options: &ClientOptions) -> Result<Local, ClientError> {
        let path = options.db.clone();
        let sqlite = |source| ClientError::Sqlite { path: path.clone(), source };
        let conn = Connection::open(&path).map_err(sqlite)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        let set_default = "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)";
        conn.execute(set_default, ["actor", options.actor.as_str()]).map_err(sqlite)?;
        conn.execute(set_default, ["replica", new_replica_id().as_str()]).map_err(sqlite)?;
        let owner = meta(&conn, "actor").map_err(sqlite)?.unwrap_or_default();
        if owner != options.actor {
            return Err(ClientError::WrongActor { path, owner, actor: options.actor.clone() });
        }
        let replica = meta(&conn, "replica").map_err(sqlite)?.unwrap_or_default();
        Ok(Local { conn, path, actor: options.actor.clone(), replica, merge: options.merge })
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> ClientError + '_ {
        |source| ClientError::Sqlite { path: self.path.clone(), source }
    }

    fn create(&mut self, mut changes: BTreeMap<String, Option<String>>) -> Result<Value, ClientError> {
        for (field, default) in [("status", "open"), ("priority", "P2")] {
            changes.entry(field.to_string()).or_insert_with(|| Some(default.to_string()));
        }
        changes.insert("deleted".to_string(), Some("0".to_string()));
        changes.insert("created_by".to_string(), Some(self.actor.clone()));
        let sqlite = |source| ClientError::Sqlite { path: self.path.clone(), source };
        let tx = self.conn.transaction().map_err(sqlite)?;
        let n = bump(&tx, "next_local").map_err(sqlite)?;
        let id = format!("{}-{}-{n}", self.actor, self.replica);
        // Undoing a create deletes the entity.
        let before = flag("deleted", true);
        let event = record(&tx, &self.actor, &self.replica, self.merge, &id, "create", changes, Some(before))
            .map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(json!({"id": id, "event_id": event.event_id}))
    }

    fn change(
        &mut self,
        id: &str,
        action: &str,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<Value, ClientError> {
        let sqlite = |source| ClientError::Sqlite { path: self.path.clone(), source };
        let tx = self.conn.transaction().map_err(sqlite)?;
        let row = load_row(&tx, id).map_err(sqlite)?.ok_or_else(|| ClientError::UnknownEntity(id.to_string()))?;
        let before = changes.keys().map(|field| (field.clone(), row.get(field).map(str::to_string))).collect();
        let event =
            record(&tx, &self.actor, &self.replica, self.merge, id, action, changes, Some(before)).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(json!({"id": id, "event_id": event.event_id}))
    }

    fn undo(&mut self) -> Result<Value, ClientError> {
        let sqlite = |source| ClientError::Sqlite { path: self.path.clone(), source };
        let tx = self.conn.transaction().map_err(sqlite)?;
        let last: Option<(i64, String, String)> = tx
            .query_row("SELECT local_seq, entity_id, before FROM undo_stack ORDER BY local_seq DESC LIMIT 1", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(sqlite)?;
        let (local_seq, id, before) = last.ok_or(ClientError::NothingToUndo)?;
        let before: BTreeMap<String, Option<String>> =
            serde_json::from_str(&before).map_err(|e| ClientError::BadReply { op: "undo", body: e.to_string() })?;
        let event = record(&tx, &self.actor, &self.replica, self.merge, &id, "undo", before, None).map_err(sqlite)?;
        tx.execute("DELETE FROM undo_stack WHERE local_seq = ?1", [local_seq]).map_err(sqlite)?;
        tx.commit().map_err(sqlite)?;
        Ok(json!({"id": id, "event_id": event.event_id}))
    }

    /// Sends the pending events in order, in batches, each retried with the
    /// same event ids until the server answers; drops the acknowledged ones.
    fn push(&mut self, options: &ClientOptions) -> Result<Pushed, ClientError> {
        let endpoint = Endpoint::parse(&options.server).map_err(ClientError::BadServer)?;
        let mut total = Pushed::default();
        loop {
            let batch = self.pending(PUSH_BATCH)?;
            if batch.is_empty() {
                return Ok(total);
            }
            let body = json!({"events": batch}).to_string();
            let reply = call(options, &endpoint, "push", "POST", "/push", Some(&body))?;
            let pushed: Pushed =
                serde_json::from_str(&reply).map_err(|_| ClientError::BadReply { op: "push", body: reply.clone() })?;
            let sqlite = self.sqlite();
            let acked: Vec<&String> = pushed.accepted.iter().chain(&pushed.duplicates).collect();
            if acked.len() != batch.len() {
                return Err(ClientError::BadReply { op: "push", body: reply });
            }
            let tx = self.conn.unchecked_transaction().map_err(&sqlite)?;
            for event_id in acked {
                tx.execute("DELETE FROM pending_events WHERE event_id = ?1", [event_id]).map_err(&sqlite)?;
            }
            tx.commit().map_err(&sqlite)?;
            total.accepted.extend(pushed.accepted);
            total.duplicates.extend(pushed.duplicates);
            total.last_seq = pushed.last_seq;
        }
    }

    fn pending(&self, limit: usize) -> Result<Vec<Event>, ClientError> {
        let sqlite = self.sqlite();
        let mut query =
            self.conn.prepare("SELECT event FROM pending_events ORDER BY local_seq LIMIT ?1").map_err(&sqlite)?;
        let rows = query.query_map([limit as i64], |row| row.get::<_, String>(0)).map_err(&sqlite)?;
        let texts = rows.collect::<Result<Vec<_>, _>>().map_err(&sqlite)?;
        let bad = |e: serde_json::Error| ClientError::BadReply { op: "read pending events", body: e.to_string() };
        texts.iter().map(|text| serde_json::from_str(text).map_err(bad)).collect()
    }

    /// Fetches the server's log after the last pulled `server_seq`, page by
    /// page, storing each event in `action_log` and merging it into `entities`.
    fn pull(&mut self, options: &ClientOptions) -> Result<Value, ClientError> {
        let endpoint = Endpoint::parse(&options.server).map_err(ClientError::BadServer)?;
        let mut pulled = 0;
        loop {
            let after = self.last_pulled()?;
            let path = format!("/pull?after={after}&limit={PULL_PAGE}");
            let reply = call(options, &endpoint, "pull", "GET", &path, None)?;
            let page: PullPage =
                serde_json::from_str(&reply).map_err(|_| ClientError::BadReply { op: "pull", body: reply.clone() })?;
            let sqlite = |source| ClientError::Sqlite { path: self.path.clone(), source };
            let tx = self.conn.transaction().map_err(sqlite)?;
            for logged in &page.events {
                merge_pulled(&tx, logged, self.merge).map_err(sqlite)?;
            }
            tx.commit().map_err(sqlite)?;
            pulled += page.events.len();
            if page.events.len() < PULL_PAGE {
                return Ok(json!({"pulled": pulled, "last_seq": self.last_pulled()?}));
            }
        }
    }

    fn last_pulled(&self) -> Result<u64, ClientError> {
        let query = "SELECT COALESCE(MAX(server_seq), 0) FROM action_log";
        self.conn.query_row(query, [], |row| row.get::<_, i64>(0)).map(|n| n as u64).map_err(self.sqlite())
    }

    fn list(&self) -> Result<Value, ClientError> {
        let sqlite = self.sqlite();
        let mut query = self
            .conn
            .prepare("SELECT id, title, status, priority, assignee, deleted, created_by FROM entities ORDER BY id")
            .map_err(&sqlite)?;
        let rows = query
            .query_map([], |r| {
                Ok(json!({
                    "id": r.get::<_, String>(0)?, "title": r.get::<_, Option<String>>(1)?,
                    "status": r.get::<_, Option<String>>(2)?, "priority": r.get::<_, Option<String>>(3)?,
                    "assignee": r.get::<_, Option<String>>(4)?, "deleted": r.get::<_, i64>(5)?,
                    "created_by": r.get::<_, Option<String>>(6)?,
                }))
            })
            .map_err(&sqlite)?;
        Ok(Value::Array(rows.collect::<Result<_, _>>().map_err(&sqlite)?))
    }

    fn events(&self) -> Result<Value, ClientError> {
        let sqlite = self.sqlite();
        let mut query = self
            .conn
            .prepare(
                "SELECT server_seq, event_id, actor, entity_id, action, clock, fields FROM action_log ORDER BY server_seq",
            )
            .map_err(&sqlite)?;
        let rows = query
            .query_map([], |r| {
                let fields: String = r.get(6)?;
                Ok(json!({
                    "server_seq": r.get::<_, i64>(0)?, "event_id": r.get::<_, String>(1)?,
                    "actor": r.get::<_, String>(2)?, "entity_id": r.get::<_, String>(3)?,
                    "action": r.get::<_, String>(4)?, "clock": r.get::<_, i64>(5)?,
                    "fields": serde_json::from_str::<Value>(&fields).unwrap_or(Value::String(fields)),
                }))
            })
            .map_err(&sqlite)?;
        Ok(Value::Array(rows.collect::<Result<_, _>>().map_err(&sqlite)?))
    }
}

#[derive(Debug, serde::Deserialize)]
struct PullPage {
    events: Vec<Logged>,
}

/// One request with retries on a broken connection, a timeout or a 5xx;
/// returns the 200 body.
fn call(
    options: &ClientOptions,
    endpoint: &Endpoint,
    op: &'static str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<String, ClientError> {
    let attempts = options.retries + 1;
    let mut last_error = String::new();
    for attempt in 1..=attempts {
        if attempt > 1 {
            std::thread::sleep(options.retry_pause);
        }
        match endpoint.call(method, path, body, options.timeout) {
            Ok(Reply { status: 200, body }) => return Ok(body),
            Ok(Reply { status, body }) if status >= 500 => last_error = format!("{status}: {body}"),
            Ok(Reply { status, body }) => return Err(ClientError::Refused { op, status, body }),
            Err(e) if e.is_transport() => last_error = e.to_string(),
            Err(e) => return Err(ClientError::BadServer(e)),
        }
        if attempt < attempts {
            eprintln!(
                "sync-client: {op} to {} failed ({last_error}); retry {attempt} of {}",
                endpoint.url, options.retries
            );
        }
    }
    Err(ClientError::Unreachable { op, attempts, error: last_error })
}

/// Makes a local event (the whole row after the change with the whole-row
/// bug), applies it, queues it for push and, unless it is an undo, remembers
/// `before` for `undo`.
#[allow(clippy::too_many_arguments)]
fn record(
    tx: &Transaction<'_>,
    actor: &str,
    replica: &str,
    merge: Merge,
    entity_id: &str,
    action: &str,
    changes: BTreeMap<String, Option<String>>,
    before: Option<BTreeMap<String, Option<String>>>,
) -> Result<Event, rusqlite::Error> {
    let clock = bump(tx, "clock")?;
    let n = bump(tx, "next_local")?;
    let mut row = load_row(tx, entity_id)?.unwrap_or_default();
    let fields = match merge {
        Merge::FieldLevel => changes,
        Merge::WholeRow => {
            let mut whole: BTreeMap<String, Option<String>> =
                FIELDS.iter().map(|field| (field.to_string(), row.get(field).map(str::to_string))).collect();
            whole.extend(changes);
            whole
        }
    };
    let event_id = format!("{actor}.{replica}.{n}");
    let event = Event {
        event_id: event_id.clone(),
        actor: actor.to_string(),
        entity_id: entity_id.to_string(),
        action: action.to_string(),
        clock,
        fields,
    };
    apply(&mut row, &event, merge);
    store_row(tx, entity_id, &row)?;
    let text = serde_json::to_string(&event).expect("an event always encodes as JSON");
    tx.execute("INSERT INTO pending_events (event_id, event) VALUES (?1, ?2)", [&event_id, &text])?;
    if let Some(before) = before {
        let before = serde_json::to_string(&before).expect("field values always encode as JSON");
        let insert = "INSERT INTO undo_stack (entity_id, event_id, before) VALUES (?1, ?2, ?3)";
        tx.execute(insert, [entity_id, &event_id, &before])?;
    }
    Ok(event)
}

/// Stores a pulled event in `action_log` (once per `server_seq`), merges it
/// and moves the Lamport clock past it.
fn merge_pulled(tx: &Transaction<'_>, logged: &Logged, merge: Merge) -> Result<(), rusqlite::Error> {
    let event = &logged.event;
    let fields = serde_json::to_string(&event.fields).expect("event fields always encode as JSON");
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO action_log (server_seq, event_id, actor, entity_id, action, clock, fields)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            logged.server_seq as i64,
            event.event_id,
            event.actor,
            event.entity_id,
            event.action,
            event.clock as i64,
            fields
        ],
    )?;
    if inserted == 0 {
        return Ok(());
    }
    let mut row = load_row(tx, &event.entity_id)?.unwrap_or_default();
    if apply(&mut row, event, merge) {
        store_row(tx, &event.entity_id, &row)?;
    }
    let clock = meta(tx, "clock")?.and_then(|c| c.parse::<u64>().ok()).unwrap_or(0);
    if event.clock > clock {
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?1)", [event.clock.to_string()])?;
    }
    Ok(())
}

fn load_row(conn: &Connection, id: &str) -> Result<Option<Row>, rusqlite::Error> {
    let query = "SELECT title, status, priority, assignee, deleted, created_by FROM entities WHERE id = ?1";
    let values = conn
        .query_row(query, [id], |r| {
            let deleted = r.get::<_, i64>(4)?.to_string();
            Ok(vec![r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, Some(deleted), r.get(5)?])
        })
        .optional()?;
    let Some(values) = values else { return Ok(None) };
    let mut row = Row { values: FIELDS.iter().map(|f| f.to_string()).zip(values).collect(), ..Row::default() };
    let mut query = conn.prepare("SELECT field, clock, actor FROM field_versions WHERE entity_id = ?1")?;
    let versions = query.query_map([id], |r| {
        let version = super::event::Version { clock: r.get::<_, i64>(1)? as u64, actor: r.get(2)? };
        Ok((r.get::<_, String>(0)?, version))
    })?;
    row.versions = versions.collect::<Result<_, _>>()?;
    Ok(Some(row))
}

fn store_row(conn: &Connection, id: &str, row: &Row) -> Result<(), rusqlite::Error> {
    let deleted = i64::from(row.get("deleted") == Some("1"));
    conn.execute(
        "INSERT OR REPLACE INTO entities (id, title, status, priority, assignee, deleted, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            row.get("title"),
            row.get("status"),
            row.get("priority"),
            row.get("assignee"),
            deleted,
            row.get("created_by")
        ],
    )?;
    conn.execute("DELETE FROM field_versions WHERE entity_id = ?1", [id])?;
    for (field, version) in &row.versions {
        conn.execute(
            "INSERT INTO field_versions (entity_id, field, clock, actor) VALUES (?1, ?2, ?3, ?4)",
            params![id, field, version.clock as i64, version.actor],
        )?;
    }
    Ok(())
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0)).optional()
}

/// Adds one to the counter `key` in `meta` and returns the new value.
fn bump(conn: &Connection, key: &str) -> Result<u64, rusqlite::Error> {
    let next = meta(conn, key)?.and_then(|value| value.parse::<u64>().ok()).unwrap_or(0) + 1;
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", [key, &next.to_string()])?;
    Ok(next)
}

/// A short id telling apart databases of one actor name, so ids never collide
/// if an actor's file is recreated.
fn new_replica_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 20);
    format!("{:06x}", mixed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn options(dir: &Path, actor: &str) -> ClientOptions {
        ClientOptions::new(dir.join(format!("{actor}.db")), "http://127.0.0.1:9", actor)
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn local_changes_undo_and_pending_events() {
        let dir = tempfile::tempdir().unwrap();
        let alice = options(dir.path(), "alice");
        let created =
            run(&alice, &Command::Create { title: "t".into(), fields: fields(&[("priority", "P0")]) }).unwrap();
        let id = created["id"].as_str().unwrap().to_string();
        run(&alice, &Command::Update { id: id.clone(), fields: fields(&[("status", "done")]) }).unwrap();
        let list = run(&alice, &Command::List).unwrap();
        assert_eq!(list[0]["status"], "done");
        assert_eq!((list[0]["priority"].clone(), list[0]["created_by"].clone()), (json!("P0"), json!("alice")));
        run(&alice, &Command::Undo).unwrap();
        assert_eq!(run(&alice, &Command::List).unwrap()[0]["status"], "open");
        run(&alice, &Command::Undo).unwrap();
        assert_eq!(run(&alice, &Command::List).unwrap()[0]["deleted"], 1, "undoing the create deletes");
        assert!(matches!(run(&alice, &Command::Undo), Err(ClientError::NothingToUndo)));
        run(&alice, &Command::Restore { id: id.clone() }).unwrap();
        assert_eq!(run(&alice, &Command::List).unwrap()[0]["deleted"], 0);
        let local = Local::open(&alice).unwrap();
        let pending = local.pending(100).unwrap();
        let actions: Vec<&str> = pending.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["create", "update", "undo", "undo", "restore"]);
        let clocks: Vec<u64> = pending.iter().map(|e| e.clock).collect();
        assert!(clocks.windows(2).all(|w| w[0] < w[1]), "{clocks:?}");
    }

    #[test]
    fn rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let alice = options(dir.path(), "alice");
        let bad_field = Command::Create { title: "t".into(), fields: fields(&[("colour", "red")]) };
        assert!(matches!(run(&alice, &bad_field), Err(ClientError::BadField(_))));
        let unknown = Command::Update { id: "nope".into(), fields: fields(&[("status", "x")]) };
        assert!(matches!(run(&alice, &unknown), Err(ClientError::UnknownEntity(_))));
        assert!(matches!(run(&alice, &Command::Update { id: "x".into(), fields: vec![] }), Err(ClientError::NoFields)));
        let mut bob_on_alices_file = options(dir.path(), "bob");
        bob_on_alices_file.db = alice.db.clone();
        assert!(matches!(run(&bob_on_alices_file, &Command::List), Err(ClientError::WrongActor { .. })));
        let mut no_server = alice.clone();
        no_server.retries = 1;
        no_server.retry_pause = Duration::from_millis(1);
        no_server.server = "http://127.0.0.1:1".into();
        run(&alice, &Command::Create { title: "t".into(), fields: vec![] }).unwrap();
        assert!(matches!(run(&no_server, &Command::Push), Err(ClientError::Unreachable { attempts: 2, .. })));
        assert_eq!(Local::open(&alice).unwrap().pending(10).unwrap().len(), 1, "a failed push keeps the events");
    }
}
