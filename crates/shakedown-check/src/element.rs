//! Set elements: JSON values normalized so that equal elements compare equal.

use serde_json::Value;
use std::cmp::Ordering;

/// A JSON value used as a set element, with a total order so it can key a
/// `BTreeMap` and sort deterministically in reports.
///
/// Clients often echo numbers back as strings (an add of `5` read back as
/// `"5"`), so a string that parses as an `i64` is the same element as that
/// integer. Numbers compare by value, so `1` and `1.0` are one element.
#[derive(Debug, Clone)]
pub(crate) struct Element(Value);

impl Element {
    pub(crate) fn new(value: &Value) -> Element {
        match value {
            Value::String(s) => match s.parse::<i64>() {
                Ok(n) => Element(Value::from(n)),
                Err(_) => Element(value.clone()),
            },
            _ => Element(value.clone()),
        }
    }

    pub(crate) fn value(&self) -> &Value {
        &self.0
    }

    /// The element as a person reads it in a summary: numbers bare, strings quoted.
    pub(crate) fn display(&self) -> String {
        self.0.to_string()
    }
}

impl PartialEq for Element {
    fn eq(&self, other: &Element) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Element {}

impl PartialOrd for Element {
    fn partial_cmp(&self, other: &Element) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Element {
    fn cmp(&self, other: &Element) -> Ordering {
        compare(&self.0, &other.0)
    }
}

/// A total order on JSON: by type (null, bool, number, string, array, object),
/// then by value; objects compare as sorted key-value lists so key order in
/// the source text does not matter.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => compare_seqs(x.iter(), y.iter()),
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<_> = x.iter().collect();
            let mut ys: Vec<_> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            for (p, q) in xs.iter().zip(&ys) {
                let ord = p.0.cmp(q.0).then_with(|| compare(p.1, q.1));
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            xs.len().cmp(&ys.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn compare_seqs<'a>(xs: impl Iterator<Item = &'a Value>, ys: impl Iterator<Item = &'a Value>) -> Ordering {
    let mut ys = ys;
    for x in xs {
        let Some(y) = ys.next() else { return Ordering::Greater };
        let ord = compare(x, y);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    if ys.next().is_some() {
        Ordering::Less
    } else {
        Ordering::Equal
    }
}

/// Compares numbers exactly, integers against floats too: rounding an
/// integer to `f64` would make the order intransitive, and sorting with an
/// intransitive order may panic.
fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Ordering {
    match (integer(x), integer(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(a), None) => compare_int_float(a, y.as_f64().unwrap_or(0.0)),
        (None, Some(b)) => compare_int_float(b, x.as_f64().unwrap_or(0.0)).reverse(),
        (None, None) => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
    }
}

fn integer(n: &serde_json::Number) -> Option<i128> {
    n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from))
}

fn compare_int_float(a: i128, b: f64) -> Ordering {
    let rounded = (a as f64).total_cmp(&b);
    if rounded != Ordering::Equal {
        return rounded;
    }
    // Equal after rounding means `b` is a whole number within range of `a`.
    a.cmp(&(b as i128))
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// An integer a check can do arithmetic on: a JSON integer or a string that
/// parses as one, the same normalization [`Element`] applies.
pub(crate) fn as_integer(value: &Value) -> Option<i64> {
    Element::new(value).value().as_i64()
}

/// The part of `value` a JSON pointer names; the whole value without one.
pub(crate) fn select<'a>(value: &'a Value, pointer: Option<&str>) -> Option<&'a Value> {
    match pointer {
        Some(p) => value.pointer(p),
        None => Some(value),
    }
}

/// How a report names an operation, so a person can find it in the history:
/// completion index (or invocation index when it never completed), process,
/// actor, action, result type, invoked value and completion value.
pub(crate) fn op_ref(op: &shakedown_history::Op) -> Value {
    let c = op.completion.as_ref();
    serde_json::json!({
        "index": c.map_or(op.invoke_index, |c| c.index),
        "invoke_index": op.invoke_index,
        "process": op.process,
        "actor": op.actor,
        "f": op.f,
        "type": op.op_type().as_str(),
        "value": op.invoke_value,
        "out": c.map(|c| c.value.clone()),
    })
}

/// A fault window as (start, end, fault, target); `end` is `None` when it
/// never healed.
pub(crate) type Window = (u64, Option<u64>, String, String);

/// The history's fault windows, in order.
pub(crate) fn windows(history: &shakedown_history::History) -> Vec<Window> {
    use shakedown_history::EventKind;
    history
        .fault_windows()
        .into_iter()
        .filter_map(|(start, end)| match &start.kind {
            EventKind::Fault(f) => Some((start.time_ns, end.map(|e| e.time_ns), f.fault.clone(), f.target.clone())),
            _ => None,
        })
        .collect()
}

/// The fault window nearest to an element lost after it was acknowledged at
/// `acked_ns`: the one open then, else the first to start after it (the crash
/// that took an unsynced write), else the last before it. `None` without faults.
pub(crate) fn nearest_window(windows: &[Window], acked_ns: u64) -> Option<Value> {
    let during = windows.iter().find(|w| w.0 <= acked_ns && w.1.is_none_or(|end| acked_ns <= end));
    let after = windows.iter().filter(|w| w.0 > acked_ns).min_by_key(|w| w.0);
    let before = windows.iter().filter(|w| w.1.is_some_and(|end| end < acked_ns)).max_by_key(|w| w.1);
    let (w, relation) = match (during, after, before) {
        (Some(w), _, _) => (w, "during"),
        (None, Some(w), _) => (w, "after"),
        (None, None, Some(w)) => (w, "before"),
        (None, None, None) => return None,
    };
    let gap_ms = match relation {
        "after" => (w.0 - acked_ns) as f64 / 1e6,
        "before" => w.1.map_or(0.0, |end| (acked_ns - end) as f64 / 1e6),
        _ => 0.0,
    };
    Some(serde_json::json!({
        "fault": w.2,
        "target": w.3,
        "start_ns": w.0,
        "end_ns": w.1,
        "relation": relation,
        "gap_ms": gap_ms,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn el(v: Value) -> Element {
        Element::new(&v)
    }

    #[test]
    fn numeric_strings_are_integers() {
        assert_eq!(el(json!("5")), el(json!(5)));
        assert_eq!(el(json!("-5")), el(json!(-5)));
        assert_ne!(el(json!("5a")), el(json!(5)));
        assert_ne!(el(json!("x")), el(json!(5)));
        assert_eq!(el(json!(1)), el(json!(1.0)));
    }

    #[test]
    fn orders_numbers_by_value_not_text() {
        let mut v = [el(json!(10)), el(json!("9")), el(json!(-1)), el(json!(u64::MAX)), el(json!(2.5))];
        v.sort();
        let shown: Vec<_> = v.iter().map(Element::display).collect();
        assert_eq!(shown, ["-1", "2.5", "9", "10", &u64::MAX.to_string()]);
    }

    #[test]
    fn integers_and_floats_compare_exactly() {
        let big = 1_i64 << 53;
        assert!(el(json!(big + 1)) > el(json!(big as f64)));
        assert_eq!(el(json!(big)), el(json!(big as f64)));
        assert!(el(json!(-1)) < el(json!(-0.5)));
        assert!(el(json!(-1)) < el(json!(u64::MAX)));
    }

    #[test]
    fn orders_across_types_and_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":2}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":2,"b":1}"#).unwrap();
        assert_eq!(el(a), el(b));
        assert!(el(json!(null)) < el(json!(false)));
        assert!(el(json!(1)) < el(json!("a")));
        assert!(el(json!([1])) < el(json!([1, 0])));
        assert!(el(json!([2])) > el(json!([1, 0])));
        assert!(el(json!({"a": 1})) < el(json!({"a": 1, "b": 0})));
    }
}
