//! The `counter` check: every read of a counter lies within what the adds allow.

use crate::element::{as_integer, op_ref};
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{Op, OpType};

/// How many reads a summary names before "... and N more".
const SUMMARY_READS: usize = 10;

/// Checks a counter that starts at zero: an `add` increments it by its invoked
/// value (1 when `null`), a `read` returns it.
///
/// Each ok read must lie within bounds. The lower bound sums the adds that
/// surely happened before the read began (ok, completed before its
/// invocation); the upper bound sums every add that may have happened before
/// it ended (ok or indeterminate, invoked before its completion). A negative
/// increment swaps roles: it lowers the lower bound if it may have happened
/// and the upper bound only if it surely did.
#[derive(Debug, Clone)]
pub struct CounterCheck {
    /// The `f` of add ops.
    pub add: String,
    /// The `f` of read ops.
    pub read: String,
}

impl Default for CounterCheck {
    fn default() -> CounterCheck {
        CounterCheck::new("add", "read")
    }
}

impl CounterCheck {
    pub fn new(add: impl Into<String>, read: impl Into<String>) -> CounterCheck {
        CounterCheck { add: add.into(), read: read.into() }
    }
}

/// One add that may have taken effect.
#[derive(Debug, Clone, Copy)]
struct Add {
    n: i128,
    invoke_index: u64,
    /// Completion index when it completed ok: it surely happened after that.
    ok_index: Option<u64>,
}

/// A read outside its bounds.
#[derive(Debug)]
struct Violation<'a> {
    read: &'a Op,
    value: i128,
    lower: i128,
    upper: i128,
}

impl Check for CounterCheck {
    fn kind(&self) -> &'static str {
        "counter"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let (adds, bad_adds) = collect_adds(&ops, &self.add);
        let reads: Vec<&Op> = ops.iter().filter(|op| op.f == self.read && op.op_type() == OpType::Ok).collect();
        let mut violations = Vec::new();
        let mut bad_reads = Vec::new();
        for read in &reads {
            match as_integer(read.value()) {
                Some(value) => violations.extend(judge_read(read, i128::from(value), &adds)),
                None => bad_reads.push(op_ref(read)),
            }
        }
        let details = json!({
            "ok_reads": reads.len(),
            "adds": adds.len(),
            "malformed_adds": bad_adds,
            "malformed_reads": bad_reads,
            "violations": violations.iter().map(violation_details).collect::<Vec<_>>(),
        });
        let (verdict, summary) = verdict(&violations, reads.len(), bad_adds.len(), bad_reads.len());
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

/// The adds that may have happened, and the ones whose increment is not an
/// integer (which make the bounds unknowable).
fn collect_adds(ops: &[Op], add: &str) -> (Vec<Add>, Vec<Value>) {
    let mut adds = Vec::new();
    let mut bad = Vec::new();
    for op in ops.iter().filter(|op| op.f == add && op.op_type() != OpType::Fail) {
        let n = if op.invoke_value.is_null() { Some(1) } else { as_integer(&op.invoke_value) };
        let Some(n) = n else {
            bad.push(op_ref(op));
            continue;
        };
        let ok_index = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok).map(|c| c.index);
        adds.push(Add { n: i128::from(n), invoke_index: op.invoke_index, ok_index });
    }
    (adds, bad)
}

fn judge_read<'a>(read: &'a Op, value: i128, adds: &[Add]) -> Option<Violation<'a>> {
    let completed = read.completion.as_ref().map_or(u64::MAX, |c| c.index);
    let (mut lower, mut upper) = (0_i128, 0_i128);
    for add in adds {
        let surely = add.ok_index.is_some_and(|i| i < read.invoke_index);
        let maybe = add.invoke_index < completed;
        if surely || (maybe && add.n < 0) {
            lower += add.n;
        }
        if maybe && (add.n > 0 || surely) {
            upper += add.n;
        }
    }
    assert!(lower <= upper, "bounds cross: {lower} > {upper}");
    (value < lower || value > upper).then_some(Violation { read, value, lower, upper })
}

/// An add whose increment is unknown makes every bound unknown, so it
/// outranks violations; a malformed read only hides itself.
fn verdict(violations: &[Violation<'_>], n_reads: usize, bad_adds: usize, bad_reads: usize) -> (Verdict, String) {
    if bad_adds > 0 {
        let what = plural(bad_adds as u64, "add");
        return (Verdict::Unknown, format!("{what} with an increment that is not an integer"));
    }
    if !violations.is_empty() {
        let shown: Vec<String> = violations
            .iter()
            .map(|v| format!("read #{} saw {} outside [{}, {}]", op_index(v.read), v.value, v.lower, v.upper))
            .collect();
        let what = plural(violations.len() as u64, "read");
        return (Verdict::Invalid, format!("{what} out of bounds: {}", list_bounded(&shown, SUMMARY_READS)));
    }
    if bad_reads > 0 {
        let what = plural(bad_reads as u64, "read");
        return (Verdict::Unknown, format!("{what} with a value that is not an integer"));
    }
    if n_reads == 0 {
        return (Verdict::Unknown, "vacuous: no successful read".to_string());
    }
    (Verdict::Valid, format!("all {} within bounds", plural(n_reads as u64, "read")))
}

fn op_index(op: &Op) -> u64 {
    op.completion.as_ref().map_or(op.invoke_index, |c| c.index)
}

fn violation_details(v: &Violation<'_>) -> Value {
    json!({ "read": op_ref(v.read), "value": v.value, "lower": v.lower, "upper": v.upper })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, fail, history, info, interleaved, inv, ok, pending, ret};
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&CounterCheck::default(), h, verdict, summary)
    }

    fn add(n: Value) -> crate::testing::Step {
        ok("add", n, json!(null))
    }

    fn read(v: Value) -> crate::testing::Step {
        ok("read", json!(null), v)
    }

    #[test]
    fn accepts_reads_that_count_every_acknowledged_add() {
        let h = history(&[
            read(json!(0)),
            add(json!(null)),
            add(json!(2)),
            read(json!(3)),
            add(json!(-1)),
            read(json!("2")),
        ]);
        check(&h, Verdict::Valid, "all 3 reads within bounds");
    }

    #[test]
    fn rejects_reads_below_or_above_the_bounds() {
        let h = history(&[add(json!(5)), read(json!(4))]);
        let r = check(&h, Verdict::Invalid, "1 read out of bounds: read #3 saw 4 outside [5, 5]");
        let v = &r.details["violations"][0];
        assert_eq!((v["lower"].clone(), v["upper"].clone()), (json!(5), json!(5)));
        assert_eq!(v["read"]["process"], 1);
        assert_eq!(v["read"]["actor"], "bob");
        assert_eq!(v["read"]["out"], 4);
        check(&history(&[add(json!(1)), fail("add", json!(1)), read(json!(2))]), Verdict::Invalid, "outside [1, 1]");
    }

    #[test]
    fn indeterminate_adds_widen_the_upper_bound() {
        let h = history(&[add(json!(1)), info("add", json!(2)), pending("add", json!(4)), read(json!(7))]);
        check(&h, Verdict::Valid, "all 1 read within bounds");
        let h = history(&[add(json!(1)), info("add", json!(-2)), read(json!(-1))]);
        check(&h, Verdict::Valid, "all 1 read");
        check(&history(&[add(json!(1)), info("add", json!(2)), read(json!(4))]), Verdict::Invalid, "outside [1, 3]");
    }

    #[test]
    fn concurrent_adds_may_or_may_not_be_counted() {
        for seen in [0, 1] {
            let h = interleaved(&[
                inv(0, "add", json!(1)),
                inv(1, "read", json!(null)),
                ret(0, json!(null)),
                ret(1, json!(seen)),
            ]);
            check(&h, Verdict::Valid, "all 1 read");
        }
        // An add invoked after the read completed cannot be counted.
        let h =
            interleaved(&[inv(1, "read", json!(null)), ret(1, json!(1)), inv(0, "add", json!(1)), ret(0, json!(null))]);
        check(&h, Verdict::Invalid, "read #1 saw 1 outside [0, 0]");
    }

    #[test]
    fn malformed_values_and_no_reads_are_unknown() {
        check(&history(&[add(json!(1))]), Verdict::Unknown, "vacuous: no successful read");
        check(
            &history(&[add(json!(1)), read(json!("many"))]),
            Verdict::Unknown,
            "1 read with a value that is not an integer",
        );
        let h = history(&[add(json!([1])), read(json!(1))]);
        check(&h, Verdict::Unknown, "1 add with an increment that is not an integer");
    }
}
