//! State checks end to end: actors' SQLite files, directory trees and JSON
//! commands are snapshotted after the run and compared; a correct variant is
//! valid on every check, a buggy one invalid on each, with states.json kept.

use crate::common::{check, report, shakedown, stderr, write_file};
use serde_json::Value;

/// Writes and changes the actors' state. `create` adds an id to the actor's
/// own table (the bug loses odd ids); `setup` fills both actors' issues,
/// events and files (the bug makes bob's differ); `sync` changes nothing
/// (the bug edits a title every round); `dump` prints JSON.
const SCRIPT: &str = r#"
import json, os, sqlite3, sys
cmd, where, n, bug = sys.argv[1:5]
bad = bug == "bug"

def db(home):
    c = sqlite3.connect(os.path.join(home, "db.sqlite"))
    c.execute("CREATE TABLE IF NOT EXISTS issues (id INTEGER PRIMARY KEY, title TEXT, priority INTEGER, updated_at INTEGER)")
    c.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER, entity TEXT, op TEXT)")
    c.execute("CREATE TABLE IF NOT EXISTS mine (id INTEGER)")
    c.execute("CREATE TABLE IF NOT EXISTS made (id INTEGER)")
    return c

if cmd == "create":
    c = db(where)
    i = int(n) + 100
    c.execute("INSERT INTO made VALUES (?)", (i,))
    if not (bad and i % 2 == 1):
        c.execute("INSERT INTO mine VALUES (?)", (i,))
    c.commit()
    print(i)
elif cmd == "setup":
    for actor in ["alice", "bob"]:
        home = os.path.join(where, "actors", actor, "home")
        c = db(home)
        odd = bad and actor == "bob"
        title, prio = ("B", 1) if odd else ("b", 3)
        c.executemany("INSERT INTO issues VALUES (?,?,?,?)", [(1, "a", 1, 10), (2, title, prio, 20 if actor == "alice" else 21)])
        events = [(1, "e1", "create"), (2, "e1", "update"), (5, "e2", "create")]
        if odd:
            events = [(1, "e1", "update"), (2, "e1", "create"), (2, "e2", "create"), (3, "e1", "update")]
        c.executemany("INSERT INTO events VALUES (?,?,?)", events)
        c.commit()
        files = os.path.join(home, "files")
        os.makedirs(os.path.join(files, "sub"), exist_ok=True)
        with open(os.path.join(files, "sub", "a.txt"), "w") as f:
            f.write("other" if odd else "same")
        edit = {"entity": 2, "field": "title", "value": "b"} if actor == "alice" else {"entity": 2, "field": "priority", "value": 3}
        with open(os.path.join(home, "edits.json"), "w") as f:
            json.dump([edit], f)
elif cmd == "sync":
    if bad:
        for actor in ["alice", "bob"]:
            c = db(os.path.join(where, "actors", actor, "home"))
            c.execute("UPDATE issues SET title = title || '!' WHERE id = 1")
            c.commit()
elif cmd == "dump":
    print(json.dumps({"n": 2, "who": "bob" if bad and "/bob/" in where else "any"}))
"#;

const SCENARIO: &str = r#"
name = "state"
ops = 4
clients = 2
finally = ["setup"]

[actor.alice]
[actor.bob]

[client]
kind = "exec"

[[action]]
f = "create"
command = ["python3", "{scenario.dir}/state.py", "create", "{actor.home}", "{seq}", "VARIANT"]
result = "stdout:int"
capture = "ids"

[[action]]
f = "setup"
weight = 0
command = ["python3", "{scenario.dir}/state.py", "setup", "{run.dir}", "0", "VARIANT"]

[[action]]
f = "sync"
weight = 0
command = ["python3", "{scenario.dir}/state.py", "sync", "{run.dir}", "0", "VARIANT"]

[[check]]
kind = "converge"
name = "rows"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT * FROM issues ORDER BY id" }
ignore = ["updated_at"]

[[check]]
kind = "converge"
name = "files"
state = { tree = "{actor.home}/files" }

[[check]]
kind = "converge"
name = "json"
state = { command = ["python3", "{scenario.dir}/state.py", "dump", "{actor.home}/", "0", "VARIANT"] }

[[check]]
kind = "event-counts"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT op, count(*) FROM events GROUP BY op ORDER BY op" }

[[check]]
kind = "sequence"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT seq FROM events ORDER BY rowid" }
field = "seq"

[[check]]
kind = "causal-order"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT * FROM events ORDER BY rowid" }
entity = "entity"
op = "op"
order = "seq"

[[check]]
kind = "own-writes"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT id FROM mine" }
pool = "ids"

[[check]]
kind = "own-writes"
name = "own-writes from a table"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT id FROM mine" }
created = { sqlite = "{actor.home}/db.sqlite", query = "SELECT id FROM made" }

[[check]]
kind = "field-merge"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT * FROM issues" }
edits = [
  { actor = "alice", entity = 2, field = "title", value = "b" },
  { actor = "bob", entity = 2, field = "priority", value = 3 },
]

[[check]]
kind = "field-merge"
name = "logged edits"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT * FROM issues" }
edit_log = { command = ["cat", "{actor.home}/edits.json"] }

[[check]]
kind = "sql"
name = "no stray titles"
state = { sqlite = "{run.dir}/actors/bob/home/db.sqlite", query = "SELECT id, title FROM issues WHERE title NOT IN ('a', 'b')" }
empty = true

[[check]]
kind = "sql"
name = "two issues"
state = { sqlite = "{run.dir}/actors/alice/home/db.sqlite", query = "SELECT count(*) FROM issues" }
rows = [[2]]

[[check]]
kind = "idempotent"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT id, title FROM issues ORDER BY id" }
round = ["sync"]
"#;

/// Runs the scenario in `variant` ("ok" or "bug"); the exit code, the
/// verdict of each check by name, the report and the states written.
fn run(variant: &str, extra: &str) -> (Option<i32>, Vec<(String, String)>, Value, Value) {
    let tmp = tempfile::tempdir().unwrap();
    write_file(tmp.path(), "state.py", SCRIPT);
    let text = SCENARIO.replace("VARIANT", variant) + extra;
    let path = write_file(tmp.path(), "s.toml", &text);
    let out = tmp.path().join("run");
    let o = shakedown(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let r = report(&out);
    let verdicts = r["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("no report: {}", stderr(&o)))
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["verdict"].as_str().unwrap().to_string()))
        .collect();
    let states =
        std::fs::read_to_string(out.join("states.json")).map_or(Value::Null, |t| serde_json::from_str(&t).unwrap());
    (o.status.code(), verdicts, r, states)
}

#[test]
fn correct_states_pass_every_state_check_and_are_kept_in_states_json() {
    let (code, verdicts, r, states) = run("ok", "");
    assert!(verdicts.iter().all(|(_, v)| v == "valid"), "{verdicts:?}\n{:#}", r["checks"]);
    assert_eq!(code, Some(0));
    assert_eq!(verdicts.len(), 13);
    let states = states.as_array().expect("states.json is a list");
    // Two actors for each per-actor check, one for each sql, idempotent's
    // before and after, and `created` and `edits` for own-writes and field-merge.
    assert_eq!(states.len(), 2 * 10 + 2 + 2 * 2 + 2 + 2, "{states:#?}");
    let tree = states.iter().find(|s| s["check"] == "files" && s["owner"] == "bob").unwrap();
    assert_eq!(tree["content"]["entries"][0]["path"], "sub/a.txt");
    assert_eq!(check(&r, "own-writes")["summary"], "every actor holds what it created (4 entities)");
}

#[test]
fn buggy_states_fail_each_check_with_details() {
    let missing = r#"
[[check]]
kind = "converge"
name = "missing"
state = { sqlite = "{actor.home}/nope.sqlite", query = "SELECT 1" }
"#;
    let (code, verdicts, r, _) = run("bug", missing);
    assert_eq!(code, Some(1), "{verdicts:?}");
    for (name, verdict) in &verdicts {
        let want = match name.as_str() {
            "two issues" => "valid",
            "missing" => "unknown",
            _ => "invalid",
        };
        assert_eq!(verdict, want, "{name}: {:#}", check(&r, name));
    }
    let rows = check(&r, "rows");
    assert_eq!(rows["summary"], "1 of 1 actors differ from alice: bob (1 difference: 2 differs in priority, title)");
    assert_eq!(
        rows["details"]["differences"]["bob"][0]["fields"][0],
        serde_json::json!({"path": "/priority", "alice": 3, "bob": 1})
    );
    assert!(check(&r, "files")["summary"].as_str().unwrap().contains("sub/a.txt differs in sha256, size"));
    assert_eq!(check(&r, "event-counts")["summary"], "1 count differs: update: alice 1, bob 2");
    assert_eq!(
        check(&r, "sequence")["summary"],
        "seq not strictly increasing: bob at record 2: seq repeats after 2 to 2"
    );
    assert!(check(&r, "causal-order")["summary"].as_str().unwrap().contains("bob: update of e1 before any create"));
    assert!(check(&r, "own-writes")["summary"].as_str().unwrap().contains("lacks 10"));
    assert_eq!(check(&r, "own-writes from a table")["summary"], check(&r, "own-writes")["summary"]);
    assert!(check(&r, "field-merge")["summary"]
        .as_str()
        .unwrap()
        .starts_with("2 edits lost: bob has 2.title = B, want b"));
    assert_eq!(check(&r, "logged edits")["summary"], check(&r, "field-merge")["summary"]);
    assert_eq!(check(&r, "no stray titles")["details"]["got"]["-"], serde_json::json!([[2, "B"]]));
    assert!(check(&r, "idempotent")["summary"]
        .as_str()
        .unwrap()
        .starts_with("the extra rounds changed 2 states: alice: 1 differs in title"));
    let missing = check(&r, "missing")["summary"].as_str().unwrap();
    assert!(missing.starts_with("the final state of alice could not be read (and 1 more): open "), "{missing}");
}

/// Without the `duckdb` feature a DuckDB state cannot be read: its check is
/// unknown (exit 2) and says how to get the feature, rather than passing.
#[cfg(not(feature = "duckdb"))]
#[test]
fn a_duckdb_state_without_the_feature_is_unknown_and_says_how_to_get_it() {
    let text = r#"
name = "duckdb-absent"
ops = 1
[client]
kind = "exec"
[[action]]
f = "noop"
command = ["true"]
[[check]]
kind = "sql"
state = { duckdb = "{run.dir}/x.duckdb", query = "SELECT 1" }
rows = [[1]]
"#;
    let (o, r) = crate::common::run_text(text, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let sql = check(&r, "sql");
    assert_eq!(sql["verdict"], "unknown");
    assert!(sql["summary"].as_str().unwrap().contains("--features duckdb"), "{sql}");
}
