//! `queue`: an HTTP job queue (enqueue with an optional unique key, claim with a lease,
//! complete, cancel) over one of three storage engines: `file`, `memory`, `sqlite`.
//!
//! The HTTP layer talks to a [`Store`] engine chosen by [`Engine`]:
//! [`LocalStore`] keeps the jobs in memory and, for `file`, records each change
//! in `DIR/queue.log` (synced before answering, replayed on start);
//! [`SqliteStore`] keeps them in `DIR/queue.sqlite`, which several queue
//! processes can share. [`Build`] picks the old or new build of the sqlite
//! schema (seed 003's rolling-upgrade window). Bug switches ([`Bug`]) break
//! exactly one promise each.

mod http;
mod local;
mod sqlite;
mod store;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::journal::Durability;
use crate::log::Logger;
use crate::service::{self, bug_switches, ServiceError};
use http::App;
pub use local::{Entry, LocalStore, State, LOG_FILE};
pub use sqlite::{Opened, SqliteOptions, SqliteStore, DB_FILE, SCHEMA_VERSION};
pub use store::{Cancellation, Completion, Enqueued, Job, JobId, JobState, NewJob, Stats, Store, StoreError};

bug_switches! {
    /// A deliberate defect the queue can be started with.
    pub enum Bug {
        /// `GET /admin/stats` runs a query naming a column the jobs table
        /// never had, so it answers 500 with SQLite's error. Only the sqlite
        /// engine has the query; the others answer 404 as always.
        BrokenStatsQuery = "broken-stats-query",
        /// `POST /claim` picks the oldest claimable job, releases the lock,
        /// waits [`Config::double_claim_delay`], then marks it claimed, so
        /// concurrent claimers can get the same job. Every engine.
        DoubleClaim = "double-claim",
        /// Changes (enqueued jobs among them) are acknowledged before they are
        /// durable and made durable only every [`Config::flush_period`]: a
        /// SIGKILL loses recently acknowledged jobs; a graceful shutdown
        /// flushes. `file`: the log is written by a background flush; `sqlite`:
        /// changes go into one open transaction that the flush commits (other
        /// processes sharing the file wait for its lock meanwhile, up to the
        /// 5 s busy timeout); `memory`: no effect, it keeps nothing on disk anyway.
        LostOnKill = "lost-on-kill",
    }
}

crate::service::config_builders!(Config, Bug);

/// Where the jobs are kept (`--engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Engine {
    /// `DIR/queue.log`, a JSON-lines journal replayed on start.
    #[default]
    File,
    /// Nothing on disk: every restart starts with an empty queue.
    Memory,
    /// `DIR/queue.sqlite` in WAL mode, shareable by several processes.
    Sqlite,
}

/// Which build of the queue runs (`--build`): what it does to a sqlite schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Build {
    /// Schema v1 only: never migrates, refuses unique keys (400).
    Old,
    /// Migrates a sqlite database to schema v2 on start; unique keys.
    #[default]
    New,
}

/// An `--engine` or `--build` name that is not one of the choices.
#[derive(Debug, thiserror::Error)]
#[error("parse {what}: unknown {what} {name:?} (valid: {valid})")]
pub struct UnknownChoice {
    what: &'static str,
    name: String,
    valid: &'static str,
}

impl Engine {
    pub const ALL: &'static [Engine] = &[Engine::File, Engine::Memory, Engine::Sqlite];

    pub fn name(self) -> &'static str {
        match self {
            Engine::File => "file",
            Engine::Memory => "memory",
            Engine::Sqlite => "sqlite",
        }
    }
}

impl Build {
    pub const ALL: &'static [Build] = &[Build::Old, Build::New];

    pub fn name(self) -> &'static str {
        match self {
            Build::Old => "old",
            Build::New => "new",
        }
    }
}

impl FromStr for Engine {
    type Err = UnknownChoice;

    fn from_str(name: &str) -> Result<Engine, UnknownChoice> {
        let unknown = || UnknownChoice { what: "engine", name: name.to_string(), valid: "file, memory, sqlite" };
        Engine::ALL.iter().copied().find(|e| e.name() == name).ok_or_else(unknown)
    }
}

impl FromStr for Build {
    type Err = UnknownChoice;

    fn from_str(name: &str) -> Result<Build, UnknownChoice> {
        let unknown = || UnknownChoice { what: "build", name: name.to_string(), valid: "old, new" };
        Build::ALL.iter().copied().find(|b| b.name() == name).ok_or_else(unknown)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding the engine's file; created if missing (unused by `memory`).
    pub data_dir: PathBuf,
    pub engine: Engine,
    pub build: Build,
    pub bugs: BTreeSet<Bug>,
    /// How long a claim lasts before an uncompleted job is claimable again.
    pub claim_lease: Duration,
    /// With [`Bug::LostOnKill`]: how often buffered changes are made durable.
    pub flush_period: Duration,
    /// With [`Bug::DoubleClaim`]: the pause between picking a job and claiming it.
    pub double_claim_delay: Duration,
    pub log: Logger,
}

impl Config {
    /// The correct new build on the file engine, logging to stdout: 5 s claim
    /// lease, and the default bug timings (2 s lost-on-kill flush period, 5 ms
    /// double-claim pause).
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            engine: Engine::File,
            build: Build::New,
            bugs: BTreeSet::new(),
            claim_lease: Duration::from_secs(5),
            flush_period: Duration::from_secs(2),
            double_claim_delay: Duration::from_millis(5),
            log: Logger::Stdout,
        }
    }

    /// Keeps the jobs in `engine`.
    pub fn with_engine(mut self, engine: Engine) -> Config {
        self.engine = engine;
        self
    }

    /// Runs as `build`.
    pub fn with_build(mut self, build: Build) -> Config {
        self.build = build;
        self
    }
}

/// Why the queue could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("open the {engine} engine: {source}")]
    Open { engine: Engine, source: StoreError },
    #[error("flush on shutdown: {0}")]
    Flush(StoreError),
}

/// Binds `addr`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), QueueError> {
    let (listener, shutdown) = service::bind(addr, &config.log).await?;
    serve(listener, config, shutdown).await
}

/// Opens the engine (replaying the file log, or migrating the sqlite schema
/// with the new build), logs `listening`, and serves on `listener` until
/// `shutdown` completes; then drains (up to 5 s), flushes buffered changes and
/// returns. Dropping the future instead is the in-process stand-in for
/// SIGKILL: nothing more is flushed (but an in-process sqlite connection is
/// closed, which a real SIGKILL does not do).
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), QueueError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let store = open_store(&config).await?;
    let app = App {
        store: Arc::clone(&store),
        build: config.build,
        double_claim_delay: config.has(Bug::DoubleClaim).then_some(config.double_claim_delay),
    };
    let router = http::router(app);
    let background = maintain(&store, &config);
    service::serve_http(listener, router, &log, config.bugs.iter().copied(), shutdown, background).await?;
    let flushed = tokio::task::spawn_blocking(move || store.flush()).await.map_err(ServiceError::from)?;
    let n_flushed = flushed.map_err(QueueError::Flush)?;
    log.info("stopped", &[("flushed", n_flushed.into())]);
    Ok(())
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, QueueError> {
    let (engine, dir, lease, log) = (config.engine, config.data_dir.clone(), config.claim_lease, &config.log);
    let open_err = |source| QueueError::Open { engine, source };
    match engine {
        Engine::Memory => {
            log.info("opened", &[("engine", "memory".into())]);
            Ok(Arc::new(LocalStore::memory(lease)))
        }
        Engine::File => {
            let durability = if config.has(Bug::LostOnKill) { Durability::Buffered } else { Durability::SyncEachWrite };
            let opened = tokio::task::spawn_blocking(move || LocalStore::open(&dir, durability, lease));
            let (store, recovery) = opened.await.map_err(ServiceError::from)?.map_err(|e| open_err(e.into()))?;
            service::log_recovery(log, &recovery, &config.data_dir);
            Ok(Arc::new(store))
        }
        Engine::Sqlite => {
            let options = SqliteOptions {
                build: config.build,
                lease,
                buffered: config.has(Bug::LostOnKill),
                broken_stats: config.has(Bug::BrokenStatsQuery),
            };
            let opened = tokio::task::spawn_blocking(move || SqliteStore::open(&dir, options));
            let (store, opened) = opened.await.map_err(ServiceError::from)?.map_err(open_err)?;
            let fields = [
                ("engine", "sqlite".into()),
                ("build", config.build.name().into()),
                ("schema_version", opened.schema_version.into()),
                ("migrated", opened.migrated.into()),
            ];
            log.info("opened", &fields);
            Ok(Arc::new(store))
        }
    }
}

/// With [`Bug::LostOnKill`], flushes every [`Config::flush_period`] on a
/// blocking thread, logging failures; never returns.
async fn maintain(store: &Arc<dyn Store>, config: &Config) -> Infallible {
    if !config.has(Bug::LostOnKill) || config.engine == Engine::Memory {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(config.flush_period.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let store = Arc::clone(store);
        match tokio::task::spawn_blocking(move || store.flush()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => config.log.error("flush failed", &[("error", e.to_string().into())]),
            Err(e) => config.log.error("flush task failed", &[("error", e.to_string().into())]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bug_names_round_trip() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().unwrap(), bug);
        }
        let err = "lost".parse::<Bug>().unwrap_err().to_string();
        assert!(err.contains("broken-stats-query, double-claim, lost-on-kill"), "{err}");
    }

    #[test]
    fn engine_and_build_names_round_trip() {
        for &engine in Engine::ALL {
            assert_eq!(engine.name().parse::<Engine>().unwrap(), engine);
        }
        for &build in Build::ALL {
            assert_eq!(build.name().parse::<Build>().unwrap(), build);
        }
        let err = "postgres".parse::<Engine>().unwrap_err().to_string();
        assert_eq!(err, r#"parse engine: unknown engine "postgres" (valid: file, memory, sqlite)"#);
        assert!("newer".parse::<Build>().is_err());
        assert_eq!((Engine::default(), Build::default()), (Engine::File, Build::New));
    }
}
