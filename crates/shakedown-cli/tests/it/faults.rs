//! Every environment fault catches a testbed bug that only it exposes: each
//! example in `examples/faults/` runs a buggy build and must fail (exit 1);
//! the same file passes without its faults (`--no-faults`) and without the bug.

use crate::common::{repo_root, run_text, stderr};

/// Runs `examples/faults/<name>.toml`, without `--bug <bug>` when `bug` is
/// false; returns the exit code, the report and stderr.
fn run(name: &str, bug: &str, with_bug: bool, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut text = std::fs::read_to_string(repo_root().join(format!("examples/faults/{name}.toml"))).unwrap();
    let switch = format!(", \"--bug\", \"{bug}\"");
    assert!(text.contains(&switch), "examples/faults/{name}.toml runs the testbed with --bug {bug}");
    if !with_bug {
        text = text.replace(&switch, "");
    }
    let (o, report) = run_text(&text, args);
    (o.status.code(), report, stderr(&o))
}

fn verdict<'r>(report: &'r serde_json::Value, kind: &str) -> &'r serde_json::Value {
    let checks = report["checks"].as_array().expect("the report lists checks");
    &checks.iter().find(|c| c["kind"] == kind).expect("the check ran")["verdict"]
}

/// The fault makes the buggy build fail `kind`; without the fault, or without
/// the bug, the same scenario passes.
#[track_caller]
fn exposes(name: &str, bug: &str, kind: &str) {
    let (code, r, err) = run(name, bug, true, &[]);
    assert_eq!(code, Some(1), "{name} with --bug {bug} and its fault must fail:\n{err}");
    assert_eq!(verdict(&r, kind), "invalid", "{}", r["checks"]);
    let faults = r["faults"].to_string();
    assert!(!faults.is_empty() && faults != "null" && faults != "[]", "the report lists the faults applied: {faults}");
    let (code, r, err) = run(name, bug, true, &["--no-faults"]);
    assert_eq!(code, Some(0), "{name} with --bug {bug} but no faults must pass:\n{err}");
    assert_eq!(verdict(&r, kind), "valid");
    let (code, r, err) = run(name, bug, false, &[]);
    assert_eq!(code, Some(0), "{name} with its fault but without the bug must pass:\n{err}\n{}", r["checks"]);
}

#[test]
fn latency_exposes_a_replica_acked_on_timeout() {
    exposes("latency", "ack-on-timeout", "linearizable");
}

#[test]
fn bandwidth_exposes_a_replica_acked_on_timeout() {
    exposes("bandwidth", "ack-on-timeout", "linearizable");
}

#[test]
fn slow_connect_exposes_a_replica_acked_on_timeout() {
    exposes("slow-connect", "ack-on-timeout", "linearizable");
}

#[test]
fn timeout_exposes_a_replica_acked_on_timeout() {
    exposes("timeout", "ack-on-timeout", "linearizable");
}

#[test]
fn reset_peer_exposes_a_replica_acked_on_timeout() {
    exposes("reset-peer", "ack-on-timeout", "linearizable");
}

#[test]
fn slicer_exposes_a_replica_acked_on_timeout() {
    exposes("slicer", "ack-on-timeout", "linearizable");
}

#[test]
fn limit_data_exposes_a_replica_acked_on_timeout() {
    exposes("limit-data", "ack-on-timeout", "linearizable");
}

#[test]
fn a_down_link_exposes_a_replica_acked_on_timeout() {
    exposes("down", "ack-on-timeout", "linearizable");
}

#[test]
fn aborted_http_answers_expose_a_counter_that_ignores_idempotency_keys() {
    exposes("http-abort", "double-apply", "counter");
}

#[test]
fn a_clock_step_back_exposes_time_based_ids() {
    exposes("clock", "clock-ids", "unique-ids");
}

#[test]
fn a_full_disk_exposes_writes_acknowledged_despite_enospc() {
    exposes("disk-full", "ignore-write-errors", "set");
}

/// 429s with Retry-After reach the client, which honours them and retries;
/// a correct service stays correct, and the throttled ops are in the history.
#[test]
fn throttling_is_injected_and_retried() {
    let text = std::fs::read_to_string(repo_root().join("examples/faults/http-throttle.toml")).unwrap();
    let (o, r) = run_text(&text, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(verdict(&r, "counter"), "valid");
    let no_retry = text.replace("retry = { attempts = 3, on = [429], backoff = \"10ms\" }\n", "");
    let (o, r) = run_text(&no_retry, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let fails = r["ops"]["by_result"]["fail"].as_u64().unwrap_or_default();
    assert!(fails > 0, "without retries some ops are refused with 429: {}", r["ops"]);
}

/// A scenario whose faults never overlapped an ok operation is unknown, not valid.
#[test]
fn a_check_with_no_ok_ops_during_faults_is_unknown() {
    let text = std::fs::read_to_string(repo_root().join("examples/faults/latency.toml")).unwrap();
    // The fault fires after the workload has ended, so no op overlaps it.
    let text = text.replace(", \"--bug\", \"ack-on-timeout\"", "").replace("at = [\"1s\"]", "at = [\"30s\"]");
    let (o, r) = run_text(&text, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(verdict(&r, "linearizable"), "unknown");
}
