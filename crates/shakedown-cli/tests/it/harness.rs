//! A problem of the machine or the harness is exit 4 naming it, never a
//! verdict about the system: a job program that is not installed, a driver
//! that exits as soon as it starts.

use crate::common::{example, stderr, write_file, SHAKEDOWN};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_rsync_example_without_rsync_is_exit_4_naming_rsync_and_its_package() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let out = tmp.path().join("run");
    let o = Command::new(SHAKEDOWN)
        .args(["run", example("rsync-resume/rsync.toml").to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("PATH", &empty)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("cannot start `rsync`: `rsync` is not on PATH"), "{err}");
    assert!(err.contains("apt-get install rsync"), "it says how to get it: {err}");
    assert!(!err.contains("INVALID"), "not a finding about the system: {err}");
    let report = crate::common::report(&out);
    assert_eq!(report["end"], "failed", "{report}");
}

#[test]
fn a_driver_that_exits_at_once_is_exit_4_within_seconds_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "dies-at-once"
duration = "60s"
clients = 4
[actor.alice]
[client]
kind = "driver"
command = ["sh", "-c", "echo 'driver: cannot import client library' >&2; exit 3"]
[[action]]
f = "read"
"#;
    let path = write_file(tmp.path(), "s.toml", scenario);
    let out = tmp.path().join("run");
    let start = Instant::now();
    let o = Command::new(SHAKEDOWN)
        .args(["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(took < Duration::from_secs(20), "stopped within seconds, not after the 60s workload: {took:?}");
    assert!(err.contains("exited 5 times in a row before answering a request (last: exit code 3)"), "{err}");
    assert!(err.contains("driver-alice.log"), "it points at the driver's output: {err}");
    let log = std::fs::read_to_string(out.join("logs/driver-alice.log")).unwrap();
    let starts = log.matches("driver started").count();
    assert_eq!(starts, 5, "restarted with backoff until it gave up, not thousands of times");
    assert!(log.contains("cannot import client library"), "{log}");
}

/// A driver that takes 3 s to start (importing, connecting), then answers
/// every read with 1 at once.
const SLOW_DRIVER: &str = r#"
import json, sys, time
time.sleep(3)
for line in sys.stdin:
    req = json.loads(line)
    print(json.dumps({"id": req["id"], "type": "ok", "value": 1}), flush=True)
"#;

#[test]
fn a_driver_slow_to_start_gets_no_operation_before_it_is_ready() {
    let tmp = tempfile::tempdir().unwrap();
    write_file(tmp.path(), "slow_driver.py", SLOW_DRIVER);
    let scenario = r#"
name = "slow-driver"
duration = "1s"
clients = 4
[actor.alice]
[actor.bob]
[client]
kind = "driver"
command = ["python3", "{scenario.dir}/slow_driver.py"]
timeout = "1s"
[[action]]
f = "read"
"#;
    let path = write_file(tmp.path(), "s.toml", scenario);
    let out = tmp.path().join("run");
    let o = crate::common::shakedown(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = crate::common::report(&out);
    assert_eq!(r["ops"]["by_result"]["info"], 0, "no op timed out waiting for a driver to start: {}", r["ops"]);
    assert!(r["ops"]["by_result"]["ok"].as_u64().unwrap() > 10, "{}", r["ops"]);
}

#[test]
fn a_driver_that_never_becomes_ready_is_exit_4_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "silent-driver"
duration = "30s"
[actor.alice]
[client]
kind = "driver"
command = ["sh", "-c", "exec cat > /dev/null"]
[[action]]
f = "read"
"#;
    let path = write_file(tmp.path(), "s.toml", scenario);
    let out = tmp.path().join("run");
    let o = Command::new(SHAKEDOWN)
        .args(["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("SHAKEDOWN_DRIVER_READY_TIMEOUT", "2s")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("driver `sh -c exec cat > /dev/null` did not answer its readiness request"), "{err}");
    assert!(err.contains("within 2s"), "{err}");
    assert_eq!(crate::common::report(&out)["ops"]["total"], 0, "no op was recorded against it");
}
