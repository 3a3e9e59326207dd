//! Resume scenarios against the migrate testbed: a job interrupted at many
//! points and resumed must end like its uninterrupted run; each bug switch is
//! caught with the missing items or the corruption named.

use crate::common::{repo_root, report, shakedown, stderr};
use serde_json::Value;

/// Runs `examples/migrate/<file>` (its text passed through `edit`, written
/// beside a copy of the schema) with `args`; returns the exit code, stderr
/// and the output directory.
fn run(file: &str, edit: impl Fn(String) -> String, args: &[&str]) -> (Option<i32>, String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let examples = repo_root().join("examples/migrate");
    let text = edit(std::fs::read_to_string(examples.join(file)).unwrap());
    std::fs::write(tmp.path().join(file), text).unwrap();
    std::fs::copy(examples.join("state.schema.json"), tmp.path().join("state.schema.json")).unwrap();
    let out = tmp.path().join("out");
    let scenario = tmp.path().join(file);
    let mut all = vec!["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = shakedown(&all);
    (o.status.code(), stderr(&o), tmp)
}

fn with_bug(bug: &str) -> impl Fn(String) -> String + '_ {
    move |t: String| {
        let out =
            t.replace("\"--batch-delay\", \"10ms\"", &format!("\"--batch-delay\", \"10ms\", \"--bug\", \"{bug}\""));
        assert_ne!(out, t, "the scenario's commands take --bug");
        out
    }
}

fn fewer_points(t: String) -> String {
    t.replace("points = 20", "points = 8")
}

fn resume_check(r: &Value) -> &Value {
    r["checks"].as_array().unwrap().iter().find(|c| c["kind"] == "resume").expect("a resume check")
}

#[test]
fn the_correct_build_resumes_to_the_golden_state_from_20_points_of_sigint_and_sigkill() {
    let (code, err, tmp) = run("resume.toml", |t| t, &[]);
    assert_eq!(code, Some(0), "{err}");
    let r = report(&tmp.path().join("out"));
    let check = resume_check(&r);
    assert_eq!(check["verdict"], "valid");
    assert_eq!(check["details"]["cases"].as_array().unwrap().len(), 20);
    let interrupts: Vec<&str> = r["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "interrupt")
        .map(|f| f["detail"].as_str().unwrap())
        .collect();
    assert_eq!(interrupts.len(), 20, "every point was interrupted: {interrupts:?}");
    assert!(interrupts.iter().any(|d| d.starts_with("SIGINT")) && interrupts.iter().any(|d| d.starts_with("SIGKILL")));
}

#[test]
fn a_resume_that_skips_the_in_flight_batch_is_caught_with_the_missing_rows() {
    let (code, err, tmp) = run("resume.toml", |t| with_bug("resume-skips-batch")(fewer_points(t)), &["--seed", "7"]);
    assert_eq!(code, Some(1), "{err}");
    let r = report(&tmp.path().join("out"));
    let check = resume_check(&r);
    assert!(check["summary"].as_str().unwrap().contains("missing (first: ["), "{}", check["summary"]);
    let bad: Vec<&Value> =
        check["details"]["cases"].as_array().unwrap().iter().filter(|c| c["verdict"] == "invalid").collect();
    assert!(bad.iter().all(|c| c["missing_count"].as_u64().unwrap() > 0 && c["missing"][0][0].is_i64()), "{bad:?}");
    // Each interruption point is its own JUnit case; the broken ones fail.
    let junit = std::fs::read_to_string(tmp.path().join("out/junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase name=\"resume/point-").count(), 8, "{junit:.2000}");
    let failed = junit.matches("type=\"resume\"").count();
    assert_eq!(failed, bad.len() + 1, "the check and each broken point fail: {junit:.2000}");
}

#[test]
fn a_torn_state_write_is_caught_as_a_corrupt_state_file() {
    // Only SIGKILL tears a file: SIGINT lets the job finish its write.
    let kill_only = |t: String| fewer_points(t).replace("signals = [\"INT\", \"KILL\"]", "signals = [\"KILL\"]");
    let (code, err, tmp) = run("resume.toml", |t| with_bug("torn-state-write")(kill_only(t)), &["--seed", "11"]);
    assert_eq!(code, Some(1), "{err}");
    let check = resume_check(&report(&tmp.path().join("out"))).clone();
    let problems = check["details"]["cases"].to_string();
    assert!(problems.contains("is not JSON") || problems.contains("is corrupt"), "the tear is named: {problems:.1500}");
}

#[test]
fn empty_and_single_row_sources_resume_and_an_empty_source_that_never_completes_is_caught() {
    let (code, err, tmp) = run("sizes.toml", |t| t, &[]);
    assert_eq!(code, Some(0), "{err}");
    for rows in ["0", "1", "1000"] {
        assert!(err.contains(&format!("VALID        migrate-sizes[rows={rows}]")), "{err}");
    }
    drop(tmp);
    let slow = |t: String| with_bug("empty-never-completes")(t.replace("timeout = \"10s\"", "timeout = \"2s\""));
    let (code, err, tmp) = run("sizes.toml", slow, &["--matrix", "rows=0"]);
    assert_eq!(code, Some(1), "{err}");
    let check = resume_check(&report(&tmp.path().join("out"))).clone();
    assert!(check["summary"].as_str().unwrap().contains("did not finish even uninterrupted"), "{check}");
}

#[test]
fn a_state_file_breaking_the_schema_is_reported_with_its_json_path() {
    let tmp = tempfile::tempdir().unwrap();
    let examples = repo_root().join("examples/migrate");
    let mut schema: Value =
        serde_json::from_str(&std::fs::read_to_string(examples.join("state.schema.json")).unwrap()).unwrap();
    // A stricter schema than the job's: no progress allowed at all.
    schema["properties"]["done"]["maximum"] = Value::from(0);
    std::fs::write(tmp.path().join("state.schema.json"), schema.to_string()).unwrap();
    let text = std::fs::read_to_string(examples.join("sizes.toml")).unwrap().replace("points = 4", "points = 2");
    std::fs::write(tmp.path().join("s.toml"), text).unwrap();
    let out = tmp.path().join("out");
    let o = shakedown(&[
        "run",
        tmp.path().join("s.toml").to_str().unwrap(),
        "--matrix",
        "rows=1000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let problems = resume_check(&report(&out))["details"]["cases"].to_string();
    assert!(problems.contains("breaks the schema at /done"), "{problems:.1500}");
}

#[test]
fn damaged_state_is_refused_as_declared_and_a_wrong_declaration_fails() {
    let corrupt = |expect: &'static str| {
        move |t: String| {
            format!(
                "{}\n[[resume.corrupt]]\nfile = \"state.json\"\nhow = \"truncate\"\nexpect = \"{expect}\"\n",
                t.replace("points = 4", "points = 3")
            )
        }
    };
    let (code, err, tmp) = run("sizes.toml", corrupt("error"), &["--matrix", "rows=1000"]);
    assert_eq!(code, Some(0), "the job refuses a truncated state with exit 3: {err}");
    let r = report(&tmp.path().join("out"));
    assert!(r["faults"].as_array().unwrap().iter().any(|f| f["kind"] == "corrupt"), "{}", r["faults"]);
    let (code, err, _) = run("sizes.toml", corrupt("recover"), &["--matrix", "rows=1000"]);
    assert_eq!(code, Some(1), "declared to recover, it refuses instead: {err}");
    assert!(err.contains("never finished"), "{err}");
}

#[test]
fn rsync_resumes_to_the_source_tree_from_12_interruption_points() {
    assert!(
        std::process::Command::new("rsync").arg("--version").output().is_ok_and(|o| o.status.success()),
        "rsync is not installed: run scripts/install-deps (the test suite's scripts/test does)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let example = repo_root().join("examples/rsync-resume/rsync.toml");
    let o = shakedown(&["run", example.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&out);
    let check = resume_check(&r);
    assert_eq!(check["verdict"], "valid", "{check}");
    assert_eq!(check["details"]["cases"].as_array().unwrap().len(), 12);
    let interrupts = r["faults"].as_array().unwrap().iter().filter(|f| f["kind"] == "interrupt").count();
    assert!(interrupts >= 10, "at least 10 points interrupted the copy: {interrupts}");
    assert!(r["metrics"]["job.items_per_s"]["value"].as_f64().unwrap() > 0.0, "{}", r["metrics"]);
}

#[test]
fn a_command_can_read_the_final_state_as_json_rows_for_databases_without_a_built_in_reader() {
    // What psql's json_agg does for PostgreSQL, done here by python3 over SQLite.
    let compare = r#"compare = { command = ["python3", "-c", "import json, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(json.dumps(c.execute('SELECT id, name, qty FROM items').fetchall()))", "{case.dir}/dest.sqlite"] }"#;
    let edit = |t: String| {
        let start = t.find("compare = ").unwrap();
        let end = start + t[start..].find('\n').unwrap();
        format!("{}{compare}{}", &t[..start], &t[end..]).replace("points = 4", "points = 3")
    };
    let (code, err, _) = run("sizes.toml", edit, &["--matrix", "rows=1000"]);
    assert_eq!(code, Some(0), "{err}");
    let buggy = |t: String| {
        with_bug("resume-skips-batch")(edit(t)).replace("signals = [\"INT\", \"KILL\"]", "signals = [\"KILL\"]")
    };
    let (code, err, tmp) = run("sizes.toml", buggy, &["--matrix", "rows=1000", "--seed", "3"]);
    assert_eq!(code, Some(1), "{err}");
    let check = resume_check(&report(&tmp.path().join("out"))).clone();
    assert!(check["summary"].as_str().unwrap().contains("missing (first: ["), "{check}");
}

#[test]
fn one_point_replays_alone_with_the_same_draws() {
    let signals = |r: &Value| -> Vec<(String, String)> {
        r["faults"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "interrupt")
            .map(|f| {
                (
                    f["target"].as_str().unwrap().to_string(),
                    f["detail"].as_str().unwrap().split(' ').next().unwrap().to_string(),
                )
            })
            .collect()
    };
    // sizes.toml has 4 points.
    let four = |t: String| t;
    let (code, err, all) = run("sizes.toml", four, &["--matrix", "rows=1000", "--seed", "5"]);
    assert_eq!(code, Some(0), "{err}");
    let every = signals(&report(&all.path().join("out")));
    let (code, err, one) = run("sizes.toml", four, &["--matrix", "rows=1000", "--seed", "5", "--point", "3"]);
    assert_eq!(code, Some(0), "{err}");
    let r = report(&one.path().join("out"));
    let cases = resume_check(&r)["details"]["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["case"], "point-03");
    let alone = signals(&r);
    assert_eq!(alone, every.iter().filter(|(c, _)| c == "point-03").cloned().collect::<Vec<_>>(), "{every:?}");
    let (code, err, _) = run("sizes.toml", four, &["--matrix", "rows=1000", "--point", "9"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("--point 9") && err.contains("has 4 points"), "{err}");
}
