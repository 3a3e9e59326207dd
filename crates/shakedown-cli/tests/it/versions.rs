//! Versions, upgrades and stop profiles: `[version.*]` binaries as a matrix
//! dimension, an `upgrade` fault that swaps a service's binary and restarts
//! it, and `{stop.drain}`/`{stop.shutdown}` reaching a service's command.

use crate::common::{report, shakedown, stderr, write_file};

const UPGRADE: &str = r#"
name = "upgrade"
duration = "1500ms"
clients = 2
finally = ["read"]

[version.old]
kv = "{scenario.dir}/kv-old.sh"
[version.new]
kv = "shakedown-testbed"

[service.kv]
command = ["{bin.kv}", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { log = "listening", timeout = "10s" }
log_format = "json"

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"
timeout = "1s"

[[action]]
f = "add"
value = "{seq}"
request = { method = "POST", path = "/set/u/{value}" }

[[action]]
f = "read"
weight = 0
request = { method = "GET", path = "/set/u" }
result = "body:json"

[[fault]]
kind = "upgrade"
target = "kv"
to = "new"
at = ["500ms"]
only = { version = "old" }

[[check]]
kind = "set"
"#;

/// An "old build": the same testbed, announcing itself first.
const OLD_BUILD: &str = "#!/bin/sh\necho '{\"msg\":\"old build\"}'\nexec shakedown-testbed \"$@\"\n";

fn run_dir(text: &str, args: &[&str]) -> (std::process::Output, serde_json::Value, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "s.toml", text);
    let script = write_file(tmp.path(), "kv-old.sh", OLD_BUILD);
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = tmp.path().join("run");
    let mut all = vec!["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = shakedown(&all);
    let r = report(&out);
    (o, r, tmp)
}

#[test]
fn an_upgrade_fault_swaps_the_old_binary_for_the_new_one_mid_run() {
    let (o, r, tmp) = run_dir(UPGRADE, &["--matrix", "version=old"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(r["matrix"]["version"], "old");
    let faults = r["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!(faults[0]["kind"], "upgrade");
    let detail = faults[0]["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("to new: ") && detail.contains("kv-old.sh -> ") && detail.ends_with("shakedown-testbed"),
        "{detail}"
    );
    let log = std::fs::read_to_string(tmp.path().join("run/logs/kv.log")).unwrap();
    let old_at = log.find("old build").expect("the old build ran first");
    let listening: Vec<usize> = log.match_indices("\"listening\"").map(|(i, _)| i).collect();
    assert_eq!(listening.len(), 2, "started twice: old, then new:\n{log}");
    assert!(
        old_at < listening[0] && log[listening[0]..].find("old build").is_none(),
        "only the first start was old:\n{log}"
    );
    assert_eq!(r["checks"][0]["verdict"], "valid", "no acknowledged add lost across the upgrade");
}

#[test]
fn the_version_dimension_runs_each_build_and_guards_see_it() {
    let (o, _, tmp) = run_dir(UPGRADE, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("VALID        upgrade[version=new]") && err.contains("VALID        upgrade[version=old]"),
        "{err}"
    );
    assert!(err.contains("fault `upgrade` skipped in version=new: only version=old"), "{err}");
    let _ = tmp;
}

#[test]
fn versions_and_upgrades_are_validated() {
    let (o, _, _) = run_dir(&UPGRADE.replace("to = \"new\"", "to = \"v3\""), &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o)
            .contains("`to` names version `v3`, which is not defined; expected one of the versions: `new`, `old`"),
        "{}",
        stderr(&o)
    );
    let (o, _, _) = run_dir(&UPGRADE.replace("kv = \"shakedown-testbed\"", "other = \"x\""), &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("binary `kv` is not named in [version.new]"), "{}", stderr(&o));
}

#[test]
fn stop_profiles_reach_the_service_and_set_the_grace() {
    let text = r#"
name = "stop"
duration = "200ms"

[service.fast]
command = ["sh", "-c", "echo drain={stop.drain} shutdown={stop.shutdown}; exec sleep 30"]

[service.prod]
command = ["sh", "-c", "echo drain={stop.drain} shutdown={stop.shutdown}; exec sleep 30"]
stop = { profile = "production", shutdown = "3s" }
"#;
    let (o, _, tmp) = run_dir(text, &[]);
    assert_eq!(o.status.code(), Some(2), "no checks of ops: unknown, but the run completed: {}", stderr(&o));
    let fast = std::fs::read_to_string(tmp.path().join("run/logs/fast.log")).unwrap();
    assert!(fast.contains("drain=200ms shutdown=100ms"), "{fast}");
    let prod = std::fs::read_to_string(tmp.path().join("run/logs/prod.log")).unwrap();
    assert!(prod.contains("drain=8s shutdown=3s"), "{prod}");
}
