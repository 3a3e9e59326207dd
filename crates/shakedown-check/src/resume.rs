//! The `resume` check: every interrupted-and-resumed case of a resume
//! scenario ends with the same state as the uninterrupted (golden) run —
//! nothing missing, nothing duplicated, nothing changed — its state files fit
//! the schema after every interruption, its progress never goes backwards,
//! and damaged state is met the way the scenario declares.

use crate::{Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::state::{Snapshot, StateContent};
use shakedown_history::{EventKind, FaultPhase, Op, OpType};
use std::collections::BTreeMap;

/// The check name the runner files resume snapshots under.
pub const RESUME: &str = "resume";
/// Differences listed per case; the counts are always whole.
const SHOWN: usize = 10;

/// What a damaged state file should lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The next attempt exits with an error; the destination holds nothing extra.
    Error,
    /// The job finishes with the golden state.
    Recover,
}

#[derive(Debug, Clone, Default)]
pub struct ResumeCheck {
    /// A JSON pointer to the state file's progress counter.
    pub progress: Option<String>,
    /// Set when the scenario damages files between interruption and resume.
    pub corrupt: Option<Expect>,
}

impl Check for ResumeCheck {
    fn kind(&self) -> &'static str {
        "resume"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states: Vec<&Snapshot> = input.states.unwrap_or(&[]).iter().filter(|s| s.check == RESUME).collect();
        let ops = input.history.ops();
        let unknown = |why: String| CheckResult::new("resume", Verdict::Unknown, why, json!({}));
        let golden_job = ops.iter().find(|o| o.actor == "golden");
        match golden_job.and_then(|o| o.completion.as_ref()) {
            Some(c) if c.op_type == OpType::Ok => {}
            // A job that cannot finish even uninterrupted is a finding, not a harness problem.
            Some(c) => {
                let why = c.error.clone().unwrap_or_default();
                let summary = format!("the job did not finish even uninterrupted: {why}");
                return CheckResult::new("resume", Verdict::Invalid, summary, json!({ "golden": { "error": why } }));
            }
            None => return unknown("the uninterrupted run did not run".into()),
        }
        let Some(golden) = find(&states, "golden", "final").and_then(|s| s.content.as_ref()) else {
            let why = find(&states, "golden", "final").and_then(|s| s.error.clone()).unwrap_or_default();
            return unknown(format!("the uninterrupted run's final state could not be read: {why}"));
        };
        let schema = match find(&states, "schema", "schema") {
            None => None,
            Some(Snapshot { content: Some(StateContent::Json { value }), .. }) => {
                match jsonschema::validator_for(value) {
                    Ok(v) => Some(v),
                    Err(e) => return unknown(format!("the state schema is not a valid JSON Schema: {e}")),
                }
            }
            Some(s) => {
                return unknown(format!("the state schema could not be read: {}", s.error.clone().unwrap_or_default()))
            }
        };
        let mut cases: Vec<&str> =
            states.iter().map(|s| s.owner.as_str()).filter(|o| o.starts_with("point-")).collect();
        cases.dedup();
        if cases.is_empty() {
            return unknown("no interruption case ran".into());
        }
        let damaged = corrupted_cases(input);
        let results: Vec<Value> = cases
            .iter()
            .map(|case| self.case(case, &states, &ops, golden, schema.as_ref(), damaged.get(*case)))
            .collect();
        let failed: Vec<&Value> = results.iter().filter(|r| r["verdict"] == "invalid").collect();
        let details = json!({ "cases": results });
        if let Some(first) = failed.first() {
            let summary = format!(
                "{} of {} interruption points failed; first, {} (alone: --point {}): {}",
                failed.len(),
                cases.len(),
                first["case"].as_str().unwrap_or(""),
                first["point"],
                first["problems"][0].as_str().unwrap_or("")
            );
            return CheckResult::new("resume", Verdict::Invalid, summary, details);
        }
        let summary = format!("all {} interruption points resumed to the uninterrupted run's state", cases.len());
        CheckResult::new("resume", Verdict::Valid, summary, details)
    }
}

impl ResumeCheck {
    fn case(
        &self,
        case: &str,
        states: &[&Snapshot],
        ops: &[Op],
        golden: &StateContent,
        schema: Option<&jsonschema::Validator>,
        damage: Option<&String>,
    ) -> Value {
        let mut problems = Vec::new();
        let attempts: Vec<&Op> = ops.iter().filter(|o| o.actor == case).collect();
        let results: Vec<Value> = attempts.iter().map(|o| attempt_json(o)).collect();
        let finished = attempts.last().and_then(|o| o.completion.as_ref()).is_some_and(|c| c.op_type == OpType::Ok);
        let mut progress_seen: Vec<(String, f64)> = Vec::new();
        for s in states.iter().filter(|s| s.owner == case && s.taken.starts_with("state-")) {
            self.state_file(s, schema, damage.is_some(), &mut problems, &mut progress_seen);
        }
        for pair in progress_seen.windows(2) {
            if pair[1].1 < pair[0].1 {
                problems.push(format!(
                    "progress went backwards: {} at {}, then {} at {}",
                    pair[0].1, pair[0].0, pair[1].1, pair[1].0
                ));
            }
        }
        let diff = match find(states, case, "final") {
            Some(Snapshot { content: Some(c), .. }) => diff(golden, c),
            // Refused after damage before it wrote anything: no destination, nothing extra.
            Some(_) if self.corrupt == Some(Expect::Error) && damage.is_some() => Diff::default(),
            Some(s) => {
                problems.push(format!("its final state could not be read: {}", s.error.clone().unwrap_or_default()));
                Diff::default()
            }
            None => Diff::default(),
        };
        match (self.corrupt, damage) {
            (Some(Expect::Error), Some(how)) => {
                if finished {
                    problems.push(format!(
                        "after {how}, the job reported done; the scenario expects it to refuse with an error"
                    ));
                }
                if !diff.extra.is_empty() {
                    problems.push(format!(
                        "after {how}, the destination holds {} item(s) the source does not",
                        diff.extra.len()
                    ));
                }
            }
            _ => {
                if !finished {
                    let why = attempts.last().and_then(|o| o.completion.as_ref()).and_then(|c| c.error.clone());
                    problems.push(format!(
                        "never finished after {} attempt(s): {}",
                        attempts.len(),
                        why.unwrap_or_default()
                    ));
                }
                if !diff.is_empty() {
                    problems.push(diff.describe());
                }
            }
        }
        json!({
            "case": case,
            // The case's signal and point are drawn from the run's seed and its number alone.
            "point": case.trim_start_matches("point-").parse::<u32>().ok(),
            "verdict": if problems.is_empty() { "valid" } else { "invalid" },
            "problems": problems,
            "damage": damage,
            "attempts": results,
            "missing": diff.missing.iter().take(SHOWN).collect::<Vec<_>>(),
            "extra": diff.extra.iter().take(SHOWN).collect::<Vec<_>>(),
            "changed": diff.changed.iter().take(SHOWN).collect::<Vec<_>>(),
            "missing_count": diff.missing.len(),
            "extra_count": diff.extra.len(),
            "changed_count": diff.changed.len(),
        })
    }

    fn state_file(
        &self,
        s: &Snapshot,
        schema: Option<&jsonschema::Validator>,
        damaged: bool,
        problems: &mut Vec<String>,
        progress: &mut Vec<(String, f64)>,
    ) {
        let Some(StateContent::Json { value }) = &s.content else {
            // A damaged case's resumes may well leave no state file, and a job
            // stopped before it wrote one has none ("absent").
            let absent = s.error.as_deref().is_some_and(|e| e.starts_with("absent"));
            if !damaged && !absent {
                problems.push(format!("no state file after {}: {}", s.taken, s.error.clone().unwrap_or_default()));
            }
            return;
        };
        if let Some(raw) = value.get("unparsed").filter(|_| value.as_object().is_some_and(|o| o.len() == 1)) {
            let shown: String = raw.as_str().unwrap_or("").chars().take(80).collect();
            problems.push(format!("the state file after {} is not JSON: {shown:?}", s.taken));
            return;
        }
        if let Some(v) = schema {
            for e in v.iter_errors(value).take(3) {
                problems.push(format!("the state file after {} breaks the schema at {}: {e}", s.taken, path_of(&e)));
            }
        }
        if let Some(p) = self.progress.as_deref().and_then(|p| value.pointer(p)).and_then(Value::as_f64) {
            progress.push((s.taken.clone(), p));
        }
    }
}

/// The JSON path of a schema error, `/` for the whole document.
fn path_of(e: &jsonschema::ValidationError<'_>) -> String {
    let path = e.instance_path().to_string();
    if path.is_empty() {
        "/".into()
    } else {
        path
    }
}

fn find<'a>(states: &[&'a Snapshot], owner: &str, taken: &str) -> Option<&'a Snapshot> {
    states.iter().copied().find(|s| s.owner == owner && s.taken == taken)
}

/// Each case whose files were damaged, with what was done.
fn corrupted_cases(input: &CheckInput<'_>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in &input.history.events {
        if let EventKind::Fault(f) = &e.kind {
            if f.fault == "corrupt" && f.phase == FaultPhase::Start {
                out.insert(f.target.clone(), f.detail.clone().unwrap_or_else(|| "damage".into()));
            }
        }
    }
    out
}

fn attempt_json(o: &Op) -> Value {
    let c = o.completion.as_ref();
    json!({
        "f": o.f,
        "index": o.invoke_index,
        "process": o.process,
        "result": c.map(|c| c.op_type),
        "error": c.and_then(|c| c.error.clone()),
    })
}

/// How a case's final state differs from the golden one.
#[derive(Debug, Default)]
struct Diff {
    /// In the golden state, not (or fewer times) in the case's.
    missing: Vec<Value>,
    /// In the case's state, not (or more times) in the golden one: duplicates too.
    extra: Vec<Value>,
    /// Same key, other content (trees: same path, other bytes).
    changed: Vec<Value>,
    /// The states are of different kinds (a misconfigured comparison).
    mismatch: Option<String>,
}

impl Diff {
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty() && self.mismatch.is_none()
    }

    fn describe(&self) -> String {
        if let Some(m) = &self.mismatch {
            return m.clone();
        }
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} missing (first: {})", self.missing.len(), self.missing[0]));
        }
        if !self.extra.is_empty() {
            parts.push(format!("{} extra or duplicated (first: {})", self.extra.len(), self.extra[0]));
        }
        if !self.changed.is_empty() {
            parts.push(format!("{} changed (first: {})", self.changed.len(), self.changed[0]));
        }
        format!("differs from the uninterrupted run: {}", parts.join("; "))
    }
}

fn diff(golden: &StateContent, got: &StateContent) -> Diff {
    match (golden, got) {
        (StateContent::Rows { rows: want, .. }, StateContent::Rows { rows: have, .. }) => {
            let (missing, extra) = multiset_diff(want.iter().map(|r| json!(r)), have.iter().map(|r| json!(r)));
            Diff { missing, extra, ..Diff::default() }
        }
        (StateContent::Tree { entries: want }, StateContent::Tree { entries: have }) => {
            let want: BTreeMap<&str, &str> = want.iter().map(|e| (e.path.as_str(), e.sha256.as_str())).collect();
            let have: BTreeMap<&str, &str> = have.iter().map(|e| (e.path.as_str(), e.sha256.as_str())).collect();
            let mut d = Diff::default();
            for (path, hash) in &want {
                match have.get(path) {
                    None => d.missing.push(json!(path)),
                    Some(h) if h != hash => d.changed.push(json!(path)),
                    Some(_) => {}
                }
            }
            d.extra = have.keys().filter(|p| !want.contains_key(*p)).map(|p| json!(p)).collect();
            d
        }
        // Arrays (a query's rows as JSON, e.g. psql's json_agg) compare as multisets of elements.
        (StateContent::Json { value: Value::Array(want) }, StateContent::Json { value: Value::Array(have) }) => {
            let (missing, extra) = multiset_diff(want.iter().cloned(), have.iter().cloned());
            Diff { missing, extra, ..Diff::default() }
        }
        (StateContent::Json { value: a }, StateContent::Json { value: b }) => {
            let changed = if a == b { Vec::new() } else { vec![json!({ "want": a, "got": b })] };
            Diff { changed, ..Diff::default() }
        }
        (a, b) => {
            Diff { mismatch: Some(format!("compared a {} with a {}", a.type_name(), b.type_name())), ..Diff::default() }
        }
    }
}

/// (in `want` more often than in `have`, in `have` more often than in `want`).
fn multiset_diff(want: impl Iterator<Item = Value>, have: impl Iterator<Item = Value>) -> (Vec<Value>, Vec<Value>) {
    let mut counts: BTreeMap<String, (i64, Value)> = BTreeMap::new();
    for v in want {
        counts.entry(v.to_string()).or_insert((0, v)).0 += 1;
    }
    for v in have {
        counts.entry(v.to_string()).or_insert((0, v)).0 -= 1;
    }
    let (mut missing, mut extra) = (Vec::new(), Vec::new());
    for (n, v) in counts.into_values() {
        for _ in 0..n.max(0) {
            missing.push(v.clone());
        }
        for _ in 0..(-n).max(0) {
            extra.push(v.clone());
        }
    }
    (missing, extra)
}

#[cfg(test)]
mod tests;
