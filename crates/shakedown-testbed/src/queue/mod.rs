//! `queue`: an HTTP job queue (enqueue, claim with a lease, complete) persisted to `DIR/queue.log`.
//!
//! The HTTP layer talks to a [`Store`] engine; [`FileStore`] is the one engine
//! today. The correct build records each change and `sync_data`s it before
//! answering, and replays the log on start. Bug switches ([`Bug`]) break
//! exactly one promise each.

mod http;
mod store;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::journal::Durability;
use crate::log::Logger;
use crate::service::{self, bug_switches, flush_every, ServiceError};
use http::App;
pub use store::{ClaimedJob, Completion, Entry, FileStore, JobId, JobState, State, Store, StoreError, LOG_FILE};

bug_switches! {
    /// A deliberate defect the queue can be started with.
    pub enum Bug {
        /// `POST /claim` picks the oldest claimable job, releases the lock,
        /// waits [`Config::double_claim_delay`], then marks it claimed, so
        /// concurrent claimers can get the same job.
        DoubleClaim = "double-claim",
        /// Changes (enqueued jobs among them) are acknowledged from memory and
        /// written only by a background flush every [`Config::flush_period`]:
        /// a SIGKILL loses recently acknowledged jobs; a graceful shutdown flushes.
        LostOnKill = "lost-on-kill",
    }
}

crate::service::config_builders!(Config, Bug);

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding [`LOG_FILE`]; created if missing.
    pub data_dir: PathBuf,
    pub bugs: BTreeSet<Bug>,
    /// How long a claim lasts before an uncompleted job is claimable again.
    pub claim_lease: Duration,
    /// With [`Bug::LostOnKill`]: how often buffered changes are written.
    pub flush_period: Duration,
    /// With [`Bug::DoubleClaim`]: the pause between picking a job and claiming it.
    pub double_claim_delay: Duration,
    pub log: Logger,
}

impl Config {
    /// The correct build, logging to stdout: 5 s claim lease, and the default
    /// bug timings (2 s lost-on-kill flush period, 5 ms double-claim pause).
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            bugs: BTreeSet::new(),
            claim_lease: Duration::from_secs(5),
            flush_period: Duration::from_secs(2),
            double_claim_delay: Duration::from_millis(5),
            log: Logger::Stdout,
        }
    }
}

/// Binds `addr`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), ServiceError> {
    let (listener, shutdown) = service::bind(addr, &config.log).await?;
    serve(listener, config, shutdown).await
}

/// Replays the log in `config.data_dir`, logs `listening`, and serves on
/// `listener` until `shutdown` completes; then drains (up to 5 s), flushes
/// buffered changes and returns. Dropping the future instead is the
/// in-process stand-in for SIGKILL: nothing more is flushed.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), ServiceError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let store = open_store(&config).await?;
    let app = App {
        store: Arc::clone(&store),
        double_claim_delay: config.has(Bug::DoubleClaim).then_some(config.double_claim_delay),
    };
    let router = http::router(app);
    let background = maintain(&store, &config);
    service::serve_http(listener, router, &log, config.bugs.iter().copied(), shutdown, background).await?;
    let n_flushed = tokio::task::spawn_blocking(move || store.flush()).await?;
    let n_flushed = n_flushed.map_err(|StoreError::Journal(e)| e)?;
    log.info("stopped", &[("flushed", n_flushed.into())]);
    Ok(())
}

async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServiceError> {
    let durability = if config.has(Bug::LostOnKill) { Durability::Buffered } else { Durability::SyncEachWrite };
    let (dir, lease) = (config.data_dir.clone(), config.claim_lease);
    let (store, recovery) = tokio::task::spawn_blocking(move || FileStore::open(&dir, durability, lease)).await??;
    service::log_recovery(&config.log, &recovery, &config.data_dir);
    Ok(Arc::new(store))
}

/// With [`Bug::LostOnKill`], flushes every [`Config::flush_period`]; never returns.
async fn maintain(store: &Arc<dyn Store>, config: &Config) -> Infallible {
    if !config.has(Bug::LostOnKill) {
        return std::future::pending().await;
    }
    let store = Arc::clone(store);
    let flush = move || store.flush().map_err(|StoreError::Journal(e)| e);
    flush_every(config.flush_period, &config.log, flush).await
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
        assert!(err.contains("double-claim, lost-on-kill"), "{err}");
    }
}
