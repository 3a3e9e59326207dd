//! What every testbed service shares: bug switch names, binding, signals, serving and draining.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::journal::{JournalError, Recovery};
use crate::log::Logger;

/// How long a graceful shutdown waits for open connections before giving up on them.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A service's set of bug switches, named on the command line with `--bug NAME`.
pub trait BugSwitch: Copy + Ord + Send + Sync + 'static {
    /// Every bug of the service, in the order of their names.
    const ALL: &'static [Self];

    /// The name used with `--bug`.
    fn name(self) -> &'static str;

    /// The bug called `name`, or an error listing the valid names.
    fn parse(name: &str) -> Result<Self, UnknownBug> {
        Self::ALL.iter().copied().find(|bug| bug.name() == name).ok_or_else(|| UnknownBug {
            name: name.to_string(),
            valid: Self::ALL.iter().map(|bug| bug.name()).collect::<Vec<_>>().join(", "),
        })
    }
}

/// A `--bug` name that is not one of the service's bugs.
#[derive(Debug, thiserror::Error)]
#[error("parse bug: unknown bug {name:?} (valid: {valid})")]
pub struct UnknownBug {
    name: String,
    valid: String,
}

/// Declares a service's `Bug` enum with its `--bug` names, `ALL` and `FromStr`.
macro_rules! bug_switches {
    ($(#[$meta:meta])* pub enum $bug:ident {
        $($(#[$variant_meta:meta])* $variant:ident = $name:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $bug {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $bug {
            /// Every bug, in the order of their names.
            pub const ALL: &'static [$bug] = &[$($bug::$variant),+];

            /// The name used with `--bug`.
            pub fn name(self) -> &'static str {
                match self {
                    $($bug::$variant => $name,)+
                }
            }
        }

        impl $crate::service::BugSwitch for $bug {
            const ALL: &'static [$bug] = $bug::ALL;

            fn name(self) -> &'static str {
                $bug::name(self)
            }
        }

        impl std::str::FromStr for $bug {
            type Err = $crate::service::UnknownBug;

            fn from_str(name: &str) -> Result<$bug, $crate::service::UnknownBug> {
                <$bug as $crate::service::BugSwitch>::parse(name)
            }
        }
    };
}
pub(crate) use bug_switches;

/// The builder methods every service's `Config` shares: it must have fields
/// `bugs: BTreeSet<Bug>` and `log: Logger`.
macro_rules! config_builders {
    ($config:ident, $bug:ident) => {
        impl $config {
            /// Turns on `bug`.
            pub fn with_bug(mut self, bug: $bug) -> $config {
                self.bugs.insert(bug);
                self
            }

            /// Sends the log lines to `log`.
            pub fn with_log(mut self, log: $crate::log::Logger) -> $config {
                self.log = log;
                self
            }

            /// Whether `bug` is switched on.
            pub fn has(&self, bug: $bug) -> bool {
                self.bugs.contains(&bug)
            }
        }
    };
}
pub(crate) use config_builders;

/// Why a testbed service could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("read the listening address: {0}")]
    LocalAddr(std::io::Error),
    #[error(transparent)]
    Store(#[from] JournalError),
    #[error("serve http: {0}")]
    Serve(std::io::Error),
    #[error("run a storage task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Binds `addr` and installs the SIGTERM/SIGINT handlers, in that order, so
/// a signal sent after `listening` is logged is never missed.
pub(crate) async fn bind(
    addr: SocketAddr,
    log: &Logger,
) -> Result<(TcpListener, impl Future<Output = ()> + Send + 'static), ServiceError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| ServiceError::Bind { addr, source })?;
    let shutdown = shutdown_signal(log.clone()).map_err(ServiceError::Signals)?;
    Ok((listener, shutdown))
}

/// Logs what replaying a log found: a warning for a torn tail, then `recovered`.
pub(crate) fn log_recovery(log: &Logger, recovery: &Recovery, dir: &Path) {
    if recovery.torn_bytes > 0 {
        let bytes = recovery.torn_bytes.into();
        log.warn("ignored torn last log line", &[("bytes", bytes)]);
    }
    let dir = dir.display().to_string();
    let fields = [("entries", recovery.n_entries.into()), ("dir", dir.into())];
    log.info("recovered", &fields);
}

/// Logs `listening` and serves `router` until `shutdown` completes, then stops
/// accepting and waits up to [`DRAIN_TIMEOUT`] for open connections.
/// `background` runs alongside and must never finish.
pub(crate) async fn serve_http<B: BugSwitch>(
    listener: TcpListener,
    router: Router,
    log: &Logger,
    bugs: impl IntoIterator<Item = B>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    background: impl Future<Output = Infallible>,
) -> Result<(), ServiceError> {
    let addr = listener.local_addr().map_err(ServiceError::LocalAddr)?;
    let bugs: Vec<Value> = bugs.into_iter().map(|b| b.name().into()).collect();
    log.info("listening", &[("addr", addr.to_string().into()), ("bugs", bugs.into())]);
    let (draining_tx, draining_rx) = oneshot::channel();
    let graceful = async move {
        shutdown.await;
        let _ = draining_tx.send(());
    };
    let server = axum::serve(listener, router).with_graceful_shutdown(graceful);
    tokio::select! {
        result = server => result.map_err(ServiceError::Serve)?,
        () = drain_deadline(draining_rx) => log.warn("drain timed out", &[]),
        never = background => match never {},
    }
    Ok(())
}

/// Completes [`DRAIN_TIMEOUT`] after a graceful shutdown began; never before.
pub(crate) async fn drain_deadline(draining: oneshot::Receiver<()>) {
    match draining.await {
        Ok(()) => tokio::time::sleep(DRAIN_TIMEOUT).await,
        Err(_) => std::future::pending().await,
    }
}

/// Resolves on the first SIGTERM or SIGINT, logging which one.
pub(crate) fn shutdown_signal(log: Logger) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        log.info("shutting down", &[("signal", name.into())]);
    })
}

/// Runs `flush` every `period` on a blocking thread, logging failures; never returns.
pub(crate) async fn flush_every<F>(period: Duration, log: &Logger, flush: F) -> Infallible
where
    F: Fn() -> Result<usize, JournalError> + Clone + Send + 'static,
{
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tokio::task::spawn_blocking(flush.clone()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log.error("flush failed", &[("error", e.to_string().into())]),
            Err(e) => log.error("flush task failed", &[("error", e.to_string().into())]),
        }
    }
}
