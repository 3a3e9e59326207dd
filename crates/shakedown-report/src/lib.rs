//! Renderers for a finished run: the terminal summary, `report.json`, JUnit
//! XML and the self-contained `report.html`.
//!
//! [`Report::build`] gathers what the caller knows about the run ([`RunMeta`]),
//! the [`History`](shakedown_history::History) and the check results into one
//! serializable [`Report`]. Everything else here renders that value; nothing
//! spawns, connects or feeds back into the run.
//!
//! ```
//! use serde_json::json;
//! use shakedown_check::{Check, CheckInput, SetCheck, Verdict};
//! use shakedown_history::{Header, HistoryBuilder, OpType, ProcessId};
//! use shakedown_report::{junit_xml, render_summary, Report, RunMeta, Style};
//!
//! let mut b = HistoryBuilder::new(Header::new("kv-set", 42));
//! b.invoke(10, ProcessId(0), "alice", "add", json!(1));
//! b.complete(20, ProcessId(0), OpType::Ok, json!(null), None);
//! b.invoke(30, ProcessId(0), "alice", "read", json!(null));
//! b.complete(40, ProcessId(0), OpType::Ok, json!([1]), None);
//! let history = b.finish();
//!
//! let checks = vec![SetCheck::default().check(&CheckInput::new(&history))];
//! let meta = RunMeta { duration_ms: 1500, run_dir: "runs/1".into(), ..RunMeta::new("kv-set", 42) };
//! let report = Report::build(meta, &history, checks);
//! assert_eq!(report.verdict, Verdict::Valid);
//!
//! let text = render_summary(&report, Style { color: false });
//! assert!(text.starts_with("shakedown kv-set  seed 42  VALID  in 1.5s"));
//! assert!(text.contains("replay: shakedown run runs/1/scenario.toml --seed 42"));
//! assert!(junit_xml(&report).contains(r#"<testcase name="set""#));
//! ```

mod html;
mod json_text;
mod junit;
mod report;
mod summary;

#[cfg(test)]
mod fixture;

pub use html::{html_report, write_html};
pub use junit::{junit_xml, write_junit};
pub use report::{FaultRecord, Report, RunMeta, ServiceEventRecord, ServiceRecord};
pub use shakedown_check::OpCounts;
pub use summary::{render_summary, Style};

use std::path::PathBuf;

/// Why a report could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse report {}: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// Writes a whole file, owner-only, naming the path in the error. Callers
/// mask secrets first (see [`shakedown_history::redact`]).
fn write_file(path: &std::path::Path, text: &str) -> Result<(), ReportError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true).mode(0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|source| ReportError::Write { path: path.to_path_buf(), source })
}
