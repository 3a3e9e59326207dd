//! The `set-full` check: Jepsen's set-full, judging every read of a grow-only set.

use crate::element::{op_ref, Element};
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{Op, OpType};
use std::collections::{BTreeMap, BTreeSet};

/// How many elements a summary names before "... and N more".
const SUMMARY_ELEMENTS: usize = 20;

/// Checks a grow-only set against every ok `read` (whose value is an array),
/// not only the last one. For each element, from its `add` ops (invoked
/// value) and the reads:
///
/// - `lost`: an add was acknowledged, some read began after it completed, and
///   no such read contains the element;
/// - `stale`: a read contains the element and a read that began after that
///   one completed does not (a grow-only set never forgets);
/// - `never_read`: acknowledged, but no read began after the add completed;
/// - `unexpected`: read, but every add of it failed or none was attempted.
///
/// An element whose add is acknowledged, was read afterwards and is neither
/// lost nor stale is `stable`. Its latency runs from the add's completion to
/// the completion of the first read that showed it (zero when a concurrent
/// read showed it earlier).
#[derive(Debug, Clone)]
pub struct SetFullCheck {
    /// The `f` of add ops.
    pub add: String,
    /// The `f` of read ops.
    pub read: String,
}

impl Default for SetFullCheck {
    fn default() -> SetFullCheck {
        SetFullCheck::new("add", "read")
    }
}

impl SetFullCheck {
    pub fn new(add: impl Into<String>, read: impl Into<String>) -> SetFullCheck {
        SetFullCheck { add: add.into(), read: read.into() }
    }
}

/// One ok read with its elements.
#[derive(Debug)]
struct Read<'a> {
    op: &'a Op,
    completed: u64,
    time_ns: u64,
    elements: BTreeSet<Element>,
}

/// The adds of one element that may have happened.
#[derive(Debug, Default)]
struct Adds<'a> {
    attempted: Vec<&'a Op>,
    /// The ok add that completed first: its completion index and time.
    acked: Option<(&'a Op, u64, u64)>,
}

#[derive(Debug, Default)]
struct Findings {
    acknowledged: usize,
    stable: Vec<Element>,
    lost: Vec<Value>,
    stale: Vec<Value>,
    never_read: Vec<Value>,
    unexpected: Vec<Value>,
    recovered: usize,
    latencies_ns: Vec<u64>,
    /// Element names per problem, for the summary.
    names: BTreeMap<&'static str, Vec<String>>,
}

impl Check for SetFullCheck {
    fn kind(&self) -> &'static str {
        "set-full"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let (reads, malformed) = self.reads(&ops);
        let adds = self.adds(&ops);
        let mut f = Findings::default();
        let mut elements: BTreeSet<&Element> = adds.keys().collect();
        elements.extend(reads.iter().flat_map(|r| r.elements.iter()));
        for element in elements {
            judge_element(element, adds.get(element), &reads, &mut f);
        }
        let details = details(&f, reads.len(), &malformed);
        let (verdict, summary) = verdict(&f, reads.len(), malformed.len());
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

impl SetFullCheck {
    /// Ok reads by completion, and the ok reads whose value is not an array.
    fn reads<'a>(&self, ops: &'a [Op]) -> (Vec<Read<'a>>, Vec<Value>) {
        let mut reads = Vec::new();
        let mut malformed = Vec::new();
        for op in ops.iter().filter(|op| op.f == self.read) {
            let Some(c) = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok) else { continue };
            match c.value.as_array() {
                Some(values) => {
                    let elements = values.iter().map(Element::new).collect();
                    reads.push(Read { op, completed: c.index, time_ns: c.time_ns, elements });
                }
                None => malformed.push(op_ref(op)),
            }
        }
        reads.sort_by_key(|r| r.completed);
        (reads, malformed)
    }

    /// The adds of each element that did not fail.
    fn adds<'a>(&self, ops: &'a [Op]) -> BTreeMap<Element, Adds<'a>> {
        let mut adds: BTreeMap<Element, Adds<'a>> = BTreeMap::new();
        for op in ops.iter().filter(|op| op.f == self.add && op.op_type() != OpType::Fail) {
            let entry = adds.entry(Element::new(&op.invoke_value)).or_default();
            entry.attempted.push(op);
            if let Some(c) = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok) {
                if entry.acked.is_none_or(|(_, index, _)| c.index < index) {
                    entry.acked = Some((op, c.index, c.time_ns));
                }
            }
        }
        adds
    }
}

/// Classifies one element against every read, appending to the findings.
fn judge_element(element: &Element, adds: Option<&Adds<'_>>, reads: &[Read<'_>], f: &mut Findings) {
    let e = element.value();
    // Reads are sorted by completion, so the first present read completed first.
    let first_present = reads.iter().find(|r| r.elements.contains(element));
    let Some(adds) = adds.filter(|a| !a.attempted.is_empty()) else {
        if let Some(read) = first_present {
            note(f, "unexpected", element, json!({"element": e, "read": op_ref(read.op)}));
        }
        return;
    };
    let stale = first_present.and_then(|p| {
        let absent = reads.iter().find(|r| r.op.invoke_index > p.completed && !r.elements.contains(element))?;
        Some(json!({"element": e, "present": op_ref(p.op), "absent": op_ref(absent.op)}))
    });
    let is_stale = stale.is_some();
    if let Some(entry) = stale {
        note(f, "stale", element, entry);
    }
    let Some((add, ack_index, ack_time_ns)) = adds.acked else {
        f.recovered += usize::from(first_present.is_some());
        return;
    };
    f.acknowledged += 1;
    let after: Vec<&Read<'_>> = reads.iter().filter(|r| r.op.invoke_index > ack_index).collect();
    if after.is_empty() {
        note(f, "never_read", element, json!({"element": e, "add": op_ref(add)}));
    } else if !after.iter().any(|r| r.elements.contains(element)) {
        let last = after.iter().max_by_key(|r| r.completed).map(|r| op_ref(r.op));
        let entry = json!({"element": e, "add": op_ref(add), "reads_after": after.len(), "last_read": last});
        note(f, "lost", element, entry);
    } else if !is_stale {
        f.stable.push(element.clone());
    }
    if let Some(read) = first_present {
        f.latencies_ns.push(read.time_ns.saturating_sub(ack_time_ns));
    }
}

fn note(f: &mut Findings, list: &'static str, element: &Element, entry: Value) {
    f.names.entry(list).or_default().push(element.display());
    match list {
        "lost" => f.lost.push(entry),
        "stale" => f.stale.push(entry),
        "never_read" => f.never_read.push(entry),
        _ => f.unexpected.push(entry),
    }
}

fn verdict(f: &Findings, n_reads: usize, n_malformed: usize) -> (Verdict, String) {
    let mut problems = Vec::new();
    for (list, what) in [("lost", "lost"), ("stale", "stale"), ("unexpected", "read but never added")] {
        if let Some(names) = f.names.get(list) {
            let n = plural(names.len() as u64, "element");
            problems.push(format!("{n} {what}: {}", list_bounded(names, SUMMARY_ELEMENTS)));
        }
    }
    if !problems.is_empty() {
        return (Verdict::Invalid, problems.join("; "));
    }
    if n_malformed > 0 {
        return (Verdict::Unknown, format!("{} not a JSON array", plural(n_malformed as u64, "read")));
    }
    if f.stable.is_empty() {
        let reads = plural(n_reads as u64, "successful read");
        let acked = plural(f.acknowledged as u64, "acknowledged add");
        return (Verdict::Unknown, format!("vacuous: {acked}, {reads}, none read after its add"));
    }
    let (median_ms, max_ms) = latency_ms(&f.latencies_ns);
    let mut summary = format!("{} stable", plural(f.stable.len() as u64, "element"));
    if let Some(never) = f.names.get("never_read") {
        summary.push_str(&format!(", {} never read", never.len()));
    }
    summary.push_str(&format!("; latency median {median_ms:.3} ms, max {max_ms:.3} ms"));
    (Verdict::Valid, summary)
}

/// Median and maximum of the latencies, in milliseconds; zero when empty.
fn latency_ms(latencies_ns: &[u64]) -> (f64, f64) {
    let mut sorted = latencies_ns.to_vec();
    sorted.sort_unstable();
    let ms = |ns: u64| ns as f64 / 1e6;
    match sorted.last() {
        Some(max) => (ms(sorted[(sorted.len() - 1) / 2]), ms(*max)),
        None => (0.0, 0.0),
    }
}

fn details(f: &Findings, n_reads: usize, malformed: &[Value]) -> Value {
    let (median_ms, max_ms) = latency_ms(&f.latencies_ns);
    json!({
        "ok_reads": n_reads,
        "malformed_reads": malformed,
        "acknowledged": f.acknowledged,
        "stable_count": f.stable.len(),
        "lost_count": f.lost.len(),
        "stale_count": f.stale.len(),
        "never_read_count": f.never_read.len(),
        "recovered_count": f.recovered,
        "lost": f.lost,
        "stale": f.stale,
        "never_read": f.never_read,
        "unexpected": f.unexpected,
        "latency_ms": {"n": f.latencies_ns.len(), "median": median_ms, "max": max_ms},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, fail, history, info, interleaved, inv, ok, ret};
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&SetFullCheck::default(), h, verdict, summary)
    }

    fn add(v: Value) -> crate::testing::Step {
        ok("add", v, json!(null))
    }

    fn read(v: Value) -> crate::testing::Step {
        ok("read", json!(null), v)
    }

    #[test]
    fn accepts_elements_that_stay_visible() {
        let h = history(&[add(json!(1)), read(json!([1])), add(json!(2)), read(json!([2, "1"])), read(json!([1, 2]))]);
        let r = check(&h, Verdict::Valid, "2 elements stable; latency median 0.000 ms");
        assert_eq!((r.details["stable_count"].clone(), r.details["latency_ms"]["n"].clone()), (json!(2), json!(2)));
    }

    #[test]
    fn rejects_an_acknowledged_add_no_later_read_shows() {
        let h = history(&[add(json!(1)), add(json!(2)), read(json!([2])), read(json!([2]))]);
        let r = check(&h, Verdict::Invalid, "1 element lost: 1");
        let lost = &r.details["lost"][0];
        assert_eq!((lost["reads_after"].clone(), lost["last_read"]["index"].clone()), (json!(2), json!(7)));
        assert_eq!((lost["add"]["process"].clone(), lost["add"]["actor"].clone()), (json!(0), json!("alice")));
        assert_eq!(lost["add"]["value"], 1);
    }

    #[test]
    fn rejects_an_element_that_disappears() {
        let h = history(&[add(json!(1)), read(json!([1])), read(json!([])), read(json!([1]))]);
        let r = check(&h, Verdict::Invalid, "1 element stale: 1");
        let stale = &r.details["stale"][0];
        assert_eq!((stale["present"]["index"].clone(), stale["absent"]["index"].clone()), (json!(3), json!(5)));
        // Seen once, then never again: stale, and not lost, since a read after the add showed it.
        check(&history(&[add(json!(1)), read(json!([1])), read(json!([]))]), Verdict::Invalid, "1 element stale: 1");
    }

    #[test]
    fn rejects_elements_never_added() {
        let h = history(&[add(json!(1)), fail("add", json!(2)), read(json!([1, 2, 3]))]);
        let r = check(&h, Verdict::Invalid, "2 elements read but never added: 2, 3");
        assert_eq!(r.details["unexpected"][0]["read"]["f"], "read");
    }

    #[test]
    fn concurrent_reads_may_miss_an_add() {
        // Process 1's read overlaps the add and misses it; the later read sees it.
        let h = interleaved(&[
            inv(0, "add", json!(1)),
            inv(1, "read", json!(null)),
            ret(0, json!(null)),
            ret(1, json!([])),
            inv(2, "read", json!(null)),
            ret(2, json!([1])),
        ]);
        let r = check(&h, Verdict::Valid, "1 element stable; latency median 0.000 ms, max 0.000 ms");
        assert_eq!(r.details["latency_ms"]["max"], 3e-5);
    }

    #[test]
    fn indeterminate_adds_may_or_may_not_appear() {
        let h = history(&[add(json!(1)), info("add", json!(2)), info("add", json!(3)), read(json!([1, 3]))]);
        let r = check(&h, Verdict::Valid, "1 element stable");
        assert_eq!(r.details["recovered_count"], 1);
    }

    #[test]
    fn vacuous_or_malformed_histories_are_unknown() {
        check(&history(&[]), Verdict::Unknown, "vacuous: 0 acknowledged adds, 0 successful reads");
        let r = check(&history(&[read(json!([])), add(json!(1))]), Verdict::Unknown, "vacuous: 1 acknowledged add");
        assert_eq!(r.details["never_read"][0]["element"], 1);
        check(&history(&[add(json!(1)), read(json!({"1": true}))]), Verdict::Unknown, "1 read not a JSON array");
    }

    #[test]
    fn uses_the_configured_action_names() {
        let h = history(&[ok("insert", json!(1), json!(null)), ok("scan", json!(null), json!([]))]);
        assert_check(&SetFullCheck::new("insert", "scan"), &h, Verdict::Invalid, "1 element lost: 1");
    }
}
