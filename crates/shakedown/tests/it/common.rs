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

pub fn report(run_dir: &Path) -> serde_json::Value {
    std::fs::read_to_string(run_dir.join("report.json"))
        .map_or(serde_json::Value::Null, |t| serde_json::from_str(&t).expect("report.json is JSON"))
}
