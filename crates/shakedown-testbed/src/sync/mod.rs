//! `sync`: an action-log server and an offline-first client CLI whose local state is an SQLite file.
//!
//! Clients change entities locally (create, update, delete, restore, undo),
//! queue each change as an event with a client-made id, and later push the
//! queue and pull the server's log, merging every pulled event into their
//! entities field by field, last writer wins by `(Lamport clock, actor)`
//! ([`event`]). The server ([`server`]) keeps the log with a strictly
//! increasing `server_seq` and ignores event ids it already has, so a retried
//! push lands once. Bug switches: [`ServerBug`] `duplicate-event-on-retry`
//! and [`ClientBug`] `whole-row-merge`.
//!
//! The client's tables ([`client`]) are the contract scenario files query:
//! `entities(id, title, status, priority, assignee, deleted, created_by)`,
//! `field_versions(entity_id, field, clock, actor)`,
//! `pending_events(local_seq, event_id, event)`,
//! `action_log(server_seq, event_id, actor, entity_id, action, clock, fields)`,
//! `undo_stack(local_seq, entity_id, event_id, before)` and `meta(key, value)`.

mod args;
pub mod client;
pub mod event;
pub mod server;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::log::Logger;
use crate::service::{self, bug_switches, ServiceError};
pub use args::{SyncClientArgs, SyncCommand, SyncServerArgs};
pub use client::{ClientError, ClientOptions, Command};
pub use event::{Event, Merge};
pub use server::{ActionLog, LogError, DB_FILE};

bug_switches! {
    /// A deliberate defect the sync server can be started with.
    pub enum ServerBug {
        /// `POST /push` appends every event even if its id is already in the
        /// log, so a push whose reply was lost and is retried appends the
        /// events twice.
        DuplicateEventOnRetry = "duplicate-event-on-retry",
    }
}

bug_switches! {
    /// A deliberate defect the sync client can be run with.
    pub enum ClientBug {
        /// Events carry the whole row and the newest event replaces the whole
        /// row, so two actors editing different fields offline lose one edit.
        WholeRowMerge = "whole-row-merge",
    }
}

crate::service::config_builders!(Config, ServerBug);

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding [`DB_FILE`]; created if missing.
    pub data_dir: PathBuf,
    pub bugs: BTreeSet<ServerBug>,
    pub log: Logger,
}

impl Config {
    /// The correct server, logging to stdout.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config { data_dir: data_dir.into(), bugs: BTreeSet::new(), log: Logger::Stdout }
    }
}

/// Why the sync server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("open the action log: {0}")]
    Log(#[from] LogError),
}

/// Binds `addr`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), ServerError> {
    let (listener, shutdown) = service::bind(addr, &config.log).await?;
    serve(listener, config, shutdown).await
}

/// Opens the action log, logs `listening`, serves until `shutdown`
/// completes, drains (up to 5 s) and logs `stopped`.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let dir = config.data_dir.clone();
    let dedupe = !config.has(ServerBug::DuplicateEventOnRetry);
    let log =
        tokio::task::spawn_blocking(move || ActionLog::open(&dir, dedupe)).await.map_err(ServiceError::Task)??;
    let app = server::App { log: Arc::new(log), logger: config.log.clone() };
    let background = std::future::pending::<Infallible>();
    let bugs = config.bugs.iter().copied();
    service::serve_http(listener, server::router(app), &config.log, bugs, shutdown, background).await?;
    config.log.info("stopped", &[]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bug_names_round_trip() {
        assert_eq!("duplicate-event-on-retry".parse::<ServerBug>().unwrap(), ServerBug::DuplicateEventOnRetry);
        assert_eq!("whole-row-merge".parse::<ClientBug>().unwrap(), ClientBug::WholeRowMerge);
        assert!("whole-row-merge".parse::<ServerBug>().is_err());
    }
}
