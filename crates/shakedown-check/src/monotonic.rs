//! The `monotonic` check: per key, reads never go backwards in real time.

use crate::element::{op_ref, select, Element};
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{Op, OpType};
use std::collections::BTreeMap;

/// How many pairs a summary names before "... and N more".
const SUMMARY_PAIRS: usize = 10;

/// Checks monotonic reads: a read that began after another read of the same
/// key completed must not see a smaller value.
///
/// By default the whole completion value of a `read` is the value of a single
/// key. With `key`, a JSON pointer such as `"/key"` picks the key out of the
/// completion value, and with `value_pointer` (say `"/value"`) the value.
/// Values compare as [`Element`]s (numbers by value, a numeric string as its
/// number). A read whose value is `null` saw no value yet and is skipped; one
/// whose key or value is missing is listed as malformed.
#[derive(Debug, Clone)]
pub struct MonotonicCheck {
    /// The `f` of read ops.
    pub read: String,
    /// JSON pointer to the key inside a read's completion value.
    pub key: Option<String>,
    /// JSON pointer to the value inside a read's completion value.
    pub value_pointer: Option<String>,
}

impl Default for MonotonicCheck {
    fn default() -> MonotonicCheck {
        MonotonicCheck::new("read")
    }
}

impl MonotonicCheck {
    pub fn new(read: impl Into<String>) -> MonotonicCheck {
        MonotonicCheck { read: read.into(), key: None, value_pointer: None }
    }
}

/// One ok read of one key.
#[derive(Debug, Clone)]
struct Read<'a> {
    op: &'a Op,
    completed: u64,
    value: Element,
}

/// A read that saw less than an earlier read had already seen.
#[derive(Debug)]
struct Regression<'a> {
    key: Element,
    earlier: Read<'a>,
    later: Read<'a>,
}

impl Check for MonotonicCheck {
    fn kind(&self) -> &'static str {
        "monotonic"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let (by_key, malformed) = self.reads_by_key(&ops);
        let mut regressions = Vec::new();
        let mut ordered_reads = 0;
        for (key, reads) in &by_key {
            ordered_reads += regressions_of(key, reads, &mut regressions);
        }
        let details = json!({
            "keys": by_key.len(),
            "reads": by_key.values().map(Vec::len).sum::<usize>(),
            "ordered_reads": ordered_reads,
            "malformed_reads": malformed,
            "regressions": regressions.iter().map(regression_details).collect::<Vec<_>>(),
        });
        let (verdict, summary) = verdict(&regressions, ordered_reads, malformed.len());
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

impl MonotonicCheck {
    /// Ok reads grouped by key, each group in invocation order, and the
    /// reads whose key or value the pointers could not find.
    fn reads_by_key<'a>(&self, ops: &'a [Op]) -> (BTreeMap<Element, Vec<Read<'a>>>, Vec<Value>) {
        let mut by_key: BTreeMap<Element, Vec<Read<'a>>> = BTreeMap::new();
        let mut malformed = Vec::new();
        for op in ops.iter().filter(|op| op.f == self.read) {
            let Some(c) = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok) else { continue };
            let key = match &self.key {
                Some(p) => c.value.pointer(p),
                None => Some(&Value::Null),
            };
            match (key, select(&c.value, self.value_pointer.as_deref())) {
                (Some(_), Some(Value::Null)) => {}
                (Some(key), Some(value)) => {
                    let read = Read { op, completed: c.index, value: Element::new(value) };
                    by_key.entry(Element::new(key)).or_default().push(read);
                }
                _ => malformed.push(op_ref(op)),
            }
        }
        (by_key, malformed)
    }
}

/// Appends one regression per read that saw less than the largest value seen
/// by any read of the key that completed before it began; returns how many
/// reads had such a predecessor at all.
fn regressions_of<'a>(key: &Element, reads: &[Read<'a>], out: &mut Vec<Regression<'a>>) -> usize {
    let mut by_completion: Vec<&Read<'a>> = reads.iter().collect();
    by_completion.sort_by_key(|r| r.completed);
    let mut done = by_completion.into_iter().peekable();
    let mut max_seen: Option<&Read<'a>> = None;
    let mut ordered = 0;
    for later in reads {
        while let Some(earlier) = done.next_if(|r| r.completed < later.op.invoke_index) {
            if max_seen.is_none_or(|m| earlier.value > m.value) {
                max_seen = Some(earlier);
            }
        }
        let Some(earlier) = max_seen else { continue };
        ordered += 1;
        if later.value < earlier.value {
            out.push(Regression { key: key.clone(), earlier: earlier.clone(), later: later.clone() });
        }
    }
    ordered
}

fn verdict(regressions: &[Regression<'_>], ordered_reads: usize, n_malformed: usize) -> (Verdict, String) {
    if !regressions.is_empty() {
        let shown: Vec<String> = regressions.iter().map(describe).collect();
        let what = plural(regressions.len() as u64, "read");
        return (Verdict::Invalid, format!("{what} went backwards: {}", list_bounded(&shown, SUMMARY_PAIRS)));
    }
    if n_malformed > 0 {
        let what = plural(n_malformed as u64, "read");
        return (Verdict::Unknown, format!("{what} without the configured key or value"));
    }
    if ordered_reads == 0 {
        return (Verdict::Unknown, "vacuous: no read of a key began after another read of it completed".to_string());
    }
    (Verdict::Valid, format!("{} in real-time order, none went backwards", plural(ordered_reads as u64, "read")))
}

fn describe(r: &Regression<'_>) -> String {
    let key = if r.key.value().is_null() { String::new() } else { format!("key {} ", r.key.display()) };
    format!(
        "{key}read #{} saw {} after read #{} saw {}",
        r.later.completed,
        r.later.value.display(),
        r.earlier.completed,
        r.earlier.value.display()
    )
}

fn regression_details(r: &Regression<'_>) -> Value {
    json!({
        "key": r.key.value(),
        "earlier": op_ref(r.earlier.op),
        "earlier_value": r.earlier.value.value(),
        "later": op_ref(r.later.op),
        "later_value": r.later.value.value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, history, interleaved, inv, ok, ret};
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&MonotonicCheck::default(), h, verdict, summary)
    }

    fn read(v: Value) -> crate::testing::Step {
        ok("read", json!(null), v)
    }

    fn keyed() -> MonotonicCheck {
        MonotonicCheck { key: Some("/key".into()), value_pointer: Some("/value".into()), ..MonotonicCheck::default() }
    }

    #[test]
    fn accepts_reads_that_never_decrease() {
        let h = history(&[read(json!(null)), read(json!(1)), read(json!(1)), read(json!("3")), read(json!(7))]);
        check(&h, Verdict::Valid, "3 reads in real-time order, none went backwards");
    }

    #[test]
    fn rejects_a_read_that_went_backwards() {
        let h = history(&[read(json!(1)), read(json!(5)), read(json!(2)), read(json!(6))]);
        let r = check(&h, Verdict::Invalid, "1 read went backwards: read #5 saw 2 after read #3 saw 5");
        let g = &r.details["regressions"][0];
        assert_eq!((g["earlier"]["process"].clone(), g["later"]["process"].clone()), (json!(1), json!(2)));
        assert_eq!((g["earlier_value"].clone(), g["later_value"].clone()), (json!(5), json!(2)));
        assert_eq!(g["later"]["actor"], "carol");
    }

    #[test]
    fn concurrent_reads_may_see_either_order() {
        let h = interleaved(&[
            inv(0, "read", json!(null)),
            inv(1, "read", json!(null)),
            ret(1, json!(5)),
            ret(0, json!(2)),
        ]);
        check(&h, Verdict::Unknown, "vacuous");
        let h = interleaved(&[
            inv(0, "read", json!(null)),
            inv(1, "read", json!(null)),
            ret(1, json!(5)),
            ret(0, json!(2)),
            inv(2, "read", json!(null)),
            ret(2, json!(4)),
        ]);
        check(&h, Verdict::Invalid, "read #5 saw 4 after read #2 saw 5");
    }

    #[test]
    fn keys_are_judged_separately() {
        let r = |k: &str, v: i64| read(json!({"key": k, "value": v}));
        let h = history(&[r("x", 5), r("y", 1), r("x", 6), r("y", 2)]);
        assert_check(&keyed(), &h, Verdict::Valid, "2 reads in real-time order");
        let h = history(&[r("x", 5), r("y", 1), r("y", 0)]);
        let res = assert_check(&keyed(), &h, Verdict::Invalid, "key \"y\" read #5 saw 0 after read #3 saw 1");
        assert_eq!(res.details["regressions"][0]["key"], "y");
    }

    #[test]
    fn vacuous_or_malformed_reads_are_unknown() {
        check(&history(&[]), Verdict::Unknown, "vacuous");
        check(&history(&[read(json!(1))]), Verdict::Unknown, "vacuous");
        let h = history(&[read(json!({"key": "x", "value": 1})), read(json!({"value": 2}))]);
        assert_check(&keyed(), &h, Verdict::Unknown, "1 read without the configured key or value");
    }

    /// Random concurrent histories of three processes reading values 0..4.
    fn random_history(seed: &mut u64) -> History {
        let mut below = |n: u64| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % n
        };
        let mut open = [false; 3];
        let mut events = Vec::new();
        for _ in 0..below(14) {
            let p = below(3);
            events.push(if open[p as usize] { ret(p, json!(below(4))) } else { inv(p, "read", json!(null)) });
            open[p as usize] = !open[p as usize];
        }
        interleaved(&events)
    }

    /// Every read that saw less than some read completed before it began.
    fn brute_force(h: &History) -> Vec<u64> {
        let reads: Vec<(u64, u64, u64)> = h
            .ops()
            .iter()
            .filter_map(|op| op.completion.as_ref().map(|c| (op.invoke_index, c.index, c.value.as_u64().unwrap())))
            .collect();
        let mut later: Vec<u64> =
            reads.iter().filter(|b| reads.iter().any(|a| a.1 < b.0 && b.2 < a.2)).map(|b| b.1).collect();
        later.sort_unstable();
        later
    }

    #[test]
    fn agrees_with_a_brute_force_search_on_random_histories() {
        let mut seed = 0x5eed;
        let mut invalid = 0;
        for case in 0..500 {
            let h = random_history(&mut seed);
            let expected = brute_force(&h);
            let r = MonotonicCheck::default().check(&CheckInput::new(&h));
            let mut found: Vec<u64> = r.details["regressions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["later"]["index"].as_u64().unwrap())
                .collect();
            found.sort_unstable();
            assert_eq!(found, expected, "case {case}: {:#}", r.details);
            assert_eq!(r.verdict == Verdict::Invalid, !expected.is_empty(), "case {case}");
            invalid += usize::from(!expected.is_empty());
        }
        assert!((50..450).contains(&invalid), "{invalid} invalid of 500");
    }
}
