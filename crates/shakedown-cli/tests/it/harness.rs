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
