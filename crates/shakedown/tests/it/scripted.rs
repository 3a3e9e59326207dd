//! The scripted examples end to end: `examples/lock-failover` (seed 004's
//! three failover phases) and `examples/sync` (seed 002's sync scenarios)
//! pass on the correct testbeds, and each bug switch makes the check that
//! is meant to catch it invalid, with details naming what went wrong.

use crate::common::{repo_root, shakedown, stderr, write_file};
use serde_json::Value;
use std::path::Path;

/// One run of a scenario file (every matrix cell): the exit code, stderr
/// and each cell's report.
struct Runs {
    code: Option<i32>,
    stderr: String,
    reports: Vec<Value>,
}

impl Runs {
    /// The check named `name` in every cell's report.
    #[track_caller]
    fn checks(&self, name: &str) -> Vec<&Value> {
        assert!(!self.reports.is_empty(), "no report was written:\n{}", self.stderr);
        self.reports
            .iter()
            .map(|r| {
                let checks = r["checks"].as_array().unwrap_or_else(|| panic!("no checks: {r:#}"));
                checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check `{name}`: {r:#}"))
            })
            .collect()
    }

    /// Every check of every cell is valid, and the run exited 0.
    #[track_caller]
    fn assert_all_valid(&self) {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        for r in &self.reports {
            for c in r["checks"].as_array().unwrap() {
                assert_eq!(c["verdict"], "valid", "{}: {c:#}", r["scenario"]);
            }
        }
    }
}

/// Runs `examples/<file>` with each `(from, to)` text replacement applied
/// (each must change the text); `--out` is a fresh directory.
fn run_example(file: &str, replacements: &[(&str, &str)]) -> Runs {
    let mut text = std::fs::read_to_string(repo_root().join("examples").join(file)).unwrap();
    for (from, to) in replacements {
        let changed = text.replace(from, to);
        assert_ne!(changed, text, "{file} contains {from:?}");
        text = changed;
    }
    let tmp = tempfile::tempdir().unwrap();
    let name = Path::new(file).file_name().unwrap().to_str().unwrap();
    let path = write_file(tmp.path(), name, &text);
    let out = tmp.path().join("out");
    let o = shakedown(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    Runs { code: o.status.code(), stderr: stderr(&o), reports: reports_below(&out) }
}

/// The report of every run below `out` (one per matrix cell), in cell order.
fn reports_below(out: &Path) -> Vec<Value> {
    let read = |dir: &Path| {
        std::fs::read_to_string(dir.join("report.json")).ok().map(|t| serde_json::from_str(&t).expect("JSON"))
    };
    if let Some(one) = read(out) {
        return vec![one];
    }
    let Ok(suite) = std::fs::read_to_string(out.join("suite.json")) else { return Vec::new() };
    let suite: Value = serde_json::from_str(&suite).expect("suite.json is JSON");
    suite["scenarios"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| read(Path::new(s["run_dir"].as_str()?)))
        .collect()
}

// ---- examples/lock-failover ----

const FAILOVER: &str = "lock-failover/failover.toml";

#[test]
fn lock_failover_is_valid_in_every_phase_and_the_whole_directory_runs_from_one_command() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dir = repo_root().join("examples/lock-failover");
    let o = shakedown(&["run", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let runs = Runs { code: o.status.code(), stderr: stderr(&o), reports: reports_below(&out) };
    runs.assert_all_valid();
    let cells: Vec<&str> = runs.reports.iter().map(|r| r["matrix"]["phase"].as_str().unwrap_or("?")).collect();
    assert_eq!(cells, ["handler-start", "before-save", "after-save"], "{}", runs.stderr);
    let sequence = runs.checks("error on the primary, then success on the backup");
    assert!(sequence.iter().all(|c| c["summary"] == "all 7 steps appeared in order"), "{sequence:?}");
}

#[test]
fn one_failover_cell_prints_the_client_log_on_success_with_log_summary_always() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let file = repo_root().join("examples").join(FAILOVER);
    let args = ["--matrix", "phase=after-save", "--log-summary", "always"];
    let o = shakedown(&[&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()][..], &args].concat());
    let runs = Runs { code: o.status.code(), stderr: stderr(&o), reports: reports_below(&out) };
    runs.assert_all_valid();
    assert_eq!(runs.reports.len(), 1);
    let printed = &runs.stderr;
    assert!(printed.contains("recent log entries"), "{printed}");
    for line in ["client.hold", "client.http.error", "client.failover", "client.http.success"] {
        assert!(printed.lines().any(|l| l.contains(" client ") && l.contains(line)), "{line} in:\n{printed}");
    }
}

#[test]
fn lock_failover_catches_a_client_that_does_not_fail_over() {
    let runs = run_example(
        FAILOVER,
        &[("\"--owner\", \"updater\",", "\"--owner\", \"updater\", \"--bug\", \"no-failover\",")],
    );
    assert_eq!(runs.code, Some(1), "{}", runs.stderr);
    assert_eq!(runs.reports.len(), 3, "{}", runs.stderr);
    for (steps, phase_op) in runs.checks("steps").iter().zip(["read", "write", "release"]) {
        assert_eq!(steps["verdict"], "invalid", "{steps:#}");
        let summary = steps["summary"].as_str().unwrap();
        assert!(
            summary.contains("update through the primary")
                && summary.contains(&format!("failed to {phase_op} on any endpoint")),
            "the failed step names the update and what it could not do: {summary}"
        );
    }
    for sequence in runs.checks("error on the primary, then success on the backup") {
        assert_eq!(sequence["verdict"], "invalid", "{sequence:#}");
        let summary = sequence["summary"].as_str().unwrap();
        assert!(summary.contains("failover") && summary.contains("never appeared after step 4"), "{summary}");
        let recent = sequence["details"]["recent"].to_string();
        assert!(recent.contains("client.http.error"), "the recent entries show the error: {recent:.400}");
    }
}
