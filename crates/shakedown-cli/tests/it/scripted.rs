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
    assert!(sequence.iter().all(|c| c["summary"] == "all 5 steps appeared in order"), "{sequence:?}");
    assert_eq!(runs.checks("the backup served the update").len(), 3);
    assert_eq!(runs.checks("the primary stopped during the hold").len(), 3);
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
        assert!(summary.contains("failover") && summary.contains("never appeared after step 3"), "{summary}");
        let recent = sequence["details"]["recent"].to_string();
        assert!(recent.contains("client.http.error"), "the recent entries show the error: {recent:.400}");
    }
    for backup in runs.checks("the backup served the update") {
        assert_eq!(backup["verdict"], "invalid", "no second session on the backup: {backup:#}");
    }
    for stopped in runs.checks("the primary stopped during the hold") {
        assert_eq!(stopped["verdict"], "valid", "the script did stop the primary: {stopped:#}");
    }
}

// ---- examples/sync ----

/// Every scenario file of `examples/sync`, by scenario name.
const SYNC_SCENARIOS: [&str; 8] = [
    "sync-burst",
    "sync-field-merge",
    "sync-herd",
    "sync-lost-reply",
    "sync-partition",
    "sync-rapid",
    "sync-restart",
    "sync-undo",
];

/// The checks `_common/checks.toml` gives every sync scenario, and the automatic one.
const SYNC_CHECKS: [&str; 10] = [
    "converge",
    "action logs agree",
    "event-counts",
    "sequence",
    "causal-order",
    "own-writes",
    "no pending events",
    "no duplicated events on the server",
    "idempotent",
    "steps",
];

/// Copies `examples/sync` into a fresh directory with each `(file, from,
/// to)` replacement applied (each must change its file), then runs `file`
/// there (a scenario file, or `.` for the whole directory).
fn run_sync_copy(file: &str, replacements: &[(&str, &str, &str)]) -> Runs {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sync");
    copy_dir(&repo_root().join("examples/sync"), &dir);
    for (name, from, to) in replacements {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let changed = text.replace(from, to);
        assert_ne!(changed, text, "{name} contains {from:?}");
        std::fs::write(&path, changed).unwrap();
    }
    let out = tmp.path().join("out");
    let target = dir.join(file);
    let o = shakedown(&["run", target.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    Runs { code: o.status.code(), stderr: stderr(&o), reports: reports_below(&out) }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The most `sync` operations that were in flight at once in a run's history.
fn max_concurrent_syncs(report: &Value) -> usize {
    let history = Path::new(report["run_dir"].as_str().unwrap()).join("history.jsonl");
    let text = std::fs::read_to_string(history).unwrap();
    let (mut open, mut most) = (0usize, 0usize);
    for line in text.lines().skip(1) {
        let event: Value = serde_json::from_str(line).unwrap();
        if event["f"] != "sync" {
            continue;
        }
        match event["type"].as_str() {
            Some("invoke") => open += 1,
            Some("ok" | "fail" | "info") => open = open.saturating_sub(1),
            _ => {}
        }
        most = most.max(open);
    }
    most
}

/// The client commands of the shared actions and of `field-merge.toml`'s own.
const WHOLE_ROW_MERGE: (&str, &str) = ("\"sync-client\",", "\"sync-client\", \"--bug\", \"whole-row-merge\",");
/// The server's command in `_common/sync.toml`.
const DUPLICATE_EVENT: (&str, &str) =
    ("\"--data\", \"{dir}/data\"]", "\"--data\", \"{dir}/data\", \"--bug\", \"duplicate-event-on-retry\"]");

#[test]
fn every_sync_scenario_is_valid_from_one_command_with_every_shared_check() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let dir = repo_root().join("examples/sync");
    let o = shakedown(&["run", dir.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let runs = Runs { code: o.status.code(), stderr: stderr(&o), reports: reports_below(&out) };
    runs.assert_all_valid();
    let names: Vec<&str> = runs.reports.iter().map(|r| r["scenario"].as_str().unwrap()).collect();
    assert_eq!(names, SYNC_SCENARIOS, "{}", runs.stderr);
    for check in SYNC_CHECKS {
        assert_eq!(runs.checks(check).len(), SYNC_SCENARIOS.len(), "{check} runs in every scenario");
    }
    // The checks judged something: states of every actor, and the scenario's own work.
    let converged: Vec<&str> = runs.checks("converge").iter().map(|c| c["summary"].as_str().unwrap()).collect();
    assert_eq!(converged.iter().filter(|s| **s == "3 states converged").count(), 1, "herd has carol: {converged:?}");
    assert!(converged.iter().all(|s| s.ends_with("states converged")), "{converged:?}");
    let by_name = |name: &str| runs.reports.iter().find(|r| r["scenario"] == name).unwrap();
    assert_eq!(by_name("sync-partition")["ops"]["by_action"]["edit"]["ok"], 100, "50 offline edits on each side");
    assert_eq!(by_name("sync-burst")["ops"]["by_action"]["edit"]["ok"], 20);
    let restart = by_name("sync-restart");
    let exec = &restart["ops"]["by_action"]["exec"];
    assert_eq!(exec["ok"], 1, "the sync while the server is down failed as expected: {exec}");
    let faults = by_name("sync-partition")["faults"].as_array().unwrap();
    assert!(faults.iter().any(|f| f["kind"] == "down"), "the link really went down: {faults:?}");
    assert_eq!(max_concurrent_syncs(by_name("sync-herd")), 3, "all three synced at once");
    let lost_reply = by_name("sync-lost-reply")["checks"].as_array().unwrap();
    let recognised = lost_reply.iter().find(|c| c["name"] == "the retry was recognised").unwrap();
    assert_eq!(recognised["verdict"], "valid", "the reply was lost and the retry deduplicated");
}

#[test]
fn whole_row_merge_loses_an_edit_and_the_field_merge_check_names_it() {
    let (from, to) = WHOLE_ROW_MERGE;
    let runs = run_sync_copy("field-merge.toml", &[("_common/sync.toml", from, to), ("field-merge.toml", from, to)]);
    assert_eq!(runs.code, Some(1), "{}", runs.stderr);
    let merge = runs.checks("field-merge")[0];
    assert_eq!(merge["verdict"], "invalid", "{merge:#}");
    let lost = merge["details"]["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 2, "alice's edit is lost in both actors' states: {lost:?}");
    for (l, actor) in lost.iter().zip(["alice", "bob"]) {
        assert_eq!(
            (&l["actor"], &l["entity"], &l["field"], &l["want"], &l["got"], &l["edited_by"]),
            (
                &Value::from(actor),
                &Value::from("shared"),
                &Value::from("status"),
                &Value::from("done"),
                &Value::from("open"),
                &Value::from("alice")
            ),
            "{l}"
        );
    }
    assert!(merge["summary"].as_str().unwrap().contains("shared.status = open, want done"), "{merge}");
    // Both actors replaced the row the same way: the bug is not a divergence.
    assert_eq!(runs.checks("converge")[0]["verdict"], "valid");
}

#[test]
fn a_duplicated_event_on_retry_is_caught_by_the_sql_checks_naming_the_event_ids() {
    let (from, to) = DUPLICATE_EVENT;
    let runs = run_sync_copy("lost-reply.toml", &[("_common/sync.toml", from, to)]);
    assert_eq!(runs.code, Some(1), "{}", runs.stderr);
    assert_eq!(runs.checks("steps")[0]["verdict"], "valid", "the push itself succeeded after its retry");
    let server = runs.checks("no duplicated events on the server")[0];
    assert_eq!(server["verdict"], "invalid", "{server:#}");
    let rows = server["details"]["got"]["-"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "each of alice's three events twice: {rows:?}");
    for row in rows {
        assert!(row[0].as_str().unwrap().starts_with("alice."), "an event id of alice's: {row}");
        assert_eq!(row[1], 2, "{row}");
    }
    let pulled = runs.checks("no duplicated events pulled")[0];
    assert_eq!(pulled["verdict"], "invalid");
    assert_eq!(pulled["details"]["wrong"], serde_json::json!(["alice", "bob"]), "both pulled the copies: {pulled}");
    let recognised = runs.checks("the retry was recognised")[0];
    assert_eq!(recognised["verdict"], "invalid", "the server never reported the retried ids as duplicates");
}
