//! `counter`: an HTTP counter whose increments carry idempotency keys, persisted to `DIR/counter.log`.
//!
//! The correct build records each increment with its `Idempotency-Key` and
//! `sync_data`s it before answering; a key already applied is answered with the
//! total it produced the first time and not applied again, across restarts
//! too, and `GET /counter` always reads the live total. [`Bug::DoubleApply`]
//! ignores the key; [`Bug::StaleReplicaRead`] serves about half the reads from
//! a replica copy refreshed every [`Config::replica_period`], so successive
//! reads can go backwards.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State as Shared;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::journal::{self, Durability, Journal, JournalError, Recovery};
use crate::log::Logger;
use crate::service::{self, bug_switches, ServiceError};

/// Name of the log file inside the data directory.
pub const LOG_FILE: &str = "counter.log";

/// The request header that names an increment, so a retry is not applied twice.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

bug_switches! {
    /// A deliberate defect the service can be started with.
    pub enum Bug {
        /// Ignore `Idempotency-Key`: a retried increment is applied again.
        DoubleApply = "double-apply",
        /// Serve each `GET /counter` at random (about half the time) from a
        /// replica copy of the total refreshed every [`Config::replica_period`]
        /// instead of the live total, so reads can go backwards.
        StaleReplicaRead = "stale-replica-read",
    }
}

crate::service::config_builders!(Config, Bug);

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding [`LOG_FILE`]; created if missing.
    pub data_dir: PathBuf,
    pub bugs: BTreeSet<Bug>,
    /// With [`Bug::StaleReplicaRead`]: how often the replica copies the live total.
    pub replica_period: Duration,
    pub log: Logger,
}

impl Config {
    /// The correct build, logging to stdout (500 ms stale-replica-read period).
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            bugs: BTreeSet::new(),
            replica_period: Duration::from_millis(500),
            log: Logger::Stdout,
        }
    }
}

/// One log entry: an increment that was applied, with its key if it had one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Add {
    n: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// Why an increment was not applied.
#[derive(Debug, thiserror::Error)]
enum AddError {
    #[error("add {n}: the total would overflow")]
    Overflow { n: i64 },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The total, the totals each key produced, and the log that makes them durable.
#[derive(Debug)]
struct Counter {
    total: i64,
    applied: BTreeMap<String, i64>,
    journal: Journal,
}

impl Counter {
    fn open(dir: &Path) -> Result<(Counter, Recovery), JournalError> {
        let (journal, adds, recovery) = journal::open::<Add>(dir, LOG_FILE, Durability::SyncEachWrite)?;
        let mut counter = Counter { total: 0, applied: BTreeMap::new(), journal };
        adds.into_iter().for_each(|add| counter.apply(add));
        Ok((counter, recovery))
    }

    /// Adds `n` unless `key` was applied before; returns the total the key produced.
    fn add(&mut self, n: i64, key: Option<String>) -> Result<i64, AddError> {
        if let Some(total) = key.as_ref().and_then(|k| self.applied.get(k)) {
            return Ok(*total);
        }
        self.total.checked_add(n).ok_or(AddError::Overflow { n })?;
        let add = Add { n, key };
        self.journal.record(&add)?;
        self.apply(add);
        Ok(self.total)
    }

    fn apply(&mut self, add: Add) {
        // Replay only sees increments that passed the overflow check.
        self.total = self.total.saturating_add(add.n);
        if let Some(key) = add.key {
            self.applied.insert(key, self.total);
        }
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
struct App {
    counter: Arc<Mutex<Counter>>,
    /// With [`Bug::DoubleApply`], keys are dropped before they reach the counter.
    ignore_keys: bool,
    /// With [`Bug::StaleReplicaRead`], the lagging copy of the total some reads see.
    replica: Option<Arc<AtomicI64>>,
}

impl App {
    /// The total a read sees: the live one, or with a replica a coin flip
    /// between the live total and the replica's.
    fn read_total(&self) -> i64 {
        match &self.replica {
            Some(replica) if coin_flip() => replica.load(Ordering::SeqCst),
            _ => self.counter.lock().expect("counter lock poisoned").total,
        }
    }
}

/// A fair coin, from the randomly keyed hasher std gives each `RandomState`.
fn coin_flip() -> bool {
    RandomState::new().build_hasher().finish() & 1 == 1
}

/// Copies the live total into the replica every `period`; never returns.
async fn refresh_replica(
    counter: Arc<Mutex<Counter>>,
    replica: Option<Arc<AtomicI64>>,
    period: Duration,
) -> Infallible {
    let Some(replica) = replica else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let total = counter.lock().expect("counter lock poisoned").total;
        replica.store(total, Ordering::SeqCst);
    }
}

/// Binds `addr`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), ServiceError> {
    let (listener, shutdown) = service::bind(addr, &config.log).await?;
    serve(listener, config, shutdown).await
}

/// Replays the log in `config.data_dir`, logs `listening`, and serves on
/// `listener` until `shutdown` completes, then drains (up to 5 s).
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), ServiceError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let dir = config.data_dir.clone();
    let (counter, recovery) = tokio::task::spawn_blocking(move || Counter::open(&dir)).await??;
    service::log_recovery(&log, &recovery, &config.data_dir);
    let replica = config.has(Bug::StaleReplicaRead).then(|| Arc::new(AtomicI64::new(counter.total)));
    let app = App {
        counter: Arc::new(Mutex::new(counter)),
        ignore_keys: config.has(Bug::DoubleApply),
        replica: replica.clone(),
    };
    let refresh = refresh_replica(Arc::clone(&app.counter), replica, config.replica_period);
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/counter", get(read_total))
        .route("/counter/add", post(add))
        .with_state(app);
    let bugs = config.bugs.iter().copied();
    service::serve_http(listener, router, &log, bugs, shutdown, refresh).await?;
    log.info("stopped", &[]);
    Ok(())
}

async fn read_total(Shared(app): Shared<App>) -> Response {
    (StatusCode::OK, app.read_total().to_string()).into_response()
}

async fn add(Shared(app): Shared<App>, headers: HeaderMap, body: String) -> Response {
    let (n, key) = match parse_add(&headers, &body) {
        Ok(parsed) => parsed,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let key = key.filter(|_| !app.ignore_keys);
    // On a blocking thread, because the increment is fsync'd.
    let counter = Arc::clone(&app.counter);
    let add = move || counter.lock().expect("counter lock poisoned").add(n, key);
    match tokio::task::spawn_blocking(add).await {
        Ok(Ok(total)) => (StatusCode::OK, total.to_string()).into_response(),
        Ok(Err(e @ AddError::Overflow { .. })) => (StatusCode::BAD_REQUEST, format!("cannot {e}")).into_response(),
        Ok(Err(e)) => internal_error(&format!("storage error: failed to {e}")),
        Err(e) => internal_error(&format!("storage task failed: {e}")),
    }
}

/// Reads the increment (the body, 1 if empty) and the optional idempotency key.
fn parse_add(headers: &HeaderMap, body: &str) -> Result<(i64, Option<String>), String> {
    let body = body.trim();
    let n =
        if body.is_empty() { 1 } else { body.parse::<i64>().map_err(|e| format!("bad increment {body:?}: {e}"))? };
    let key = match headers.get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => {
            Some(value.to_str().map_err(|_| "bad Idempotency-Key: not visible ASCII".to_string())?.to_string())
        }
    };
    Ok((n, key))
}

fn internal_error(why: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, why.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_applies_once_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut counter, _) = Counter::open(dir.path()).unwrap();
        let cases = [(2, Some("a"), 2), (5, None, 7), (2, Some("a"), 2), (1, Some("b"), 8)];
        for (n, key, total) in cases {
            let got = counter.add(n, key.map(str::to_string)).unwrap();
            assert_eq!(got, total, "{n} {key:?}");
        }
        drop(counter);
        let (mut counter, recovery) = Counter::open(dir.path()).unwrap();
        assert_eq!(recovery.n_entries, 3);
        assert_eq!(counter.total, 8);
        assert_eq!(counter.add(9, Some("b".into())).unwrap(), 8);
        assert!(matches!(counter.add(i64::MAX, None), Err(AddError::Overflow { .. })));
    }

    #[test]
    fn parses_increments_and_keys() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_add(&headers, ""), Ok((1, None)));
        assert_eq!(parse_add(&headers, " -3\n"), Ok((-3, None)));
        assert!(parse_add(&headers, "x").is_err());
        headers.insert(IDEMPOTENCY_KEY, "k1".parse().unwrap());
        assert_eq!(parse_add(&headers, "2"), Ok((2, Some("k1".into()))));
    }

    #[test]
    fn bug_names_round_trip() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().unwrap(), bug);
        }
    }
}
