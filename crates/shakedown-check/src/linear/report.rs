//! Turning search outcomes into a verdict, a one-line summary and a readable counterexample.

use super::ops::OpRef;
use super::search::{SearchOp, Searched};
use super::{Model, Partition};
use crate::{list_bounded, plural, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::OpType;
use std::fmt::Write;

const KIND: &str = "linearizable";

/// An op the model cannot read: the history does not fit the model.
pub(super) fn malformed(model: &str, op: &OpRef<'_>, reason: &str) -> CheckResult {
    let summary = format!("op {} ({}) does not fit the {model} model: {reason}", op.invoke_index, describe(op));
    CheckResult::new(KIND, Verdict::Unknown, summary, json!({"model": model, "op": op_json(op), "reason": reason}))
}

/// Nothing acknowledged, so nothing to check: unknown, not valid.
pub(super) fn vacuous(model: &str, n_ops: usize) -> CheckResult {
    let summary =
        format!("no ok operations to check against the {model} model ({} in the history)", plural(n_ops as u64, "op"));
    CheckResult::new(KIND, Verdict::Unknown, summary, json!({"model": model, "n_ops": n_ops}))
}

/// The first partition (in key order) with a counterexample makes the check
/// invalid; otherwise a partition whose budget ran out makes it unknown.
pub(super) fn conclude<M: Model + ?Sized>(
    model: &M,
    ops: &[OpRef<'_>],
    partitions: &[Partition<M::Op>],
    results: &[Searched<M::State>],
) -> CheckResult {
    assert_eq!(partitions.len(), results.len(), "one search per partition");
    let steps: u64 = results.iter().map(searched_steps).sum();
    for (p, r) in partitions.iter().zip(results) {
        if let Searched::NotLinearizable { prefix, blocked, state, .. } = r {
            return invalid(model, ops, p, prefix, *blocked, state, steps);
        }
    }
    let exhausted: Vec<String> = partitions
        .iter()
        .zip(results)
        .filter_map(|(p, r)| match r {
            Searched::Exhausted { spent, steps } => {
                Some(format!("{} ({} after {steps} steps)", key_name(&p.key), spent.describe()))
            }
            _ => None,
        })
        .collect();
    let n_ok: usize = partitions.iter().map(|p| p.ops.iter().filter(|o| o.ret.is_some()).count()).sum();
    let n_unknown: usize = partitions.iter().map(|p| p.ops.len()).sum::<usize>() - n_ok;
    let details = json!({
        "model": model.name(), "n_ok": n_ok, "n_unknown": n_unknown,
        "n_partitions": partitions.len(), "steps": steps, "exhausted": exhausted,
    });
    if !exhausted.is_empty() {
        let summary = format!(
            "search budget spent on {}: {}",
            plural(exhausted.len() as u64, "partition"),
            list_bounded(&exhausted, 3)
        );
        return CheckResult::new(KIND, Verdict::Unknown, summary, details);
    }
    let mut summary = format!(
        "{} and {} linearizable as {}",
        plural(n_ok as u64, "ok op"),
        plural(n_unknown as u64, "indeterminate op"),
        model.name()
    );
    if partitions.len() > 1 {
        summary.push_str(&format!(" across {}", plural(partitions.len() as u64, "key")));
    }
    CheckResult::new(KIND, Verdict::Valid, summary, details)
}

fn invalid<M: Model + ?Sized>(
    model: &M,
    ops: &[OpRef<'_>],
    p: &Partition<M::Op>,
    prefix: &[usize],
    blocked: usize,
    state: &M::State,
    steps: u64,
) -> CheckResult {
    let source = |i: usize| &ops[p.sources[i]];
    let blocked_op = source(blocked);
    let state = model.describe_state(state);
    let concurrent: Vec<Value> = (0..p.ops.len())
        .filter(|&j| j != blocked && overlap(&p.ops[j], &p.ops[blocked]))
        .map(|j| op_json(source(j)))
        .collect();
    // Written into one string: on a small history the report costs as much as the search.
    let mut summary = String::with_capacity(96);
    let _ = write!(summary, "op {} (", blocked_op.invoke_index);
    describe_into(&mut summary, blocked_op);
    let n = prefix.len();
    let _ = write!(summary, ") cannot be linearized after {n} op{}; state was {state}", if n == 1 { "" } else { "s" });
    if let Some(key) = &p.key {
        let _ = write!(summary, " (key {key})");
    }
    // Built by moving values in: `json!` would serialize each list again.
    let prefix: Vec<Value> = prefix.iter().map(|&i| Value::from(source(i).invoke_index)).collect();
    let mut details = serde_json::Map::new();
    details.insert("model".into(), Value::from(model.name()));
    details.insert("key".into(), p.key.as_deref().map_or(Value::Null, Value::from));
    // The prefix by op index only: it can be the whole history, and building
    // an object per op cost more than the search on small histories.
    details.insert("linearized_prefix".into(), Value::Array(prefix));
    details.insert("blocked".into(), op_json(blocked_op));
    details.insert("concurrent".into(), Value::Array(concurrent));
    details.insert("state".into(), Value::String(state));
    details.insert("steps".into(), Value::from(steps));
    let details = Value::Object(details);
    CheckResult::new(KIND, Verdict::Invalid, summary, details)
}

/// Whether two ops' intervals overlap; an op of unknown outcome never ends.
fn overlap<O>(a: &SearchOp<O>, b: &SearchOp<O>) -> bool {
    a.call < b.ret.unwrap_or(u64::MAX) && b.call < a.ret.unwrap_or(u64::MAX)
}

fn searched_steps<S>(r: &Searched<S>) -> u64 {
    match r {
        Searched::Linearizable { steps }
        | Searched::NotLinearizable { steps, .. }
        | Searched::Exhausted { steps, .. } => *steps,
    }
}

fn key_name(key: &Option<String>) -> String {
    key.as_ref().map_or_else(|| "the history".to_string(), |k| format!("key {k}"))
}

/// "process 3 read → 4", "process 1 write 3".
fn describe(op: &OpRef<'_>) -> String {
    let mut s = String::new();
    describe_into(&mut s, op);
    s
}

fn describe_into(s: &mut String, op: &OpRef<'_>) {
    let _ = write!(s, "process {} {}", op.process, op.f);
    if !op.invoke_value.is_null() {
        let _ = write!(s, " {}", op.invoke_value);
    }
    match op.completion {
        Some((OpType::Ok, _, out)) if !out.is_null() || op.invoke_value.is_null() => {
            let _ = write!(s, " → {out}");
        }
        Some((OpType::Ok | OpType::Fail, _, _)) => {}
        _ => s.push_str(" → ?"),
    }
}

/// Built field by field rather than with `json!`, which would serialize
/// every borrowed value again: a counterexample lists the whole linearized
/// prefix, and on a small history building it costs more than the search.
fn op_json(op: &OpRef<'_>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("index".into(), Value::from(op.invoke_index));
    m.insert("process".into(), Value::from(op.process.0));
    m.insert("f".into(), Value::from(op.f));
    m.insert("value".into(), op.invoke_value.clone());
    m.insert("type".into(), Value::from(op.op_type().as_str()));
    m.insert("result".into(), op.completion.map_or(Value::Null, |(_, _, out)| out.clone()));
    Value::Object(m)
}
