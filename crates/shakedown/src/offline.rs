//! Checking histories that already exist (ours, Jepsen's, Porcupine's):
//! what `shakedown check` does for each file.

use shakedown_check::linear::LinearizableCheck;
use shakedown_check::{Check, CheckInput, CheckResult, Verdict};
use shakedown_history::import::{read_any, Format, ImportError};
use std::time::{Duration, Instant};

/// The verdict on one history file.
#[derive(Debug, Clone)]
pub struct FileVerdict {
    pub file: String,
    pub format: Format,
    /// Operations (invocations) in the history.
    pub ops: usize,
    /// Checking time, parsing excluded.
    pub elapsed: Duration,
    pub result: CheckResult,
}

impl FileVerdict {
    /// The JSON line `shakedown check --format json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let valid = match self.result.verdict {
            Verdict::Valid => serde_json::Value::Bool(true),
            Verdict::Invalid => serde_json::Value::Bool(false),
            Verdict::Unknown => serde_json::Value::String("unknown".into()),
        };
        serde_json::json!({
            "file": self.file,
            "valid": valid,
            "ops": self.ops,
            "elapsed_ms": self.elapsed.as_secs_f64() * 1000.0,
            "format": self.format.name(),
            "model": self.result.details.get("model").cloned().unwrap_or(serde_json::Value::Null),
            "summary": self.result.summary,
            "details": self.result.details,
        })
    }
}

/// Parses `text` (named `file` in errors) and checks it for linearizability
/// against `model` within `timeout`.
pub fn check_history_text(
    file: &str,
    text: &str,
    format: Option<Format>,
    model: &str,
    timeout: Option<Duration>,
) -> Result<FileVerdict, ImportError> {
    let (history, format) = read_any(text, format, file)?;
    let check = LinearizableCheck { timeout, ..LinearizableCheck::new(model) };
    let start = Instant::now();
    let mut result = check.check(&CheckInput::new(&history));
    let elapsed = start.elapsed();
    shakedown_check::linear::explain(&mut result, &history);
    Ok(FileVerdict { file: file.to_string(), format, ops: history.ops().len(), elapsed, result })
}
