//! Engine matrices end to end: the queue testbed's contract under its memory
//! and sqlite engines (with the sqlite-only bug caught only in its cell), the
//! old build against a migrated schema, two real queue processes sharing one
//! sqlite file, beanstalkd's memory and binlog engines under kill -9, and Redis
//! with and without its append-only file, and its replicas' stale reads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::common::{check, example, report, run_in_tmp};

const TESTBED: &str = env!("CARGO_BIN_EXE_shakedown-testbed");

/// Each cell's report, by the cell's value of `key`, read through `suite.json`.
fn cells(out: &Path, key: &str) -> Vec<(String, Value)> {
    let suite: Value = serde_json::from_str(&std::fs::read_to_string(out.join("suite.json")).unwrap()).unwrap();
    let runs = suite["scenarios"].as_array().expect("suite.json lists the runs");
    let reports = runs.iter().map(|run| report(Path::new(run["run_dir"].as_str().unwrap())));
    reports.map(|r| (r["matrix"][key].as_str().unwrap().to_string(), r)).collect()
}

#[test]
fn the_queue_contract_holds_on_both_engines_and_the_admin_check_is_guarded() {
    let (code, err, tmp) = run_in_tmp(&example("queue-engines/contract.toml"), &[]);
    assert_eq!(code, Some(0), "{err}");
    let cells = cells(&tmp.path().join("out"), "engine");
    let engines: Vec<&str> = cells.iter().map(|(engine, _)| engine.as_str()).collect();
    assert_eq!(engines, ["memory", "sqlite"]);
    for (engine, r) in &cells {
        assert_eq!(r["verdict"], "valid", "{engine}: {}", r["checks"]);
        assert_eq!(check(r, "total-queue")["verdict"], "valid");
        assert!(r["ops"]["by_action"]["complete"]["ok"].as_u64().unwrap() > 0, "{engine}: {}", r["ops"]);
    }
    assert_eq!(check(&cells[1].1, "admin-stats-done")["verdict"], "valid");
    assert!(cells[0].1["checks"].as_array().unwrap().iter().all(|c| c["name"] != "admin-stats-done"));
    let skip = "queue-contract[engine=memory]: check `admin-stats-done` skipped in engine=memory: only engine=sqlite";
    assert!(err.contains(skip), "{err}");
}

#[test]
fn one_cell_is_chosen_with_matrix_engine_sqlite() {
    let (code, err, tmp) = run_in_tmp(&example("queue-engines"), &["--matrix", "engine=sqlite"]);
    assert_eq!(code, Some(0), "{err}");
    let cells = cells(&tmp.path().join("out"), "engine");
    assert_eq!(cells.len(), 1, "only contract.toml has an engine dimension, and only its sqlite cell runs");
    assert_eq!(cells[0].0, "sqlite");
    assert!(!err.contains("engine=memory]"), "{err}");
}

#[test]
fn broken_stats_query_is_caught_only_in_the_sqlite_cell() {
    let (code, err, tmp) = run_in_tmp(&example("queue-engines/broken-stats.toml"), &[]);
    assert_eq!(code, Some(1), "{err}");
    let cells = cells(&tmp.path().join("out"), "engine");
    let (memory, sqlite) = (&cells[0], &cells[1]);
    assert_eq!((memory.0.as_str(), sqlite.0.as_str()), ("memory", "sqlite"));
    assert_eq!(memory.1["verdict"], "valid", "{}", memory.1["checks"]);
    assert_eq!(sqlite.1["verdict"], "invalid");
    let unexpected = check(&sqlite.1, "unexpected");
    assert_eq!(unexpected["verdict"], "invalid");
    let details = unexpected["details"].to_string();
    assert!(details.contains("admin-stats") && details.contains("500"), "{details:.800}");
    assert!(details.contains("no such column: lease_expires_at"), "SQLite's error reaches the report: {details:.800}");
    assert_eq!(check(&sqlite.1, "total-queue")["verdict"], "valid", "the rest of the contract holds");
}

#[test]
fn the_old_build_works_against_the_schema_the_new_build_migrated() {
    let (code, err, tmp) = run_in_tmp(&example("queue-engines/upgrade-window.toml"), &[]);
    assert_eq!(code, Some(0), "{err}");
    let cells = cells(&tmp.path().join("out"), "build");
    assert_eq!(cells.iter().map(|(b, _)| b.as_str()).collect::<Vec<_>>(), ["old", "new"]);
    for (build, r) in &cells {
        assert_eq!(r["verdict"], "valid", "{build}: {}", r["checks"]);
        let by_action = &r["ops"]["by_action"];
        for f in ["enqueue", "dequeue", "complete"] {
            assert!(by_action[f]["ok"].as_u64().unwrap_or(0) > 0, "{build}: {f} worked: {by_action}");
        }
    }
    let old = &cells[0].1["ops"]["by_action"];
    assert!(old["keyed-refused"]["ok"].as_u64().unwrap() > 0, "the old build refused unique keys: {old}");
}

#[test]
fn a_rolling_upgrade_moves_each_worker_from_the_old_binary_to_the_new_one_without_losing_jobs() {
    let (code, err, tmp) = run_in_tmp(&example("queue-engines/rolling-upgrade.toml"), &["--matrix", "version=old"]);
    assert_eq!(code, Some(0), "{err}");
    let r = report(&tmp.path().join("out"));
    assert_eq!(r["matrix"]["version"], "old");
    let upgrades: Vec<&Value> = r["faults"].as_array().unwrap().iter().filter(|f| f["kind"] == "upgrade").collect();
    let targets: Vec<&str> = upgrades.iter().map(|f| f["target"].as_str().unwrap()).collect();
    assert_eq!(targets, ["w1", "w2"], "node by node, in order: {upgrades:?}");
    assert!(upgrades[1]["start_ns"].as_u64() > upgrades[0]["end_ns"].as_u64(), "one at a time");
    assert!(upgrades[0]["detail"].as_str().unwrap().contains("bin/queue-old -> shakedown-testbed"));
    assert_eq!(check(&r, "w1-upgraded")["verdict"], "valid", "w1 logged the old build, then the new");
    assert_eq!(check(&r, "total-queue")["verdict"], "valid", "no acknowledged job lost across the upgrade");
}

#[test]
fn beanstalkd_loses_jobs_in_memory_and_keeps_them_in_its_binlog() {
    assert!(
        Command::new("beanstalkd").arg("-v").output().is_ok_and(|o| o.status.success()),
        "beanstalkd is not installed: run scripts/install-deps (the test suite's scripts/test does)"
    );
    let (code, err, tmp) = run_in_tmp(&example("beanstalkd"), &[]);
    assert_eq!(code, Some(1), "the memory cell is invalid: {err}");
    let cells = cells(&tmp.path().join("out"), "engine");
    let (memory, binlog) = (&cells[0], &cells[1]);
    assert_eq!((memory.0.as_str(), binlog.0.as_str()), ("memory", "binlog"));
    let lost = &check(&memory.1, "total-queue")["details"]["lost"];
    assert_eq!(memory.1["verdict"], "invalid", "{}", memory.1["checks"]);
    assert!(!lost.as_array().unwrap().is_empty(), "the kills lost waiting jobs: {lost:.300}");
    assert_eq!(binlog.1["verdict"], "valid", "{}", binlog.1["checks"]);
    for (engine, r) in &cells {
        let kills = r["faults"].as_array().unwrap().iter().filter(|f| f["kind"] == "kill").count();
        assert_eq!(kills, 2, "{engine}: {}", r["faults"]);
    }
}

fn assert_redis_installed() {
    assert!(
        Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success()),
        "redis-server is not installed: run scripts/install-deps (the test suite's scripts/test does)"
    );
}

#[test]
fn redis_without_an_append_only_file_loses_acknowledged_writes_when_its_primary_is_killed() {
    assert_redis_installed();
    let (code, err, tmp) = run_in_tmp(&example("redis/persistence.toml"), &[]);
    assert_eq!(code, Some(1), "the appendonly=no cell is invalid: {err}");
    let cells = cells(&tmp.path().join("out"), "appendonly");
    let (none, aof) = (&cells[0], &cells[1]);
    assert_eq!((none.0.as_str(), aof.0.as_str()), ("no", "yes"));
    assert_eq!(none.1["verdict"], "invalid", "{}", none.1["checks"]);
    let blocked = &check(&none.1, "linearizable")["details"]["blocked"];
    assert_eq!(blocked["f"], "read", "a read after the restart finds the register gone: {blocked}");
    assert_eq!(aof.1["verdict"], "valid", "{}", aof.1["checks"]);
    for (cell, r) in &cells {
        // Both kills, restarts and reads after them happened.
        assert_eq!(check(r, "steps")["verdict"], "valid", "{cell}: {}", r["checks"]);
    }
}

#[test]
fn reads_from_redis_replicas_are_caught_stale() {
    assert_redis_installed();
    let (code, err, tmp) = run_in_tmp(&example("redis/replica-reads.toml"), &[]);
    assert_eq!(code, Some(1), "{err}");
    let r = report(&tmp.path().join("out"));
    let linear = check(&r, "linearizable");
    assert_eq!(linear["verdict"], "invalid");
    assert_eq!(linear["details"]["blocked"]["f"], "read", "a replica's read is the op no order places: {linear}");
    let refused = r["ops"]["by_action"]["write"]["fail"].as_u64().unwrap_or_default();
    assert!(refused > 0, "replicas refuse writes (READONLY), recorded as fail: {}", r["ops"]);
}

/// A `shakedown-testbed queue` process; killed when dropped.
struct Queue {
    child: Child,
    addr: SocketAddr,
}

impl Queue {
    /// Starts a sqlite queue of `build` on `dir`, on a port the kernel picks
    /// (read back from its `listening` line, so no other test can race for it).
    fn start(dir: &Path, build: &str) -> Queue {
        let mut child = Command::new(TESTBED)
            .args(["queue", "--engine", "sqlite", "--build", build, "--listen", "127.0.0.1:0", "--data"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the testbed");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
                if let ("listening", Some(addr)) = (entry["msg"].as_str().unwrap_or(""), entry["addr"].as_str()) {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("a socket address"));
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(10));
        let mut queue = Queue { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)) };
        queue.addr = addr.expect("the queue logs listening with its address");
        queue
    }

    fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        call(self.addr, method, path, body)
    }
}

/// One HTTP/1.1 request with a 5 s read timeout; returns status and body.
fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(format!("{head}{body}").as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a reply head");
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
}

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_queue_processes_share_one_sqlite_file_across_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let new = Queue::start(tmp.path(), "new");
    let old = Queue::start(tmp.path(), "old");
    let n_jobs = 30;
    for n in 0..n_jobs {
        let queue = if n % 2 == 0 { &new } else { &old };
        assert_eq!(queue.call("POST", "/jobs", &format!("j{n}")).0, 200);
    }
    assert_eq!(new.call("POST", "/jobs?key=k", "keyed"), (200, (n_jobs + 1).to_string()));
    assert_eq!(old.call("POST", "/jobs?key=k", "again"), (400, "unique keys need the new build".into()));
    let claimers: Vec<_> = [new.addr, old.addr]
        .into_iter()
        .map(|addr| {
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                while let (200, body) = call(addr, "POST", "/claim", "") {
                    let job: Value = serde_json::from_str(&body).unwrap();
                    ids.push(job["id"].as_u64().unwrap());
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<u64> = claimers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=n_jobs + 1).collect::<Vec<_>>(), "every job claimed once, by one process or the other");
    let (code, stats) = new.call("GET", "/admin/stats", "");
    assert_eq!(code, 200);
    let stats: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["claimed"], n_jobs + 1, "{stats}");
}
