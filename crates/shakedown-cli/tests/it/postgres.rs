//! A real PostgreSQL server (Debian's, installed by scripts/install-deps,
//! started per run by examples/postgres/pg.sh): a resumable load interrupted
//! at many points must end with the uninterrupted run's rows, read straight
//! from the server; its checkpoint-first bug is caught; `sql` checks read
//! PostgreSQL's column types and name what failed.

use crate::common::{check, example, report, run_in_tmp, write_file};
use serde_json::{json, Value};

/// Runs `scenario`; returns the exit code, stderr and the report.
fn run(scenario: &std::path::Path, args: &[&str]) -> (Option<i32>, String, Value) {
    assert!(
        std::path::Path::new("/usr/bin/psql").exists(),
        "PostgreSQL is not installed: run scripts/install-deps (the test suite's scripts/test does)"
    );
    let (code, err, tmp) = run_in_tmp(scenario, args);
    (code, err, report(&tmp.path().join("out")))
}

#[test]
fn a_load_into_postgres_resumes_to_the_golden_rows_read_from_the_server() {
    let (code, err, r) = run(&example("postgres/resume.toml"), &[]);
    assert_eq!(code, Some(0), "{err}");
    let resume = check(&r, "resume");
    assert_eq!(resume["verdict"], "valid", "{resume}");
    assert_eq!(resume["details"]["cases"].as_array().unwrap().len(), 12);
    assert_eq!(check(&r, "golden load")["verdict"], "valid");
    let signals: Vec<&str> = r["faults"].as_array().unwrap().iter().filter_map(|f| f["detail"].as_str()).collect();
    assert!(signals.iter().any(|d| d.starts_with("SIGINT")) && signals.iter().any(|d| d.starts_with("SIGKILL")));
}

#[test]
fn a_checkpoint_committed_before_its_rows_is_caught_with_the_rows_named() {
    let (code, err, r) = run(&example("postgres/resume-checkpoint-first.toml"), &[]);
    assert_eq!(code, Some(1), "{err}");
    let resume = check(&r, "resume");
    assert_eq!(resume["verdict"], "invalid", "{resume}");
    let wrong: Vec<&Value> = resume["details"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["missing_count"].as_u64() > Some(0) || c["extra_count"].as_u64() > Some(0))
        .collect();
    assert!(!wrong.is_empty(), "some case lost or repeated rows: {resume}");
    let named = wrong[0]["missing"].as_array().into_iter().chain(wrong[0]["extra"].as_array()).flatten().next();
    let row = named.expect("the rows are listed");
    assert!(row[1].as_str().is_some_and(|s| s.starts_with("item-")), "a whole row from PostgreSQL: {row}");
}

#[test]
fn sql_checks_read_postgres_columns_by_type_and_name_what_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = example("postgres/pg.sh");
    let url = "postgresql://postgres@127.0.0.1:{service.pg.port}/postgres";
    let text = format!(
        r#"
name = "pg-sql-checks"
[service.pg]
command = ["{pg}", "{{dir}}/data", "{{port}}"]
ready = {{ exec = ["pg_isready", "-h", "127.0.0.1", "-p", "{{port}}", "-U", "postgres"], timeout = "60s" }}
[actor.a]
[client]
kind = "exec"
[[action]]
f = "noop"
weight = 0
command = ["true"]
[[step]]
actor = "a"
exec = ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", "{{service.pg.port}}", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c",
  "CREATE TABLE t (i int8, f float8, n numeric, b bool, j jsonb, by bytea, s text, z text); INSERT INTO t VALUES (1, 1.5, 2.50, true, '{{{{\"a\": 1}}}}', '\\x00ff', 'x', NULL), (2, 0.25, 3, false, '[1, 2]', '\\x', 'y', 'z')"]
[[check]]
kind = "sql"
name = "typed"
state = {{ postgres = "{url}", query = "SELECT i, f, n, b, j, by, s FROM t ORDER BY i" }}
rows = [[1, 1.5, "2.50", true, {{ a = 1 }}, "00ff", "x"], [2, 0.25, 3, false, [1, 2], "", "y"]]
[[check]]
kind = "sql"
name = "no nulls"
state = {{ postgres = "{url}", query = "SELECT i FROM t WHERE z IS NULL" }}
empty = true
[[check]]
kind = "sql"
name = "no such table"
state = {{ postgres = "{url}", query = "SELECT * FROM nope" }}
empty = true
[[check]]
kind = "sql"
name = "read only"
state = {{ postgres = "{url}", query = "DELETE FROM t RETURNING i" }}
empty = true
[[check]]
kind = "sql"
name = "nobody listens"
state = {{ postgres = "postgresql://postgres:secret@127.0.0.1:1/postgres", query = "SELECT 1", timeout = "3s" }}
rows = [[1]]
"#,
        pg = pg.display()
    );
    let path = write_file(tmp.path(), "s.toml", &text);
    let (code, err, r) = run(&path, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(check(&r, "typed")["verdict"], "valid", "{}", check(&r, "typed"));
    let nulls = check(&r, "no nulls");
    assert_eq!(nulls["verdict"], "invalid");
    assert_eq!(nulls["details"]["got"]["-"], json!([[1]]), "the offending rows: {nulls}");
    let missing = check(&r, "no such table");
    assert_eq!(missing["verdict"], "unknown");
    assert!(missing["summary"].as_str().unwrap().contains("relation \"nope\" does not exist"), "{missing}");
    let write = check(&r, "read only");
    assert_eq!(write["verdict"], "unknown", "a state read never writes: {write}");
    assert!(write["summary"].as_str().unwrap().contains("read-only transaction"), "{write}");
    let down = check(&r, "nobody listens");
    assert_eq!(down["verdict"], "unknown");
    let summary = down["summary"].as_str().unwrap();
    assert!(summary.contains("127.0.0.1:1") && !summary.contains("secret"), "named, password hidden: {summary}");
    assert!(summary.contains("refused"), "with the cause: {summary}");
}

#[test]
fn a_skip_locked_queue_claims_every_job_once_under_pauses() {
    let (code, err, r) = run(&example("postgres/queue.toml"), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(check(&r, "total-queue")["verdict"], "valid");
    assert_eq!(check(&r, "claimed once")["verdict"], "valid");
    let claims = r["ops"]["by_action"]["dequeue"]["ok"].as_u64().unwrap_or_default();
    assert!(claims >= 20, "the workload claimed jobs: {}", r["ops"]);
}

#[test]
fn a_claim_without_a_lock_hands_one_job_to_two_claimers() {
    let (code, err, r) = run(&example("postgres/queue-select-then-update.toml"), &[]);
    assert_eq!(code, Some(1), "{err}");
    let queue = check(&r, "total-queue");
    assert_eq!(queue["verdict"], "invalid");
    let duplicated = queue["details"]["duplicated"].as_array().expect("duplicated elements");
    assert!(!duplicated.is_empty(), "{queue}");
    let claims = duplicated[0]["dequeues"].as_array().unwrap();
    assert!(claims.len() >= 2, "both claims of the job are named: {queue}");
    let table = check(&r, "claimed once");
    assert_eq!(table["verdict"], "invalid", "the table counts the second claim too: {table}");
}
