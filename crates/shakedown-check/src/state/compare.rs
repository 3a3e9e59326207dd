//! State checks that compare states: across actors (`converge`,
//! `event-counts`) or before and after more sync rounds (`idempotent`).

use super::{describe, differences, records, snapshots, summarize, text, Content};
use crate::{plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Every actor's final state equals the first actor's, `ignore`d fields aside.
pub struct ConvergeCheck {
    /// The check's label, which names its snapshots.
    pub label: String,
    pub ignore: Vec<String>,
    /// The field naming each record's entity (see the module docs).
    pub entity: Option<String>,
    /// Compare only the entities both states hold (each actor holds a subset).
    pub shared_only: bool,
}

/// Counts are equal across actors: each row's last column is a count keyed
/// by the other columns (or one row, one column: a single count); a JSON
/// object of counts, or a JSON number.
pub struct EventCountsCheck {
    pub label: String,
}

/// Each actor's state after the extra rounds equals its state before them.
pub struct IdempotentCheck {
    pub label: String,
    pub ignore: Vec<String>,
    pub entity: Option<String>,
}

fn too_few(kind: &str, states: &[Content<'_>]) -> Option<CheckResult> {
    (states.len() < 2).then(|| {
        CheckResult::new(
            kind,
            Verdict::Unknown,
            format!("needs the states of at least two actors; got {}", states.len()),
            json!({ "owners": states.iter().map(|s| s.owner).collect::<Vec<_>>() }),
        )
    })
}

fn hashes(states: &[Content<'_>]) -> BTreeMap<String, String> {
    states.iter().map(|s| (s.owner.to_string(), s.content.hash())).collect()
}

impl Check for ConvergeCheck {
    fn kind(&self) -> &'static str {
        "converge"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states = match snapshots(self.kind(), input, &self.label, "final") {
            Ok(s) => s,
            Err(r) => return r,
        };
        if let Some(r) = too_few(self.kind(), &states) {
            return r;
        }
        let reference = states[0];
        let mut by_owner = BTreeMap::new();
        let mut words = Vec::new();
        for other in &states[1..] {
            let mut diffs = differences(reference, *other, &self.ignore, self.entity.as_deref());
            if self.shared_only {
                diffs.retain(|d| d.get("only_in").is_none());
            }
            if !diffs.is_empty() {
                words.push(format!(
                    "{} ({}: {})",
                    other.owner,
                    plural(diffs.len() as u64, "difference"),
                    summarize(&diffs.iter().map(describe).collect::<Vec<_>>())
                ));
                by_owner.insert(other.owner.to_string(), Value::Array(diffs));
            }
        }
        let details = json!({ "reference": reference.owner, "differences": by_owner, "hashes": hashes(&states) });
        if by_owner.is_empty() {
            let summary = format!("{} states converged", states.len());
            return CheckResult::new(self.kind(), Verdict::Valid, summary, details);
        }
        let summary = format!(
            "{} of {} actors differ from {}: {}",
            by_owner.len(),
            states.len() - 1,
            reference.owner,
            words.join("; ")
        );
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details)
    }
}

/// The counts a state holds, keyed; an error when it holds no counts.
fn counts(c: Content<'_>) -> Result<BTreeMap<String, f64>, String> {
    use shakedown_history::state::StateContent;
    let number = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
    match c.content {
        StateContent::Rows { columns, rows } if columns.len() == 1 && rows.len() == 1 => {
            let n = number(&rows[0][0]).ok_or_else(|| format!("`{}` is not a count", rows[0][0]))?;
            Ok(BTreeMap::from([(columns[0].clone(), n)]))
        }
        StateContent::Rows { rows, .. } => {
            let mut out = BTreeMap::new();
            for row in rows {
                let Some((last, key)) = row.split_last() else { continue };
                let n =
                    number(last).ok_or_else(|| format!("the last column of each row must be a count; got {last}"))?;
                let key = key.iter().map(text).collect::<Vec<_>>().join("|");
                *out.entry(key).or_insert(0.0) += n;
            }
            Ok(out)
        }
        StateContent::Json { value: Value::Object(map) } => map
            .iter()
            .map(|(k, v)| number(v).map(|n| (k.clone(), n)).ok_or_else(|| format!("`{k}` is not a count: {v}")))
            .collect(),
        StateContent::Json { value } => number(value)
            .map(|n| BTreeMap::from([("count".to_string(), n)]))
            .ok_or_else(|| format!("{value} is not a count")),
        StateContent::Tree { .. } => Ok(BTreeMap::from([("files".to_string(), records(c.content).len() as f64)])),
    }
}

impl Check for EventCountsCheck {
    fn kind(&self) -> &'static str {
        "event-counts"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states = match snapshots(self.kind(), input, &self.label, "final") {
            Ok(s) => s,
            Err(r) => return r,
        };
        if let Some(r) = too_few(self.kind(), &states) {
            return r;
        }
        let mut all = BTreeMap::new();
        for s in &states {
            match counts(*s) {
                Ok(c) => {
                    all.insert(s.owner, c);
                }
                Err(e) => {
                    let summary = format!("the state of {} holds no counts: {e}", s.owner);
                    return CheckResult::new(self.kind(), Verdict::Unknown, summary, json!({ "owner": s.owner }));
                }
            }
        }
        let keys: std::collections::BTreeSet<&String> = all.values().flat_map(|c| c.keys()).collect();
        let mut differ = Vec::new();
        for key in keys {
            let per: BTreeMap<&str, f64> = all.iter().map(|(o, c)| (*o, c.get(key).copied().unwrap_or(0.0))).collect();
            let first = per.values().next().copied().unwrap_or(0.0);
            if per.values().any(|n| *n != first) {
                differ.push((key.clone(), per));
            }
        }
        let details = json!({
            "counts": all,
            "differ": differ.iter().map(|(k, per)| json!({ "key": k, "counts": per })).collect::<Vec<_>>(),
        });
        if differ.is_empty() {
            let summary = format!("counts agree across {} actors", states.len());
            return CheckResult::new(self.kind(), Verdict::Valid, summary, details);
        }
        let words: Vec<String> = differ
            .iter()
            .map(|(k, per)| {
                let each: Vec<String> = per.iter().map(|(o, n)| format!("{o} {n}")).collect();
                format!("{k}: {}", each.join(", "))
            })
            .collect();
        let verb = if differ.len() == 1 { "differs" } else { "differ" };
        let summary = format!("{} {verb}: {}", plural(differ.len() as u64, "count"), summarize(&words));
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details)
    }
}

impl Check for IdempotentCheck {
    fn kind(&self) -> &'static str {
        "idempotent"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let (before, after) = match (
            snapshots(self.kind(), input, &self.label, "before"),
            snapshots(self.kind(), input, &self.label, "after"),
        ) {
            (Ok(b), Ok(a)) => (b, a),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        let mut changed = BTreeMap::new();
        let mut same = Vec::new();
        for b in &before {
            let Some(a) = after.iter().find(|a| a.owner == b.owner) else {
                let summary = format!("no after state for {}", b.owner);
                return CheckResult::new(self.kind(), Verdict::Unknown, summary, json!({ "owner": b.owner }));
            };
            let diffs = differences(*b, *a, &self.ignore, self.entity.as_deref());
            if diffs.is_empty() {
                same.push(b.owner);
            } else {
                let entry = json!({ "before": b.content.hash(), "after": a.content.hash(), "differences": diffs });
                changed.insert(b.owner.to_string(), entry);
            }
        }
        let details = json!({ "changed": changed, "unchanged": same, "hashes": hashes(&before) });
        if changed.is_empty() {
            let summary = format!("{} unchanged by the extra rounds", plural(same.len() as u64, "state"));
            return CheckResult::new(self.kind(), Verdict::Valid, summary, details);
        }
        let words: Vec<String> = changed
            .iter()
            .map(|(owner, e)| {
                let diffs: Vec<String> = e["differences"].as_array().into_iter().flatten().map(describe).collect();
                format!("{owner}: {}", summarize(&diffs))
            })
            .collect();
        let summary =
            format!("the extra rounds changed {}: {}", plural(changed.len() as u64, "state"), words.join("; "));
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details)
    }
}
