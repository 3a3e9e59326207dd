//! State checks on the order of an actor's records: a strictly increasing
//! sequence (`sequence`) and creates before other ops (`causal-order`).

use super::{records, snapshots, summarize, text};
use crate::{plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// `field` strictly increases along each actor's records (in the state's
/// order, so order the query); nulls are skipped, gaps allowed.
pub struct SequenceCheck {
    pub label: String,
    pub field: String,
}

/// In each actor's events, every op on an entity other than a create comes
/// after a create of it.
pub struct CausalOrderCheck {
    pub label: String,
    /// The field naming the event's entity.
    pub entity: String,
    /// The field naming the operation.
    pub op: String,
    /// The field events are ordered by (default: the state's order).
    pub order: Option<String>,
    /// The op values that create an entity.
    pub creates: Vec<String>,
}

/// Numbers compare as numbers, anything else as text; numbers before text.
fn compare(a: &Value, b: &Value) -> Ordering {
    let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse::<f64>().ok()));
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => text(a).cmp(&text(b)),
    }
}

impl Check for SequenceCheck {
    fn kind(&self) -> &'static str {
        "sequence"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states = match snapshots(self.kind(), input, &self.label, "final") {
            Ok(s) => s,
            Err(r) => return r,
        };
        let mut violations = Vec::new();
        let mut seen = BTreeMap::new();
        for s in &states {
            let values: Vec<(usize, Value)> = records(s.content)
                .into_iter()
                .enumerate()
                .filter_map(|(i, r)| r.get(&self.field).filter(|v| !v.is_null()).map(|v| (i, v.clone())))
                .collect();
            let gaps = values
                .windows(2)
                .filter(|w| matches!((w[0].1.as_i64(), w[1].1.as_i64()), (Some(a), Some(b)) if b > a + 1))
                .count();
            seen.insert(s.owner, json!({ "values": values.len(), "gaps": gaps }));
            if let Some(w) = values.windows(2).find(|w| compare(&w[1].1, &w[0].1) != Ordering::Greater) {
                let what = if compare(&w[1].1, &w[0].1) == Ordering::Equal { "repeats" } else { "goes back" };
                violations.push(json!({
                    "actor": s.owner, "record": w[1].0, "previous": w[0].1, "value": w[1].1, "violation": what,
                }));
            }
        }
        let total: u64 = seen.values().map(|v| v["values"].as_u64().unwrap_or(0)).sum();
        let details = json!({ "field": self.field, "actors": seen, "violations": violations });
        if !violations.is_empty() {
            let words: Vec<String> = violations
                .iter()
                .map(|v| {
                    let (p, x) = (text(&v["previous"]), text(&v["value"]));
                    format!(
                        "{} at record {}: {} {} after {p} to {x}",
                        v["actor"].as_str().unwrap_or(""),
                        v["record"],
                        self.field,
                        v["violation"].as_str().unwrap_or("")
                    )
                })
                .collect();
            let summary = format!("{} not strictly increasing: {}", self.field, summarize(&words));
            return CheckResult::new(self.kind(), Verdict::Invalid, summary, details);
        }
        if total == 0 {
            let summary = format!("no state has a value of `{}`", self.field);
            return CheckResult::new(self.kind(), Verdict::Unknown, summary, details);
        }
        let summary = format!(
            "{} strictly increases for {} ({})",
            self.field,
            plural(states.len() as u64, "actor"),
            plural(total, "value")
        );
        CheckResult::new(self.kind(), Verdict::Valid, summary, details)
    }
}

impl Check for CausalOrderCheck {
    fn kind(&self) -> &'static str {
        "causal-order"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states = match snapshots(self.kind(), input, &self.label, "final") {
            Ok(s) => s,
            Err(r) => return r,
        };
        let mut violations = Vec::new();
        let mut n_events = 0usize;
        for s in &states {
            let mut events: Vec<(usize, serde_json::Map<String, Value>)> =
                records(s.content).into_iter().enumerate().collect();
            if let Some(order) = &self.order {
                // Stable: events with equal order keep the state's order.
                events.sort_by(|a, b| {
                    compare(a.1.get(order).unwrap_or(&Value::Null), b.1.get(order).unwrap_or(&Value::Null))
                });
            }
            n_events += events.len();
            let mut created = BTreeSet::new();
            for (i, e) in &events {
                let (Some(entity), Some(op)) = (e.get(&self.entity), e.get(&self.op)) else {
                    let summary = format!("a record of {} has no `{}` or `{}`", s.owner, self.entity, self.op);
                    return CheckResult::new(
                        self.kind(),
                        Verdict::Unknown,
                        summary,
                        json!({ "actor": s.owner, "record": i }),
                    );
                };
                let (entity, op) = (text(entity), text(op));
                if self.creates.contains(&op) {
                    created.insert(entity);
                } else if !created.contains(&entity) {
                    let order = self.order.as_ref().and_then(|o| e.get(o)).cloned().unwrap_or(Value::Null);
                    violations
                        .push(json!({ "actor": s.owner, "entity": entity, "op": op, "record": i, "order": order }));
                }
            }
        }
        let details = json!({ "events": n_events, "violations": violations });
        if !violations.is_empty() {
            let words: Vec<String> = violations
                .iter()
                .map(|v| {
                    format!("{}: {} of {} before any create", text(&v["actor"]), text(&v["op"]), text(&v["entity"]))
                })
                .collect();
            let summary =
                format!("{} without a create before: {}", plural(violations.len() as u64, "op"), summarize(&words));
            return CheckResult::new(self.kind(), Verdict::Invalid, summary, details);
        }
        if n_events == 0 {
            return CheckResult::new(self.kind(), Verdict::Unknown, "no events in any state", details);
        }
        let summary = format!(
            "creates come first in {} of {}",
            plural(n_events as u64, "event"),
            plural(states.len() as u64, "actor")
        );
        CheckResult::new(self.kind(), Verdict::Valid, summary, details)
    }
}
