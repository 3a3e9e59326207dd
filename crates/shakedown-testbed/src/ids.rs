//! `ids`: an HTTP unique-id service that reserves blocks of ids in `DIR/ids.log` before handing them out.
//!
//! The correct build records the end of the next block of [`Config::block_size`]
//! ids and `sync_data`s it before it hands out the block's first id, and on
//! start resumes past the last block recorded, so ids stay unique across
//! crashes (a restart skips the rest of a block). [`Bug::RepeatAfterRestart`]
//! keeps the counter only in memory; [`Bug::ClockIds`] derives ids from the
//! wall clock, so they repeat when the clock steps back (a clock fault).

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
        /// Derive ids from the wall clock: milliseconds since the epoch × 1000
        /// plus a counter within the millisecond, with no high-water mark, so
        /// when the clock steps back the service hands out ids it already gave.
        /// Nothing is logged: the clock stands in for durability.
        ClockIds = "clock-ids",
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

/// Ids per millisecond with [`Bug::ClockIds`]: the counter within a millisecond stays below this.
const IDS_PER_MS: u64 = 1000;

/// The `clock-ids` bug: ids from the wall clock and a counter within its millisecond.
#[derive(Debug, Default)]
struct ClockIds {
    /// The millisecond the last id came from.
    ms: u64,
    /// How many ids were handed out in `ms`.
    n_in_ms: u64,
}

impl ClockIds {
    /// The next id at wall-clock time `now_ms`, or `None` when this millisecond's
    /// ids are used up. The bug: a `now_ms` below the last one is taken as it
    /// is, so the ids of that earlier millisecond are handed out again.
    fn next(&mut self, now_ms: u64) -> Option<u64> {
        if now_ms != self.ms {
            self.ms = now_ms;
            self.n_in_ms = 0;
        }
        if self.n_in_ms == IDS_PER_MS {
            return None;
        }
        self.n_in_ms += 1;
        Some(now_ms * IDS_PER_MS + self.n_in_ms - 1)
    }
}

/// Where ids come from: the durable counter, or the wall clock with [`Bug::ClockIds`].
#[derive(Debug)]
enum Source {
    Counter(Counter),
    Clock(ClockIds),
}

impl Source {
    /// Hands out the next id; blocks on disk I/O, or until the next millisecond.
    fn next(&mut self) -> Result<u64, JournalError> {
        match self {
            Source::Counter(counter) => counter.next(),
            Source::Clock(clock) => loop {
                if let Some(id) = clock.next(wall_clock_ms()) {
                    return Ok(id);
                }
                std::thread::sleep(std::time::Duration::from_micros(100));
            },
        }
    }
}

/// Milliseconds since the Unix epoch by the wall clock (0 before it).
fn wall_clock_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX / IDS_PER_MS)
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
    let in_memory = config.has(Bug::RepeatAfterRestart) || config.has(Bug::ClockIds);
    let (dir, block_size) = (config.data_dir.clone(), config.block_size);
    let (counter, recovery) = tokio::task::spawn_blocking(move || Counter::open(&dir, block_size, in_memory)).await??;
    service::log_recovery(&log, &recovery, &config.data_dir);
    let source = if config.has(Bug::ClockIds) { Source::Clock(ClockIds::default()) } else { Source::Counter(counter) };
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ids", post(next_id))
        .with_state(Arc::new(Mutex::new(source)));
    let bugs = config.bugs.iter().copied();
    service::serve_http(listener, router, &log, bugs, shutdown, std::future::pending()).await?;
    log.info("stopped", &[]);
    Ok(())
}

async fn next_id(Shared(source): Shared<Arc<Mutex<Source>>>) -> Response {
    // On a blocking thread, because a new block is fsync'd.
    let next = move || source.lock().expect("ids source lock poisoned").next();
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
    fn clock_ids_follow_the_clock_and_repeat_when_it_steps_back() {
        let mut clock = ClockIds::default();
        let ids: Vec<Option<u64>> = [5, 5, 6, 5].into_iter().map(|ms| clock.next(ms)).collect();
        assert_eq!(ids, [Some(5000), Some(5001), Some(6000), Some(5000)]);
    }

    #[test]
    fn clock_ids_run_out_within_one_millisecond() {
        let mut clock = ClockIds::default();
        let last = (0..IDS_PER_MS).map(|_| clock.next(7).unwrap()).last();
        assert_eq!(last, Some(7999));
        assert_eq!(clock.next(7), None);
        assert_eq!(clock.next(8), Some(8000));
    }

    #[test]
    fn bug_names_round_trip() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().unwrap(), bug);
        }
        let err = "repeat".parse::<Bug>().unwrap_err().to_string();
        assert!(err.contains("(valid: clock-ids, repeat-after-restart)"), "{err}");
    }
}
