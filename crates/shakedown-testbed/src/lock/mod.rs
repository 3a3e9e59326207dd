//! `lock`: lease servers over a shared directory (a primary and a backup) and a failover client.
//!
//! Any number of servers can point `--data` at the same directory: the
//! directory is the backing store ([`store`]), so a primary and a backup
//! agree on every lease, fencing token and state version. A client
//! ([`client`]) runs an acquire-for-update callback against an ordered list
//! of endpoints and fails over to the next one on a connection error,
//! re-acquiring there as the same owner, so its update lands exactly once.
//! The bug switch ([`ClientBug`]) is on the client: `no-failover`.
//!
//! Shutdown has two phases: a drain (new leases refused with 503 while the
//! leases granted here are given time to be released) then an HTTP shutdown
//! (stop accepting, wait for open requests). Both default to a fast test
//! profile, 200 ms and 100 ms; production-like is `--drain 8s --shutdown 2s`.

mod args;
pub mod client;
mod http;
pub mod store;
pub(crate) mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::log::Logger;
use crate::service::{self, bug_switches, ServiceError};
pub use args::{LockArgs, LockClientArgs, LockCommand, UpdateArgs};
pub use client::{ClientConfig, ClientError, Hold, Phase};
pub use store::{Store, StoreError};

bug_switches! {
    /// A deliberate defect the lock client can be started with.
    pub enum ClientBug {
        /// On a connection error the client gives up instead of trying the
        /// next endpoint, so a primary that goes away mid-callback fails the
        /// update even though the backup is up.
        NoFailover = "no-failover",
    }
}

/// Why a lock server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("open the store: {0}")]
    Store(#[from] StoreError),
}

/// The fast stop profile's drain: what tests and scenarios get by default.
pub const TEST_DRAIN: Duration = Duration::from_millis(200);
/// The fast stop profile's HTTP shutdown timeout.
pub const TEST_SHUTDOWN: Duration = Duration::from_millis(100);

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// The shared backing store; created if missing.
    pub data_dir: PathBuf,
    /// Shown as `server` in every log line, e.g. `primary` or `backup`.
    pub name: String,
    /// How long a shutdown waits for leases granted here to be released.
    pub drain: Duration,
    /// How long the HTTP shutdown then waits for open requests.
    pub shutdown: Duration,
    pub log: Logger,
}

impl Config {
    /// A server named `lock` with the fast stop profile, logging to stdout.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            name: "lock".to_string(),
            drain: TEST_DRAIN,
            shutdown: TEST_SHUTDOWN,
            log: Logger::Stdout,
        }
    }

    /// Names the server in its log lines.
    pub fn with_name(mut self, name: &str) -> Config {
        self.name = name.to_string();
        self
    }

    /// Sends the log lines to `log`.
    pub fn with_log(mut self, log: Logger) -> Config {
        self.log = log;
        self
    }
}

/// Binds `addr`, serves until SIGTERM or SIGINT, then drains and shuts down.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), ServerError> {
    let (listener, shutdown) = service::bind(addr, &config.log).await?;
    serve(listener, config, shutdown).await
}

/// Opens the store, logs `listening`, serves until `shutdown` completes, then
/// drains for up to [`Config::drain`] and shuts HTTP down within
/// [`Config::shutdown`]. Logs `draining`, then `stopped`.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&dir)).await.map_err(ServiceError::Task)??;
    let app = http::App {
        store: Arc::new(store),
        name: config.name.clone(),
        log: log.clone(),
        draining: Arc::new(AtomicBool::new(false)),
        granted: Arc::default(),
    };
    let addr = listener.local_addr().map_err(ServiceError::LocalAddr)?;
    let server_name = Value::from(config.name.as_str());
    let fields = [("addr", addr.to_string().into()), ("server", server_name.clone()), ("bugs", Value::Array(vec![]))];
    log.info("listening", &fields);
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let server = axum::serve(listener, http::router(app.clone())).with_graceful_shutdown(async {
        let _ = http_stopped.await;
    });
    let stopper = async {
        shutdown.await;
        drain(&app, &config).await;
        let _ = stop_http.send(());
        tokio::time::sleep(config.shutdown).await;
    };
    tokio::select! {
        result = server => result.map_err(ServiceError::Serve)?,
        () = stopper => log.warn("shutdown timed out", &[("server", server_name.clone())]),
    }
    log.info("stopped", &[("server", server_name)]);
    Ok(())
}

/// Refuses new leases and waits until the leases granted here are released
/// or [`Config::drain`] has passed.
async fn drain(app: &http::App, config: &Config) {
    app.draining.store(true, Ordering::SeqCst);
    let drain_ms = u64::try_from(config.drain.as_millis()).unwrap_or(u64::MAX);
    let fields = [("server", Value::from(config.name.as_str())), ("drain_ms", drain_ms.into())];
    config.log.info("draining", &fields);
    let started = Instant::now();
    while app.n_granted() > 0 && started.elapsed() < config.drain {
        tokio::time::sleep(Duration::from_millis(10).min(config.drain)).await;
    }
    let fields = [("server", Value::from(config.name.as_str())), ("leases_left", app.n_granted().into())];
    config.log.info("drained", &fields);
}

/// Parses durations such as `200ms`, `8s` or `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 200ms, 8s or 1m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{text:?} is not a duration like 200ms, 8s or 1m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        let cases =
            [("200ms", Duration::from_millis(200)), ("8s", Duration::from_secs(8)), ("1m", Duration::from_secs(60))];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for bad in ["", "5", "ms", "1h", "-1s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bug_names_round_trip() {
        assert_eq!("no-failover".parse::<ClientBug>().unwrap(), ClientBug::NoFailover);
        assert!("nope".parse::<ClientBug>().unwrap_err().to_string().contains("no-failover"));
    }
}
