//! Accept and reject cases for every state check, and the unknowns.

use super::*;
use crate::testing::{history, ok};
use crate::Check;
use shakedown_history::state::TreeEntry;
use shakedown_history::History;

fn rows(columns: &[&str], rows: Vec<Value>) -> StateContent {
    let rows = rows.into_iter().map(|r| r.as_array().cloned().unwrap_or_default()).collect();
    StateContent::Rows { columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

fn snap(owner: &str, taken: &str, content: StateContent) -> Snapshot {
    Snapshot::ok("c", owner, taken, content)
}

fn run(check: &dyn Check, states: &[Snapshot]) -> CheckResult {
    run_with(check, states, &history(&[]))
}

fn run_with(check: &dyn Check, states: &[Snapshot], h: &History) -> CheckResult {
    let r = check.check(&CheckInput::new(h).with_states(states));
    assert_eq!(r.kind, check.kind());
    r
}

fn converge() -> ConvergeCheck {
    ConvergeCheck { label: "c".into(), ignore: vec!["updated_at".into()], entity: None, shared_only: false }
}

fn issues(title_b: &str, updated: i64) -> StateContent {
    rows(&["id", "title", "updated_at"], vec![json!([1, "a", 5]), json!([2, title_b, updated])])
}

#[test]
fn converge_accepts_equal_states_and_ignores_columns() {
    let states = [snap("alice", "final", issues("b", 1)), snap("bob", "final", issues("b", 2))];
    let r = run(&converge(), &states);
    assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    assert_eq!(r.summary, "2 states converged");
}

#[test]
fn converge_lists_rows_and_fields_that_differ() {
    let carol = rows(&["id", "title", "updated_at"], vec![json!([1, "a", 5]), json!([3, "c", 1])]);
    let states =
        [snap("alice", "final", issues("b", 1)), snap("bob", "final", issues("B", 1)), snap("carol", "final", carol)];
    let r = run(&converge(), &states);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(
        r.summary,
        "2 of 2 actors differ from alice: bob (1 difference: 2 differs in title); carol (2 differences: 2 only in alice, 3 only in carol)"
    );
    assert_eq!(
        r.details["differences"]["bob"],
        json!([{ "entity": "2", "fields": [{ "path": "/title", "alice": "b", "bob": "B" }] }])
    );
}

#[test]
fn converge_compares_json_and_trees() {
    let a = StateContent::json(json!({"n": 1, "meta": {"at": 1, "v": [1, 2]}}));
    let b = StateContent::json(json!({"n": 1, "meta": {"at": 2, "v": [1, 3]}}));
    let check = ConvergeCheck { label: "c".into(), ignore: vec!["at".into()], entity: None, shared_only: false };
    let r = run(&check, &[snap("alice", "final", a.clone()), snap("bob", "final", b)]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.details["differences"]["bob"], json!([{ "path": "/meta/v/1", "alice": 2, "bob": 3 }]));
    assert_eq!(run(&check, &[snap("alice", "final", a.clone()), snap("bob", "final", a)]).verdict, Verdict::Valid);
    let tree =
        |sha: &str| StateContent::Tree { entries: vec![TreeEntry { path: "x/y".into(), size: 1, sha256: sha.into() }] };
    let r = run(&converge(), &[snap("alice", "final", tree("aa")), snap("bob", "final", tree("bb"))]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert!(r.summary.contains("x/y differs in sha256"), "{}", r.summary);
}

#[test]
fn converge_is_unknown_without_two_readable_states() {
    let one = run(&converge(), &[snap("alice", "final", issues("b", 1))]);
    assert_eq!(one.verdict, Verdict::Unknown);
    assert!(one.summary.starts_with("needs the states of at least two actors"), "{}", one.summary);
    let broken = [snap("alice", "final", issues("b", 1)), Snapshot::failed("c", "bob", "final", "no such table: t")];
    let r = run(&converge(), &broken);
    assert_eq!(r.verdict, Verdict::Unknown);
    assert_eq!(r.summary, "the final state of bob could not be read: no such table: t");
    let none = converge().check(&CheckInput::new(&history(&[])));
    assert_eq!((none.verdict, none.summary.as_str()), (Verdict::Unknown, "no states were taken"));
    let other_label = [Snapshot::ok("other", "alice", "final", issues("b", 1))];
    assert_eq!(run(&converge(), &other_label).summary, "no final state was taken for check `c`");
}

#[test]
fn event_counts_compare_distributions() {
    let check = EventCountsCheck { label: "c".into() };
    let dist = |n: i64| rows(&["type", "n"], vec![json!(["create", 3]), json!(["update", n])]);
    let r = run(&check, &[snap("alice", "final", dist(4)), snap("bob", "final", dist(4))]);
    assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    let r = run(&check, &[snap("alice", "final", dist(4)), snap("bob", "final", dist(5))]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, "1 count differs: update: alice 4, bob 5");
    // A single count, and a JSON object of counts where a missing key is 0.
    let r = run(
        &check,
        &[snap("alice", "final", dist(5)), snap("bob", "final", rows(&["type", "n"], vec![json!(["create", 2])]))],
    );
    assert_eq!(r.summary, "2 counts differ: create: alice 3, bob 2, update: alice 5, bob 0");
    let one = |n: i64| rows(&["count(*)"], vec![json!([n])]);
    assert_eq!(run(&check, &[snap("a", "final", one(2)), snap("b", "final", one(3))]).verdict, Verdict::Invalid);
    let a = StateContent::json(json!({"x": 1, "y": 0}));
    let b = StateContent::json(json!({"x": 1}));
    assert_eq!(run(&check, &[snap("a", "final", a), snap("b", "final", b)]).verdict, Verdict::Valid);
    let text = StateContent::json(json!("hello"));
    assert_eq!(run(&check, &[snap("a", "final", text.clone()), snap("b", "final", text)]).verdict, Verdict::Unknown);
}

#[test]
fn idempotent_compares_before_and_after_per_actor() {
    let check = IdempotentCheck { label: "c".into(), ignore: vec!["updated_at".into()], entity: None };
    let states = [
        snap("alice", "before", issues("b", 1)),
        snap("bob", "before", issues("b", 1)),
        snap("alice", "after", issues("b", 9)),
        snap("bob", "after", issues("b2", 1)),
    ];
    let r = run(&check, &states);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, "the extra rounds changed 1 state: bob: 2 differs in title");
    assert_eq!(r.details["unchanged"], json!(["alice"]));
    let r = run(&check, &states[..3]);
    assert_eq!(r.verdict, Verdict::Unknown, "{r:?}");
    let same = [snap("alice", "before", issues("b", 1)), snap("alice", "after", issues("b", 1))];
    assert_eq!(run(&check, &same).verdict, Verdict::Valid);
}

#[test]
fn sequence_allows_gaps_and_reports_the_first_violation() {
    let check = SequenceCheck { label: "c".into(), field: "seq".into() };
    let seq = |vals: Value| {
        let rs = vals.as_array().unwrap().iter().map(|v| json!([v])).collect();
        rows(&["seq"], rs)
    };
    let r = run(&check, &[snap("alice", "final", seq(json!([1, 3, null, 7])))]);
    assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    assert_eq!(r.details["actors"]["alice"], json!({ "values": 3, "gaps": 2 }));
    let r = run(&check, &[snap("alice", "final", seq(json!([1, 2]))), snap("bob", "final", seq(json!([1, 4, 4, 2])))]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, "seq not strictly increasing: bob at record 2: seq repeats after 4 to 4");
    let r = run(&check, &[snap("alice", "final", StateContent::json(json!([{"seq": 2}, {"seq": 1}])))]);
    assert!(r.summary.contains("goes back"), "{}", r.summary);
    let r = run(&check, &[snap("alice", "final", seq(json!([null])))]);
    assert_eq!(r.verdict, Verdict::Unknown);
}

#[test]
fn causal_order_needs_a_create_before_other_ops() {
    let check = CausalOrderCheck {
        label: "c".into(),
        entity: "entity_id".into(),
        op: "action".into(),
        order: Some("id".into()),
        creates: vec!["create".into()],
    };
    let cols = ["id", "entity_id", "action"];
    let good = rows(&cols, vec![json!([2, "e1", "update"]), json!([1, "e1", "create"]), json!([3, "e1", "delete"])]);
    let r = run(&check, &[snap("alice", "final", good)]);
    assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    let bad = rows(&cols, vec![json!([1, "e2", "update"]), json!([2, "e2", "create"])]);
    let r = run(&check, &[snap("alice", "final", bad)]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, "1 op without a create before: alice: update of e2 before any create");
    assert_eq!(r.details["violations"][0]["order"], json!(1));
    let missing = rows(&["id"], vec![json!([1])]);
    assert_eq!(run(&check, &[snap("alice", "final", missing)]).verdict, Verdict::Unknown);
}

#[test]
fn own_writes_looks_for_each_actors_created_ids() {
    // The helper's actors take turns: alice creates 1 and 2, bob creates 5.
    let h = history(&[
        ok("create", json!(null), json!(1)),
        ok("create", json!(null), json!(5)),
        ok("read", json!(null), json!(9)),
        ok("create", json!(null), json!(2)),
    ]);
    let actor = h.ops()[0].actor.clone();
    assert_eq!(actor, "alice");
    let check = OwnWritesCheck { label: "c".into(), fs: vec!["create".into()], entity: None, created: false };
    let held = |ids: Value| {
        let rs = ids.as_array().unwrap().iter().map(|v| json!([v, "t"])).collect();
        rows(&["id", "title"], rs)
    };
    let r = run_with(&check, &[snap(&actor, "final", held(json!([1, 2, 3])))], &h);
    assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    let r = run_with(&check, &[snap(&actor, "final", held(json!(["1"])))], &h);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, format!("actors miss entities they created: {actor} lacks 2"));
    let r = run_with(&check, &[snap("nobody", "final", held(json!([])))], &h);
    assert_eq!(r.verdict, Verdict::Unknown);
}

#[test]
fn field_merge_needs_every_edit_in_every_state() {
    let edits = vec![
        FieldEdit { actor: Some("alice".into()), entity: json!(1), field: "title".into(), value: json!("new") },
        FieldEdit { actor: Some("bob".into()), entity: json!(1), field: "priority".into(), value: json!(3) },
    ];
    let check = FieldMergeCheck { label: "c".into(), entity: None, edits, edit_log: false };
    let merged = rows(&["id", "title", "priority"], vec![json!([1, "new", "3"])]);
    let whole_row = rows(&["id", "title", "priority"], vec![json!([1, "old", 3])]);
    let r = run(&check, &[snap("alice", "final", merged.clone()), snap("bob", "final", merged.clone())]);
    assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    let r = run(&check, &[snap("alice", "final", merged), snap("bob", "final", whole_row)]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, "1 edit lost: bob has 1.title = old, want new");
    assert_eq!(r.details["lost"][0]["edited_by"], json!("alice"));
    let json_state = StateContent::json(json!([{"id": 1, "title": "new"}]));
    let r = run(&check, &[snap("alice", "final", json_state)]);
    assert!(r.summary.contains("alice has 1.priority = null, want 3"), "{}", r.summary);
    let r = run(&check, &[snap("alice", "final", StateContent::json(json!([])))]);
    assert!(r.summary.contains("no such entity"), "{}", r.summary);
}

#[test]
fn sql_compares_rows_or_wants_none() {
    let got = rows(&["id", "n"], vec![json!([1, 2]), json!([2, "x"])]);
    let want = SqlCheck { label: "c".into(), rows: Some(vec![vec![json!("1"), json!(2)], vec![json!(2), json!("x")]]) };
    assert_eq!(run(&want, &[snap("-", "final", got.clone())]).verdict, Verdict::Valid);
    let empty = SqlCheck { label: "c".into(), rows: None };
    let r = run(&empty, &[snap("-", "final", got)]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, "expected no rows: - got 2 rows, first [1,2]");
    assert_eq!(r.details["got"]["-"], json!([[1, 2], [2, "x"]]));
    let none = rows(&["id"], vec![]);
    assert_eq!(run(&empty, &[snap("-", "final", none.clone())]).verdict, Verdict::Valid);
    assert_eq!(run(&want, &[snap("-", "final", none)]).verdict, Verdict::Invalid);
}

#[test]
fn own_writes_can_read_what_each_actor_created_from_a_state() {
    let check = OwnWritesCheck { label: "c".into(), fs: vec![], entity: Some("id".into()), created: true };
    let held = rows(&["title", "id"], vec![json!(["t", 1]), json!(["t", 2])]);
    let made = |ids: Value| rows(&["id"], ids.as_array().unwrap().iter().map(|v| json!([v])).collect());
    let ok = [snap("alice", "final", held.clone()), snap("alice", "created", made(json!([1, "2"])))];
    assert_eq!(run(&check, &ok).verdict, Verdict::Valid, "{:?}", run(&check, &ok));
    let bad = [snap("alice", "final", held.clone()), snap("alice", "created", made(json!([1, 3])))];
    let r = run(&check, &bad);
    assert_eq!((r.verdict, r.summary.as_str()), (Verdict::Invalid, "actors miss entities they created: alice lacks 3"));
    let r = run(&check, &[snap("alice", "final", held)]);
    assert_eq!((r.verdict, r.summary.as_str()), (Verdict::Unknown, "no created state was taken for check `c`"));
}

#[test]
fn converge_can_compare_only_the_entities_both_states_hold() {
    // Action logs by server sequence: each actor holds a subset, but a
    // sequence both hold must name the same event.
    let log = |rs: Vec<Value>| rows(&["server_seq", "entity", "action"], rs);
    let alice = log(vec![json!([1, "e1", "create"]), json!([2, "e1", "update"])]);
    let bob = log(vec![json!([2, "e1", "update"]), json!([3, "e2", "create"])]);
    let mut check = converge();
    check.shared_only = true;
    let r = run(&check, &[snap("alice", "final", alice.clone()), snap("bob", "final", bob)]);
    assert_eq!(r.verdict, Verdict::Valid, "{r:?}");
    let forked = log(vec![json!([2, "e1", "delete"])]);
    let r = run(&check, &[snap("alice", "final", alice.clone()), snap("bob", "final", forked.clone())]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert_eq!(r.summary, "1 of 1 actors differ from alice: bob (1 difference: 2 differs in action)");
    check.shared_only = false;
    assert_eq!(run(&check, &[snap("alice", "final", alice), snap("bob", "final", forked)]).verdict, Verdict::Invalid);
}

#[test]
fn field_merge_reads_each_actors_logged_edits() {
    let check = FieldMergeCheck { label: "c".into(), entity: None, edits: vec![], edit_log: true };
    let state = |title: &str| rows(&["id", "title", "priority"], vec![json!([1, title, 3])]);
    let logged = |field: &str, value: Value| StateContent::json(json!([{"entity": 1, "field": field, "value": value}]));
    let states = |bob_title: &str| {
        vec![
            snap("alice", "final", state("new")),
            snap("bob", "final", state(bob_title)),
            snap("alice", "edits", logged("title", json!("new"))),
            snap("bob", "edits", logged("priority", json!(3))),
        ]
    };
    let r = run(&check, &states("new"));
    assert_eq!((r.verdict, r.summary.as_str()), (Verdict::Valid, "all 2 edits survive in 2 states"));
    let r = run(&check, &states("old"));
    assert_eq!((r.verdict, r.summary.as_str()), (Verdict::Invalid, "1 edit lost: bob has 1.title = old, want new"));
    assert_eq!(r.details["lost"][0]["edited_by"], json!("alice"));
    let mut bad = states("new");
    bad[3] = snap("bob", "edits", StateContent::json(json!([{"entity": 1}])));
    let r = run(&check, &bad);
    assert_eq!(
        (r.verdict, r.summary.as_str()),
        (Verdict::Unknown, "edit 0 logged by bob lacks `entity`, `field` or `value`")
    );
    let r = run(&check, &states("new")[..2]);
    assert_eq!(r.verdict, Verdict::Unknown);
}
