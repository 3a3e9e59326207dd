//! State checks on what a state holds: each actor's own writes
//! (`own-writes`), declared field edits (`field-merge`), and the exact rows
//! of a query (`sql`).

use super::{entity_field, keyed, loosely_equal, records, snapshots, summarize, text};
use crate::{plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::state::StateContent;
use shakedown_history::OpType;
use std::collections::{BTreeMap, BTreeSet};

/// Each actor's final state holds every entity it created: the values of
/// its ok ops of `fs` (the actions that capture into the check's pool), or
/// with `created`, the entities of its `created` snapshot.
pub struct OwnWritesCheck {
    pub label: String,
    pub fs: Vec<String>,
    pub entity: Option<String>,
    /// Read what each actor created from its `created` snapshot, not the history.
    pub created: bool,
}

/// One edit that must survive: `entity`'s `field` is `value`.
#[derive(Debug, Clone)]
pub struct FieldEdit {
    pub actor: Option<String>,
    pub entity: Value,
    pub field: String,
    pub value: Value,
}

/// Every edit survives in every actor's final state: the declared `edits`,
/// and with `edit_log`, each actor's records (`entity`, `field`, `value`)
/// in its `edits` snapshot.
pub struct FieldMergeCheck {
    pub label: String,
    pub entity: Option<String>,
    pub edits: Vec<FieldEdit>,
    pub edit_log: bool,
}

impl FieldMergeCheck {
    /// The declared edits and, with `edit_log`, those the actors logged.
    fn all_edits(&self, input: &CheckInput<'_>) -> Result<Vec<FieldEdit>, CheckResult> {
        let mut edits = self.edits.clone();
        if !self.edit_log {
            return Ok(edits);
        }
        for s in snapshots(self.kind(), input, &self.label, "edits")? {
            for (i, r) in records(s.content).into_iter().enumerate() {
                let (Some(entity), Some(field), Some(value)) = (r.get("entity"), r.get("field"), r.get("value")) else {
                    let summary = format!("edit {i} logged by {} lacks `entity`, `field` or `value`", s.owner);
                    return Err(CheckResult::new(self.kind(), Verdict::Unknown, summary, json!({ "record": r })));
                };
                let edit = FieldEdit {
                    actor: Some(s.owner.to_string()),
                    entity: entity.clone(),
                    field: text(field),
                    value: value.clone(),
                };
                edits.push(edit);
            }
        }
        Ok(edits)
    }
}

/// The query's rows equal `rows` (in order; 3 and "3" match), or, with
/// `rows` absent, there are none.
pub struct SqlCheck {
    pub label: String,
    pub rows: Option<Vec<Vec<Value>>>,
}

impl OwnWritesCheck {
    /// What each actor created: from the `created` snapshots, or the history.
    fn created(&self, input: &CheckInput<'_>) -> Result<BTreeMap<String, BTreeSet<String>>, CheckResult> {
        let mut created: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if self.created {
            for s in snapshots(self.kind(), input, &self.label, "created")? {
                let field = entity_field(s.content, None);
                let ids = records(s.content).iter().filter_map(|r| r.get(&field).map(text)).collect();
                created.insert(s.owner.to_string(), ids);
            }
            return Ok(created);
        }
        for op in input.history.ops() {
            let Some(done) = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok) else { continue };
            if self.fs.contains(&op.f) && !done.value.is_null() {
                created.entry(op.actor.clone()).or_default().insert(text(&done.value));
            }
        }
        Ok(created)
    }
}

impl Check for OwnWritesCheck {
    fn kind(&self) -> &'static str {
        "own-writes"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states = match snapshots(self.kind(), input, &self.label, "final") {
            Ok(s) => s,
            Err(r) => return r,
        };
        let created = match self.created(input) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let mut missing = BTreeMap::new();
        let mut checked = 0usize;
        for s in &states {
            let Some(mine) = created.get(s.owner) else { continue };
            let held = keyed(s.content, self.entity.as_deref());
            let lost: Vec<&String> = mine.iter().filter(|id| !held.contains_key(*id)).collect();
            checked += mine.len();
            if !lost.is_empty() {
                missing.insert(s.owner.to_string(), json!(lost));
            }
        }
        let details = json!({ "created": created, "missing": missing, "entity": states.first().map(|s| entity_field(s.content, self.entity.as_deref())) });
        if !missing.is_empty() {
            let words: Vec<String> = missing
                .iter()
                .map(|(o, ids)| {
                    format!(
                        "{o} lacks {}",
                        summarize(&ids.as_array().into_iter().flatten().map(text).collect::<Vec<_>>())
                    )
                })
                .collect();
            let summary = format!("actors miss entities they created: {}", words.join("; "));
            return CheckResult::new(self.kind(), Verdict::Invalid, summary, details);
        }
        if checked == 0 {
            let from =
                if self.created { "per `created`".to_string() } else { format!("ok ops of {}", self.fs.join(", ")) };
            let summary = format!("no actor with a state created anything ({from})");
            return CheckResult::new(self.kind(), Verdict::Unknown, summary, details);
        }
        let summary = format!(
            "every actor holds what it created ({})",
            if checked == 1 { "1 entity".to_string() } else { format!("{checked} entities") }
        );
        CheckResult::new(self.kind(), Verdict::Valid, summary, details)
    }
}

impl Check for FieldMergeCheck {
    fn kind(&self) -> &'static str {
        "field-merge"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states = match snapshots(self.kind(), input, &self.label, "final") {
            Ok(s) => s,
            Err(r) => return r,
        };
        let edits = match self.all_edits(input) {
            Ok(e) => e,
            Err(r) => return r,
        };
        if edits.is_empty() {
            return CheckResult::new(self.kind(), Verdict::Unknown, "no edits to look for", json!({}));
        }
        let mut lost = Vec::new();
        for s in &states {
            let held = keyed(s.content, self.entity.as_deref());
            for e in &edits {
                let got = held.get(&text(&e.entity)).map(|r| r.get(&e.field).cloned().unwrap_or(Value::Null));
                if !got.as_ref().is_some_and(|g| loosely_equal(g, &e.value)) {
                    lost.push(json!({
                        "actor": s.owner, "entity": e.entity, "field": e.field, "want": e.value,
                        "got": got, "entity_missing": got.is_none(), "edited_by": e.actor,
                    }));
                }
            }
        }
        let details = json!({ "lost": lost, "edits": edits.len(), "actors": states.len() });
        if lost.is_empty() {
            let summary = format!(
                "all {} survive in {}",
                plural(edits.len() as u64, "edit"),
                plural(states.len() as u64, "state")
            );
            return CheckResult::new(self.kind(), Verdict::Valid, summary, details);
        }
        let words: Vec<String> = lost
            .iter()
            .map(|l| {
                let got =
                    if l["entity_missing"] == json!(true) { "no such entity".to_string() } else { text(&l["got"]) };
                format!(
                    "{} has {}.{} = {got}, want {}",
                    text(&l["actor"]),
                    text(&l["entity"]),
                    text(&l["field"]),
                    text(&l["want"])
                )
            })
            .collect();
        let summary = format!("{} lost: {}", plural(lost.len() as u64, "edit"), summarize(&words));
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details)
    }
}

impl Check for SqlCheck {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let states = match snapshots(self.kind(), input, &self.label, "final") {
            Ok(s) => s,
            Err(r) => return r,
        };
        let want = self.rows.clone().unwrap_or_default();
        let mut got_by = BTreeMap::new();
        let mut wrong = Vec::new();
        for s in &states {
            let rows: Vec<Vec<Value>> = match s.content {
                StateContent::Rows { rows, .. } => rows.clone(),
                other => records(other).into_iter().map(|r| r.into_iter().map(|(_, v)| v).collect()).collect(),
            };
            let same = rows.len() == want.len()
                && rows
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.len() == w.len() && g.iter().zip(w).all(|(a, b)| loosely_equal(a, b)));
            if !same {
                wrong.push(s.owner.to_string());
            }
            got_by.insert(s.owner.to_string(), json!(rows));
        }
        let details = json!({ "want": want, "got": got_by, "wrong": wrong });
        let expected = if self.rows.is_none() { "no rows".to_string() } else { plural(want.len() as u64, "row") };
        if wrong.is_empty() {
            return CheckResult::new(self.kind(), Verdict::Valid, format!("the query returned {expected}"), details);
        }
        let words: Vec<String> = wrong
            .iter()
            .map(|o| {
                let rows = got_by[o].as_array().map_or(0, Vec::len);
                let first = got_by[o].get(0).map(|r| format!(", first {r}")).unwrap_or_default();
                format!("{o} got {}{first}", plural(rows as u64, "row"))
            })
            .collect();
        let summary = format!("expected {expected}: {}", summarize(&words));
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details)
    }
}
