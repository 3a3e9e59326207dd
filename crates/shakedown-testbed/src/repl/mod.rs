//! `repl`: an in-memory register/kv service with a read replica in the same
//! process, fed over a real TCP connection that a fault proxy can sit on.
//!
//! Writes and cas apply on the primary, which streams them as length-prefixed
//! frames to `--peer` (normally a proxy link in front of the replica's
//! `--repl-listen` port); the replica applies each frame newer than what it
//! holds and acks it. A write is answered 200 only once acked, and 504 when
//! the ack is later than [`Config::ack_timeout`] (it stays queued and is
//! resent on every reconnect). Reads are served by the replica, so the correct
//! build is linearizable whatever the link does. [`Bug::AckOnTimeout`] answers
//! 200 on a late ack: harmless while the link is healthy, stale reads once a
//! fault slows or cuts it.

mod frame;
mod http;
mod link;
mod primary;
mod replica;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use frame::FrameError;

use crate::log::Logger;
use crate::service::{bind, bug_switches, serve_http, ServiceError};
use link::LinkConfig;
use primary::Primary;
use replica::Replica;

bug_switches! {
    /// A deliberate defect the service can be started with.
    pub enum Bug {
        /// Semi-synchronous replication silently falling back to asynchronous:
        /// when the replica's ack is later than [`Config::ack_timeout`], answer
        /// 200 anyway, so a read from the replica can miss an acknowledged write.
        AckOnTimeout = "ack-on-timeout",
    }
}

crate::service::config_builders!(Config, Bug);

/// Everything [`serve`] needs besides its two sockets.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the primary sends writes: the replica's port or a proxy in front of it.
    pub peer: SocketAddr,
    /// How long a write waits for the replica's ack before it is answered 504.
    pub ack_timeout: Duration,
    /// Open a replication connection per batch of writes instead of keeping one.
    pub dial_per_write: bool,
    /// The pause before reconnecting after a link error.
    pub reconnect_backoff: Duration,
    /// Writes outstanding and no ack for this long: drop the connection and redial.
    pub stall_timeout: Duration,
    pub bugs: BTreeSet<Bug>,
    pub log: Logger,
}

impl Config {
    /// The correct build replicating to `peer`, logging to stdout: 200 ms ack
    /// timeout, one long-lived connection, 20 ms reconnect backoff, 2 s stall timeout.
    pub fn new(peer: SocketAddr) -> Config {
        Config {
            peer,
            ack_timeout: Duration::from_millis(200),
            dial_per_write: false,
            reconnect_backoff: Duration::from_millis(20),
            stall_timeout: Duration::from_secs(2),
            bugs: BTreeSet::new(),
            log: Logger::Stdout,
        }
    }

    /// Answers a write 504 when its ack is later than `ack_timeout`.
    pub fn with_ack_timeout(mut self, ack_timeout: Duration) -> Config {
        self.ack_timeout = ack_timeout;
        self
    }

    /// Dials the peer for each batch of writes, so connect-time faults hit every write.
    pub fn with_dial_per_write(mut self, dial_per_write: bool) -> Config {
        self.dial_per_write = dial_per_write;
        self
    }
}

/// Why the service could not start or keep serving: the same reasons as every testbed service.
pub type ReplError = ServiceError;

/// Binds the replica's `repl_addr`, then the API's `addr`, serves until
/// SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, repl_addr: SocketAddr, config: Config) -> Result<(), ReplError> {
    let repl_listener =
        TcpListener::bind(repl_addr).await.map_err(|source| ServiceError::Bind { addr: repl_addr, source })?;
    let (listener, shutdown) = bind(addr, &config.log).await?;
    serve(listener, repl_listener, config, shutdown).await
}

/// Serves the API on `listener` and the replica on `repl_listener`, streams
/// writes to [`Config::peer`], logs `listening`, and stops when `shutdown`
/// completes. Unacked writes are lost on stop: the store is in memory.
pub async fn serve<F>(
    listener: TcpListener,
    repl_listener: TcpListener,
    config: Config,
    shutdown: F,
) -> Result<(), ReplError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let repl_addr = repl_listener.local_addr().map_err(ServiceError::LocalAddr)?;
    let fields = [("addr", repl_addr.to_string().into()), ("peer", config.peer.to_string().into())];
    log.info("replica listening", &fields);
    let (primary, replica) = (Arc::new(Primary::new()), Arc::new(Replica::default()));
    let app = http::App {
        primary: Arc::clone(&primary),
        replica: Arc::clone(&replica),
        ack_timeout: config.ack_timeout,
        ack_on_timeout: config.has(Bug::AckOnTimeout),
    };
    let link = LinkConfig {
        peer: config.peer,
        dial_per_write: config.dial_per_write,
        reconnect_backoff: config.reconnect_backoff,
        stall_timeout: config.stall_timeout,
    };
    let background = async {
        let replicating = link::replicate(&primary, &link, &log);
        let (never, _) = tokio::join!(replicating, replica::serve_replica(repl_listener, replica, log.clone()));
        match never {}
    };
    serve_http(listener, http::router(app), &log, config.bugs.iter().copied(), shutdown, background).await?;
    log.info("stopped", &[("unacked", primary.n_unacked().into())]);
    Ok(())
}

/// Reads `200ms`, `2s` or `1500us`: the `--ack-timeout` argument.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 200ms or 2s"))?;
    match unit {
        "us" => Ok(Duration::from_micros(number)),
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        _ => Err(format!("{text:?} has no unit: use us, ms or s")),
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
        assert!("ack-on-timeouts".parse::<Bug>().unwrap_err().to_string().contains("ack-on-timeout"));
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1500us"), Ok(Duration::from_micros(1500)));
        for bad in ["", "200", "ms", "-1s", "1.5s", "2 s", "3m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
