//! `ids`: an HTTP unique-id service that reserves blocks of ids in `DIR/ids.log` before handing them out.
//!
//! The correct build records the end of the next block of [`Config::block_size`]
//! ids and `sync_data`s it before it hands out the block's first id, and on
//! start resumes past the last block recorded, so ids stay unique across
//! crashes (a restart skips the rest of a block). [`Bug::RepeatAfterRestart`]
//! keeps the counter only in memory.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::journal::{self, Durability, Journal, JournalError, Recovery};
use crate::log::Logger;
use crate::service::{self, bug_switches, ServiceError};

/// Name of the log file inside the data directory.
pub const LOG_FILE: &str = "ids.log";

bug_switches! {
    /// A deliberate defect the service can be started with.
    pub enum Bug {
        /// Keep the counter only in memory: every start hands out ids from 1
        /// again, repeating ids acknowledged before the restart.
        RepeatAfterRestart = "repeat-after-restart",
    }
}

crate::service::config_builders!(Config, Bug);

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding [`LOG_FILE`]; created if missing.
    pub data_dir: PathBuf,
    pub bugs: BTreeSet<Bug>,
    /// How many ids one durable reservation covers.
    pub block_size: u64,
    pub log: Logger,
}

impl Config {
    /// The correct build, logging to stdout, reserving blocks of 100 ids.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config { data_dir: data_dir.into(), bugs: BTreeSet::new(), block_size: 100, log: Logger::Stdout }
    }
}

/// One log entry: ids up to and including `up_to` may be handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Reserve {
    up_to: u64,
}

/// The id counter and, in the correct build, the log of its reservations.
#[derive(Debug)]
struct Counter {
    /// The last id handed out (0 before the first).
    last: u64,
    /// The highest id a durable reservation covers.
    reserved: u64,
    block_size: u64,
    /// `None` with [`Bug::RepeatAfterRestart`].
    journal: Option<Journal>,
}

impl Counter {
    /// Resumes after the last reservation in `dir`'s log; with `in_memory`,
    /// neither reads nor writes the log and starts from 0.
    fn open(dir: &Path, block_size: u64, in_memory: bool) -> Result<(Counter, Recovery), JournalError> {
        assert!(block_size > 0, "an id block holds at least one id");
        let (journal, reserves, recovery) = if in_memory {
            let recovery = Recovery { n_entries: 0, torn_bytes: 0 };
            (None, Vec::new(), recovery)
        } else {
            let (journal, reserves, recovery) = journal::open::<Reserve>(dir, LOG_FILE, Durability::SyncEachWrite)?;
            (Some(journal), reserves, recovery)
        };
        let reserved = reserves.iter().map(|r| r.up_to).max().unwrap_or(0);
        let counter = Counter { last: reserved, reserved, block_size, journal };
        Ok((counter, recovery))
    }

    /// Hands out the next id, first recording a new block if it is not reserved yet.
    fn next(&mut self) -> Result<u64, JournalError> {
        let id = self.last + 1;
        if let Some(journal) = &mut self.journal {
            if id > self.reserved {
                let up_to = id + self.block_size - 1;
                journal.record(&Reserve { up_to })?;
                self.reserved = up_to;
            }
            assert!(id <= self.reserved, "id {id} handed out unreserved");
        }
        self.last = id;
        Ok(id)
    }
}

/// Binds `addr`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), ServiceError> {
    let (listener, shutdown) = service::bind(addr, &config.log).await?;
    serve(listener, config, shutdown).await
}

/// Replays the log in `config.data_dir`, logs `listening`, and serves
/// `POST /ids` on `listener` until `shutdown` completes, then drains (up to 5 s).
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), ServiceError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let in_memory = config.has(Bug::RepeatAfterRestart);
    let (dir, block_size) = (config.data_dir.clone(), config.block_size);
    let (counter, recovery) = tokio::task::spawn_blocking(move || Counter::open(&dir, block_size, in_memory)).await??;
    service::log_recovery(&log, &recovery, &config.data_dir);
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ids", post(next_id))
        .with_state(Arc::new(Mutex::new(counter)));
    let bugs = config.bugs.iter().copied();
    service::serve_http(listener, router, &log, bugs, shutdown, std::future::pending()).await?;
    log.info("stopped", &[]);
    Ok(())
}

async fn next_id(Shared(counter): Shared<Arc<Mutex<Counter>>>) -> Response {
    // On a blocking thread, because a new block is fsync'd.
    let next = move || counter.lock().expect("ids counter lock poisoned").next();
    match tokio::task::spawn_blocking(next).await {
        Ok(Ok(id)) => (StatusCode::OK, id.to_string()).into_response(),
        Ok(Err(e)) => internal_error(&format!("storage error: failed to {e}")),
        Err(e) => internal_error(&format!("storage task failed: {e}")),
    }
}

fn internal_error(why: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, why.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(counter: &mut Counter, n: usize) -> Vec<u64> {
        (0..n).map(|_| counter.next().unwrap()).collect()
    }

    #[test]
    fn reopening_skips_the_rest_of_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let (mut counter, _) = Counter::open(dir.path(), 3, false).unwrap();
        assert_eq!(take(&mut counter, 4), [1, 2, 3, 4]);
        let (mut counter, recovery) = Counter::open(dir.path(), 3, false).unwrap();
        assert_eq!(recovery.n_entries, 2);
        assert_eq!(take(&mut counter, 2), [7, 8]);
    }

    #[test]
    fn in_memory_counter_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (mut counter, _) = Counter::open(dir.path(), 3, true).unwrap();
        assert_eq!(take(&mut counter, 2), [1, 2]);
        let (mut counter, _) = Counter::open(dir.path(), 3, true).unwrap();
        assert_eq!(take(&mut counter, 1), [1]);
        assert!(!dir.path().join(LOG_FILE).exists());
    }

    #[test]
    fn bug_names_round_trip() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().unwrap(), bug);
        }
        let err = "repeat".parse::<Bug>().unwrap_err().to_string();
        assert!(err.contains("(valid: repeat-after-restart)"), "{err}");
    }
}
