//! Runs shakedown scenarios against real processes: the supervisor, clients,
//! workload engine, process faults and history recorder. The only crate that
//! spawns processes or opens sockets, and the only async one.
//!
//! ```no_run
//! # async fn demo(scenario: shakedown_spec::Scenario) {
//! use shakedown_runner::{run, RunOptions};
//! let (_cancel_tx, cancel) = tokio::sync::watch::channel(false);
//! let opts = RunOptions {
//!     run_dir: "/tmp/run".into(),
//!     scenario_dir: ".".into(),
//!     seed: 7,
//!     client: None,
//!     cancel,
//!     completed: Default::default(),
//! };
//! let out = run(&scenario, opts).await;
//! println!("{}: history in {}", out.record.end.status(), out.history.display());
//! # }
//! ```

mod build;
pub mod client;
pub mod clock;
pub mod containment;
pub mod context;
pub mod dataset;
pub mod disk;
pub mod doctor;
pub mod environment;
pub mod faults;
pub mod files;
pub mod harness;
pub mod logs;
pub mod metrics;
pub mod netns;
pub mod plan;
pub mod pools;
pub mod recorder;
pub mod resume;
mod run;
pub mod snapshot;
pub mod steps;
pub mod supervisor;
pub mod triggers;
pub mod workload;

pub use client::{Client, Operation, Outcome, Rendered};
pub use run::{
    run, RunEnd, RunOptions, RunOutput, RunRecord, ServiceOutput, DEFAULT_DURATION, HISTORY, RUN_RECORD, STATES,
};
pub use supervisor::kill_all_groups;
