//! Required variables and profiles: a scenario needing an unset variable fails
//! before anything runs (exit 3) and says where to set it; `--profile` and
//! `.env.NAME` files set it, and its value never reaches a report.

use crate::common::{report, stderr, SHAKEDOWN};
use std::path::Path;
use std::process::{Command, Output};

const SECRET: &str = "postgres://user:s3cret-value@db/x";

/// Needs `DEMO_DB_URL`, and hands it to the service through a template.
const NEEDS_VAR: &str = r#"
name = "needs-var"
duration = "500ms"
env_required = ["DEMO_DB_URL"]

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
env = { DB_URL = "{env.DEMO_DB_URL}" }
ready = { log = "listening", timeout = "10s" }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"

[[action]]
f = "add"
value = "{seq}"
request = { method = "POST", path = "/set/s/{value}" }
"#;

/// Runs `shakedown run s.toml --out run ARGS` in `dir` without the variable in its environment.
fn run_in(dir: &Path, scenario: &str, args: &[&str]) -> Output {
    std::fs::write(dir.join("s.toml"), scenario).unwrap();
    Command::new(SHAKEDOWN)
        .current_dir(dir)
        .args(["run", "s.toml", "--out", "run"])
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DEMO_DB_URL")
        .env_remove("DEMO_TOKEN")
        .output()
        .expect("run shakedown")
}

fn assert_ran_without_leaking(dir: &Path, o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    assert!(!stderr(o).contains(SECRET), "values stay hidden: {}", stderr(o));
    assert!(stderr(o).contains("profile set DEMO_DB_URL (values hidden)"), "{}", stderr(o));
    let r = report(&dir.join("run"));
    assert_eq!(r["verdict"], "valid", "{r}");
    assert!(!r.to_string().contains(SECRET), "the report holds no values");
}

#[test]
fn an_unset_required_variable_exits_3_naming_it_and_where_to_set_it() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_in(tmp.path(), NEEDS_VAR, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("scenario `needs-var` (s.toml) needs DEMO_DB_URL, which is not set"), "{err}");
    assert!(err.contains(".env.NAME") && err.contains(".config/shakedown.toml"), "{err}");
    assert!(!tmp.path().join("run").exists(), "nothing ran");
}

#[test]
fn a_variable_missing_from_the_profile_names_the_profile_files() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(".env.ci"), "OTHER=1\n").unwrap();
    let o = run_in(tmp.path(), NEEDS_VAR, &["--profile", "ci"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("needs DEMO_DB_URL") && err.contains("add them to profile `ci`"), "{err}");
    assert!(err.contains(".env.ci"), "{err}");
}

#[test]
fn a_profile_in_the_config_file_sets_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join(".config")).unwrap();
    let config = format!("[profile.ci]\nenv = {{ DEMO_DB_URL = \"{SECRET}\" }}\n");
    std::fs::write(tmp.path().join(".config/shakedown.toml"), config).unwrap();
    let o = run_in(tmp.path(), NEEDS_VAR, &["--profile", "ci"]);
    assert_ran_without_leaking(tmp.path(), &o);
}

#[test]
fn an_env_file_next_to_the_scenario_sets_the_variable() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(".env.staging"), format!("# staging\nDEMO_DB_URL=\"{SECRET}\"\n")).unwrap();
    let o = run_in(tmp.path(), NEEDS_VAR, &["--profile", "staging"]);
    assert_ran_without_leaking(tmp.path(), &o);
}

#[test]
fn a_missing_profile_or_env_file_exits_3_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run_in(tmp.path(), NEEDS_VAR, &["--profile", "nope"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("no `[profile.nope]`") && stderr(&o).contains(".env.nope"), "{}", stderr(&o));
    std::fs::create_dir(tmp.path().join(".config")).unwrap();
    std::fs::write(tmp.path().join(".config/shakedown.toml"), "[profile.ci]\nenv_file = \"missing.env\"\n").unwrap();
    let o = run_in(tmp.path(), NEEDS_VAR, &["--profile", "ci"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing.env"), "{}", stderr(&o));
}

#[test]
fn an_unset_env_template_fails_fast_instead_of_skipping_every_op() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = NEEDS_VAR
        .replace("env_required = [\"DEMO_DB_URL\"]\n", "")
        .replace("path = \"/set/s/{value}\"", "path = \"/set/{env.DEMO_TOKEN}/{value}\"");
    let o = run_in(tmp.path(), &scenario, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("needs DEMO_DB_URL, DEMO_TOKEN, which are not set"), "{err}");
}

#[test]
fn profiles_that_disagree_across_a_suite_exit_3_without_printing_values() {
    let tmp = tempfile::tempdir().unwrap();
    for (dir, value) in [("a", "one-secret"), ("b", "other-secret")] {
        let path = tmp.path().join("suite").join(dir);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("s.toml"), NEEDS_VAR.replace("needs-var", dir)).unwrap();
        std::fs::write(path.join(".env.ci"), format!("DEMO_DB_URL={value}\n")).unwrap();
    }
    let o = Command::new(SHAKEDOWN)
        .current_dir(tmp.path())
        .args(["run", "suite", "--profile", "ci", "--out", "out"])
        .env("NO_COLOR", "1")
        .env_remove("DEMO_DB_URL")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("DEMO_DB_URL differs between suite/a/.env.ci and suite/b/.env.ci"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    assert!(!tmp.path().join("out").exists(), "nothing ran");
}
