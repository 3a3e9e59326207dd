//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SHAKEDOWN: &str = env!("CARGO_BIN_EXE_shakedown");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn shakedown(args: &[&str]) -> Output {
    Command::new(SHAKEDOWN).args(args).env("NO_COLOR", "1").output().expect("run shakedown")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `text` as a scenario file with `args` added; returns the output and
/// the report (null when none was written).
pub fn run_text(text: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_file(tmp.path(), "s.toml", text);
    let out = tmp.path().join("run");
    let mut all = vec!["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = shakedown(&all);
    (o, report(&out))
}

pub fn report(run_dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(run_dir.join("report.json"))
        .map_or(serde_json::Value::Null, |t| serde_json::from_str(&t).expect("report.json is JSON"))
}

/// `examples/<rel>` in this repository.
pub fn example(rel: &str) -> PathBuf {
    repo_root().join("examples").join(rel)
}

/// Runs `path` (a scenario file or a suite directory) with `args`, its run
/// directory `out` inside a fresh temporary directory that every user can
/// traverse (as root, examples/postgres/pg.sh runs the server as `postgres`);
/// returns the exit code, stderr and the temporary directory.
pub fn run_in_tmp(path: &Path, args: &[&str]) -> (Option<i32>, String, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.path().join("out");
    let mut all = vec!["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = shakedown(&all);
    (o.status.code(), stderr(&o), tmp)
}

/// The check named `name` in a report; panics naming the checks there are.
pub fn check<'r>(report: &'r serde_json::Value, name: &str) -> &'r serde_json::Value {
    let checks = report["checks"].as_array().unwrap_or_else(|| panic!("no checks in {report:#}"));
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check `{name}` in {checks:?}"))
}
