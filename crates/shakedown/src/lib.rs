//! shakedown as a library: build or load a scenario, run it against real
//! processes, check the history and get a report, from `cargo test`.
//!
//! ```no_run
//! use shakedown::{Action, ScenarioBuilder, RunConfig, Verdict};
//!
//! let scenario = ScenarioBuilder::new("kv-set")
//!     .service("kv", ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"])
//!     .ready_log("kv", "listening")
//!     .http_client("http://127.0.0.1:{service.kv.port}")
//!     .clients(3)
//!     .duration("2s")
//!     .action(Action::new("add").value("{seq}").request("POST", "/set/s/{value}"))
//!     .action(Action::new("read").weight(0).request("GET", "/set/s").result("body:json"))
//!     .finally("read")
//!     .fault_every("kill", "kv", "700ms")
//!     .check("set")
//!     .build()
//!     .unwrap();
//! let finished = shakedown::run_blocking(&scenario, RunConfig::default()).unwrap();
//! assert_eq!(finished.report.verdict, Verdict::Valid);
//! ```

mod builder;
mod exec;
mod exit;
mod finish;
mod offline;
mod rundir;

pub use builder::{Action, ScenarioBuilder};
pub use exec::{checks_for, exit_code, run, run_blocking, Error, Finished, RunConfig};
pub use exit::ExitCode;
pub use finish::{finish, log_tail, read_logs, BaselineFn, FinishOptions};
pub use offline::{check_history_text, FileVerdict};
pub use rundir::{default_run_dir, runs_base, write_resolved_scenario, RunsBase};
pub use shakedown_check::{CheckResult, Verdict};
pub use shakedown_history::redact;
pub use shakedown_report::Report;
pub use shakedown_runner::{Client, Operation, Outcome, RunEnd};
pub use shakedown_spec::Scenario;

/// The crates behind the facade, for what it does not re-export.
pub mod crates {
    pub use shakedown_check as check;
    pub use shakedown_history as history;
    pub use shakedown_report as report;
    pub use shakedown_runner as runner;
    pub use shakedown_spec as spec;
}
