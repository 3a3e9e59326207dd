//! Unit tests for the kv state machine, log parsing and the journal's two durability modes.

use std::fs;

use super::*;
use crate::journal::{encode, parse_log};

fn put(key: &str, value: &str) -> Command {
    Command::Put { key: key.into(), value: value.into() }
}

fn cas(key: &str, from: &str, to: &str) -> Command {
    Command::Cas { key: key.into(), from: from.into(), to: to.into() }
}

fn add(set: &str, element: &str) -> Command {
    Command::SetAdd { set: set.into(), element: element.into() }
}

/// Runs `commands` in order on an empty state and checks each outcome.
fn check(steps: &[(Command, Outcome)]) -> State {
    let mut state = State::default();
    for (idx, (command, expected)) in steps.iter().enumerate() {
        let (outcome, mutation) = state.plan(command.clone());
        assert_eq!(&outcome, expected, "step {idx}: {command:?}");
        mutation.into_iter().for_each(|m| state.apply(m));
    }
    state
}

fn done(body: &str) -> Outcome {
    Outcome::Done(body.into())
}

#[test]
fn put_delete_and_cas_semantics() {
    let state = check(&[
        (cas("k", "a", "b"), Outcome::NotFound),
        (Command::Delete { key: "k".into() }, Outcome::NotFound),
        (put("k", "a"), done("a")),
        (cas("k", "x", "b"), Outcome::Mismatch),
        (cas("k", "a", "b"), done("b")),
        (Command::Delete { key: "k".into() }, done("b")),
        (put("j", "1"), done("1")),
    ]);
    assert_eq!(state.get("k"), None);
    assert_eq!(state.get("j"), Some("1"));
}

#[test]
fn set_elements_sort_ints_by_value_before_strings() {
    let state = check(&[
        (add("s", "10"), done("10")),
        (add("s", "b"), done("b")),
        (add("s", "2"), done("2")),
        (add("s", "-3"), done("-3")),
        (add("s", "a"), done("a")),
        (add("s", "2"), done("2")),
        (add("s", "02"), done("02")),
    ]);
    let json = serde_json::to_string(&state.elements("s")).unwrap();
    assert_eq!(json, r#"[-3,2,10,"a","b"]"#);
    assert!(state.elements("missing").is_empty());
}

#[test]
fn plan_logs_only_changes() {
    let state = check(&[(put("k", "a"), done("a")), (add("s", "x"), done("x"))]);
    assert_eq!(state.plan(cas("k", "z", "b")).1, None);
    assert_eq!(state.plan(add("s", "x")).1, None);
    assert_eq!(state.plan(cas("k", "a", "b")).1, Some(Mutation::Put { key: "k".into(), value: "b".into() }));
}

fn line(mutation: &Mutation) -> String {
    String::from_utf8(encode(mutation)).unwrap()
}

fn put_entry(key: &str, value: &str) -> Mutation {
    Mutation::Put { key: key.into(), value: value.into() }
}

#[test]
fn parse_log_keeps_whole_lines_and_drops_a_torn_tail() {
    let a = line(&put_entry("a", "1"));
    let b = line(&put_entry("b", "2"));
    let cases: Vec<(String, usize, usize)> = vec![
        (String::new(), 0, 0),
        (a.clone(), 1, a.len()),
        (format!("{a}{b}"), 2, a.len() + b.len()),
        (format!("{a}{}", &b[..5]), 1, a.len()),
        (format!("{a}{}", b.trim_end()), 1, a.len()),
        (format!("{a}{{\"op\":\"pu\n"), 1, a.len()),
        (format!("{a}\n{b}"), 2, a.len() + 1 + b.len()),
    ];
    for (text, n_entries, valid_len) in cases {
        let replay = parse_log::<Mutation>(text.as_bytes()).unwrap();
        assert_eq!(replay.entries.len(), n_entries, "{text:?}");
        assert_eq!(replay.valid_len, valid_len, "{text:?}");
    }
}

#[test]
fn parse_log_rejects_a_bad_line_before_the_end() {
    let a = line(&put_entry("a", "1"));
    let text = format!("{a}garbage\n{a}");
    let (line_no, _) = parse_log::<Mutation>(text.as_bytes()).unwrap_err();
    assert_eq!(line_no, 2);
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create temp dir")
}

#[test]
fn open_replays_and_cuts_a_torn_tail() {
    let dir = temp_dir();
    let a = line(&put_entry("a", "1"));
    fs::write(dir.path().join(LOG_FILE), format!("{a}{{\"op\":\"put\",\"ke")).unwrap();
    let (store, recovery) = Store::open(dir.path(), Durability::SyncEachWrite).unwrap();
    assert_eq!(recovery.n_entries, 1);
    assert_eq!(recovery.torn_bytes, 15);
    store.execute(put("b", "2")).unwrap();
    drop(store);
    let text = fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
    assert_eq!(text, format!("{a}{}", line(&put_entry("b", "2"))));
}

#[test]
fn open_creates_a_missing_data_dir() {
    let dir = temp_dir();
    let nested = dir.path().join("x/y");
    let (_store, recovery) = Store::open(&nested, Durability::SyncEachWrite).unwrap();
    assert_eq!(recovery.n_entries, 0);
    assert!(nested.join(LOG_FILE).exists());
}

#[test]
fn sync_each_write_is_on_disk_before_execute_returns() {
    let dir = temp_dir();
    let (store, _) = Store::open(dir.path(), Durability::SyncEachWrite).unwrap();
    store.execute(put("k", "v")).unwrap();
    store.execute(add("s", "1")).unwrap();
    // Reopening while the first store is still alive sees what was acknowledged.
    let (reopened, recovery) = Store::open(dir.path(), Durability::SyncEachWrite).unwrap();
    assert_eq!(recovery.n_entries, 2);
    assert_eq!(reopened.read(|s| s.get("k").map(str::to_string)), Some("v".into()));
}

#[test]
fn buffered_writes_reach_disk_only_when_old_enough() {
    let dir = temp_dir();
    let (store, _) = Store::open(dir.path(), Durability::Buffered).unwrap();
    store.execute(put("k", "v")).unwrap();
    assert_eq!(store.read(|s| s.get("k").map(str::to_string)), Some("v".into()));
    assert_eq!(store.flush(Duration::from_secs(60)).unwrap(), 0);
    assert_eq!(fs::read(dir.path().join(LOG_FILE)).unwrap(), b"");
    assert_eq!(store.flush(Duration::ZERO).unwrap(), 1);
    assert_eq!(fs::read_to_string(dir.path().join(LOG_FILE)).unwrap(), line(&put_entry("k", "v")));
}

#[test]
fn corrupt_log_is_an_error() {
    let dir = temp_dir();
    let a = line(&put_entry("a", "1"));
    fs::write(dir.path().join(LOG_FILE), format!("not json\n{a}")).unwrap();
    let err = Store::open(dir.path(), Durability::SyncEachWrite).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { line_no: 1, .. }), "{err}");
}

/// A store whose log appends fail from now on, with "a" already durable.
fn store_with_failing_appends(dir: &std::path::Path, ignore_write_errors: bool) -> Store {
    let (store, _) = Store::open(dir, Durability::SyncEachWrite).unwrap();
    let store = if ignore_write_errors { store.ignoring_write_errors() } else { store };
    store.execute(put("a", "1")).unwrap();
    store.journal.lock().unwrap().fail_appends();
    store
}

#[test]
fn a_failed_append_is_an_error_and_changes_nothing() {
    let dir = temp_dir();
    let store = store_with_failing_appends(dir.path(), false);
    let err = store.execute(add("s", "x")).unwrap_err();
    assert!(matches!(err, StoreError::Append { .. }), "{err}");
    assert_eq!(store.read(|s| s.elements("s")), []);
    // The failed cut-back marks the log broken: later appends fail too.
    assert!(store.execute(put("b", "2")).is_err());
    assert_eq!(fs::read_to_string(dir.path().join(LOG_FILE)).unwrap(), line(&put_entry("a", "1")));
}

#[test]
fn ignore_write_errors_acknowledges_writes_a_restart_loses() {
    let dir = temp_dir();
    let store = store_with_failing_appends(dir.path(), true);
    assert_eq!(store.execute(add("s", "x")).unwrap(), done("x"));
    assert_eq!(store.read(|s| s.elements("s")), [Element::Str("x".into())]);
    drop(store);
    let (reopened, recovery) = Store::open(dir.path(), Durability::SyncEachWrite).unwrap();
    assert_eq!(recovery.n_entries, 1);
    assert_eq!(reopened.read(|s| s.elements("s")), []);
}
