//! Testbed services with bug switches: real processes for shakedown's own tests and quick start.
//!
//! Each service is a module with a `Config`, a `Bug` enum of its own bug
//! switches and an async `serve` that runs on a listener you bind, so tests can
//! run it in-process: [`kv`] (key-value and sets), [`queue`] (a job queue over
//! a pluggable [`queue::Store`] engine), [`ids`] (unique ids), [`counter`]
//! (increments with idempotency keys), [`bank`] (transfers between
//! accounts), [`repl`] (a primary with an in-process read replica fed over
//! a TCP link a fault proxy can break; in memory), [`lock`] (lease servers
//! sharing one data directory, a primary and a backup, and a client that
//! fails over between them) and [`sync`] (an action-log server and an
//! offline-first client CLI with SQLite state). The others are durable by default
//! through one append-only JSON-lines log each. [`migrate`] is a one-shot job,
//! not a server: it copies an SQLite database or a directory tree in batches,
//! resumable from a JSON state file. [`main`] is the
//! `shakedown-testbed` binary's entry point (`shakedown-testbed kv --listen
//! 127.0.0.1:8080 --data DIR [--bug lost-write] [--bug stale-read]`).
//!
//! ```
//! use shakedown_testbed::{kv, Logger};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("testbed-doc-{}", std::process::id()));
//! let config = kv::Config::new(&dir).with_bug(kv::Bug::LostWrite).with_log(Logger::memory());
//! let log = config.log.clone();
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     // A shutdown future that is already done: serve, then stop at once.
//!     kv::serve(listener, config, async {}).await?;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! assert!(log.lines().iter().any(|line| line.contains(r#""msg":"listening""#)));
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

pub mod bank;
pub mod cli;
pub mod counter;
pub mod ids;
mod journal;
pub mod kv;
pub mod lock;
mod log;
pub mod migrate;
pub mod queue;
pub mod repl;
mod service;
pub mod sync;

pub use journal::JournalError;
pub use log::Logger;
pub use service::{BugSwitch, ServiceError, UnknownBug};

/// Entry point of the `shakedown-testbed` binary; see [`cli::main`].
pub fn main() -> std::process::ExitCode {
    cli::main()
}
