//! The built-in clients and process faults against real processes: each
//! scenario must pass on the correct system and fail where the system is wrong.

use crate::common::{check, repo_root, run_text, stderr};
use std::process::Output;

/// Runs `text` with a fixed seed.
fn run(text: &str) -> (Output, serde_json::Value) {
    run_text(text, &["--seed", "5"])
}

const EXEC: &str = r#"
name = "exec-client"
ops = 40
clients = 2
finally = ["read"]

[actor.alice]
env = { GREETING = "hi {actor.name}" }
[actor.bob]

[client]
kind = "exec"
timeout = "2s"

[[action]]
f = "add"
value = "{seq}"
command = ["sh", "-c", "echo \"$1\" >> \"$HOME/set\"", "sh", "{value}"]

[[action]]
f = "read"
weight = 0
command = ["sh", "-c", "cat \"{run.dir}\"/actors/*/home/set"]
result = "stdout:lines"

[[action]]
f = "refuse"
weight = 1
command = ["sh", "-c", "echo no such entity >&2; exit 3"]
fail = { exit = [3], match = "no such entity" }

[[check]]
kind = "set"

[[check]]
kind = "unexpected"
"#;

#[test]
fn exec_client_maps_exits_to_ok_and_fail() {
    let (o, r) = run(EXEC);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(check(&r, "set")["verdict"], "valid");
    assert!(r["ops"]["by_action"]["refuse"]["fail"].as_u64().unwrap() > 0, "expected refusals are fail");
    assert_eq!(r["ops"]["by_action"]["refuse"]["ok"].as_u64().unwrap_or(0), 0);
}

#[test]
fn exec_client_flags_replies_outside_the_mappings() {
    // Exit 4 is neither ok (0) nor the declared refusal (3): an unexpected outcome.
    let (o, r) = run(&EXEC.replace("exit 3\"]", "exit 4\"]"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let unexpected = check(&r, "unexpected");
    assert_eq!(unexpected["verdict"], "invalid");
    assert!(unexpected.to_string().contains("no such entity"), "the reply is kept in full: {unexpected}");
}

#[test]
fn exec_client_times_out_to_info() {
    let text = EXEC.replace("exit 3\"]", "sleep 5\"]").replace("timeout = \"2s\"", "timeout = \"200ms\"");
    let (o, r) = run(&text);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(r["ops"]["by_action"]["refuse"]["info"].as_u64().unwrap() > 0, "a timed-out op is info: {}", r["ops"]);
}

const DRIVER: &str = r#"
name = "driver-client"
duration = "3s"
clients = 4
finally = ["read"]

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { http = "http://127.0.0.1:{port}/health" }

[actor.alice]
[actor.bob]

[client]
kind = "driver"
command = ["python3", "DRIVER"]
env = { KV_URL = "http://127.0.0.1:{service.kv.port}" }

[[action]]
f = "add"
value = "{seq}"

[[action]]
f = "read"
weight = 0

[[fault]]
kind = "kill"
target = "kv"
every = "1s"

[[check]]
kind = "set"
"#;

#[test]
fn python_driver_passes_on_the_correct_testbed() {
    let driver = repo_root().join("examples/drivers/kv_driver.py");
    let (o, r) = run(&DRIVER.replace("DRIVER", driver.to_str().unwrap()));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(check(&r, "set")["details"]["acknowledged"].as_u64().unwrap() > 20);
}

#[test]
fn python_driver_catches_the_lost_write() {
    let driver = repo_root().join("examples/drivers/kv_driver.py");
    let text = DRIVER
        .replace("DRIVER", driver.to_str().unwrap())
        .replace("\"{dir}/data\"]", "\"{dir}/data\", \"--bug\", \"lost-write\"]");
    let (o, r) = run(&text);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!check(&r, "set")["details"]["lost"].as_array().unwrap().is_empty());
}

const FAULTS: &str = r#"
name = "every-fault"
duration = "4s"
clients = 3
finally = ["read"]

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { tcp = "{port}" }
stop = { grace = "1s" }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"
timeout = "500ms"

[[action]]
f = "add"
value = "{seq}"
request = { method = "POST", path = "/set/s/{value}" }

[[action]]
f = "read"
weight = 0
request = { path = "/set/s" }
result = "body:json"

[[fault]]
kind = "kill"
target = "kv"
at = ["500ms"]

[[fault]]
kind = "pause"
target = "kv"
at = ["1200ms"]
for = "700ms"

[[fault]]
kind = "terminate"
target = "kv"
at = ["2200ms"]

[[fault]]
kind = "interrupt"
target = "kv"
at = ["2800ms"]

[[fault]]
kind = "restart"
target = "kv"
at = ["3400ms"]

[[check]]
kind = "set"
"#;

#[test]
fn every_process_fault_is_applied_healed_and_recorded() {
    let (o, r) = run(FAULTS);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let faults = r["faults"].as_array().unwrap();
    let kinds: Vec<&str> = faults.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["kill", "pause", "terminate", "interrupt", "restart"]);
    assert!(faults.iter().all(|f| f["end_ns"].as_u64() > f["start_ns"].as_u64()), "every window is closed: {faults:?}");
    let pause = &faults[1];
    let window_ms = (pause["end_ns"].as_u64().unwrap() - pause["start_ns"].as_u64().unwrap()) / 1_000_000;
    assert!((650..1500).contains(&window_ms), "the pause lasts about 700ms, got {window_ms}ms");
    // A paused service times requests out: those ops are indeterminate, not failures.
    assert!(r["ops"]["by_action"]["add"]["info"].as_u64().unwrap() > 0, "{}", r["ops"]);
}

#[test]
fn kill_faults_catch_lost_writes_that_graceful_restarts_hide() {
    // lost-write flushes on SIGTERM and SIGINT, so only the kill loses data.
    let buggy = FAULTS.replace("\"{dir}/data\"]", "\"{dir}/data\", \"--bug\", \"lost-write\"]");
    let (o, r) = run(&buggy);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(check(&r, "set")["verdict"], "invalid");
    let without_kill = buggy.replace("kind = \"kill\"", "kind = \"restart\"");
    let (o, r) = run(&without_kill);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(check(&r, "set")["verdict"], "valid");
}

#[test]
fn a_service_crash_is_a_recorded_event_not_a_harness_failure() {
    let text = r#"
name = "crashy"
duration = "1500ms"

[service.crashy]
command = ["sh", "-c", "echo up; sleep 0.5; echo dying >&2; exit 7"]
ready = { log = "up" }
"#;
    let (o, r) = run(text);
    // No checks ran on ops: the default stats check has nothing to count.
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let svc = &r["services"][0];
    assert_eq!(svc["unexpected_exits"], 1, "{svc}");
    assert!(svc.to_string().contains("exit code 7"));
}

const POOLS: &str = r#"
name = "pools"
ops = 300
clients = 1

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { exec = ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', {port}), 1)"] }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"

[[action]]
f = "create"
value = "k{seq}"
request = { method = "PUT", path = "/kv/{value}", body = "x" }
capture = "keys"

[[action]]
f = "get"
weight = 3
value = "{target}"
request = { path = "/kv/{target}" }
target = "keys"
fail = { status = [404] }

[[action]]
f = "delete"
value = "{target}"
request = { method = "DELETE", path = "/kv/{target}" }
target = "keys"
remove = true
fail = { status = [404] }
"#;

#[test]
fn pools_capture_targets_and_forget_deleted_entities() {
    let (o, r) = run(POOLS);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let by = &r["ops"]["by_action"];
    let n = |f: &str, t: &str| by[f][t].as_u64().unwrap_or(0);
    assert!(n("get", "ok") > 20 && n("delete", "ok") > 5, "{by}");
    // A deleted key leaves the pool, so no later op targets it and finds it gone.
    assert_eq!((n("get", "fail"), n("delete", "fail")), (0, 0), "{by}");
    // Without `remove`, deleted keys stay targets and the 404s show up.
    let (o, r) = run(&POOLS.replace("remove = true", "remove = false"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let by = &r["ops"]["by_action"];
    assert!(by["get"]["fail"].as_u64().unwrap_or(0) + by["delete"]["fail"].as_u64().unwrap_or(0) > 0, "{by}");
}

#[test]
fn an_empty_pool_skips_the_operation() {
    let text = POOLS
        .replace("[[action]]\nf = \"create\"", "[[action]]\nweight = 0\nf = \"create\"")
        .replace("ops = 300", "ops = 20");
    let (o, r) = run(&text);
    assert_eq!(o.status.code(), Some(2), "nothing succeeded, so stats is unknown: {}", stderr(&o));
    assert_eq!(r["ops"]["by_result"]["skip"], 20, "{}", r["ops"]);
}

#[test]
fn rate_limits_operations_per_second() {
    let text = POOLS.replace("ops = 300", "duration = \"2s\"\nrate = 40").replace("clients = 1", "clients = 4");
    let (o, r) = run(&text);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let total = r["ops"]["total"].as_u64().unwrap();
    assert!((70..=90).contains(&total), "2s at 40 ops/s is about 80 ops, got {total}");
}
