//! Tests of the linearizability checker: accepted and rejected histories per
//! model, counterexamples, budgets, and a property against the brute-force oracle.

use super::*;
use crate::testing::assert_check;
use proptest::prelude::*;
use serde_json::{json, Value};
use shakedown_history::{Header, HistoryBuilder, ProcessId};
use std::collections::BTreeMap;

/// One event of a hand-written concurrent history.
#[derive(Debug, Clone)]
enum E {
    Inv(u64, &'static str, Value),
    Ret(u64, Value),
    Info(u64),
    Fail(u64),
}

use E::{Fail, Info, Inv, Ret};

/// A history of sequential ok ops: (f, invoke value, result).
fn seq(ops: &[(&'static str, Value, Value)]) -> Vec<E> {
    ops.iter().flat_map(|(f, v, out)| [Inv(0, f, v.clone()), Ret(0, out.clone())]).collect()
}

fn build(events: &[E]) -> History {
    let mut b = HistoryBuilder::new(Header::new("linear", 1));
    for (t, e) in events.iter().enumerate() {
        let t = 10 * t as u64;
        match e {
            Inv(p, f, v) => b.invoke(t, ProcessId(*p), "a", f, v.clone()),
            Ret(p, out) => b.complete(t, ProcessId(*p), OpType::Ok, out.clone(), None),
            Info(p) => b.complete(t, ProcessId(*p), OpType::Info, json!(null), Some("timeout".into())),
            Fail(p) => b.complete(t, ProcessId(*p), OpType::Fail, json!(null), Some("refused".into())),
        };
    }
    b.finish()
}

/// The data-driven helper: checks `events` under `model` and expects `verdict`;
/// also asserts the brute-force oracle agrees.
fn case(model: &str, events: &[E], verdict: Verdict) -> CheckResult {
    let h = build(events);
    let result = assert_check(&LinearizableCheck::new(model), &h, verdict, "");
    let expected = brute_by_name(model, &h);
    assert_eq!(expected, Some(verdict == Verdict::Valid), "oracle disagrees on {events:?}");
    result
}

fn brute_by_name(model: &str, h: &History) -> Option<bool> {
    match model {
        "register" => brute::linearizable(&models::Register, h),
        "cas-register" => brute::linearizable(&models::CasRegister, h),
        "kv" => brute::linearizable(&models::Kv, h),
        "mutex" => brute::linearizable(&models::Mutex, h),
        "set" => brute::linearizable(&models::Set, h),
        "fifo-queue" => brute::linearizable(&models::FifoQueue, h),
        "unordered-queue" => brute::linearizable(&models::UnorderedQueue, h),
        "counter" => brute::linearizable(&models::Counter, h),
        other => panic!("no model {other}"),
    }
}

const NULL: Value = Value::Null;

#[test]
fn register_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    let r = "register";
    case(r, &seq(&[("write", json!(1), NULL), ("read", NULL, json!(1))]), Valid);
    case(r, &seq(&[("read", NULL, NULL), ("write", json!("2"), NULL), ("read", NULL, json!(2))]), Valid);
    case(r, &seq(&[("write", json!(1), NULL), ("read", NULL, NULL)]), Invalid);
    case(r, &seq(&[("write", json!(1), NULL), ("write", json!(2), NULL), ("read", NULL, json!(1))]), Invalid);
    // A read concurrent with a write may see either value.
    let concurrent = |seen: Value| {
        vec![
            Inv(0, "write", json!(1)),
            Inv(1, "read", NULL),
            Ret(1, seen),
            Ret(0, NULL),
            Inv(2, "read", NULL),
            Ret(2, json!(1)),
        ]
    };
    case(r, &concurrent(json!(1)), Valid);
    case(r, &concurrent(NULL), Valid);
    case(r, &concurrent(json!(2)), Invalid);
    // A failed write never happened; an indeterminate one may have, or not.
    case(r, &[Inv(0, "write", json!(1)), Fail(0), Inv(1, "read", NULL), Ret(1, json!(1))], Invalid);
    case(r, &[Inv(0, "write", json!(1)), Info(0), Inv(1, "read", NULL), Ret(1, json!(1))], Valid);
    case(r, &[Inv(0, "write", json!(1)), Info(0), Inv(1, "read", NULL), Ret(1, NULL)], Valid);
    // Once seen, an indeterminate write cannot be unseen.
    let flicker = [
        Inv(0, "write", json!(1)),
        Info(0),
        Inv(1, "read", NULL),
        Ret(1, json!(1)),
        Inv(1, "read", NULL),
        Ret(1, NULL),
    ];
    case(r, &flicker, Invalid);
}

#[test]
fn cas_register_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    let c = "cas-register";
    case(c, &seq(&[("write", json!(1), NULL), ("cas", json!([1, 2]), NULL), ("read", NULL, json!(2))]), Valid);
    case(c, &seq(&[("cas", json!([null, 5]), NULL), ("read", NULL, json!("5"))]), Valid);
    case(c, &seq(&[("write", json!(1), NULL), ("cas", json!([2, 3]), NULL)]), Invalid);
    let failed_cas = [
        Inv(0, "write", json!(1)),
        Ret(0, NULL),
        Inv(0, "cas", json!([2, 3])),
        Fail(0),
        Inv(0, "read", NULL),
        Ret(0, json!(1)),
    ];
    case(c, &failed_cas, Valid);
    let info_cas = [
        Inv(0, "write", json!(1)),
        Ret(0, NULL),
        Inv(0, "cas", json!([1, 3])),
        Info(0),
        Inv(1, "read", NULL),
        Ret(1, json!(3)),
    ];
    case(c, &info_cas, Valid);
}

#[test]
fn kv_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    let kv = |k: &str, v: &str| json!({"key": k, "value": v});
    let key = |k: &str| json!({"key": k});
    let ops = [
        ("put", kv("x", "a"), NULL),
        ("append", kv("x", "b"), NULL),
        ("get", key("x"), kv("x", "ab")),
        ("get", key("y"), kv("y", "")),
    ];
    case("kv", &seq(&ops), Valid);
    case("kv", &seq(&[("put", kv("x", "a"), NULL), ("get", key("x"), kv("x", ""))]), Invalid);
    case(
        "kv",
        &seq(&[("append", kv("x", "a"), NULL), ("put", kv("y", "b"), NULL), ("get", key("x"), kv("x", "b"))]),
        Invalid,
    );
    // Keys are independent: concurrent ops on different keys never conflict.
    let two_keys = [
        Inv(0, "put", kv("x", "1")),
        Inv(1, "put", kv("y", "2")),
        Ret(1, NULL),
        Inv(1, "get", key("y")),
        Ret(1, kv("y", "2")),
        Ret(0, NULL),
    ];
    case("kv", &two_keys, Valid);
}

#[test]
fn mutex_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    case("mutex", &seq(&[("acquire", NULL, NULL), ("release", NULL, NULL), ("acquire", NULL, NULL)]), Valid);
    case("mutex", &seq(&[("acquire", NULL, NULL), ("acquire", NULL, NULL)]), Invalid);
    case("mutex", &seq(&[("release", NULL, NULL)]), Invalid);
    case("mutex", &[Inv(0, "acquire", NULL), Info(0), Inv(1, "acquire", NULL), Ret(1, NULL)], Valid);
}

#[test]
fn set_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    case("set", &seq(&[("add", json!(1), NULL), ("add", json!(2), NULL), ("read", NULL, json!([2, "1"]))]), Valid);
    case("set", &seq(&[("add", json!(1), NULL), ("read", NULL, json!([]))]), Invalid);
    case("set", &seq(&[("read", NULL, json!([3]))]), Invalid);
    case("set", &[Inv(0, "add", json!(1)), Info(0), Inv(1, "read", NULL), Ret(1, json!([1]))], Valid);
}

#[test]
fn fifo_queue_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    let ops = [
        ("enqueue", json!(1), NULL),
        ("enqueue", json!(2), NULL),
        ("dequeue", NULL, json!(1)),
        ("dequeue", NULL, json!(2)),
        ("dequeue", NULL, NULL),
    ];
    case("fifo-queue", &seq(&ops), Valid);
    case(
        "fifo-queue",
        &seq(&[("enqueue", json!(1), NULL), ("enqueue", json!(2), NULL), ("dequeue", NULL, json!(2))]),
        Invalid,
    );
    case("fifo-queue", &seq(&[("enqueue", json!(1), NULL), ("dequeue", NULL, NULL)]), Invalid);
    // An indeterminate dequeue may have taken the head.
    let lost_head = [
        Inv(0, "enqueue", json!(1)),
        Ret(0, NULL),
        Inv(0, "enqueue", json!(2)),
        Ret(0, NULL),
        Inv(1, "dequeue", NULL),
        Info(1),
        Inv(0, "dequeue", NULL),
        Ret(0, json!(2)),
    ];
    case("fifo-queue", &lost_head, Valid);
}

#[test]
fn unordered_queue_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    let u = "unordered-queue";
    case(
        u,
        &seq(&[
            ("enqueue", json!(1), NULL),
            ("enqueue", json!(2), NULL),
            ("dequeue", NULL, json!(2)),
            ("dequeue", NULL, json!(1)),
        ]),
        Valid,
    );
    case(u, &seq(&[("enqueue", json!(1), NULL), ("dequeue", NULL, json!(1)), ("dequeue", NULL, json!(1))]), Invalid);
    case(u, &seq(&[("enqueue", json!(1), NULL), ("dequeue", NULL, NULL)]), Invalid);
}

#[test]
fn counter_accepts_and_rejects() {
    use Verdict::{Invalid, Valid};
    case("counter", &seq(&[("add", json!(2), NULL), ("increment", NULL, NULL), ("read", NULL, json!("3"))]), Valid);
    case("counter", &seq(&[("add", json!(1), NULL), ("read", NULL, json!(0))]), Invalid);
    case("counter", &[Inv(0, "add", json!(1)), Info(0), Inv(1, "read", NULL), Ret(1, json!(0))], Valid);
    case("counter", &[Inv(0, "add", json!(1)), Info(0), Inv(1, "read", NULL), Ret(1, json!(2))], Invalid);
}

#[test]
fn counterexample_names_prefix_blocked_op_and_concurrent_ops() {
    let events = [
        Inv(0, "write", json!(1)),
        Ret(0, NULL),
        Inv(1, "write", json!(2)),
        Inv(2, "read", NULL),
        Ret(2, json!(3)),
        Ret(1, NULL),
    ];
    let result = case("register", &events, Verdict::Invalid);
    assert_eq!(result.summary, "op 3 (process 2 read → 3) cannot be linearized after 2 ops; state was 2");
    let d = &result.details;
    assert_eq!(d["blocked"]["index"], json!(3));
    assert_eq!(d["linearized_prefix"].as_array().unwrap().len(), 2);
    assert_eq!(
        d["concurrent"],
        json!([{"index": 2, "process": 1, "f": "write", "value": 2, "type": "ok", "result": null}])
    );
    assert_eq!(d["state"], json!("2"));
    assert_eq!(d["key"], NULL);
}

#[test]
fn counterexample_names_the_key() {
    let kv = |v: &str| json!({"key": "k1", "value": v});
    let result = case("kv", &seq(&[("put", kv("a"), NULL), ("get", json!({"key": "k1"}), kv("b"))]), Verdict::Invalid);
    assert!(result.summary.ends_with("state was \"a\" (key k1)"), "{}", result.summary);
    assert_eq!(result.details["key"], json!("k1"));
}

#[test]
fn spent_budget_is_unknown() {
    let h = build(&seq(&[("write", json!(1), NULL), ("read", NULL, json!(1))]));
    let budget = Budget { max_steps: Some(1), ..Budget::default() };
    let result = check(&h, model_by_name("register").unwrap().as_ref(), &budget);
    assert_eq!(result.verdict, Verdict::Unknown, "{}", result.summary);
    assert!(result.summary.contains("step limit"), "{}", result.summary);
    let past = Budget { deadline: Some(Instant::now()), ..Budget::default() };
    let many: Vec<_> = (0..3000).map(|i| ("write", json!(i), NULL)).collect();
    let result = check(&build(&seq(&many)), model_by_name("register").unwrap().as_ref(), &past);
    assert_eq!(result.verdict, Verdict::Unknown, "{}", result.summary);
}

#[test]
fn a_search_past_its_memory_budget_is_unknown_and_says_so() {
    // 2,000 indeterminate writes of distinct values, all open when a read
    // returns a value nobody wrote: every subset of them is a configuration.
    let mut events: Vec<_> = (0..2000).map(|i| Inv(i, "write", json!(i))).collect();
    events.push(Inv(5000, "read", NULL));
    events.push(Ret(5000, json!(-1)));
    let h = build(&events);
    let budget = Budget {
        deadline: Instant::now().checked_add(std::time::Duration::from_secs(60)),
        max_steps: None,
        max_memory_bytes: Some(4 << 20),
    };
    let result = check(&h, model_by_name("register").unwrap().as_ref(), &budget);
    assert_eq!(result.verdict, Verdict::Unknown, "{}", result.summary);
    assert!(result.summary.contains("memory limit of 4 MiB"), "{}", result.summary);
}

#[test]
fn odd_inputs_are_unknown() {
    let h = build(&seq(&[("frobnicate", NULL, NULL)]));
    assert_check(&LinearizableCheck::new("register"), &h, Verdict::Unknown, "does not fit the register model");
    assert_check(&LinearizableCheck::new("nope"), &h, Verdict::Unknown, "unknown model \"nope\"");
    let only_info = build(&[Inv(0, "write", json!(1)), Info(0)]);
    assert_check(&LinearizableCheck::new("register"), &only_info, Verdict::Unknown, "no ok operations");
}

#[test]
fn every_listed_model_exists() {
    for name in MODELS {
        assert_eq!(model_by_name(name).unwrap().name(), *name);
    }
    assert!(model_by_name("queue").is_none());
}

#[test]
fn large_keyed_histories_are_searched_in_parallel_with_the_same_result() {
    // 3,000 sequential puts and gets over 50 keys, with one stale get at the end.
    let kv = |k: usize, v: usize| json!({"key": k.to_string(), "value": v.to_string()});
    let mut ops: Vec<(&'static str, Value, Value)> = Vec::new();
    for i in 0..1500 {
        ops.push(("put", kv(i % 50, i), NULL));
        ops.push(("get", json!({"key": (i % 50).to_string()}), kv(i % 50, i)));
    }
    let valid = assert_check(&LinearizableCheck::new("kv"), &build(&seq(&ops)), Verdict::Valid, "across 50 keys");
    assert_eq!(valid.details["n_ok"], json!(3000));
    ops.push(("get", json!({"key": "7"}), kv(7, 7)));
    assert_check(&LinearizableCheck::new("kv"), &build(&seq(&ops)), Verdict::Invalid, "(key 7)");
}

// ---- property: the WGL search agrees with brute force on small histories ----

type GenOp = (&'static str, Value, Value);

fn small() -> impl Strategy<Value = i64> {
    0i64..3
}

fn maybe_null(v: i64) -> Value {
    if v == 3 {
        NULL
    } else {
        json!(v)
    }
}

fn op_strategy(model: &str) -> BoxedStrategy<GenOp> {
    let read = |f: &'static str| (0i64..4).prop_map(move |v| (f, NULL, maybe_null(v))).boxed();
    let write = |f: &'static str| small().prop_map(move |v| (f, json!(v), NULL)).boxed();
    match model {
        "register" => prop_oneof![write("write"), read("read")].boxed(),
        "cas-register" => {
            let cas = (0i64..4, small()).prop_map(|(a, b)| ("cas", json!([maybe_null(a), b]), NULL));
            prop_oneof![write("write"), read("read"), cas].boxed()
        }
        "counter" => {
            let read = (0i64..4).prop_map(|v| ("read", NULL, json!(v)));
            prop_oneof![write("add"), read].boxed()
        }
        "fifo-queue" | "unordered-queue" => prop_oneof![write("enqueue"), read("dequeue")].boxed(),
        "set" => {
            let read = proptest::collection::vec(small(), 0..3).prop_map(|vs| ("read", NULL, json!(vs)));
            prop_oneof![write("add"), read].boxed()
        }
        "mutex" => prop_oneof![Just(("acquire", NULL, NULL)), Just(("release", NULL, NULL))].boxed(),
        "kv" => {
            let words = ["", "x", "y", "xy"];
            let key = prop_oneof![Just("a"), Just("b")];
            (key, 0usize..3, 0usize..4)
                .prop_map(move |(k, f, w)| match f {
                    0 => ("get", json!({"key": k}), json!({"key": k, "value": words[w]})),
                    1 => ("put", json!({"key": k, "value": words[w.max(1)]}), NULL),
                    _ => ("append", json!({"key": k, "value": words[w.max(1)]}), NULL),
                })
                .boxed()
        }
        other => panic!("no strategy for {other}"),
    }
}

/// Up to 7 ops on 3 processes, each ok (mostly), info, fail or never completed,
/// interleaved by `schedule`.
fn history_strategy(model: &str) -> impl Strategy<Value = History> {
    let op = (0u64..3, op_strategy(model), 0u8..10);
    (proptest::collection::vec(op, 1..=7), proptest::collection::vec(any::<u8>(), 0..24))
        .prop_map(|(ops, schedule)| interleave(&ops, &schedule))
}

/// Up to 10 ops on 6 processes, most writes ending info: many identical
/// unknown ops, which the search treats as interchangeable twins.
fn info_heavy_strategy(model: &str) -> impl Strategy<Value = History> {
    let op = (0u64..6, op_strategy(model), prop_oneof![0u8..6, 7u8..9]);
    (proptest::collection::vec(op, 1..=10), proptest::collection::vec(any::<u8>(), 0..24))
        .prop_map(|(ops, schedule)| interleave(&ops, &schedule))
}

fn interleave(ops: &[(u64, GenOp, u8)], schedule: &[u8]) -> History {
    let mut queues: BTreeMap<u64, Vec<&(u64, GenOp, u8)>> = BTreeMap::new();
    for op in ops.iter().rev() {
        queues.entry(op.0).or_default().push(op);
    }
    let mut pending: BTreeMap<u64, &(u64, GenOp, u8)> = BTreeMap::new();
    let mut retired: Vec<u64> = Vec::new();
    let mut events: Vec<E> = Vec::new();
    for step in 0.. {
        let mut actions: Vec<(u64, bool)> = pending.keys().map(|&p| (p, true)).collect();
        actions.extend(
            queues
                .iter()
                .filter(|(p, q)| !q.is_empty() && !pending.contains_key(p) && !retired.contains(p))
                .map(|(&p, _)| (p, false)),
        );
        if actions.is_empty() {
            break;
        }
        let choice = schedule.get(step % schedule.len().max(1)).copied().unwrap_or(0) as usize + step / 7;
        let (p, complete) = actions[choice % actions.len()];
        if !complete {
            let op = queues.get_mut(&p).unwrap().pop().unwrap();
            events.push(Inv(p, op.1 .0, op.1 .1.clone()));
            pending.insert(p, op);
            continue;
        }
        let op = pending.remove(&p).unwrap();
        match op.2 {
            0..=5 => events.push(Ret(p, op.1 .2.clone())),
            6 => events.push(Fail(p)),
            7 | 8 => {
                events.push(Info(p));
                retired.push(p);
            }
            _ => retired.push(p), // never completes
        }
    }
    build(&events)
}

fn agrees_with_brute_force<M: Model>(model: &M, h: &History) -> Result<(), TestCaseError> {
    let result = check_model(h, model, &Budget::default());
    let expected = brute::linearizable(model, h).expect("generated ops fit the model");
    if result.verdict == Verdict::Unknown {
        prop_assert!(result.summary.contains("no ok operations"), "{}", result.summary);
        prop_assert!(expected);
    } else {
        prop_assert_eq!(result.verdict == Verdict::Valid, expected, "{}\n{:#?}", result.summary, h.ops());
    }
    Result::Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn register_agrees_with_brute_force(h in history_strategy("register")) {
        agrees_with_brute_force(&models::Register, &h)?;
    }

    #[test]
    fn register_with_many_unknown_ops_agrees_with_brute_force(h in info_heavy_strategy("register")) {
        agrees_with_brute_force(&models::Register, &h)?;
    }

    #[test]
    fn cas_register_with_many_unknown_ops_agrees_with_brute_force(h in info_heavy_strategy("cas-register")) {
        agrees_with_brute_force(&models::CasRegister, &h)?;
    }

    #[test]
    fn cas_register_agrees_with_brute_force(h in history_strategy("cas-register")) {
        agrees_with_brute_force(&models::CasRegister, &h)?;
    }

    #[test]
    fn kv_agrees_with_brute_force(h in history_strategy("kv")) {
        agrees_with_brute_force(&models::Kv, &h)?;
    }

    #[test]
    fn counter_agrees_with_brute_force(h in history_strategy("counter")) {
        agrees_with_brute_force(&models::Counter, &h)?;
    }

    #[test]
    fn fifo_queue_agrees_with_brute_force(h in history_strategy("fifo-queue")) {
        agrees_with_brute_force(&models::FifoQueue, &h)?;
    }

    #[test]
    fn unordered_queue_agrees_with_brute_force(h in history_strategy("unordered-queue")) {
        agrees_with_brute_force(&models::UnorderedQueue, &h)?;
    }

    #[test]
    fn set_agrees_with_brute_force(h in history_strategy("set")) {
        agrees_with_brute_force(&models::Set, &h)?;
    }

    #[test]
    fn mutex_agrees_with_brute_force(h in history_strategy("mutex")) {
        agrees_with_brute_force(&models::Mutex, &h)?;
    }
}

/// The property above is only as good as its histories: they must include
/// both verdicts, concurrency and indeterminate ops for every model.
#[test]
fn generated_histories_cover_both_verdicts() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    for name in MODELS {
        let mut runner = TestRunner::deterministic();
        let model = model_by_name(name).unwrap();
        let (mut valid, mut invalid, mut with_info) = (0, 0, 0);
        for _ in 0..256 {
            let h = history_strategy(name).new_tree(&mut runner).unwrap().current();
            with_info += h.ops().iter().any(|o| o.op_type() == OpType::Info) as usize;
            match check(&h, model.as_ref(), &Budget::default()).verdict {
                Verdict::Valid => valid += 1,
                Verdict::Invalid => invalid += 1,
                Verdict::Unknown => {}
            }
        }
        assert!(
            valid > 20 && invalid > 20 && with_info > 20,
            "{name}: {valid} valid, {invalid} invalid, {with_info} with info"
        );
    }
}
