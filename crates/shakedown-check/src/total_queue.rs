//! The `total-queue` check: everything enqueued is dequeued, once, and nothing else is.

use crate::element::{op_ref, Element};
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{Op, OpType};
use std::collections::BTreeMap;

/// How many elements a summary names before "... and N more".
const SUMMARY_ELEMENTS: usize = 20;

/// What the queue promises about redelivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Each enqueued element is delivered at most once: a duplicate is invalid.
    #[default]
    AtMostOnce,
    /// Elements may be redelivered: duplicates are reported, not invalid.
    AtLeastOnce,
}

/// Checks a queue the workload drains by the end, like Jepsen's total-queue.
///
/// Elements are the invoked values of `enqueue` ops; an ok `dequeue` returns
/// one element (`null` means the queue was empty) and an ok `drain`, when
/// configured, returns an array of them. Counting copies of each element:
/// `lost` when fewer were dequeued than enqueues were acknowledged (invalid in
/// both modes, since the queue is drained); `duplicated` when more were
/// dequeued than enqueues were attempted (invalid unless
/// [`Delivery::AtLeastOnce`]); `unexpected` when dequeued but never attempted
/// (failed enqueues did not happen); `recovered` when an indeterminate
/// enqueue's element was dequeued.
#[derive(Debug, Clone)]
pub struct TotalQueueCheck {
    /// The `f` of enqueue ops.
    pub enqueue: String,
    /// The `f` of dequeue ops.
    pub dequeue: String,
    /// The `f` of drain ops, if the workload drains.
    pub drain: Option<String>,
    pub mode: Delivery,
}

impl Default for TotalQueueCheck {
    fn default() -> TotalQueueCheck {
        TotalQueueCheck::new("enqueue", "dequeue", Some("drain".to_string()), Delivery::AtMostOnce)
    }
}

impl TotalQueueCheck {
    pub fn new(
        enqueue: impl Into<String>,
        dequeue: impl Into<String>,
        drain: Option<String>,
        mode: Delivery,
    ) -> TotalQueueCheck {
        TotalQueueCheck { enqueue: enqueue.into(), dequeue: dequeue.into(), drain, mode }
    }
}

/// Takes whose result is unknown (ended info or never completed): each may
/// have taken an element the history never shows dequeued.
#[derive(Debug, Default)]
struct Blind {
    /// Dequeues: one element each, at most.
    dequeues: usize,
    /// Drains: any number of elements each.
    drains: usize,
}

/// Everything the history says about one element.
#[derive(Debug, Default)]
struct Tally<'a> {
    /// Enqueues that completed ok.
    acked: Vec<&'a Op>,
    /// Enqueues that ended info or never completed.
    maybe: Vec<&'a Op>,
    /// Dequeues and drains that returned it, once per copy.
    dequeued: Vec<&'a Op>,
}

#[derive(Debug, Default)]
struct Findings {
    lost: Vec<Value>,
    duplicated: Vec<Value>,
    unexpected: Vec<Value>,
    recovered: Vec<Value>,
    /// Element names per list, for the summary.
    names: BTreeMap<&'static str, Vec<String>>,
}

impl Check for TotalQueueCheck {
    fn kind(&self) -> &'static str {
        "total-queue"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let (tallies, malformed) = self.tally(&ops);
        let takes = ops.iter().filter(|op| op.op_type() == OpType::Ok && self.takes(op)).count();
        let blind = self.indeterminate_takes(&ops);
        let findings = findings(&tallies, &crate::element::windows(input.history));
        let acked: usize = tallies.values().map(|t| t.acked.len()).sum();
        let dequeued: usize = tallies.values().map(|t| t.dequeued.len()).sum();
        let details = json!({
            "acknowledged_enqueues": acked,
            "ok_takes": takes,
            "dequeued": dequeued,
            "malformed_drains": malformed,
            "lost": findings.lost,
            "duplicated": findings.duplicated,
            "unexpected": findings.unexpected,
            "recovered": findings.recovered,
            "indeterminate_dequeues": blind.dequeues,
            "indeterminate_drains": blind.drains,
        });
        let (verdict, summary) = self.verdict(&findings, acked, takes, malformed.len(), &blind);
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

impl TotalQueueCheck {
    /// One tally per element, and the ok drains whose value is not an array.
    fn tally<'a>(&self, ops: &'a [Op]) -> (BTreeMap<Element, Tally<'a>>, Vec<Value>) {
        let mut tallies: BTreeMap<Element, Tally<'a>> = BTreeMap::new();
        let mut malformed = Vec::new();
        for op in ops {
            let ok = op.op_type() == OpType::Ok;
            if op.f == self.enqueue && op.op_type() != OpType::Fail {
                let tally = tallies.entry(Element::new(&op.invoke_value)).or_default();
                if ok {
                    tally.acked.push(op)
                } else {
                    tally.maybe.push(op)
                }
            } else if op.f == self.dequeue && ok && !op.value().is_null() {
                tallies.entry(Element::new(op.value())).or_default().dequeued.push(op);
            } else if self.drain.as_deref() == Some(op.f.as_str()) && ok {
                let Some(values) = op.value().as_array() else {
                    malformed.push(op_ref(op));
                    continue;
                };
                for v in values {
                    tallies.entry(Element::new(v)).or_default().dequeued.push(op);
                }
            }
        }
        (tallies, malformed)
    }

    fn indeterminate_takes(&self, ops: &[Op]) -> Blind {
        let blind = ops.iter().filter(|op| op.op_type() == OpType::Info);
        let (mut dequeues, mut drains) = (0, 0);
        for op in blind {
            if op.f == self.dequeue {
                dequeues += 1;
            } else if self.drain.as_deref() == Some(op.f.as_str()) {
                drains += 1;
            }
        }
        Blind { dequeues, drains }
    }

    /// Whether `op` takes elements out of the queue.
    fn takes(&self, op: &Op) -> bool {
        op.f == self.dequeue || self.drain.as_deref() == Some(op.f.as_str())
    }

    /// Without a single successful dequeue or drain, every element would
    /// look lost: that is a workload that never read, so vacuity comes first.
    ///
    /// Lost copies that indeterminate takes could account for (no more than
    /// one per indeterminate dequeue, any number with an indeterminate drain)
    /// are not proof of loss: alone, they make the verdict unknown.
    fn verdict(
        &self,
        f: &Findings,
        acked: usize,
        takes: usize,
        n_malformed: usize,
        blind: &Blind,
    ) -> (Verdict, String) {
        if takes == 0 {
            return (Verdict::Unknown, "vacuous: no successful dequeue or drain".to_string());
        }
        let mut problems = Vec::new();
        let lost_copies: u64 = f.lost.iter().filter_map(|l| l["missing"].as_u64()).sum();
        let explainable = blind.drains > 0 || lost_copies <= blind.dequeues as u64;
        let definitely_lost = !f.lost.is_empty() && !explainable;
        let mut invalid = definitely_lost || !f.unexpected.is_empty();
        invalid |= !f.duplicated.is_empty() && self.mode == Delivery::AtMostOnce;
        for (list, what) in
            [("lost", "lost"), ("duplicated", "dequeued more than enqueued"), ("unexpected", "never enqueued")]
        {
            if let Some(names) = f.names.get(list) {
                let n = plural(names.len() as u64, "element");
                problems.push(format!("{n} {what}: {}", list_bounded(names, SUMMARY_ELEMENTS)));
            }
        }
        if invalid {
            if !f.lost.is_empty() && blind.dequeues > 0 {
                let n = plural(blind.dequeues as u64, "indeterminate dequeue");
                problems.push(format!("{n} could account for at most {} of the lost", blind.dequeues));
            }
            return (Verdict::Invalid, problems.join("; "));
        }
        if !f.lost.is_empty() {
            let takes = match blind.drains {
                0 => plural(blind.dequeues as u64, "dequeue"),
                n => plural(n as u64, "drain"),
            };
            return (
                Verdict::Unknown,
                format!("{}; but {takes} ended indeterminate and may have taken them", problems.join("; ")),
            );
        }
        if n_malformed > 0 {
            return (Verdict::Unknown, format!("{} not an array", plural(n_malformed as u64, "drain")));
        }
        if acked == 0 {
            return (Verdict::Unknown, "vacuous: no enqueue was acknowledged".to_string());
        }
        let mut summary = format!("all {} dequeued", plural(acked as u64, "acknowledged enqueue"));
        if !f.recovered.is_empty() {
            summary.push_str(&format!(" ({} recovered)", plural(f.recovered.len() as u64, "indeterminate enqueue")));
        }
        if !problems.is_empty() {
            summary.push_str(&format!("; redelivered: {}", problems.join("; ")));
        }
        (Verdict::Valid, summary)
    }
}

/// Compares copies enqueued with copies dequeued, element by element; a lost
/// element names the fault window nearest its last acknowledged enqueue.
fn findings(tallies: &BTreeMap<Element, Tally<'_>>, windows: &[crate::element::Window]) -> Findings {
    let mut f = Findings::default();
    let refs = |ops: &[&Op]| ops.iter().map(|op| op_ref(op)).collect::<Vec<_>>();
    for (element, t) in tallies {
        let (acked, attempted, dequeued) = (t.acked.len(), t.acked.len() + t.maybe.len(), t.dequeued.len());
        let mut push = |list: &'static str, entry: Value| {
            f.names.entry(list).or_default().push(element.display());
            match list {
                "lost" => f.lost.push(entry),
                "duplicated" => f.duplicated.push(entry),
                "unexpected" => f.unexpected.push(entry),
                _ => f.recovered.push(entry),
            }
        };
        let e = element.value();
        if dequeued < acked {
            let acked_ns = t.acked.iter().filter_map(|op| op.completion.as_ref().map(|c| c.time_ns)).max();
            let nearest = acked_ns.and_then(|at| crate::element::nearest_window(windows, at));
            push(
                "lost",
                json!({"element": e, "missing": acked - dequeued, "enqueues": refs(&t.acked), "nearest_fault": nearest}),
            );
        }
        if attempted == 0 && dequeued > 0 {
            push("unexpected", json!({"element": e, "dequeues": refs(&t.dequeued)}));
        } else if dequeued > attempted {
            push(
                "duplicated",
                json!({"element": e, "count": dequeued, "enqueued": attempted, "dequeues": refs(&t.dequeued)}),
            );
        }
        if dequeued > acked && !t.maybe.is_empty() {
            push("recovered", json!({"element": e, "enqueues": refs(&t.maybe)}));
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, fail, history, info, ok, pending};
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&TotalQueueCheck::default(), h, verdict, summary)
    }

    fn enq(v: Value) -> crate::testing::Step {
        ok("enqueue", v, json!(null))
    }

    fn deq(v: Value) -> crate::testing::Step {
        ok("dequeue", json!(null), v)
    }

    fn drain(v: Value) -> crate::testing::Step {
        ok("drain", json!(null), v)
    }

    #[test]
    fn accepts_every_element_dequeued_once() {
        let h = history(&[
            enq(json!(1)),
            enq(json!(2)),
            deq(json!(1)),
            deq(json!(null)),
            enq(json!(3)),
            drain(json!([2, "3"])),
        ]);
        check(&h, Verdict::Valid, "all 3 acknowledged enqueues dequeued");
    }

    #[test]
    fn a_lost_element_names_the_fault_window_nearest_its_enqueue() {
        use crate::testing::Step::Fault;
        let h = history(&[
            Fault("kill", "kv", true),
            Fault("kill", "kv", false),
            enq(json!(1)),
            enq(json!(2)),
            Fault("pause", "kv", true),
            Fault("pause", "kv", false),
            deq(json!(2)),
        ]);
        let r = check(&h, Verdict::Invalid, "1 element lost: 1");
        let nearest = &r.details["lost"][0]["nearest_fault"];
        assert_eq!(nearest["fault"], "pause", "the next crash after the ack, not the one before: {nearest}");
        assert_eq!(nearest["relation"], "after");
        let without = history(&[enq(json!(1)), deq(json!(null))]);
        assert!(check(&without, Verdict::Invalid, "1 element lost: 1").details["lost"][0]["nearest_fault"].is_null());
    }

    #[test]
    fn rejects_lost_elements_naming_their_enqueues() {
        let h = history(&[enq(json!(1)), enq(json!(2)), deq(json!(2)), drain(json!([]))]);
        let r = check(&h, Verdict::Invalid, "1 element lost: 1");
        let lost = &r.details["lost"][0];
        assert_eq!(lost["element"], 1);
        assert_eq!(lost["enqueues"][0]["index"], 1);
        assert_eq!(lost["enqueues"][0]["actor"], "alice");
        assert_eq!(lost["enqueues"][0]["value"], 1);
    }

    #[test]
    fn losses_indeterminate_takes_could_explain_are_unknown_and_more_are_invalid() {
        // One element missing, one dequeue whose result never came: it may
        // have taken the element, so nothing is proven lost.
        let one = history(&[enq(json!(1)), enq(json!(2)), info("dequeue", json!(null)), drain(json!([2]))]);
        let r = check(&one, Verdict::Unknown, "1 element lost: 1; but 1 dequeue ended indeterminate");
        assert_eq!(r.details["indeterminate_dequeues"], 1);
        let pending_take = history(&[enq(json!(1)), deq(json!(null)), pending("dequeue", json!(null))]);
        check(&pending_take, Verdict::Unknown, "may have taken them");
        // Two missing, one indeterminate dequeue: at least one is lost.
        let two = history(&[enq(json!(1)), enq(json!(2)), info("dequeue", json!(null)), drain(json!([]))]);
        check(&two, Verdict::Invalid, "2 elements lost: 1, 2; 1 indeterminate dequeue could account for at most 1");
        // An indeterminate drain may have taken any number.
        let drained = history(&[enq(json!(1)), enq(json!(2)), deq(json!(null)), info("drain", json!(null))]);
        check(&drained, Verdict::Unknown, "but 1 drain ended indeterminate");
        // Unknown losses never hide an element that was never enqueued.
        let bogus = history(&[enq(json!(1)), info("dequeue", json!(null)), deq(json!(7))]);
        check(&bogus, Verdict::Invalid, "never enqueued: 7");
    }

    #[test]
    fn duplicates_are_invalid_unless_at_least_once() {
        let h = history(&[enq(json!(1)), deq(json!(1)), deq(json!(1))]);
        let r = check(&h, Verdict::Invalid, "1 element dequeued more than enqueued: 1");
        let dup = &r.details["duplicated"][0];
        assert_eq!((dup["count"].clone(), dup["dequeues"][1]["process"].clone()), (json!(2), json!(2)));
        let lenient = TotalQueueCheck { mode: Delivery::AtLeastOnce, ..TotalQueueCheck::default() };
        assert_check(&lenient, &h, Verdict::Valid, "all 1 acknowledged enqueue dequeued; redelivered: 1 element");
    }

    #[test]
    fn rejects_elements_never_enqueued() {
        let h = history(&[enq(json!(1)), fail("enqueue", json!(2)), deq(json!(1)), drain(json!([2, 9]))]);
        let r = check(&h, Verdict::Invalid, "2 elements never enqueued: 2, 9");
        assert_eq!(r.details["unexpected"][1]["dequeues"][0]["f"], "drain");
    }

    #[test]
    fn indeterminate_enqueues_may_or_may_not_come_out() {
        let h =
            history(&[enq(json!(1)), info("enqueue", json!(2)), pending("enqueue", json!(3)), drain(json!([1, 3]))]);
        let r = check(&h, Verdict::Valid, "(1 indeterminate enqueue recovered)");
        assert_eq!(r.details["recovered"][0]["element"], 3);
    }

    #[test]
    fn vacuous_or_malformed_histories_are_unknown() {
        check(&history(&[]), Verdict::Unknown, "vacuous: no successful dequeue or drain");
        check(&history(&[enq(json!(1)), fail("dequeue", json!(null))]), Verdict::Unknown, "vacuous: no successful");
        check(
            &history(&[info("enqueue", json!(1)), deq(json!(null))]),
            Verdict::Unknown,
            "no enqueue was acknowledged",
        );
        // Dequeues that found the queue empty are real reads: the element is lost.
        check(&history(&[enq(json!(1)), deq(json!(null))]), Verdict::Invalid, "1 element lost: 1");
        check(&history(&[enq(json!(1)), deq(json!(1)), drain(json!({}))]), Verdict::Unknown, "1 drain not an array");
        let no_drain = TotalQueueCheck { drain: None, ..TotalQueueCheck::default() };
        assert_check(&no_drain, &history(&[enq(json!(1)), drain(json!([1]))]), Verdict::Unknown, "vacuous");
    }
}
