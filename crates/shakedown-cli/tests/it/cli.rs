//! The `shakedown` binary end to end: real testbed processes, real signals,
//! exit codes, run directories, and nothing left running afterwards.

use crate::common::{repo_root, report, shakedown, stderr, write_file, SHAKEDOWN};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Processes whose command line mentions `marker` (a run directory).
fn processes_mentioning(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if !entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !cmdline.contains("processes_mentioning") {
            found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

#[test]
fn quickstart_passes_and_leaves_a_complete_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let scenario = repo_root().join("examples/quickstart.toml");
    let o = shakedown(&["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("(seed "), "the seed is printed: {err}");
    assert!(err.contains("VALID"), "{err}");
    for f in ["scenario.toml", "history.jsonl", "logs/kv.log", "report.json", "junit.xml", "report.html"] {
        assert!(out.join(f).is_file(), "{f} missing from the run directory");
    }
    let r = report(&out);
    assert_eq!(r["verdict"], "valid");
    assert!(r["ops"]["by_action"]["add"]["ok"].as_u64().unwrap() > 100);
    assert!(!r["faults"].as_array().unwrap().is_empty(), "kills were applied");
    let resolved = std::fs::read_to_string(out.join("scenario.toml")).unwrap();
    let pinned = shakedown::crates::spec::parse(&resolved, "scenario.toml").unwrap().seed;
    assert_eq!(pinned, r["seed"].as_u64(), "the resolved scenario pins the seed:\n{resolved}");
    assert!(processes_mentioning(out.to_str().unwrap()).is_empty());
}

#[test]
fn quickstart_lost_write_fails_naming_the_lost_elements() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let scenario = repo_root().join("examples/quickstart-lost-write.toml");
    let o = shakedown(&["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let stdout: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--format json prints the report");
    assert_eq!(stdout["verdict"], "invalid");
    let r = report(&out);
    let set = r["checks"].as_array().unwrap().iter().find(|c| c["kind"] == "set").unwrap();
    assert_eq!(set["verdict"], "invalid");
    let lost = set["details"]["lost"].as_array().unwrap();
    assert!(!lost.is_empty());
    assert!(stderr(&o).contains("acknowledged adds lost"), "{}", stderr(&o));
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains("<span class=\"invalid\">INVALID</span>") && page.contains("<h2>Counterexamples</h2>"));
    let kills = r["faults"].as_array().unwrap().len();
    assert_eq!(page.matches("<rect class=\"fault\"").count(), 3 * kills, "each fault shaded on three charts");
}

const SMALL: &str = r#"
name = "small"
duration = "1s"

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { log = "listening" }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"

[[action]]
f = "add"
value = "{seq}"
request = { method = "POST", path = "/set/s/{value}" }

[[fault]]
kind = "kill"
target = "kv"
every = "1s"
"#;

#[test]
fn bad_scenarios_exit_3_with_file_line_col() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown-key.toml", SMALL.replace("duration = \"1s\"", "durration = \"1s\""), ":3:1: unknown key `durration`"),
        (
            "wrong-type.toml",
            SMALL.replace("duration = \"1s\"", "duration = 5"),
            ":3:12: invalid type: integer `5`, expected a string",
        ),
        (
            "undefined-service.toml",
            SMALL.replace("target = \"kv\"", "target = \"db\""),
            ":20:10: fault target `db` is not a defined service",
        ),
    ];
    for (name, text, want) in cases {
        let path = write_file(tmp.path(), name, &text);
        let o = shakedown(&["run", path.to_str().unwrap(), "--out", tmp.path().join("never").to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{name}: {err}");
        assert!(err.contains(&format!("{name}{want}")), "{name}: want {want:?} in:\n{err}");
        assert!(!tmp.path().join("never").exists(), "nothing runs on an invalid scenario");
    }
}

#[test]
fn a_used_run_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("leftover"), "from an earlier run").unwrap();
    let path = write_file(tmp.path(), "s.toml", SMALL);
    let o = shakedown(&["run", path.to_str().unwrap(), "--out", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists and is not empty"));
}

#[test]
fn usage_errors_exit_3_and_help_exits_0() {
    assert_eq!(shakedown(&["run"]).status.code(), Some(3));
    assert_eq!(shakedown(&["frobnicate"]).status.code(), Some(3));
    assert_eq!(shakedown(&["run", "/nonexistent/s.toml"]).status.code(), Some(3));
    let help = shakedown(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit codes"));
    let version = shakedown(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

/// Waits for `path` to contain `needle`, up to `limit`.
fn wait_for_text(path: &Path, needle: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn wait_with_timeout(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}

#[test]
fn sigint_mid_run_exits_130_and_leaves_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let path = write_file(
        tmp.path(),
        "long.toml",
        &SMALL.replace("duration = \"1s\"", "duration = \"60s\"").replace("every = \"1s\"", "every = \"30s\""),
    );
    let mut child = Command::new(SHAKEDOWN)
        .args(["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for_text(&out.join("logs/kv.log"), "listening", Duration::from_secs(20)), "the service started");
    std::thread::sleep(Duration::from_millis(300));
    assert!(!processes_mentioning(out.to_str().unwrap()).is_empty(), "the testbed runs before the interrupt");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(20)).expect("shakedown exits after SIGINT");
    assert_eq!(status.code(), Some(130));
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
    assert!(out.join("history.jsonl").is_file(), "the partial history is kept");
}

#[test]
fn a_service_that_never_becomes_ready_exits_4_and_leaves_no_process() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let text =
        SMALL.replace("ready = { log = \"listening\" }", "ready = { log = \"this never appears\", timeout = \"1s\" }");
    let path = write_file(tmp.path(), "never-ready.toml", &text);
    let o = shakedown(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("did not become ready within 1s"), "{err}");
    assert!(err.contains("listening"), "the service's last log lines are shown: {err}");
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
}

#[test]
fn a_failed_build_exits_4_with_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!("{SMALL}\n[[build]]\ncommand = [\"sh\", \"-c\", \"echo compiling widget; echo 'error: widget broke' >&2; exit 2\"]\n");
    let path = write_file(tmp.path(), "build.toml", &text);
    let o = shakedown(&["run", path.to_str().unwrap(), "--out", tmp.path().join("run").to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("error: widget broke") && err.contains("exit code 2"), "{err}");
    let log = std::fs::read_to_string(tmp.path().join("run/logs/build.log")).unwrap();
    assert!(log.contains("compiling widget"));
    assert!(!log.contains("listening"), "no service started after the failed build");
}

/// The (f, value) of every invocation, in order.
fn invocations(run_dir: &Path) -> Vec<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(run_dir.join("history.jsonl")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "invoke")
        .map(|e| (e["f"].as_str().unwrap().to_string(), e["value"].clone()))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_invocations() {
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"
name = "determinism"
ops = 60
clients = 1

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { tcp = "{port}" }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"

[[action]]
f = "write"
value = "{int 0..3}"
request = { method = "PUT", path = "/kv/r", body = "{value}" }

[[action]]
f = "read"
request = { path = "/kv/r" }
result = "body:int"
fail = { status = [404] }

[[action]]
f = "cas"
value = "{int 0..3}"
request = { method = "POST", path = "/kv/r/cas", body = '{{"from": {value}, "to": {int 0..3}}}' }
fail = { status = [404, 409] }
"#;
    let path = write_file(tmp.path(), "det.toml", text);
    let run = |seed: &str, dir: &str| {
        let out = tmp.path().join(dir);
        let o = shakedown(&["run", path.to_str().unwrap(), "--seed", seed, "--out", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        invocations(&out)
    };
    let (a, b, c) = (run("42", "a"), run("42", "b"), run("43", "c"));
    assert_eq!(a.len(), 60);
    assert_eq!(a, b, "same seed, same invocations");
    assert_ne!(a, c, "another seed draws another workload");
}

#[test]
fn a_run_replays_from_its_directory_with_relative_paths_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let tool = project.join("add.sh");
    std::fs::write(&tool, "#!/bin/sh\necho \"$1\" >> \"$HOME/items\"\n").unwrap();
    std::process::Command::new("chmod").args(["+x", tool.to_str().unwrap()]).status().unwrap();
    let text = r#"
name = "relative"
ops = 30

[client]
kind = "exec"

[[action]]
f = "add"
value = "{int 0..100}"
command = ["./add.sh", "{value}"]
"#;
    let path = write_file(&project, "s.toml", text);
    let first = tmp.path().join("first");
    let o = shakedown(&["run", path.to_str().unwrap(), "--out", first.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let replay = tmp.path().join("replay");
    let resolved = first.join("scenario.toml");
    let o = shakedown(&["run", resolved.to_str().unwrap(), "--out", replay.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "the replay finds ./add.sh: {}", stderr(&o));
    assert_eq!(report(&replay)["seed"], report(&first)["seed"], "the seed is pinned");
    assert_eq!(invocations(&first), invocations(&replay));
}

#[test]
fn replay_runs_a_run_directory_again_with_its_seed_cell_and_fault_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, again) = (tmp.path().join("first"), tmp.path().join("again"));
    let scenario = repo_root().join("examples/quickstart-lost-write.toml");
    let o = shakedown(&["run", scenario.to_str().unwrap(), "--out", first.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = shakedown(&["replay", first.to_str().unwrap(), "--out", again.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "the bug is found again: {}", stderr(&o));
    let (a, b) = (report(&first), report(&again));
    assert_eq!(a["seed"], b["seed"]);
    let schedule = |r: &serde_json::Value| -> Vec<(String, String)> {
        let faults = r["faults"].as_array().unwrap().iter();
        faults.map(|f| (f["kind"].to_string(), f["target"].to_string())).collect()
    };
    assert_eq!(schedule(&a), schedule(&b), "the same faults on the same targets");

    // A matrix run replays its own cell only.
    let (cell, cell_again) = (tmp.path().join("cell"), tmp.path().join("cell-again"));
    let contract = repo_root().join("examples/queue-engines/contract.toml");
    let o =
        shakedown(&["run", contract.to_str().unwrap(), "--matrix", "engine=sqlite", "--out", cell.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = shakedown(&["replay", cell.to_str().unwrap(), "--out", cell_again.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&cell_again);
    assert_eq!(r["matrix"], serde_json::json!({"engine": "sqlite"}), "one cell, the same: {}", r["matrix"]);
    assert_eq!(r["seed"], report(&cell)["seed"]);
}

#[test]
fn replay_of_something_that_is_not_a_run_directory_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let o = shakedown(&["replay", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("has no scenario.toml"), "{}", stderr(&o));
}

#[test]
fn shrink_makes_a_failing_scenario_smaller_that_still_fails_the_same_way() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let scenario = repo_root().join("examples/quickstart-lost-write.toml");
    let o = shakedown(&["run", scenario.to_str().unwrap(), "--out", first.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = shakedown(&["shrink", first.to_str().unwrap(), "--max-runs", "4"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("run  1: duration 6s -> 3000ms"), "each run says what it tried: {err}");
    let shrunk = std::fs::read_to_string(first.join("shrink/shrunk.toml")).unwrap();
    assert!(shrunk.starts_with(&format!("seed = {}\n", report(&first)["seed"])), "{shrunk}");
    let smaller = !shrunk.contains("duration = \"6s\"") || !shrunk.contains("clients = 6");
    assert!(smaller && err.contains("kept"), "something was shrunk: {err}\n{shrunk}");
    // The kept runs failed the set check again; their reports say so.
    let kept = (1..=4).map(|n| first.join(format!("shrink/run-{n:02}/report.json"))).filter(|p| p.is_file());
    assert!(kept.map(|p| report(p.parent().unwrap())).any(|r| r["verdict"] == "invalid"));
}

#[test]
fn shrink_refuses_a_run_that_did_not_fail() {
    let tmp = tempfile::tempdir().unwrap();
    write_file(tmp.path(), "scenario.toml", "name = \"x\"\n");
    write_file(tmp.path(), "report.json", r#"{"seed": 1, "checks": [{"name": "set", "verdict": "valid"}]}"#);
    let o = shakedown(&["shrink", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("nothing to shrink: no check"), "{}", stderr(&o));
}

/// Without `--out`, a run goes to `.shakedown/runs` in the current directory,
/// or, when that cannot be made (a read-only checkout), to the user's state
/// directory, saying so.
#[test]
fn the_default_run_directory_falls_back_to_the_state_directory_when_the_cwd_is_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (work, state) = (tmp.path().join("checkout"), tmp.path().join("state"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("s.toml"), "name = \"here\"\nduration = \"100ms\"\n").unwrap();
    let run = |dir: &std::path::Path| {
        std::process::Command::new(SHAKEDOWN)
            .current_dir(dir)
            .args(["run", "s.toml"])
            .env("XDG_STATE_HOME", &state)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let o = run(&work);
    assert!(work.join(".shakedown/runs").read_dir().unwrap().count() == 1, "{}", stderr(&o));
    // A directory nobody may write into, not even root: a read-only bind
    // mount, made in a mount namespace of the run's own (nothing on the host).
    std::fs::remove_dir_all(work.join(".shakedown")).unwrap();
    let script = format!("mount --bind -o ro {0} {0} && cd {0} && exec {SHAKEDOWN} run s.toml", work.display());
    let o = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("XDG_STATE_HOME", &state)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(err.contains("cannot create .shakedown/runs here"), "{err}");
    assert!(err.contains(&format!("run directories go to {}", state.join("shakedown/runs").display())), "{err}");
    assert_eq!(state.join("shakedown/runs").read_dir().unwrap().count(), 1, "{err}");
    assert!(!work.join(".shakedown").exists());
}
