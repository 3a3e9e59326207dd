//! The migrate testbed as real processes: copies equal their sources, SIGINT and SIGKILL then `--resume`, corrupt state files, each bug switch.
//!
//! The `shakedown-testbed` binary belongs to the `shakedown` crate, so these
//! tests run the job by re-running this test binary as a child whose only
//! test, [`child_entry`], parses `SHAKEDOWN_MIGRATE_CHILD` (a JSON array of
//! arguments) as `shakedown-testbed` would and exits with the job's code.
//! Signals are sent with kill(1); every wait has a deadline.

mod schema;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use serde_json::Value;
use shakedown_testbed::cli::{Cli, Service};
use shakedown_testbed::migrate::{Batch, State, StateError};

const CHILD_ENV: &str = "SHAKEDOWN_MIGRATE_CHILD";
/// Longest any one job may run before the test kills it and fails.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// Not a test of its own: the entry point of the child processes.
#[test]
fn child_entry() {
    let Ok(args) = std::env::var(CHILD_ENV) else { return };
    let args: Vec<String> = serde_json::from_str(&args).expect("child arguments");
    let cli = Cli::try_parse_from(["shakedown-testbed".to_string(), "migrate".to_string()].into_iter().chain(args))
        .unwrap_or_else(|e| e.exit());
    let Service::Migrate(args) = cli.service else { panic!("not migrate") };
    std::process::exit(i32::from(args.run()));
}

/// A running job: its stdout lines as they come, its stderr at the end.
struct Job {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    stderr: Arc<Mutex<String>>,
}

/// How a job ended.
struct Ended {
    code: Option<i32>,
    /// The JSON log lines (the test harness's own lines left out).
    log: Vec<Value>,
    stderr: String,
}

impl Ended {
    fn msgs(&self, msg: &str) -> Vec<&Value> {
        self.log.iter().filter(|line| line["msg"] == msg).collect()
    }
}

impl Job {
    fn start(args: &[String]) -> Job {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args(["migrate::child_entry", "--exact", "--nocapture", "--test-threads=1", "--quiet"])
            .env(CHILD_ENV, serde_json::to_string(args).unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the job");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sink, err_sink) = (lines.clone(), stderr.clone());
        let mut err_pipe = child.stderr.take().unwrap();
        let readers = vec![
            std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(|l| sink.lock().unwrap().push(l))),
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err_pipe.read_to_string(&mut text);
                *err_sink.lock().unwrap() = text;
            }),
        ];
        Job { child, lines, readers, stderr }
    }

    fn log(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).expect("a JSON log line")).collect()
    }

    /// Waits until a log line satisfies `pred`; fails the test after `timeout` or if the job exits first.
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + timeout;
        while !self.log().iter().any(&pred) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("job exited ({status}) before {what}: {:?}", self.log());
            }
            assert!(Instant::now() < deadline, "no {what} within {timeout:?}: {:?}", self.log());
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn wait_for_done(&mut self, at_least: u64) {
        let done = move |line: &Value| line["msg"] == "progress" && line["done"].as_u64() >= Some(at_least);
        self.wait_for(&format!("progress to {at_least}"), JOB_TIMEOUT, done);
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill").args(["-s", name, &self.child.id().to_string()]).status().expect("kill(1)");
        assert!(status.success(), "kill -s {name}");
    }

    /// Waits for the exit (SIGKILL and fail after `timeout`), then for the readers.
    fn finish(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("job still running after {timeout:?}: {:?}", self.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.readers.drain(..).for_each(|reader| reader.join().expect("reader thread"));
        let stderr = self.stderr.lock().unwrap().clone();
        Ended { code: status.code(), log: self.log(), stderr }
    }

    fn kill(mut self) -> Ended {
        self.child.kill().expect("SIGKILL");
        self.finish(JOB_TIMEOUT)
    }
}

/// A test that fails midway must not leave its job running.
impl Drop for Job {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One job's paths in a temp dir.
struct Setup {
    _dir: tempfile::TempDir,
    kind: &'static str,
    source: PathBuf,
    dest: PathBuf,
    state: PathBuf,
}

impl Setup {
    fn sqlite(n_rows: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source.sqlite");
        make_sqlite(&source, n_rows);
        let (dest, state) = (dir.path().join("dest.sqlite"), dir.path().join("state.json"));
        Setup { _dir: dir, kind: "sqlite", source, dest, state }
    }

    fn tree(n_files: u64) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        make_tree(&source, n_files);
        let (dest, state) = (dir.path().join("dest"), dir.path().join("state.json"));
        Setup { _dir: dir, kind: "tree", source, dest, state }
    }

    fn events(&self) -> PathBuf {
        PathBuf::from(format!("{}.events.sqlite", self.state.display()))
    }

    fn args(&self, extra: &[&str]) -> Vec<String> {
        let paths = [&self.source, &self.dest, &self.state].map(|p| p.display().to_string());
        let mut args = vec!["--kind", self.kind, "--source", &paths[0], "--dest", &paths[1], "--state", &paths[2]];
        args.extend(extra);
        args.into_iter().map(String::from).collect()
    }

    fn start(&self, extra: &[&str]) -> Job {
        Job::start(&self.args(extra))
    }

    fn run(&self, extra: &[&str]) -> Ended {
        self.start(extra).finish(JOB_TIMEOUT)
    }

    fn state(&self) -> State {
        State::load(&self.state).expect("a valid state file").expect("a state file")
    }

    /// Rows or files the destination holds, by key, to compare with the source's.
    fn dest_items(&self) -> BTreeMap<String, String> {
        items(self.kind, &self.dest)
    }

    fn assert_copied(&self) {
        assert_eq!(self.dest_items(), items(self.kind, &self.source), "destination differs from source");
    }

    fn event_rows(&self, sql: &str) -> Vec<Vec<SqlValue>> {
        query(&self.events(), sql)
    }
}

/// Two tables (one with an INTEGER PRIMARY KEY with gaps, one keyed by rowid), `n_rows` rows between them.
fn make_sqlite(path: &Path, n_rows: u64) {
    let mut db = Connection::open(path).unwrap();
    let db = db.transaction().unwrap();
    db.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, blob BLOB); CREATE TABLE notes (body TEXT);").unwrap();
    for i in 0..n_rows {
        if i % 3 == 2 {
            db.execute("INSERT INTO notes (body) VALUES (?1)", [format!("note {i}")]).unwrap();
        } else {
            let score = (i % 7 != 0).then_some(i as f64 / 4.0);
            let params =
                rusqlite::params![i as i64 * 3 + 1, format!("item-{i}"), score, vec![i as u8; (i % 5) as usize]];
            db.execute("INSERT INTO items VALUES (?1, ?2, ?3, ?4)", params).unwrap();
        }
    }
    db.commit().unwrap();
}

fn make_tree(root: &Path, n_files: u64) {
    std::fs::create_dir_all(root.join("empty/dir")).unwrap();
    for i in 0..n_files {
        let path = root.join(format!("d{}/f{i:04}.bin", i % 4));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![(i % 251) as u8; (i * 37 % 3000) as usize]).unwrap();
    }
}

fn query(path: &Path, sql: &str) -> Vec<Vec<SqlValue>> {
    let db = Connection::open(path).unwrap();
    let mut stmt = db.prepare(sql).unwrap();
    let n = stmt.column_count();
    let rows = stmt.query_map([], |r| (0..n).map(|i| r.get::<_, SqlValue>(i)).collect()).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

/// `table/rowid -> row` for a database, `path -> bytes` (and `dir/ -> ""`) for a tree.
fn items(kind: &str, path: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if kind == "sqlite" {
        for table in ["items", "notes"] {
            for row in query(path, &format!("SELECT rowid, * FROM {table}")) {
                let old = out.insert(format!("{table}/{:?}", row[0]), format!("{row:?}"));
                assert!(old.is_none(), "duplicate key");
            }
        }
        return out;
    }
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &path, out);
            } else {
                out.insert(rel, format!("{:?}", std::fs::read(&path).unwrap()));
            }
        }
    }
    walk(path, path, &mut out);
    out
}

/// Counts of the `migrate_events` rows by (phase, batch is null, status).
fn event_counts(setup: &Setup) -> BTreeMap<(String, bool, String), i64> {
    let sql = "SELECT phase, batch IS NULL, status, count(*) FROM migrate_events GROUP BY 1, 2, 3";
    setup
        .event_rows(sql)
        .into_iter()
        .map(|row| match &row[..] {
            [SqlValue::Text(phase), SqlValue::Integer(whole), SqlValue::Text(status), SqlValue::Integer(n)] => {
                ((phase.clone(), *whole == 1, status.clone()), *n)
            }
            other => panic!("event row {other:?}"),
        })
        .collect()
}

fn key(phase: &str, whole: bool, status: &str) -> (String, bool, String) {
    (phase.to_string(), whole, status.to_string())
}

#[test]
fn copies_sqlite_and_tree_sources_of_0_1_and_many_items() {
    let cases = [(Setup::sqlite(0), 0u64), (Setup::sqlite(1), 1), (Setup::sqlite(250), 250)];
    let trees = [(Setup::tree(0), 0), (Setup::tree(1), 1), (Setup::tree(23), 23)];
    for (setup, n_items) in cases.into_iter().chain(trees) {
        let ended = setup.run(&["--batch-size", "7"]);
        let what = format!("{} of {n_items}", setup.kind);
        assert_eq!(ended.code, Some(0), "{what}: {}", ended.stderr);
        setup.assert_copied();
        let phases: Vec<&Value> = ended.msgs("phase").into_iter().map(|line| &line["phase"]).collect();
        assert_eq!(phases, ["traversal", "copy"], "{what}");
        assert_eq!(ended.msgs("complete")[0]["items"], n_items, "{what}");
        let n_batches = n_items.div_ceil(7);
        let progress = ended.msgs("progress");
        assert_eq!(progress.len() as u64, n_batches, "{what}");
        if let Some(last) = progress.last() {
            assert_eq!((last["done"].clone(), last["total"].clone()), (n_items.into(), n_items.into()), "{what}");
            assert_eq!(last["batch"], n_batches - 1, "{what}");
        }
        let state = setup.state();
        assert!(state.complete && state.done == n_items && state.in_flight.is_none(), "{what}: {state:?}");
        schema::assert_valid(&serde_json::from_slice(&std::fs::read(&setup.state).unwrap()).unwrap());
        let counts = event_counts(&setup);
        for (phase, status) in [("traversal", "started"), ("traversal", "done"), ("copy", "started"), ("copy", "done")]
        {
            assert_eq!(counts.get(&key(phase, true, status)), Some(&1), "{what}: {counts:?}");
        }
        let batches_done = counts.get(&key("copy", false, "done")).copied().unwrap_or(0);
        assert_eq!(batches_done as u64, n_batches, "{what}: {counts:?}");
        let rows =
            setup.event_rows("SELECT sum(item_count) FROM migrate_events WHERE batch IS NOT NULL AND status = 'done'");
        assert_eq!(rows[0][0], if n_items == 0 { SqlValue::Null } else { SqlValue::Integer(n_items as i64) });
    }
}

#[test]
fn sigint_and_sigterm_checkpoint_and_resume_completes_exactly() {
    for (setup, signal) in [(Setup::sqlite(400), "INT"), (Setup::tree(60), "TERM")] {
        let mut job = setup.start(&["--batch-size", "10", "--batch-delay", "15ms"]);
        job.wait_for_done(20);
        job.signal(signal);
        let ended = job.finish(JOB_TIMEOUT);
        assert_eq!(ended.code, Some(130), "{signal}: {}", ended.stderr);
        let checkpoint = ended.msgs("checkpoint");
        assert_eq!(checkpoint.len(), 1, "{signal}");
        let state = setup.state();
        assert_eq!((state.in_flight, checkpoint[0]["done"].as_u64()), (None, Some(state.done)), "{signal}");
        assert!(state.done >= 20 && state.done < state.total, "{signal}: {state:?}");
        assert!(ended.msgs("complete").is_empty());
        let resumed = setup.run(&["--resume"]);
        assert_eq!(resumed.code, Some(0), "{signal}: {}", resumed.stderr);
        assert_eq!(resumed.msgs("resuming")[0]["done"].as_u64(), Some(state.done));
        let first = resumed.msgs("progress")[0]["done"].as_u64().unwrap();
        assert!(first > state.done, "progress moved back: {first} after {}", state.done);
        setup.assert_copied();
        assert!(setup.state().complete);
        let again = setup.run(&["--resume"]);
        assert_eq!(again.code, Some(0));
        assert_eq!(again.msgs("complete")[0]["already"], true);
        assert!(again.msgs("phase").is_empty(), "a complete job does no work");
    }
}

/// Waits (up to 10 s) until the state file says a batch is in flight.
fn wait_in_flight(state: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let in_flight = || State::load(state).ok().flatten().is_some_and(|s| s.in_flight.is_some());
    while !in_flight() {
        assert!(Instant::now() < deadline, "no batch in flight within 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// SIGKILLs the job at several points (the first, third, ... inside a batch), checking the state file after each, then resumes to the end.
fn kill_and_resume(setup: &Setup, bug: &[&str], kills_at: &[u64]) -> Vec<State> {
    let mut states = Vec::new();
    for (idx, &at) in kills_at.iter().enumerate() {
        let resume = if idx == 0 { None } else { Some("--resume") };
        let mut args = vec!["--batch-size", "10", "--batch-delay", "20ms"];
        args.extend(resume);
        args.extend(bug);
        let mut job = setup.start(&args);
        job.wait_for_done(at);
        if idx % 2 == 0 {
            wait_in_flight(&setup.state);
        }
        let ended = job.kill();
        assert_eq!(ended.code, None, "killed by a signal");
        let state = setup.state();
        if let Some(previous) = states.last() {
            let previous: &State = previous;
            assert!(state.done >= previous.done, "progress moved back");
        }
        states.push(state);
    }
    let mut args = vec!["--resume"];
    args.extend(bug);
    let ended = setup.run(&args);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    states
}

#[test]
fn sigkill_anywhere_then_resume_loses_and_duplicates_nothing() {
    for setup in [Setup::sqlite(300), Setup::tree(50)] {
        let kills_at = if setup.kind == "sqlite" { [30, 90, 150, 240] } else { [10, 20, 30, 40] };
        let states = kill_and_resume(&setup, &[], &kills_at);
        setup.assert_copied();
        let n_in_flight = states.iter().filter(|s| s.in_flight.is_some()).count();
        let counts = event_counts(&setup);
        assert_eq!(counts.get(&key("copy", false, "retry")).copied().unwrap_or(0) as usize, n_in_flight, "{counts:?}");
        for state in &states {
            schema::assert_valid(&serde_json::to_value(state).unwrap());
        }
    }
}

#[test]
fn resume_skips_batch_loses_the_in_flight_batch() {
    let setup = Setup::sqlite(200);
    let states = kill_and_resume(&setup, &["--bug", "resume-skips-batch"], &[50]);
    let skipped = states[0].in_flight.expect("killed inside a batch (the delay is inside)");
    let Batch::Rows(range) = &states[0].batches[skipped as usize] else { panic!("not rows") };
    let source = items("sqlite", &setup.source);
    let dest = setup.dest_items();
    let missing: Vec<&String> = source.keys().filter(|k| !dest.contains_key(*k)).collect();
    assert_eq!(missing.len() as u64, range.count, "{missing:?}");
    for key in missing {
        let rowid: i64 = key.rsplit_once("Integer(").unwrap().1.trim_end_matches(')').parse().unwrap();
        assert!(key.starts_with(&range.table) && (range.first..=range.last).contains(&rowid), "{key} not in {range:?}");
    }
    assert!(setup.state().complete, "the buggy job believes it is complete");
    assert!(dest.keys().all(|k| source.contains_key(k)));
}

#[test]
fn corrupt_state_files_exit_3_and_are_never_restarted() {
    let setup = Setup::sqlite(40);
    let mut job = setup.start(&["--batch-size", "5", "--batch-delay", "10ms"]);
    job.wait_for_done(10);
    job.kill();
    let good = std::fs::read_to_string(&setup.state).unwrap();
    let path = setup.state.display().to_string();
    let spoiled = [
        good[..good.len() / 2].to_string(),
        String::new(),
        good.replacen("\"version\": 1", "\"version\": 7", 1),
        good.replacen("\"done\": ", "\"done\": 1", 1),
        good.replacen("\"phase\": \"copy\"", "\"phase\": \"copying\"", 1),
        good.replacen('{', "{\"extra\": 1, ", 1),
    ];
    for text in spoiled {
        std::fs::write(&setup.state, &text).unwrap();
        let ended = setup.run(&["--resume"]);
        assert_eq!(ended.code, Some(3), "{text}: {}", ended.stderr);
        assert!(ended.stderr.contains(&format!("state file {path} is corrupt: ")), "{}", ended.stderr);
        assert!(ended.msgs("phase").is_empty(), "no work on a corrupt state");
        assert_eq!(std::fs::read_to_string(&setup.state).unwrap(), text, "the corrupt file is left as it was");
    }
    std::fs::write(&setup.state, &good).unwrap();
    let dest = std::fs::read(&setup.dest).unwrap();
    std::fs::remove_file(&setup.dest).unwrap();
    let ended = setup.run(&["--resume"]);
    assert_eq!(ended.code, Some(1), "{}", ended.stderr);
    assert!(ended.stderr.contains("is missing but the state file says"), "{}", ended.stderr);
    std::fs::write(&setup.dest, dest).unwrap();
    assert_eq!(setup.run(&["--resume"]).code, Some(0));
    setup.assert_copied();
}

#[test]
fn torn_state_write_leaves_a_torn_file_under_sigkill() {
    let mut torn = None;
    for attempt in 0..20 {
        let setup = Setup::sqlite(400);
        let mut job = setup.start(&["--batch-size", "5", "--bug", "torn-state-write"]);
        job.wait_for_done(10);
        std::thread::sleep(Duration::from_millis(7 * (attempt % 5)));
        job.kill();
        if let Err(StateError::Corrupt { .. }) = State::load(&setup.state) {
            torn = Some(setup);
            break;
        }
    }
    let setup = torn.expect("a SIGKILL during a piecewise state write tears the file");
    let ended = setup.run(&["--resume", "--bug", "torn-state-write"]);
    assert_eq!(ended.code, Some(3), "{}", ended.stderr);
    assert!(ended.stderr.contains("is corrupt"), "{}", ended.stderr);
    // The correct build writes atomically: a kill at the same moments never tears the file.
    for pause_ms in [0, 3, 7, 11, 17] {
        let setup = Setup::sqlite(400);
        let mut job = setup.start(&["--batch-size", "5"]);
        job.wait_for_done(10);
        std::thread::sleep(Duration::from_millis(pause_ms));
        job.kill();
        setup.state();
    }
}

#[test]
fn empty_source_never_completes_with_its_bug() {
    let setup = Setup::sqlite(0);
    let mut job = setup.start(&["--bug", "empty-never-completes"]);
    job.wait_for("the copy phase", JOB_TIMEOUT, |line| line["msg"] == "phase" && line["phase"] == "copy");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(job.child.try_wait().unwrap().is_none(), "the buggy job exited");
    job.signal("TERM");
    let ended = job.finish(JOB_TIMEOUT);
    assert_eq!(ended.code, Some(130));
    assert!(ended.msgs("complete").is_empty());
    let state = setup.state();
    assert!(!state.complete && state.total == 0, "{state:?}");
    // The same source completes at once on the correct build (resuming the same state).
    let ended = setup.run(&["--resume"]);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert_eq!(ended.msgs("complete")[0]["items"], 0);
}

#[test]
fn bad_arguments_exit_2_and_a_missing_state_starts_fresh() {
    let setup = Setup::sqlite(12);
    let missing = setup.source.with_file_name("nope.sqlite").display().to_string();
    let args = setup.args(&[]).into_iter().map(|a| if a.ends_with("source.sqlite") { missing.clone() } else { a });
    let ended = Job::start(&args.collect::<Vec<_>>()).finish(JOB_TIMEOUT);
    assert_eq!(ended.code, Some(2), "{}", ended.stderr);
    assert!(ended.stderr.contains("nope.sqlite"), "{}", ended.stderr);
    let ended = setup.run(&["--batch-size", "0"]);
    assert_eq!(ended.code, Some(2), "{}", ended.stderr);
    let ended = setup.run(&["--resume", "--batch-size", "5"]);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert_eq!(ended.msgs("progress").len(), 3);
    setup.assert_copied();
    let paths = [setup.source.parent().unwrap(), &setup.dest, &setup.state].map(|p| p.display().to_string());
    let kind_mismatch: Vec<String> =
        ["--kind", "tree", "--source", &paths[0], "--dest", &paths[1], "--state", &paths[2], "--resume"]
            .map(String::from)
            .to_vec();
    let ended = Job::start(&kind_mismatch).finish(JOB_TIMEOUT);
    assert_eq!(ended.code, Some(2), "{}", ended.stderr);
    assert!(ended.stderr.contains("--kind sqlite, not tree"), "{}", ended.stderr);
}

#[test]
fn the_schema_accepts_real_state_files_and_rejects_spoiled_ones() {
    let setup = Setup::tree(30);
    let mut job = setup.start(&["--batch-size", "4", "--batch-delay", "10ms"]);
    job.wait_for_done(8);
    job.kill();
    let mut real = vec![serde_json::to_value(setup.state()).unwrap()];
    assert_eq!(setup.run(&["--resume"]).code, Some(0));
    real.push(serde_json::from_slice(&std::fs::read(&setup.state).unwrap()).unwrap());
    let rows = Setup::sqlite(9);
    assert_eq!(rows.run(&["--batch-size", "2"]).code, Some(0));
    real.push(serde_json::from_slice(&std::fs::read(&rows.state).unwrap()).unwrap());
    let mut in_flight = real[2].clone();
    in_flight["phase"] = "copy".into();
    in_flight["complete"] = false.into();
    in_flight["next_batch"] = 1.into();
    in_flight["in_flight"] = 1.into();
    in_flight["done"] = 2.into();
    real.push(in_flight);
    for state in &real {
        schema::assert_valid(state);
        let parsed: State = serde_json::from_value(state.clone()).unwrap();
        assert_eq!(parsed.validate(), Ok(()));
    }
    type Spoil = fn(&mut Value);
    let spoils: [(&str, Spoil); 9] = [
        ("version", |s| s["version"] = 2.into()),
        ("kind", |s| s["kind"] = "tables".into()),
        ("extra field", |s| s["extra"] = 1.into()),
        ("missing field", |s| drop(s.as_object_mut().unwrap().remove("next_batch"))),
        ("negative done", |s| s["done"] = (-1).into()),
        ("complete in copy phase", |s| s["phase"] = "copy".into()),
        ("row batch in a tree", |s| {
            s["batches"][0] = serde_json::json!({"table": "t", "first": 1, "last": 2, "count": 2})
        }),
        ("escaping path", |s| s["batches"][0]["first"] = "../etc/passwd".into()),
        ("empty batch", |s| s["batches"][1]["count"] = 0.into()),
    ];
    for (what, spoil) in spoils {
        let mut state = real[1].clone();
        spoil(&mut state);
        assert!(schema::validate(&state).is_err(), "the schema accepted {what}");
        let parsed = serde_json::from_value::<State>(state).map_err(|e| e.to_string()).and_then(|s| s.validate());
        assert!(parsed.is_err(), "the job accepted {what}");
    }
    let text = std::fs::read_to_string(&setup.state).unwrap();
    assert!(serde_json::from_str::<Value>(&text[..text.len() - 10]).is_err(), "a truncated file is not JSON");
}

/// `item -> (status, attempts)` from `migrate_items`.
fn item_rows(setup: &Setup) -> BTreeMap<String, (String, i64)> {
    let rows = setup.event_rows("SELECT item, status, attempts FROM migrate_items");
    rows.into_iter()
        .map(|row| match &row[..] {
            [SqlValue::Text(item), SqlValue::Text(status), SqlValue::Integer(attempts)] => {
                (item.clone(), (status.clone(), *attempts))
            }
            other => panic!("item row {other:?}"),
        })
        .collect()
}

fn items_with(rows: &BTreeMap<String, (String, i64)>, status: &str) -> Vec<String> {
    rows.iter().filter(|(_, (s, _))| s == status).map(|(item, _)| item.clone()).collect()
}

/// The source's items (as `migrate_items` names them) that the destination
/// lacks; fails if the destination holds anything the source does not, or a changed value.
fn missing_items(setup: &Setup) -> Vec<String> {
    let (source, dest) = (items(setup.kind, &setup.source), setup.dest_items());
    for (key, value) in &dest {
        assert_eq!(source.get(key), Some(value), "the destination's {key} is not the source's");
    }
    let name = |key: &String| match setup.kind {
        // `table/Integer(rowid)` -> `table:rowid`
        "sqlite" => {
            let (table, rowid) = key.split_once('/').unwrap();
            format!("{table}:{}", rowid.trim_start_matches("Integer(").trim_end_matches(')'))
        }
        _ => key.clone(),
    };
    let mut missing: Vec<String> = source.keys().filter(|k| !dest.contains_key(*k)).map(name).collect();
    missing.sort();
    missing
}

/// The item names `--fail-every n` picks in a source made by `make_sqlite` or `make_tree`.
fn picked_items(setup: &Setup, n: i64) -> Vec<String> {
    let mut picked: Vec<String> = if setup.kind == "sqlite" {
        let sql = format!(
            "SELECT 'items:' || rowid FROM items WHERE rowid % {n} = 0 UNION ALL SELECT 'notes:' || rowid FROM notes WHERE rowid % {n} = 0"
        );
        query(&setup.source, &sql).into_iter().map(|row| text(&row[0]).to_string()).collect()
    } else {
        let files: Vec<String> = items("tree", &setup.source).into_keys().filter(|k| !k.ends_with('/')).collect();
        files.into_iter().enumerate().filter(|(idx, _)| (*idx as i64 + 1) % n == 0).map(|(_, f)| f).collect()
    };
    picked.sort();
    picked
}

fn text(value: &SqlValue) -> &str {
    match value {
        SqlValue::Text(text) => text,
        other => panic!("not text: {other:?}"),
    }
}

fn mark_for_retry(setup: &Setup, which: &str) -> usize {
    let db = Connection::open(setup.events()).unwrap();
    db.execute(&format!("UPDATE migrate_items SET status = 'retry' WHERE status = 'failed' AND {which}"), []).unwrap()
}

#[test]
fn failed_items_are_recorded_and_a_sweep_copies_exactly_the_marked_ones() {
    for setup in [Setup::sqlite(250), Setup::tree(40)] {
        let what = setup.kind;
        let ended = setup.run(&["--batch-size", "9", "--fail-every", "7"]);
        assert_eq!(ended.code, Some(0), "{what}: {}", ended.stderr);
        let picked = picked_items(&setup, 7);
        let n_items = items(setup.kind, &setup.source).keys().filter(|k| !k.ends_with('/')).count();
        let complete = ended.msgs("complete");
        assert_eq!(
            (complete[0]["items"].as_u64(), complete[0]["failed"].as_u64()),
            (Some(n_items as u64), Some(picked.len() as u64))
        );
        assert!(picked.len() >= 5, "{what}: {picked:?}");
        let rows = item_rows(&setup);
        assert_eq!(rows.len(), n_items, "{what}: a row per item");
        assert_eq!(items_with(&rows, "failed"), picked, "{what}");
        assert_eq!(missing_items(&setup), picked, "{what}: exactly the failed items are not copied");
        let errors = setup.event_rows("SELECT DISTINCT error FROM migrate_items WHERE status = 'failed'");
        assert!(errors.iter().all(|e| text(&e[0]).starts_with("injected failure: id ")), "{errors:?}");
        let batches = setup.event_rows("SELECT DISTINCT batch FROM migrate_items ORDER BY batch");
        let want: Vec<Vec<SqlValue>> = (0..setup.state().batches.len() as i64).map(|b| vec![b.into()]).collect();
        assert_eq!(batches, want, "{what}: each row names its batch");

        // Mark some for retry; the sweep copies those, ignoring --fail-every, and leaves the rest failed.
        let marked = mark_for_retry(
            &setup,
            "item IN (SELECT item FROM migrate_items WHERE status = 'failed' ORDER BY item LIMIT 3)",
        );
        assert_eq!(marked, 3);
        let ended = setup.run(&["--sweep", "--fail-every", "7"]);
        assert_eq!(ended.code, Some(0), "{what}: {}", ended.stderr);
        let sweep = ended.msgs("sweep");
        assert_eq!((sweep[0]["retried"].as_u64(), sweep[0]["failed"].as_u64()), (Some(3), Some(0)), "{what}");
        assert!(ended.msgs("complete").is_empty() && ended.msgs("phase").is_empty(), "a sweep migrates nothing else");
        let rows = item_rows(&setup);
        assert_eq!(items_with(&rows, "swept"), picked[..3], "{what}");
        assert!(items_with(&rows, "swept").iter().all(|item| rows[item].1 == 2), "{what}: a second attempt");
        assert_eq!(items_with(&rows, "failed"), picked[3..], "{what}");
        assert_eq!(missing_items(&setup), picked[3..], "{what}");

        // An item name that is not one is refused on its own; the rest are swept.
        let db = Connection::open(setup.events()).unwrap();
        db.execute("INSERT INTO migrate_items VALUES ('../outside', 0, 'retry', 1, NULL)", []).unwrap();
        assert_eq!(mark_for_retry(&setup, "1"), picked.len() - 3);
        let ended = setup.run(&["--sweep"]);
        assert_eq!(ended.code, Some(0), "{what}: {}", ended.stderr);
        let sweep = ended.msgs("sweep");
        let want = (Some(picked.len() as u64 - 3), Some(1));
        assert_eq!((sweep[0]["retried"].as_u64(), sweep[0]["failed"].as_u64()), want, "{what}");
        assert_eq!(ended.msgs("retry failed")[0]["item"], "../outside");
        let rows = item_rows(&setup);
        assert_eq!(items_with(&rows, "failed"), ["../outside"], "{what}");
        assert!(items_with(&rows, "retry").is_empty(), "{what}");
        setup.assert_copied();
        let sweeps =
            setup.event_rows("SELECT status, item_count FROM migrate_events WHERE phase = 'sweep' ORDER BY seq");
        assert_eq!(sweeps.len(), 4, "{what}: {sweeps:?}");

        // Nothing marked: nothing to do.
        let ended = setup.run(&["--sweep"]);
        assert_eq!((ended.code, ended.msgs("sweep")[0]["retried"].as_u64()), (Some(0), Some(0)), "{what}");
    }
}

#[test]
fn sweep_skips_last_leaves_the_last_marked_item_behind() {
    let setup = Setup::sqlite(120);
    assert_eq!(setup.run(&["--fail-every", "10"]).code, Some(0));
    let picked = picked_items(&setup, 10);
    assert_eq!(mark_for_retry(&setup, "1"), picked.len());
    let ended = setup.run(&["--sweep", "--bug", "sweep-skips-last"]);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert_eq!(ended.msgs("sweep")[0]["retried"].as_u64(), Some(picked.len() as u64 - 1));
    // The last in plan order: the last table (by name), then the highest rowid.
    let mut by_plan = picked.clone();
    by_plan.sort_by_key(|item| {
        let (table, rowid) = item.split_once(':').unwrap();
        (table.to_string(), rowid.parse::<i64>().unwrap())
    });
    let last = by_plan.last().unwrap().clone();
    let rows = item_rows(&setup);
    assert_eq!(items_with(&rows, "retry"), [last.as_str()]);
    assert_eq!(missing_items(&setup), [last.as_str()]);
    // The correct build's sweep picks it up.
    let ended = setup.run(&["--sweep"]);
    assert_eq!(ended.msgs("sweep")[0]["retried"].as_u64(), Some(1));
    setup.assert_copied();
    assert_eq!(items_with(&item_rows(&setup), "swept").len(), picked.len());
}

#[test]
fn a_sweep_needs_the_migrations_state_file() {
    let setup = Setup::sqlite(10);
    let ended = setup.run(&["--sweep"]);
    assert_eq!(ended.code, Some(2), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("no state file") && ended.stderr.contains("run the migration first"),
        "{}",
        ended.stderr
    );
    let ended = setup.run(&["--sweep", "--resume"]);
    assert_eq!(ended.code, Some(2), "{}", ended.stderr);
    assert_eq!(setup.run(&[]).code, Some(0));
    let other = setup.dest.with_file_name("other.sqlite").display().to_string();
    let args = setup.args(&["--sweep"]).into_iter().map(|a| if a.ends_with("dest.sqlite") { other.clone() } else { a });
    let ended = Job::start(&args.collect::<Vec<_>>()).finish(JOB_TIMEOUT);
    assert_eq!(ended.code, Some(2), "{}", ended.stderr);
    assert!(ended.stderr.contains("is for --dest"), "{}", ended.stderr);
}
