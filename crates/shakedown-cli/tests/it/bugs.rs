//! Every check catches its testbed bug in a real scenario and passes the
//! correct build; each rejection's details name the offending operations.

use crate::common::{repo_root, run_text, stderr};

/// Runs `examples/checks/<scenario>.toml`, with `--bug <bug>` added to the
/// testbed's command when given; returns the exit code and report.
fn run(scenario: &str, bug: Option<&str>) -> (Option<i32>, serde_json::Value, String) {
    let mut text = std::fs::read_to_string(repo_root().join(format!("examples/checks/{scenario}.toml"))).unwrap();
    if let Some(bug) = bug {
        let switched = text.replace("\"{dir}/data\"]", &format!("\"{{dir}}/data\", \"--bug\", \"{bug}\"]"));
        assert_ne!(switched, text, "the scenario starts a testbed whose command can take --bug");
        text = switched;
    }
    let (o, report) = run_text(&text, &[]);
    (o.status.code(), report, stderr(&o))
}

/// The correct build passes; the buggy one fails this check, and its details
/// name operations (with history index and process).
#[track_caller]
fn catches(scenario: &str, bug: &str, kind: &str) {
    let (code, r, err) = run(scenario, None);
    assert_eq!(code, Some(0), "{scenario} without bugs must pass:\n{err}");
    let (code, r_bug, err) = run(scenario, Some(bug));
    assert_eq!(code, Some(1), "{scenario} with --bug {bug} must fail:\n{err}");
    let check = r_bug["checks"].as_array().unwrap().iter().find(|c| c["kind"] == kind).expect("the check ran");
    assert_eq!(check["verdict"], "invalid", "{check}");
    let details = check["details"].to_string();
    assert!(
        details.contains("\"index\"") && details.contains("\"process\""),
        "the details name operations: {details:.600}"
    );
    let valid = r["checks"].as_array().unwrap().iter().find(|c| c["kind"] == kind).unwrap();
    assert_eq!(valid["verdict"], "valid");
}

#[test]
fn linearizable_register_catches_stale_reads() {
    catches("register", "stale-read", "linearizable");
}

#[test]
fn a_linearizability_counterexample_shows_the_ops_before_the_blocked_one() {
    let (code, r, err) = run("register", Some("stale-read"));
    assert_eq!(code, Some(1), "{err}");
    let details = &r["checks"][0]["details"];
    let tail = details["prefix_tail"].as_array().expect("the prefix's last ops in full");
    assert!(!tail.is_empty() && tail.len() <= 10, "{details}");
    let prefix = details["linearized_prefix"].as_array().unwrap();
    assert_eq!(tail.last().unwrap()["index"], *prefix.last().unwrap(), "the tail ends where the prefix does");
    assert!(tail.iter().all(|op| op["f"].is_string() && op.get("result").is_some()));
    assert_eq!(details["blocked"]["f"], "read");
}

#[test]
fn linearizable_cas_register_catches_a_non_atomic_cas() {
    catches("cas", "racy-cas", "linearizable");
}

#[test]
fn total_queue_catches_jobs_lost_on_kill() {
    catches("queue", "lost-on-kill", "total-queue");
}

#[test]
fn total_queue_catches_double_claims() {
    catches("queue-claims", "double-claim", "total-queue");
}

#[test]
fn unique_ids_catches_ids_repeated_after_restart() {
    catches("ids", "repeat-after-restart", "unique-ids");
}

#[test]
fn counter_catches_double_applied_retries() {
    catches("counter", "double-apply", "counter");
}

#[test]
fn set_full_catches_lost_writes() {
    catches("set-full", "lost-write", "set-full");
}

#[test]
fn read_your_writes_catches_stale_reads() {
    catches("read-your-writes", "stale-read", "read-your-writes");
}

#[test]
fn bank_catches_non_atomic_transfers() {
    catches("bank", "non-atomic-transfer", "bank");
}

#[test]
fn monotonic_catches_reads_from_a_lagging_replica() {
    catches("monotonic", "stale-replica-read", "monotonic");
}
