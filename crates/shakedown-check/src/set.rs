//! The `set` check: every acknowledged add is in the final read, and nothing else is.

use crate::element::Element;
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{Op, OpType};
use std::collections::BTreeMap;

/// How many elements a summary names before "... and N more".
const SUMMARY_ELEMENTS: usize = 20;

/// Checks a grow-only set: elements are the invoked values of `add` ops, and the
/// last successful `read` must return them all as a JSON array.
///
/// An add counts as acknowledged when it completed ok before the final read was
/// invoked; only those must be present. An add that ended `info`, never
/// completed, or completed ok while the final read was running may or may not
/// be present. An add that ended `fail` definitely did not happen, so its
/// element being present (with no other add to explain it) is invalid. Adds
/// invoked after the final read completed cannot be in it and are ignored.
#[derive(Debug, Clone)]
pub struct SetCheck {
    /// The `f` of add ops.
    pub add: String,
    /// The `f` of read ops.
    pub read: String,
}

impl Default for SetCheck {
    fn default() -> SetCheck {
        SetCheck::new("add", "read")
    }
}

impl SetCheck {
    pub fn new(add: impl Into<String>, read: impl Into<String>) -> SetCheck {
        SetCheck { add: add.into(), read: read.into() }
    }
}

/// What the adds of one element say about its presence in the final read.
#[derive(Debug, Default)]
struct AddOutcome {
    /// Some add completed ok before the final read began: it must be present.
    acknowledged: bool,
    /// Some add may have taken effect (info, pending, or ok during the read).
    indeterminate: bool,
}

/// Counts of add ops by how they relate to the final read.
#[derive(Debug, Default)]
struct AddCounts {
    ok: u64,
    info: u64,
    fail: u64,
    /// Ok adds that completed after the final read was invoked.
    concurrent: u64,
    /// Adds invoked after the final read completed; ignored.
    after_final_read: u64,
}

/// The read the check judges: the ok `read` op whose completion comes last.
#[derive(Debug, Clone, Copy)]
struct FinalRead<'a> {
    op: &'a Op,
    /// Index of its completion event.
    index: u64,
    value: &'a Value,
}

/// The sorted element lists a check over one final read produces.
#[derive(Debug, Default)]
struct Findings {
    acknowledged: usize,
    lost: Vec<Element>,
    unexpected: Vec<Element>,
    failed_present: Vec<Element>,
    recovered: Vec<Element>,
    duplicates: Vec<Element>,
}

impl Check for SetCheck {
    fn kind(&self) -> &'static str {
        "set"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let reads = ops.iter().filter(|op| op.f == self.read).count() as u64;
        let Some(read) = final_read(&ops, &self.read) else {
            let (_, counts) = classify_adds(&ops, &self.add, None);
            let summary = format!("no successful final read ({} attempted)", plural(reads, "read"));
            return self.result(Verdict::Unknown, summary, count_details(&counts));
        };
        let (adds, counts) = classify_adds(&ops, &self.add, Some(read));
        let Value::Array(values) = read.value else {
            let summary = format!(
                "final read #{} returned {}, not a JSON array",
                read.index,
                bounded(&read.value.to_string(), 80)
            );
            let mut details = count_details(&counts);
            details["final_read"] = read_details(read);
            return self.result(Verdict::Unknown, summary, details);
        };
        let findings = compare(&adds, values);
        let (verdict, summary) = judge(&findings, values.len());
        let mut details = count_details(&counts);
        details["final_read"] = read_details(read);
        add_findings(&mut details, &findings);
        self.result(verdict, summary, details)
    }
}

impl SetCheck {
    fn result(&self, verdict: Verdict, summary: String, details: Value) -> CheckResult {
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

fn final_read<'a>(ops: &'a [Op], read: &str) -> Option<FinalRead<'a>> {
    ops.iter()
        .filter(|op| op.f == read)
        .filter_map(|op| {
            let c = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok)?;
            Some(FinalRead { op, index: c.index, value: &c.value })
        })
        .max_by_key(|read| read.index)
}

/// Folds every add op into one outcome per element. Without a final read
/// only the counts are meaningful.
fn classify_adds(ops: &[Op], add: &str, read: Option<FinalRead<'_>>) -> (BTreeMap<Element, AddOutcome>, AddCounts) {
    let mut adds: BTreeMap<Element, AddOutcome> = BTreeMap::new();
    let mut counts = AddCounts::default();
    let read_invoked = read.map_or(u64::MAX, |r| r.op.invoke_index);
    let read_completed = read.map_or(u64::MAX, |r| r.index);
    for op in ops.iter().filter(|op| op.f == add) {
        match op.op_type() {
            OpType::Ok => counts.ok += 1,
            OpType::Info => counts.info += 1,
            OpType::Fail => counts.fail += 1,
        }
        if op.invoke_index > read_completed {
            counts.after_final_read += 1;
            continue;
        }
        let outcome = adds.entry(Element::new(&op.invoke_value)).or_default();
        match &op.completion {
            Some(c) if c.op_type == OpType::Ok && c.index < read_invoked => outcome.acknowledged = true,
            Some(c) if c.op_type == OpType::Ok => {
                counts.concurrent += 1;
                outcome.indeterminate = true;
            }
            Some(c) if c.op_type == OpType::Fail => {}
            _ => outcome.indeterminate = true,
        }
    }
    (adds, counts)
}

/// Compares the adds' outcomes with the elements the final read returned.
fn compare(adds: &BTreeMap<Element, AddOutcome>, values: &[Value]) -> Findings {
    let mut read: BTreeMap<Element, usize> = BTreeMap::new();
    for v in values {
        *read.entry(Element::new(v)).or_default() += 1;
    }
    let mut f = Findings::default();
    for (element, outcome) in adds {
        let present = read.contains_key(element);
        if outcome.acknowledged {
            f.acknowledged += 1;
            if !present {
                f.lost.push(element.clone());
            }
        } else if present && outcome.indeterminate {
            f.recovered.push(element.clone());
        } else if present {
            f.failed_present.push(element.clone());
        }
    }
    for (element, n) in &read {
        if !adds.contains_key(element) {
            f.unexpected.push(element.clone());
        }
        if *n > 1 {
            f.duplicates.push(element.clone());
        }
    }
    assert!(f.lost.len() <= f.acknowledged);
    assert!(f.recovered.len() + f.failed_present.len() + f.unexpected.len() <= read.len());
    f
}

/// The verdict and its one-line summary. A violation outranks vacuity: an
/// element nobody added is a bug even when no add was acknowledged.
fn judge(f: &Findings, read_len: usize) -> (Verdict, String) {
    let mut problems = Vec::new();
    if !f.lost.is_empty() {
        problems.push(format!(
            "{} of {} lost: {}",
            f.lost.len(),
            plural(f.acknowledged as u64, "acknowledged add"),
            names(&f.lost)
        ));
    }
    if !f.unexpected.is_empty() {
        let what = plural(f.unexpected.len() as u64, "unexpected element");
        problems.push(format!("{what} in the final read, never added before it: {}", names(&f.unexpected)));
    }
    if !f.failed_present.is_empty() {
        let what = plural(f.failed_present.len() as u64, "element");
        problems.push(format!("{what} present although every add of it failed: {}", names(&f.failed_present)));
    }
    if !problems.is_empty() {
        return (Verdict::Invalid, problems.join("; "));
    }
    if f.acknowledged == 0 {
        return (Verdict::Unknown, "vacuous: no add was acknowledged before the final read".to_string());
    }
    let mut summary = format!(
        "all {} in the final read of {}",
        plural(f.acknowledged as u64, "acknowledged add"),
        plural(read_len as u64, "element")
    );
    if !f.recovered.is_empty() {
        summary.push_str(&format!(" ({} recovered)", plural(f.recovered.len() as u64, "indeterminate add")));
    }
    (Verdict::Valid, summary)
}

fn names(elements: &[Element]) -> String {
    let all: Vec<String> = elements.iter().map(Element::display).collect();
    list_bounded(&all, SUMMARY_ELEMENTS)
}

fn count_details(counts: &AddCounts) -> Value {
    json!({
        "ok_adds": counts.ok,
        "info_adds": counts.info,
        "fail_adds": counts.fail,
        "concurrent_ok_adds": counts.concurrent,
        "adds_after_final_read": counts.after_final_read,
    })
}

fn read_details(read: FinalRead<'_>) -> Value {
    json!({
        "invoke_index": read.op.invoke_index,
        "index": read.index,
        "process": read.op.process,
        "actor": read.op.actor,
        "size": read.value.as_array().map(Vec::len),
    })
}

fn add_findings(details: &mut Value, f: &Findings) {
    let list = |els: &[Element]| els.iter().map(|e| e.value().clone()).collect::<Vec<_>>();
    details["acknowledged"] = json!(f.acknowledged);
    details["lost"] = json!(list(&f.lost));
    details["unexpected"] = json!(list(&f.unexpected));
    details["unexpected_present_after_fail"] = json!(list(&f.failed_present));
    details["recovered"] = json!(list(&f.recovered));
    details["duplicated_in_read"] = json!(list(&f.duplicates));
}

/// Cuts `text` to `max_chars`, marking the cut.
fn bounded(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{} ...", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, fail, history, info, ok, pending};
    use shakedown_history::{Header, History, HistoryBuilder, ProcessId};
    use std::collections::BTreeSet;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&SetCheck::default(), h, verdict, summary)
    }

    fn read(out: Value) -> crate::testing::Step {
        ok("read", json!(null), out)
    }

    fn add(v: Value) -> crate::testing::Step {
        ok("add", v, json!(null))
    }

    #[test]
    fn accepts_a_read_with_every_acknowledged_add() {
        let h = history(&[add(json!(1)), add(json!(2)), read(json!([2, 1]))]);
        let r = check(&h, Verdict::Valid, "all 2 acknowledged adds in the final read of 2 elements");
        assert_eq!(r.details["ok_adds"], 2);
        assert_eq!(r.details["lost"], json!([]));
        assert_eq!(r.details["final_read"]["size"], 2);
    }

    #[test]
    fn rejects_lost_adds_naming_them_sorted() {
        let h = history(&[add(json!(10)), add(json!(9)), add(json!(2)), read(json!([2]))]);
        let r = check(&h, Verdict::Invalid, "2 of 3 acknowledged adds lost: 9, 10");
        assert_eq!(r.details["lost"], json!([9, 10]));
    }

    #[test]
    fn bounds_the_summary_but_not_the_details() {
        let mut steps: Vec<_> = (0..25).map(|i| add(json!(i))).collect();
        steps.push(read(json!([])));
        let r = check(&history(&steps), Verdict::Invalid, "25 of 25 acknowledged adds lost: 0, 1, 2,");
        assert!(r.summary.ends_with(", 19 ... and 5 more"), "{}", r.summary);
        assert_eq!(r.details["lost"].as_array().unwrap().len(), 25);
    }

    #[test]
    fn rejects_elements_nobody_added() {
        let h = history(&[add(json!(1)), read(json!([1, "ghost", 7]))]);
        let r =
            check(&h, Verdict::Invalid, "2 unexpected elements in the final read, never added before it: 7, \"ghost\"");
        assert_eq!(r.details["unexpected"], json!([7, "ghost"]));
    }

    #[test]
    fn numeric_strings_and_numbers_are_one_element() {
        check(&history(&[add(json!("5")), read(json!([5]))]), Verdict::Valid, "all 1 acknowledged add");
        check(&history(&[add(json!(5)), read(json!(["5"]))]), Verdict::Valid, "all 1 acknowledged add");
        check(&history(&[add(json!("x5")), read(json!([5]))]), Verdict::Invalid, "lost: \"x5\"; 1 unexpected element");
    }

    #[test]
    fn indeterminate_adds_may_be_present_or_absent() {
        let h = history(&[add(json!(1)), info("add", json!(2)), pending("add", json!(3)), read(json!([1]))]);
        let r = check(&h, Verdict::Valid, "all 1 acknowledged add in the final read of 1 element");
        assert_eq!((r.details["info_adds"].clone(), r.details["recovered"].clone()), (json!(2), json!([])));
        let h = history(&[add(json!(1)), info("add", json!(2)), pending("add", json!(3)), read(json!([1, 2, 3]))]);
        let r = check(&h, Verdict::Valid, "(2 indeterminate adds recovered)");
        assert_eq!(r.details["recovered"], json!([2, 3]));
    }

    #[test]
    fn a_failed_add_must_not_be_present() {
        let h = history(&[add(json!(1)), fail("add", json!(2)), read(json!([1, 2]))]);
        let r = check(&h, Verdict::Invalid, "1 element present although every add of it failed: 2");
        assert_eq!(r.details["unexpected_present_after_fail"], json!([2]));
        assert_eq!(r.details["fail_adds"], 1);
        check(&history(&[add(json!(1)), fail("add", json!(2)), read(json!([1]))]), Verdict::Valid, "all 1");
    }

    #[test]
    fn duplicate_adds_fold_into_one_element() {
        // A retry that succeeds after a refusal is acknowledged: its loss counts.
        check(
            &history(&[fail("add", json!(1)), add(json!(1)), read(json!([]))]),
            Verdict::Invalid,
            "1 of 1 acknowledged add lost: 1",
        );
        // A refused add whose retry was indeterminate explains its presence.
        check(
            &history(&[fail("add", json!(1)), info("add", json!(1)), add(json!(2)), read(json!([1, 2]))]),
            Verdict::Valid,
            "1 indeterminate add recovered",
        );
        let r = check(
            &history(&[add(json!(1)), add(json!(1)), read(json!([1, 1]))]),
            Verdict::Valid,
            "all 1 acknowledged add",
        );
        assert_eq!((r.details["ok_adds"].clone(), r.details["duplicated_in_read"].clone()), (json!(2), json!([1])));
    }

    #[test]
    fn without_a_successful_read_it_is_unknown() {
        check(&history(&[]), Verdict::Unknown, "no successful final read (0 reads attempted)");
        let h = history(&[add(json!(1)), fail("read", json!(null)), info("read", json!(null))]);
        let r = check(&h, Verdict::Unknown, "no successful final read (2 reads attempted)");
        assert_eq!(r.details["ok_adds"], 1);
    }

    #[test]
    fn a_read_that_is_not_an_array_is_unknown() {
        let h = history(&[add(json!(1)), read(json!({"items": [1]}))]);
        check(&h, Verdict::Unknown, "final read #3 returned {\"items\":[1]}, not a JSON array");
        let long = "y".repeat(500);
        let r = check(&history(&[read(json!(long))]), Verdict::Unknown, "not a JSON array");
        assert!(r.summary.len() < 200, "{}", r.summary);
    }

    #[test]
    fn without_an_acknowledged_add_it_is_vacuous() {
        check(&history(&[read(json!([]))]), Verdict::Unknown, "vacuous: no add was acknowledged");
        check(&history(&[info("add", json!(1)), read(json!([1]))]), Verdict::Unknown, "vacuous");
        // An element nobody added is a bug even then.
        check(&history(&[read(json!([4]))]), Verdict::Invalid, "1 unexpected element");
    }

    #[test]
    fn the_final_read_is_the_last_ok_read_to_complete() {
        check(&history(&[add(json!(1)), read(json!([1])), read(json!([]))]), Verdict::Invalid, "lost: 1");
        check(
            &history(&[add(json!(1)), read(json!([])), read(json!([1])), fail("read", json!(null))]),
            Verdict::Valid,
            "all 1",
        );
        // Process 0's read is invoked first but completes last, so it is final.
        let mut b = HistoryBuilder::new(Header::new("t", 1));
        b.invoke(1, ProcessId(9), "a", "add", json!(1));
        b.complete(2, ProcessId(9), OpType::Ok, json!(null), None);
        b.invoke(3, ProcessId(0), "a", "read", json!(null));
        b.invoke(4, ProcessId(1), "b", "read", json!(null));
        b.complete(5, ProcessId(1), OpType::Ok, json!([1]), None);
        b.complete(6, ProcessId(0), OpType::Ok, json!([]), None);
        let r = check(&b.finish(), Verdict::Invalid, "1 of 1 acknowledged add lost: 1");
        assert_eq!(r.details["final_read"]["index"], 5);
    }

    /// Add 1 is acknowledged; add 2 overlaps the final read; add 3 starts after it.
    fn concurrent(read_value: Value) -> History {
        let mut b = HistoryBuilder::new(Header::new("t", 1));
        b.invoke(1, ProcessId(0), "a", "add", json!(1));
        b.complete(2, ProcessId(0), OpType::Ok, json!(null), None);
        b.invoke(3, ProcessId(1), "b", "add", json!(2));
        b.invoke(4, ProcessId(2), "c", "read", json!(null));
        b.complete(5, ProcessId(1), OpType::Ok, json!(null), None);
        b.complete(6, ProcessId(2), OpType::Ok, read_value, None);
        b.invoke(7, ProcessId(0), "a", "add", json!(3));
        b.complete(8, ProcessId(0), OpType::Ok, json!(null), None);
        b.finish()
    }

    #[test]
    fn adds_concurrent_with_or_after_the_final_read_are_not_required() {
        let r = check(&concurrent(json!([1])), Verdict::Valid, "all 1 acknowledged add");
        assert_eq!(
            (r.details["concurrent_ok_adds"].clone(), r.details["adds_after_final_read"].clone()),
            (json!(1), json!(1))
        );
        check(&concurrent(json!([1, 2])), Verdict::Valid, "(1 indeterminate add recovered)");
        check(
            &concurrent(json!([1, 3])),
            Verdict::Invalid,
            "1 unexpected element in the final read, never added before it: 3",
        );
    }

    #[test]
    fn uses_the_configured_action_names() {
        let h = history(&[ok("insert", json!(1), json!(null)), add(json!(2)), ok("scan", json!(null), json!([]))]);
        check(&h, Verdict::Unknown, "no successful final read (0 reads attempted)");
        assert_check(&SetCheck::new("insert", "scan"), &h, Verdict::Invalid, "lost: 1");
    }

    /// A tiny deterministic generator, so the cross-check needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// A random sequential history over elements 0..6, some written as strings,
    /// with reads sprinkled in and adds after the last read. Reads are right
    /// half the time (acknowledged adds plus some indeterminate ones) and
    /// otherwise drop or invent an element.
    fn random_steps(rng: &mut XorShift) -> Vec<crate::testing::Step> {
        let mut steps = Vec::new();
        let (mut acked, mut maybe) = (BTreeSet::new(), BTreeSet::new());
        for _ in 0..rng.below(12) {
            let e = rng.below(6);
            let v = if rng.below(2) == 0 { json!(e) } else { json!(e.to_string()) };
            steps.push(match rng.below(4) {
                0 => fail("add", v),
                1 => {
                    maybe.insert(e);
                    info("add", v)
                }
                _ => {
                    acked.insert(e);
                    add(v)
                }
            });
            if rng.below(4) == 0 {
                let mut elements: BTreeSet<u64> =
                    acked.iter().copied().chain(maybe.iter().filter(|_| rng.below(2) == 0).copied()).collect();
                match rng.below(4) {
                    0 => drop(elements.pop_first()),
                    1 => drop(elements.insert(rng.below(8))),
                    _ => {}
                }
                steps.push(if rng.below(4) == 0 { fail("read", json!(null)) } else { read(json!(elements)) });
            }
        }
        steps
    }

    /// The set check's rules restated over plain integers, for sequential histories.
    fn brute_force(h: &History) -> (Verdict, Vec<u64>, Vec<u64>, Vec<u64>) {
        let ops = h.ops();
        let as_int = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap();
        let Some(last) = ops.iter().rposition(|op| op.f == "read" && op.op_type() == OpType::Ok) else {
            return (Verdict::Unknown, vec![], vec![], vec![]);
        };
        let read: Vec<u64> = ops[last].value().as_array().unwrap().iter().map(as_int).collect();
        let adds_of = |e: u64, t: OpType| {
            ops[..last].iter().any(|op| op.f == "add" && op.op_type() == t && as_int(&op.invoke_value) == e)
        };
        let lost: Vec<u64> = (0..8).filter(|e| adds_of(*e, OpType::Ok) && !read.contains(e)).collect();
        let never: Vec<u64> = (0..8)
            .filter(|e| read.contains(e) && ![OpType::Ok, OpType::Info, OpType::Fail].iter().any(|t| adds_of(*e, *t)))
            .collect();
        let failed: Vec<u64> = (0..8)
            .filter(|e| {
                read.contains(e) && adds_of(*e, OpType::Fail) && !adds_of(*e, OpType::Ok) && !adds_of(*e, OpType::Info)
            })
            .collect();
        let verdict = if !lost.is_empty() || !never.is_empty() || !failed.is_empty() {
            Verdict::Invalid
        } else if (0..8).any(|e| adds_of(e, OpType::Ok)) {
            Verdict::Valid
        } else {
            Verdict::Unknown
        };
        (verdict, lost, never, failed)
    }

    #[test]
    fn agrees_with_a_brute_force_restatement_on_random_histories() {
        let mut rng = XorShift(0x5eed);
        let mut seen = BTreeMap::new();
        for case in 0..500 {
            let h = history(&random_steps(&mut rng));
            let (verdict, lost, never, failed) = brute_force(&h);
            let r = SetCheck::default().check(&CheckInput::new(&h));
            let ctx = format!("case {case}: {:#}\n{h:#?}", r.details);
            assert_eq!(r.verdict, verdict, "{ctx}");
            *seen.entry(verdict).or_insert(0) += 1;
            if r.details.get("lost").is_some() {
                assert_eq!(r.details["lost"], json!(lost), "{ctx}");
                assert_eq!(r.details["unexpected"], json!(never), "{ctx}");
                assert_eq!(r.details["unexpected_present_after_fail"], json!(failed), "{ctx}");
            }
        }
        // The generator must reach every verdict, or the cross-check proves little.
        assert!(seen.len() == 3 && seen.values().all(|n| *n >= 20), "{seen:?}");
    }
}
