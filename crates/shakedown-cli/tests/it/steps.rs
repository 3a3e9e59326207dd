//! Scripted steps and triggers end to end: a real service stopped at the
//! point a command's log reaches, commands as actors, repeats, named faults
//! injected and healed, checkpoints, and a failing step that fails the run.

use crate::common::{report, run_text, shakedown, stderr, write_file};

const SCRIPT: &str = r#"
name = "steps"

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { log = "listening", timeout = "10s" }
log_format = "json"

[actor.alice]
[actor.bob]

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"
timeout = "1s"

[[action]]
f = "add"
weight = 0
value = "{seq}"
request = { method = "POST", path = "/set/s/{value}" }

[[action]]
f = "read"
weight = 0
request = { method = "GET", path = "/set/s" }
result = "body:json"

[[fault]]
name = "freeze"
kind = "pause"
target = "kv"
for = "10s"

# A holder waits at a phase until a file appears; the other branch sees the
# phase in the holder's log, stops kv, and releases the holder.
[[step]]
parallel = [
  { exec = ["sh", "-c", "echo '{{\"msg\":\"client.phase\",\"phase\":\"before-save\"}}'; i=0; while [ ! -e go ]; do sleep 0.01; i=$((i+1)); [ $i -gt 500 ] && exit 3; done; echo '{{\"msg\":\"released\"}}'"], actor = "alice", log = "holder" },
  { steps = [
      { wait = { log = { source = "holder", match = "client.phase", fields = { phase = "before-save" } } } },
      { stop = "kv" },
      { exec = ["touch", "{actor.home}/go"], actor = "alice" },
  ] },
]

[[step]]
start = "kv"

[[step]]
repeat = 3
steps = [{ action = "add", actor = "bob" }]

[[step]]
action = "read"

[[step]]
check = "set"

[[step]]
fault = "freeze"

[[step]]
heal = "freeze"

[[step]]
phase = "done"

[[step]]
action = "read"

[[check]]
kind = "set"

[[check]]
kind = "log-sequence"
steps = [
  { source = "holder", match = "client.phase" },
  { source = "kv", match = "shutting down" },
  { source = "holder", match = "released" },
  { source = "kv", match = "listening" },
]
"#;

#[test]
fn a_script_stops_a_service_at_a_logged_phase_and_every_step_is_recorded() {
    let (o, r) = run_text(SCRIPT, &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{r:#}", stderr(&o));
    let checks = r["checks"].as_array().unwrap();
    let by_name = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap_or_else(|| panic!("no {n}: {r:#}"));
    assert_eq!(by_name("steps")["verdict"], "valid");
    assert_eq!(by_name("log-sequence")["verdict"], "valid");
    assert_eq!(by_name("set@1")["verdict"], "valid", "the checkpoint ran on the history so far");
    // Three adds from the repeat, the exec steps and the final read, all in the history.
    assert_eq!(r["ops"]["by_action"]["add"]["ok"], 3, "{:#}", r["ops"]);
    assert_eq!(r["ops"]["by_action"]["read"]["ok"], 2, "{:#}", r["ops"]);
    assert_eq!(r["ops"]["by_action"]["exec"]["ok"], 2, "{:#}", r["ops"]);
    let faults = r["faults"].as_array().unwrap();
    assert!(faults.iter().any(|f| f["kind"] == "pause"), "the named fault ran: {faults:?}");
    assert!(
        faults.iter().all(|f| f["end_ns"].as_u64().unwrap() - f["start_ns"].as_u64().unwrap() < 9_000_000_000),
        "heal ended the pause early: {faults:?}"
    );
}

#[test]
fn a_step_whose_command_fails_ends_the_script_and_fails_the_run() {
    let text = SCRIPT.replace("echo '{{\\\"msg\\\":\\\"released\\\"}}'", "exit 7");
    assert_ne!(text, SCRIPT);
    let (o, r) = run_text(&text, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let steps = r["checks"].as_array().unwrap().iter().find(|c| c["name"] == "steps").unwrap();
    assert_eq!(steps["verdict"], "invalid");
    let summary = steps["summary"].as_str().unwrap();
    assert!(summary.contains("exit code 7") && summary.contains("as alice"), "{summary}");
    assert_eq!(r["ops"]["by_action"].get("add"), None, "nothing after the failed step ran: {:#}", r["ops"]);
}

#[test]
fn a_trigger_that_never_fires_fails_the_step_with_what_it_waited_for() {
    let text = SCRIPT.replace(
        "[[step]]\nphase = \"done\"\n",
        "[[step]]\nwait = { log = { source = \"kv\", match = \"never printed\" }, timeout = \"300ms\" }\n",
    );
    assert_ne!(text, SCRIPT);
    let (o, r) = run_text(&text, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let steps = r["checks"].as_array().unwrap().iter().find(|c| c["name"] == "steps").unwrap();
    let summary = steps["summary"].as_str().unwrap();
    assert!(summary.contains("kv: /never printed/") && summary.contains("300ms"), "{summary}");
}

#[test]
fn a_fault_fires_on_a_log_trigger() {
    let text = r#"
name = "trigger"
duration = "3s"
clients = 2

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { log = "listening", timeout = "10s" }
log_format = "json"

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"
timeout = "1s"

[[action]]
f = "add"
value = "{seq}"
request = { method = "POST", path = "/set/s/{value}" }

[[fault]]
kind = "kill"
target = "kv"
when = { ops = 50 }
for = "100ms"
"#;
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "s.toml", text);
    let out = tmp.path().join("run");
    let o = shakedown(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&out);
    let faults = r["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "fired once: {faults:?}");
    let history = std::fs::read_to_string(out.join("history.jsonl")).unwrap();
    let lines: Vec<&str> = history.lines().collect();
    let kill = lines.iter().position(|l| l.contains("\"kill\"")).expect("the kill is in the history");
    let ok_before = lines[..kill].iter().filter(|l| l.contains("\"ok\"")).count();
    assert!(
        ok_before >= 50,
        "the kill came after 50 completed ops, not before ({ok_before}):\n{}",
        lines[..kill.min(5)].join("\n")
    );
}
