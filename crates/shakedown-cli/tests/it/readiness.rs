//! Readiness probes tell the truth: under network namespaces a `tcp` probe
//! reaches the service itself inside its namespace (not shakedown's loopback
//! forwarder, which accepts at once), and a failing `exec` probe's own words
//! are in the error.

use crate::common::{run_text, stderr};

/// Two kv nodes in their own namespaces; `late` opens its port only after 2 s.
const LATE_PORT: &str = r#"
name = "late-port"
duration = "300ms"
[network]
namespaces = true
[service.early]
command = ["shakedown-testbed", "kv", "--listen", "{host}:{port}", "--data", "{dir}/data"]
ready = { tcp = "{port}", timeout = "20s" }
[service.late]
command = ["sh", "-c", "sleep 2; exec shakedown-testbed kv --listen {host}:{port} --data {dir}/data"]
ready = { tcp = "{port}", timeout = "20s" }
"#;

/// Seconds from a service's `started` to its `ready` event in the run's history.
fn ready_after_s(run_dir: &std::path::Path, service: &str) -> f64 {
    let text = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    let at = |event: &str| {
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["type"] == "service" && e["service"] == service && e["event"] == event)
            .and_then(|e| e["time_ns"].as_u64())
            .unwrap_or_else(|| panic!("{service} has no {event} event"))
    };
    (at("ready") - at("started")) as f64 / 1e9
}

#[test]
fn a_namespaced_service_is_not_ready_before_its_port_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let path = crate::common::write_file(tmp.path(), "s.toml", LATE_PORT);
    let out = tmp.path().join("run");
    let o = crate::common::shakedown(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    // No workload: the stats check has nothing to judge, which is unknown.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let late = ready_after_s(&out, "late");
    assert!(late >= 2.0, "the late service was taken as ready after {late:.3} s, before its port opened");
    assert!(late < 10.0, "and found ready soon after: {late:.3} s");
    assert!(ready_after_s(&out, "early") < 2.0);
}

#[test]
fn a_failing_exec_probe_shows_what_it_printed() {
    let scenario = r#"
name = "probe-says-why"
[service.db]
command = ["sleep", "60"]
ready = { exec = ["sh", "-c", "echo 'db:5432 - no response (connection refused)' >&2; exit 2"], timeout = "1s" }
"#;
    let (o, report) = run_text(scenario, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("exit code 2; it printed: db:5432 - no response (connection refused)"), "{err}");
    assert_eq!(report["end"], "failed");
}
