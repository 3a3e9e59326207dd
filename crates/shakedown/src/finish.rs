//! The one finishing path: from a run directory's files to checked results
//! and every output, written once.
//!
//! A run streams `history.jsonl` and its logs while it runs and writes
//! `run.json` (how it ended, errors, resource metrics) and `states.json` when
//! it ends. Finishing reads only those files, so `shakedown run` and
//! `shakedown report RUN_DIR` (which re-checks a directory, even one whose
//! harness was killed) are the same code: checks run on what is on disk,
//! off the async runtime, and a check that panics is `unknown` with the
//! reason. `report.json`, `junit.xml` and `report.html` are then written
//! from one set of results, the baseline comparison included.

use crate::exec::{checks_for, Error, Finished};
use shakedown_check::{CheckInput, CheckResult, Verdict};
use shakedown_history::logs::{read_captured, Keep, LogMatch, Logs};
use shakedown_history::metrics::Metrics;
use shakedown_history::state::Snapshot;
use shakedown_history::{History, Recorded};
use shakedown_report::{Report, RunMeta};
use shakedown_runner::{RunEnd, RunRecord};
use shakedown_spec::{CheckKind, Scenario};
use std::path::Path;
use std::sync::Arc;

/// Compares a finished run's report with a stored baseline; the result is
/// one more check (see `--baseline`).
pub type BaselineFn = dyn Fn(&Report) -> Option<CheckResult> + Send + Sync;

/// The largest `history.jsonl` (and `states.json`) a run directory may hold
/// to be checked; a run writes far less (a long run at 3k ops/s, about 1 GiB an hour).
pub const MAX_HISTORY_BYTES: u64 = 16 << 30;
/// The largest `run.json`.
const MAX_RECORD_BYTES: u64 = 64 << 20;
/// Lines of each log shown in reports.
const LOG_TAIL_LINES: usize = 20;
/// Log entries a run's log checks may keep in memory, matched entries in all.
pub const MAX_MATCHED_LOG_ENTRIES: usize = 100_000;

/// How finishing goes beyond the scenario and the directory.
#[derive(Clone, Default)]
pub struct FinishOptions {
    pub baseline: Option<Arc<BaselineFn>>,
}

/// What a run directory holds, read back.
struct Stored {
    record: Option<RunRecord>,
    history: Recorded,
    states: Vec<Snapshot>,
}

/// Checks the run in `run_dir` (a run of `s`) from its files, writes
/// `report.json`, `junit.xml` and `report.html`, and returns the result.
pub fn finish(s: &Scenario, run_dir: &Path, opts: &FinishOptions) -> Result<Finished, Error> {
    let stored = read_stored(run_dir)?;
    let end = run_end(&stored);
    let history = stored.history.history;
    let mut metrics = Metrics::of_history(&history);
    let record_metrics = stored.record.as_ref().map(|r| r.metrics.clone()).unwrap_or_default();
    metrics.extend(record_metrics);
    let checks = match &end {
        RunEnd::Completed | RunEnd::Died(_) => judge(s, run_dir, &history, &stored.states, &metrics),
        RunEnd::Unsupported(why) => all_unknown(s, &format!("not run: {why}"), why),
        RunEnd::Failed(_) | RunEnd::Interrupted => Vec::new(),
    };
    let mut errors = stored.record.as_ref().map(|r| r.errors.clone()).unwrap_or_default();
    match &end {
        RunEnd::Failed(why) => errors.push(why.clone()),
        RunEnd::Interrupted => errors.push("interrupted".into()),
        RunEnd::Unsupported(why) => errors.push(format!("unsupported on this machine: {why}")),
        RunEnd::Died(why) => errors.push(why.clone()),
        RunEnd::Completed => {}
    }
    let services = stored.record.as_ref().map(|r| r.services.clone()).unwrap_or_else(|| logs_on_disk(run_dir));
    let meta = RunMeta {
        scenario: s.name.clone(),
        seed: history.header.seed,
        matrix: s.cell.clone(),
        started_at: meta_text(&history, "started_at"),
        duration_ms: stored.record.as_ref().map_or_else(|| last_event_ms(&history), |r| r.elapsed_ms),
        run_dir: run_dir.display().to_string(),
        services: services
            .iter()
            .map(|svc| (svc.name.clone(), svc.log.clone(), log_tail(&run_dir.join(&svc.log), LOG_TAIL_LINES)))
            .collect(),
        errors,
        metrics,
        end: end.status().to_string(),
    };
    let mut report = Report::build(meta, &history, checks);
    if let Some(result) = opts.baseline.as_ref().and_then(|compare| compare(&report)) {
        report.verdict = report.verdict.combine(result.verdict);
        report.checks.push(result);
    }
    write_outputs(run_dir, &history, &report)?;
    Ok(Finished { report, history, run_dir: run_dir.to_path_buf(), end })
}

/// Reads `run.json`, `history.jsonl` and `states.json`; a missing
/// `run.json` means the harness died (not an error), a missing or broken
/// history is one.
fn read_stored(run_dir: &Path) -> Result<Stored, Error> {
    use std::io::Read;
    let bad = |path: &Path, why: String| Error::Stored { path: path.display().to_string(), why };
    let record_path = run_dir.join(shakedown_runner::RUN_RECORD);
    let record = match shakedown_spec::read_text_file(&record_path, MAX_RECORD_BYTES) {
        Ok(text) => Some(serde_json::from_str::<RunRecord>(&text).map_err(|e| bad(&record_path, e.to_string()))?),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(bad(&record_path, e.to_string())),
    };
    let history_path = run_dir.join(shakedown_runner::HISTORY);
    let file = shakedown_spec::open_regular(&history_path, MAX_HISTORY_BYTES)
        .map_err(|e| bad(&history_path, e.to_string()))?;
    let capped = std::io::BufReader::new(file.take(MAX_HISTORY_BYTES));
    let history = shakedown_history::read_recorded(capped).map_err(|e| bad(&history_path, e.to_string()))?;
    let states_path = run_dir.join(shakedown_runner::STATES);
    let states = match shakedown_spec::read_text_file(&states_path, MAX_HISTORY_BYTES) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| bad(&states_path, e.to_string()))?,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(bad(&states_path, e.to_string())),
    };
    Ok(Stored { record, history, states })
}

/// How the run ended: as `run.json` says when the history closed with its
/// end event; otherwise the harness died and the history is a prefix.
fn run_end(stored: &Stored) -> RunEnd {
    let history = &stored.history.history;
    match (&stored.record, history.end()) {
        (Some(record), Some(_)) => record.end.clone(),
        _ => {
            let cut = stored.history.cut_line.map(|l| format!(", its line {l} cut mid-write")).unwrap_or_default();
            RunEnd::Died(format!(
                "the harness stopped before the run finished (history.jsonl has no end event{cut}); \
                 the checks judged the {} events recorded before it died",
                history.events.len()
            ))
        }
    }
}

/// Every check the scenario asks for, on the history, logs, states and metrics.
fn judge(s: &Scenario, run_dir: &Path, history: &History, states: &[Snapshot], metrics: &Metrics) -> Vec<CheckResult> {
    let logs = read_logs(s, run_dir, &log_matchers(s));
    let input = CheckInput::new(history).with_logs(&logs).with_states(states).with_metrics(metrics);
    let mut results = shakedown_check::run_checks(&checks_for(s), &input);
    results.iter_mut().for_each(|r| shakedown_check::linear::explain(r, history));
    for (result, spec) in results.iter_mut().zip(&s.check) {
        // Without faults (`--no-faults`, say) there are no windows to cover.
        if let Some(min_ok) = spec.during_faults.filter(|_| !s.fault.is_empty()) {
            shakedown_check::vacuity::guard_during_faults(result, history, min_ok);
        }
    }
    results.extend(crate::exec::checkpoints(s, history, &logs));
    results
}

/// Every check unknown, for a run that could not inject its faults.
fn all_unknown(s: &Scenario, summary: &str, why: &str) -> Vec<CheckResult> {
    checks_for(s)
        .iter()
        .map(|(name, check)| {
            let details = serde_json::json!({ "unsupported": why });
            let mut r = CheckResult::new(check.kind(), Verdict::Unknown, summary, details);
            r.name = name.clone();
            r
        })
        .collect()
}

/// What the scenario's log checks look for; nothing when it has none.
fn log_matchers(s: &Scenario) -> Vec<LogMatch> {
    let mut out = Vec::new();
    for c in &s.check {
        match c.kind {
            CheckKind::LogSequence => {
                out.extend(c.steps.iter().flat_map(|st| st.get_ref()).map(shakedown_runner::triggers::log_match));
            }
            CheckKind::LogSpacing | CheckKind::LogAbsent => {
                out.extend(c.entry.as_ref().map(|e| shakedown_runner::triggers::log_match(e.get_ref())));
            }
            _ => {}
        }
    }
    out
}

/// The run's captured output as log entries: each `logs/NAME.log`, parsed
/// with its service's `log_format` (plain for drivers and builds), keeping
/// the entries `matching` finds and the last lines of each source, so memory
/// stays bounded whatever the services printed.
pub fn read_logs(s: &Scenario, run_dir: &Path, matching: &[LogMatch]) -> Logs {
    let mut logs = Logs::default();
    let Ok(dir) = std::fs::read_dir(run_dir.join("logs")) else { return logs };
    let mut files: Vec<std::path::PathBuf> =
        dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "log")).collect();
    files.sort();
    let keep = Keep { matching, tail_per_source: LOG_TAIL_LINES, max_matched: MAX_MATCHED_LOG_ENTRIES };
    for path in files {
        let Some(source) = path.file_stem().map(|n| n.to_string_lossy().into_owned()) else { continue };
        let Ok(file) = std::fs::File::open(&path) else { continue };
        let format = shakedown_runner::triggers::log_format(s, &source);
        // Entries are placed by when shakedown received them, all on one clock:
        // services' own timestamps (millisecond wall-clock text) reorder events
        // a millisecond apart across sources.
        if let Err(e) = read_captured(std::io::BufReader::new(file), &source, &format, keep, &mut logs) {
            tracing::warn!("failed to read {}: {e}", path.display());
        }
    }
    logs.sorted()
}

/// The last `n` lines of a log file, reading only its end.
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 256 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else { return Vec::new() };
    let len = file.metadata().map_or(0, |m| m.len());
    let from = len.saturating_sub(WINDOW);
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.take(WINDOW).read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<&str> = text.lines().collect();
    if from > 0 && !lines.is_empty() {
        // The window's first line is probably the end of a longer one.
        lines.remove(0);
    }
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.to_string()).collect()
}

/// The logs a run directory holds, for a run whose `run.json` is missing.
fn logs_on_disk(run_dir: &Path) -> Vec<shakedown_runner::ServiceOutput> {
    let Ok(dir) = std::fs::read_dir(run_dir.join("logs")) else { return Vec::new() };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".log")).map(str::to_string))
        .collect();
    names.sort();
    names.into_iter().map(|name| shakedown_runner::ServiceOutput { log: format!("logs/{name}.log"), name }).collect()
}

fn meta_text(history: &History, key: &str) -> String {
    history.header.meta.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string()
}

/// The time of the last event, for a run that did not say how long it took.
fn last_event_ms(history: &History) -> u64 {
    history.events.last().map_or(0, |e| e.time_ns / 1_000_000)
}

/// Writes `report.json`, `junit.xml` and `report.html`.
fn write_outputs(run_dir: &Path, history: &History, report: &Report) -> Result<(), Error> {
    let io = |e: shakedown_report::ReportError| Error::RunDir {
        path: run_dir.display().to_string(),
        source: std::io::Error::other(e),
    };
    report.write_json(&run_dir.join("report.json")).map_err(io)?;
    shakedown_report::write_junit(report, &run_dir.join("junit.xml")).map_err(io)?;
    shakedown_report::write_html(report, history, &run_dir.join("report.html")).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_reads_only_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        assert_eq!(log_tail(&path, 2), ["line 99998", "line 99999"]);
        assert!(log_tail(&dir.path().join("missing.log"), 2).is_empty());
    }
}
