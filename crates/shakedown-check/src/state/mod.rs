//! State checks: verdicts on the actors' state snapshots (SQLite rows, JSON,
//! directory trees) rather than on operations. Seed 002's verifier,
//! generalised: convergence, equal event counts, idempotent sync rounds,
//! strictly increasing sequences, causal order, each actor seeing its own
//! writes, field-level merges, and plain SQL assertions.
//!
//! Every check reads the snapshots taken for its own label (see
//! [`CheckInput::with_states`]); a missing or unreadable snapshot makes it
//! unknown with the reason, never valid.

mod compare;
mod content;
mod order;

pub use compare::{ConvergeCheck, EventCountsCheck, IdempotentCheck};
pub use content::{FieldEdit, FieldMergeCheck, OwnWritesCheck, SqlCheck};
pub use order::{CausalOrderCheck, SequenceCheck};

use crate::{list_bounded, CheckInput, CheckResult, Verdict};
use serde_json::{json, Map, Value};
use shakedown_history::state::{Snapshot, StateContent};
use std::collections::BTreeMap;

/// How many differences or violations a summary names.
const SUMMARY_LIMIT: usize = 3;

/// The snapshots of `label` taken at `taken`, each with content; otherwise
/// the unknown result that says what is missing.
fn snapshots<'a>(
    kind: &str,
    input: &CheckInput<'a>,
    label: &str,
    taken: &str,
) -> Result<Vec<Content<'a>>, CheckResult> {
    let unknown = |summary: String, details: Value| CheckResult::new(kind, Verdict::Unknown, summary, details);
    let Some(states) = input.states else {
        return Err(unknown("no states were taken".into(), json!({})));
    };
    let mine: Vec<&Snapshot> = states.iter().filter(|s| s.check == label && s.taken == taken).collect();
    if mine.is_empty() {
        return Err(unknown(format!("no {taken} state was taken for check `{label}`"), json!({ "taken": taken })));
    }
    let errors: BTreeMap<&str, &str> =
        mine.iter().filter_map(|s| Some((s.owner.as_str(), s.error.as_deref()?))).collect();
    if let Some((owner, error)) = errors.iter().next() {
        let more = if errors.len() > 1 { format!(" (and {} more)", errors.len() - 1) } else { String::new() };
        return Err(unknown(
            format!("the {taken} state of {owner} could not be read{more}: {error}"),
            json!({ "unreadable": errors, "taken": taken }),
        ));
    }
    Ok(mine.into_iter().filter_map(|s| Some(Content { owner: &s.owner, content: s.content.as_ref()? })).collect())
}

/// One owner's readable state.
#[derive(Clone, Copy)]
struct Content<'a> {
    owner: &'a str,
    content: &'a StateContent,
}

/// A value as text for comparing ids across sources: strings bare, the rest as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Equal as JSON, or equal as text (3 and "3"; 1 and 1.0).
fn loosely_equal(a: &Value, b: &Value) -> bool {
    a == b
        || text(a) == text(b)
        || matches!((a.as_f64(), b.as_f64()), (Some(x), Some(y)) if x == y && a.is_number() && b.is_number())
}

/// The records of a state, each a map from field to value: the rows (by
/// column name), a JSON array's elements (objects as they are, scalars under
/// `value`), a JSON object's entries (objects with their key under `key`),
/// or a tree's files (`path`, `size`, `sha256`).
fn records(content: &StateContent) -> Vec<Map<String, Value>> {
    match content {
        StateContent::Rows { columns, rows } => rows
            .iter()
            .map(|row| columns.iter().cloned().zip(row.iter().cloned()).collect::<Map<String, Value>>())
            .collect(),
        StateContent::Json { value: Value::Array(items) } => items.iter().map(record_of).collect(),
        StateContent::Json { value: Value::Object(map) } => map
            .iter()
            .map(|(k, v)| {
                let mut r = record_of(v);
                r.entry("key").or_insert_with(|| Value::String(k.clone()));
                r
            })
            .collect(),
        StateContent::Json { value } => vec![record_of(value)],
        StateContent::Tree { entries } => entries
            .iter()
            .map(|e| {
                let mut r = Map::new();
                r.insert("path".into(), json!(e.path));
                r.insert("size".into(), json!(e.size));
                r.insert("sha256".into(), json!(e.sha256));
                r
            })
            .collect(),
    }
}

fn record_of(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        other => Map::from_iter([("value".to_string(), other.clone())]),
    }
}

/// The field naming a record's entity: the one asked for, else the first
/// column of rows, `path` for trees, `key` for JSON objects of objects, `id`.
fn entity_field(content: &StateContent, asked: Option<&str>) -> String {
    if let Some(f) = asked {
        return f.to_string();
    }
    match content {
        StateContent::Rows { columns, .. } => columns.first().cloned().unwrap_or_else(|| "id".into()),
        StateContent::Tree { .. } => "path".into(),
        StateContent::Json { value: Value::Object(_) } => "key".into(),
        StateContent::Json { value: Value::Array(items) } if items.iter().any(|i| !i.is_object()) => "value".into(),
        StateContent::Json { .. } => "id".into(),
    }
}

/// Records keyed by their entity's text; a repeated entity gets `#2`, `#3`, ...
fn keyed(content: &StateContent, entity: Option<&str>) -> BTreeMap<String, Map<String, Value>> {
    let field = entity_field(content, entity);
    let mut out = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in records(content) {
        let id = r.get(&field).map_or_else(|| "<none>".to_string(), text);
        let n = seen.entry(id.clone()).or_insert(0);
        *n += 1;
        let key = if *n == 1 { id } else { format!("{id}#{n}") };
        out.insert(key, r);
    }
    out
}

/// Every difference between two owners' states, `ignore`d fields (columns,
/// or JSON keys at any depth) aside: entities only one side has, and the
/// fields that differ, each naming both owners' values.
fn differences(a: Content<'_>, b: Content<'_>, ignore: &[String], entity: Option<&str>) -> Vec<Value> {
    if a.content.type_name() != b.content.type_name() {
        return vec![json!({ "kind": "type", a.owner: a.content.type_name(), b.owner: b.content.type_name() })];
    }
    if let (StateContent::Json { value: x }, StateContent::Json { value: y }) = (a.content, b.content) {
        // Arrays and objects of objects compare record by record; anything else as one value.
        let records_like = x.is_array() || x.as_object().is_some_and(|m| m.values().all(Value::is_object));
        if !records_like {
            let mut out = Vec::new();
            json_diff("", Some(x), Some(y), ignore, (a.owner, b.owner), &mut out);
            return out;
        }
    }
    let (ka, kb) = (keyed(a.content, entity), keyed(b.content, entity));
    let mut out = Vec::new();
    for (id, ra) in &ka {
        match kb.get(id) {
            None => out.push(json!({ "entity": id, "only_in": a.owner })),
            Some(rb) => {
                let mut fields = Vec::new();
                json_diff(
                    "",
                    Some(&Value::Object(ra.clone())),
                    Some(&Value::Object(rb.clone())),
                    ignore,
                    (a.owner, b.owner),
                    &mut fields,
                );
                if !fields.is_empty() {
                    out.push(json!({ "entity": id, "fields": fields }));
                }
            }
        }
    }
    out.extend(kb.keys().filter(|id| !ka.contains_key(*id)).map(|id| json!({ "entity": id, "only_in": b.owner })));
    out
}

/// Differences between two JSON values as `{path, OWNER_A: .., OWNER_B: ..}`
/// (a side that lacks the path has no entry); object keys in `ignore` are skipped.
fn json_diff(
    path: &str,
    a: Option<&Value>,
    b: Option<&Value>,
    ignore: &[String],
    owners: (&str, &str),
    out: &mut Vec<Value>,
) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys.into_iter().filter(|k| !ignore.contains(k)) {
                json_diff(&format!("{path}/{}", escape(k)), x.get(k), y.get(k), ignore, owners, out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                json_diff(&format!("{path}/{i}"), x.get(i), y.get(i), ignore, owners, out);
            }
        }
        (x, y) if x == y => {}
        (x, y) => {
            let mut d = Map::new();
            d.insert("path".into(), json!(if path.is_empty() { "/" } else { path }));
            if let Some(x) = x {
                d.insert(owners.0.into(), x.clone());
            }
            if let Some(y) = y {
                d.insert(owners.1.into(), y.clone());
            }
            out.push(Value::Object(d));
        }
    }
}

/// A JSON pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// One difference in words, for summaries.
fn describe(d: &Value) -> String {
    if let Some(id) = d.get("entity").map(text) {
        if let Some(owner) = d.get("only_in") {
            return format!("{id} only in {}", text(owner));
        }
        let fields: Vec<String> = d["fields"].as_array().into_iter().flatten().map(path_of).collect();
        return format!("{id} differs in {}", fields.join(", "));
    }
    if d.get("kind").is_some() {
        return "different kinds of state".into();
    }
    path_of(d)
}

fn path_of(d: &Value) -> String {
    d.get("path").map(text).unwrap_or_default().trim_start_matches('/').to_string()
}

fn summarize(items: &[String]) -> String {
    list_bounded(items, SUMMARY_LIMIT)
}

#[cfg(test)]
mod tests;
