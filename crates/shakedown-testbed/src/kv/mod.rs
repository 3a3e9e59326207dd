//! `kv`: an HTTP key-value and set service that logs every mutation to `DIR/kv.log`.
//!
//! The correct build appends each mutation to the log and `sync_data`s it
//! before answering 200, and replays the log on start. Bug switches
//! ([`Bug`]) break exactly one promise each, so a checker has something to find.

mod http;

pub(crate) use http::parse_cas;
mod store;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::log::Logger;
pub use crate::service::UnknownBug;
use crate::service::{bug_switches, drain_deadline, flush_every, shutdown_signal};
use http::App;
use store::{Durability, State, Store};
pub use store::{StoreError, LOG_FILE};

bug_switches! {
    /// A deliberate defect the service can be started with.
    pub enum Bug {
        /// Acknowledge a mutation whose log append failed (a full disk:
        /// ENOSPC): it is applied in memory and answered 200 but never
        /// reaches the log, so a restart loses it. The correct build answers
        /// 500 and leaves the state as it was.
        IgnoreWriteErrors = "ignore-write-errors",
        /// Acknowledge mutations before they are durable: they are applied in
        /// memory and buffered, and written (and synced) only once they are
        /// [`Config::lost_write_delay`] old. A SIGKILL loses the recent ones;
        /// a graceful shutdown flushes everything.
        LostWrite = "lost-write",
        /// Make `POST /kv/{key}/cas` non-atomic: it checks the current value,
        /// releases the lock, waits [`Config::racy_cas_delay`], then writes
        /// without checking again, so two cas from the same old value can both
        /// succeed.
        RacyCas = "racy-cas",
        /// Serve GETs from a snapshot of the state refreshed every
        /// [`Config::stale_read_period`], so reads can miss recent writes.
        StaleRead = "stale-read",
    }
}

crate::service::config_builders!(Config, Bug);

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding [`LOG_FILE`]; created if missing.
    pub data_dir: PathBuf,
    pub bugs: BTreeSet<Bug>,
    /// With [`Bug::LostWrite`]: how old a buffered write must be to be flushed.
    pub lost_write_delay: Duration,
    /// With [`Bug::StaleRead`]: how often the read snapshot is refreshed.
    pub stale_read_period: Duration,
    /// With [`Bug::RacyCas`]: the pause between a cas's check and its write.
    pub racy_cas_delay: Duration,
    pub log: Logger,
}

impl Config {
    /// The correct build, logging to stdout, with the default bug timings
    /// (2 s lost-write delay, 1 s stale-read period, 5 ms racy-cas pause).
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            bugs: BTreeSet::new(),
            lost_write_delay: Duration::from_secs(2),
            stale_read_period: Duration::from_secs(1),
            racy_cas_delay: Duration::from_millis(5),
            log: Logger::Stdout,
        }
    }
}

/// Why the service could not start or keep serving: the same reasons as every testbed service.
pub type KvError = crate::service::ServiceError;

/// Binds `addr`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), KvError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| KvError::Bind { addr, source })?;
    // Installed before `serve` logs `listening`, so a signal sent right after
    // that line is never missed.
    let shutdown = shutdown_signal(config.log.clone()).map_err(KvError::Signals)?;
    serve(listener, config, shutdown).await
}

/// Replays the log in `config.data_dir`, logs `listening`, and serves on
/// `listener` until `shutdown` completes. Then it stops accepting, waits up to
/// 5 s for open connections, flushes any buffered writes and returns.
///
/// Dropping the returned future instead (e.g. aborting its task) is the
/// in-process stand-in for SIGKILL: nothing more is flushed.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), KvError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let store = open_store(&config).await?;
    let app = App {
        racy_cas_delay: config.has(Bug::RacyCas).then_some(config.racy_cas_delay),
        snapshot: config.has(Bug::StaleRead).then(|| snapshot_of(&store)),
        store,
    };
    let addr = listener.local_addr().map_err(KvError::LocalAddr)?;
    let bugs: Vec<Value> = config.bugs.iter().map(|b| b.name().into()).collect();
    log.info("listening", &[("addr", addr.to_string().into()), ("bugs", bugs.into())]);
    let (draining_tx, draining_rx) = oneshot::channel();
    let graceful = async move {
        shutdown.await;
        let _ = draining_tx.send(());
    };
    let server = axum::serve(listener, http::router(app.clone())).with_graceful_shutdown(graceful);
    tokio::select! {
        result = server => result.map_err(KvError::Serve)?,
        () = drain_deadline(draining_rx) => log.warn("drain timed out", &[]),
        () = maintain(&app, &config) => unreachable!("background loops never end"),
    }
    let store = Arc::clone(&app.store);
    let n_flushed = tokio::task::spawn_blocking(move || store.flush(Duration::ZERO)).await??;
    log.info("stopped", &[("flushed", n_flushed.into())]);
    Ok(())
}

async fn open_store(config: &Config) -> Result<Arc<Store>, KvError> {
    let durability = if config.has(Bug::LostWrite) { Durability::Buffered } else { Durability::SyncEachWrite };
    let dir = config.data_dir.clone();
    let (store, recovery) = tokio::task::spawn_blocking(move || Store::open(&dir, durability)).await??;
    let store = if config.has(Bug::IgnoreWriteErrors) { store.ignoring_write_errors() } else { store };
    if recovery.torn_bytes > 0 {
        let bytes = recovery.torn_bytes.into();
        config.log.warn("ignored torn last log line", &[("bytes", bytes)]);
    }
    let dir = config.data_dir.display().to_string();
    let fields = [("entries", recovery.n_entries.into()), ("dir", dir.into())];
    config.log.info("recovered", &fields);
    Ok(Arc::new(store))
}

fn snapshot_of(store: &Store) -> Arc<RwLock<Arc<State>>> {
    Arc::new(RwLock::new(Arc::new(store.read(State::clone))))
}

/// Runs the bug switches' background loops; never returns.
async fn maintain(app: &App, config: &Config) {
    let flush = async {
        if config.has(Bug::LostWrite) {
            flush_loop(&app.store, config.lost_write_delay, &config.log).await;
        }
        std::future::pending::<()>().await;
    };
    let refresh = async {
        match &app.snapshot {
            Some(snapshot) => refresh_loop(&app.store, snapshot, config.stale_read_period).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::join!(flush, refresh);
}

/// Writes buffered entries once they are `delay` old, checking four times per
/// `delay`, so a write acknowledged less than `delay` before a SIGKILL is lost.
async fn flush_loop(store: &Arc<Store>, delay: Duration, log: &Logger) -> Infallible {
    let store = Arc::clone(store);
    flush_every(delay / 4, log, move || store.flush(delay)).await
}

/// Replaces the read snapshot with the live state every `period`.
async fn refresh_loop(store: &Store, snapshot: &RwLock<Arc<State>>, period: Duration) -> ! {
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the snapshot taken at start covers it.
    tick.tick().await;
    loop {
        tick.tick().await;
        let fresh = Arc::new(store.read(State::clone));
        *snapshot.write().expect("kv snapshot lock poisoned") = fresh;
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
        let err = "lost-writes".parse::<Bug>().unwrap_err().to_string();
        assert!(err.contains("ignore-write-errors, lost-write, racy-cas, stale-read"), "{err}");
    }
}
