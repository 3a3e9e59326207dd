//! Secrets never reach a run's files or its messages: a profile's value and a
//! scenario's `env_secret` variable, printed by a build, a service, an exec
//! client's replies (stored as unexpected), a failing step and a harness
//! failure, are masked as `***` in every file of the run directory and on
//! stderr, and the run directory is owner-only.

use crate::common::{stderr, SHAKEDOWN};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const PROFILE_SECRET: &str = "pr0file-s3cret-Value";
const SCENARIO_SECRET: &str = "env-s3cret-Token-77";

/// Every kind of output a run writes, each given both secrets to print.
const LEAKY: &str = r#"
name = "leaky"
ops = 12
clients = 2
env_required = ["DEMO_DB_PASSWORD"]
env_secret = ["DEMO_API_TOKEN"]

[[build]]
command = ["sh", "-c", "echo building with {env.DEMO_DB_PASSWORD} and $DEMO_API_TOKEN"]

[service.echo]
command = ["sh", "-c", "echo password={env.DEMO_DB_PASSWORD} token=$DEMO_API_TOKEN; echo ready; sleep 60"]
ready = { log = "ready", timeout = "10s" }

[actor.alice]

[client]
kind = "exec"

[[action]]
f = "leak"
value = "{env.DEMO_DB_PASSWORD}"
command = ["sh", "-c", "echo reply {value} $DEMO_API_TOKEN; exit 7"]

[[check]]
kind = "unexpected"
"#;

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn profile_and_scenario_secrets_are_masked_in_every_output_and_the_run_dir_is_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(".env.ci"), format!("DEMO_DB_PASSWORD={PROFILE_SECRET}\n")).unwrap();
    std::fs::write(tmp.path().join("s.toml"), LEAKY).unwrap();
    let o = Command::new(SHAKEDOWN)
        .current_dir(tmp.path())
        .args(["run", "s.toml", "--out", "run", "--profile", "ci", "--format", "json"])
        .env("NO_COLOR", "1")
        .env("SHAKEDOWN_LOG", "debug")
        .env_remove("DEMO_DB_PASSWORD")
        .env("DEMO_API_TOKEN", SCENARIO_SECRET)
        .output()
        .expect("run shakedown");
    let err = stderr(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    // The replies matched no mapping: the unexpected check fails and shows them.
    assert_eq!(o.status.code(), Some(1), "{err}");
    let run = tmp.path().join("run");
    let all = files(&run);
    let names: Vec<String> = all.iter().map(|p| p.strip_prefix(&run).unwrap().display().to_string()).collect();
    for want in
        ["history.jsonl", "report.json", "report.html", "junit.xml", "run.json", "logs/echo.log", "logs/build.log"]
    {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    let mut masked_somewhere = 0;
    for path in &all {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        for secret in [PROFILE_SECRET, SCENARIO_SECRET] {
            assert!(!text.contains(secret), "{} holds a secret:\n{text}", path.display());
        }
        masked_somewhere += usize::from(text.contains("***"));
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is readable by others ({mode:o})", path.display());
    }
    assert!(masked_somewhere >= 5, "the secrets were printed and masked in the outputs ({masked_somewhere} files)");
    for (stream, text) in [("stderr", err.as_str()), ("stdout", &*out)] {
        for secret in [PROFILE_SECRET, SCENARIO_SECRET] {
            assert!(!text.contains(secret), "{stream} holds a secret:\n{text}");
        }
    }
    assert!(err.contains("***"), "the failing check's replies are shown, masked: {err}");
    let dir_mode = std::fs::metadata(&run).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "the run directory is owner-only");
}

#[test]
fn a_harness_failure_quoting_a_build_output_is_masked_too() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = r#"
name = "failing-build"
env_secret = ["DEMO_API_TOKEN"]
[[build]]
command = ["sh", "-c", "echo cannot log in with $DEMO_API_TOKEN >&2; exit 1"]
"#;
    std::fs::write(tmp.path().join("s.toml"), scenario).unwrap();
    let o = Command::new(SHAKEDOWN)
        .current_dir(tmp.path())
        .args(["run", "s.toml", "--out", "run"])
        .env("NO_COLOR", "1")
        .env("DEMO_API_TOKEN", SCENARIO_SECRET)
        .output()
        .expect("run shakedown");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("cannot log in with ***"), "{err}");
    assert!(!err.contains(SCENARIO_SECRET), "{err}");
    for path in files(&tmp.path().join("run")) {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        assert!(!text.contains(SCENARIO_SECRET), "{} holds the secret:\n{text}", path.display());
    }
}
