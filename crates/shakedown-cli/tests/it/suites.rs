//! `shakedown run DIR`: suites of real testbed scenarios, selected by tag,
//! name and partition, run one or several at a time.

use crate::common::{repo_root, shakedown, stderr, SHAKEDOWN};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo() -> String {
    repo_root().join("examples/suite-demo").display().to_string()
}

/// Runs the demo suite into a fresh `--out` with `args`; returns the exit code,
/// stderr and `suite.json`.
fn run_demo(out: &Path, args: &[&str]) -> (Option<i32>, String, serde_json::Value) {
    let dir = demo();
    let mut all = vec!["run", dir.as_str(), "--out", out.to_str().unwrap()];
    all.extend_from_slice(args);
    let o = shakedown(&all);
    let suite = std::fs::read_to_string(out.join("suite.json"))
        .map_or(serde_json::Value::Null, |t| serde_json::from_str(&t).expect("suite.json is JSON"));
    (o.status.code(), stderr(&o), suite)
}

fn ran(suite: &serde_json::Value) -> BTreeSet<String> {
    suite["scenarios"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn partition_halves_are_disjoint_and_cover_the_suite() {
    let tmp = tempfile::tempdir().unwrap();
    let (code1, err1, one) = run_demo(&tmp.path().join("p1"), &["--partition", "1/2"]);
    let (code2, err2, two) = run_demo(&tmp.path().join("p2"), &["--partition", "2/2"]);
    assert_eq!((code1, code2), (Some(0), Some(0)), "{err1}\n{err2}");
    let (one, two) = (ran(&one), ran(&two));
    assert!(one.is_disjoint(&two), "{one:?} {two:?}");
    let all: BTreeSet<String> = one.union(&two).cloned().collect();
    let expected: BTreeSet<String> = ["suite-counter", "suite-kill", "suite-set"].map(String::from).into();
    assert_eq!(all, expected, "the extended soak stays out; everything else runs once");
    assert!(err1.contains("in another partition than 1/2"), "{err1}");
}

#[test]
fn two_jobs_run_concurrently_in_separate_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("suite");
    let (code, err, suite) = run_demo(&out, &["--jobs", "2", "--filter", "suite-", "--tags", "smoke"]);
    assert_eq!(code, Some(0), "{err}");
    let runs = suite["scenarios"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{suite}");
    let window = |r: &serde_json::Value| (r["started_ms"].as_u64().unwrap(), r["finished_ms"].as_u64().unwrap());
    let ((s0, f0), (s1, f1)) = (window(&runs[0]), window(&runs[1]));
    assert!(s0 < f1 && s1 < f0, "the runs overlap in time: {suite}");
    let dirs: BTreeSet<&str> = runs.iter().map(|r| r["run_dir"].as_str().unwrap()).collect();
    assert_eq!(dirs.len(), 2);
    for r in runs {
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(Path::new(r["run_dir"].as_str().unwrap()).join("report.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report["verdict"], "valid", "{report}");
        assert_eq!(report["errors"].as_array().map_or(0, Vec::len), 0, "no port or dir clash: {report}");
        assert!(report["ops"]["by_result"]["ok"].as_u64().unwrap() > 0, "{report}");
    }
    let junit = std::fs::read_to_string(out.join("junit.xml")).unwrap();
    assert_eq!(junit.matches("<testsuite ").count(), 2, "{junit}");
    for line in ["VALID        suite-kill", "VALID        suite-set", "exit code 0"] {
        assert!(err.contains(line), "summary line `{line}` missing: {err}");
    }
}

#[test]
fn tags_and_filter_select_scenarios() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, err, suite) = run_demo(&tmp.path().join("ext"), &["--tags", "extended"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(ran(&suite), BTreeSet::from(["suite-soak".to_string()]));
    assert!(err.contains("SKIP         suite-set") && err.contains("has none of the tags extended"), "{err}");
    let (code, err, suite) = run_demo(&tmp.path().join("filter"), &["--filter", "counter"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(ran(&suite), BTreeSet::from(["suite-counter".to_string()]));
    assert!(err.contains("tagged `extended`, which runs only with --tags extended"), "{err}");
    assert!(err.contains("name does not contain `counter`"), "{err}");
}

#[test]
fn bad_partitions_exit_3_naming_the_expected_form() {
    let dir = demo();
    for bad in ["0/2", "3/2", "1/0", "half"] {
        let o = shakedown(&["run", dir.as_str(), "--partition", bad]);
        assert_eq!(o.status.code(), Some(3), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("expected k/n with 1 <= k <= n"), "{bad}: {}", stderr(&o));
    }
}

#[test]
fn an_invalid_scenario_in_a_suite_stops_everything_before_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("suite");
    std::fs::create_dir(&suite).unwrap();
    std::fs::copy(repo_root().join("examples/suite-demo/counter.toml"), suite.join("a.toml")).unwrap();
    std::fs::write(suite.join("b.toml"), "name = \"b\"\nbogus = 1\n").unwrap();
    let out = tmp.path().join("out");
    let o = shakedown(&["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown key `bogus`"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing ran");
}

/// Processes whose command line mentions `marker` (a run directory).
fn processes_mentioning(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) && cmdline.contains(marker) {
            found.push(cmdline);
        }
    }
    found
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn sigint_stops_every_running_scenario_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("suite");
    std::fs::create_dir(&suite).unwrap();
    let counter = std::fs::read_to_string(repo_root().join("examples/suite-demo/counter.toml")).unwrap();
    for name in ["a", "b", "c"] {
        let text = counter.replace("suite-counter", name).replace("duration = \"1s\"", "duration = \"60s\"");
        std::fs::write(suite.join(format!("{name}.toml")), text).unwrap();
    }
    let out = tmp.path().join("out");
    let mut child = Command::new(SHAKEDOWN)
        .args(["run", suite.to_str().unwrap(), "--out", out.to_str().unwrap(), "--jobs", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listening =
        |n: &str| std::fs::read_to_string(out.join(n).join("logs/kv.log")).is_ok_and(|t| t.contains("listening"));
    assert!(wait_until(Duration::from_secs(20), || listening("a") && listening("b")), "two run at once");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let exited = wait_until(Duration::from_secs(20), || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    assert!(exited, "shakedown exits after SIGINT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert_eq!(processes_mentioning(out.to_str().unwrap()), Vec::<String>::new());
    let suite: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("suite.json")).unwrap()).unwrap();
    let verdicts: Vec<&str> =
        suite["scenarios"].as_array().unwrap().iter().map(|s| s["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["interrupted"; 3], "{suite}");
    assert!(!out.join("c").exists(), "the third never started");
}

#[test]
fn includes_are_shared_and_a_run_directory_replays_without_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, err, suite) = run_demo(&tmp.path().join("all"), &["--filter", "suite-set"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(ran(&suite), ["suite-set".to_string()].into(), "`_common` is an include, not a scenario");
    let run_dir = Path::new(suite["scenarios"][0]["run_dir"].as_str().unwrap()).to_path_buf();
    let resolved = std::fs::read_to_string(run_dir.join("scenario.toml")).unwrap();
    assert!(resolved.contains("# include = [\"_common/kv.toml\"]") && resolved.contains("[service.kv]"), "{resolved}");
    // The resolved copy stands alone: it replays from anywhere.
    let replay = tmp.path().join("replay");
    let o = shakedown(&["run", run_dir.join("scenario.toml").to_str().unwrap(), "--out", replay.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_scenario_finishing_first_leaves_its_neighbours_processes_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("suite");
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = |name: &str, duration: &str| {
        format!(
            "name = \"{name}\"\nduration = \"{duration}\"\nrate = 50\n\
             [service.kv]\ncommand = [\"shakedown-testbed\", \"kv\", \"--listen\", \"127.0.0.1:{{port}}\", \"--data\", \"{{dir}}/data\"]\n\
             ready = {{ log = \"listening\", timeout = \"10s\" }}\n\
             [client]\nkind = \"http\"\nbase = \"http://127.0.0.1:{{service.kv.port}}\"\ntimeout = \"1s\"\n\
             [[action]]\nf = \"add\"\nvalue = \"{{seq}}\"\nrequest = {{ method = \"POST\", path = \"/set/s/{{value}}\" }}\n"
        )
    };
    std::fs::write(dir.join("a-short.toml"), scenario("short", "300ms")).unwrap();
    std::fs::write(dir.join("b-long.toml"), scenario("long", "2s")).unwrap();
    let out = tmp.path().join("out");
    let o = shakedown(&["run", dir.to_str().unwrap(), "--jobs", "2", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("long/report.json")).unwrap()).unwrap();
    let kv = &report["services"][0];
    assert_eq!(kv["unexpected_exits"], 0, "the short run's cleanup killed the long run's service: {kv:#}");
    assert_eq!(report["ops"]["by_result"]["info"], 0, "{:#}", report["ops"]);
}
