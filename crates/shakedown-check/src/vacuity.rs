//! The vacuity guard for fault windows: a check that passed on a history where
//! (almost) nothing completed while a fault was active proves little, so it
//! becomes unknown.

use crate::{CheckResult, Verdict};
use shakedown_history::{History, OpType};

/// How many operations completed ok while overlapping a fault window (an op
/// overlaps when it was invoked before the window closed and completed after it
/// opened; an unhealed window lasts to the end of the history).
pub fn ok_ops_during_faults(history: &History) -> u64 {
    let windows: Vec<(u64, u64)> = history
        .fault_windows()
        .iter()
        .map(|(start, end)| (start.time_ns, end.map_or(u64::MAX, |e| e.time_ns)))
        .collect();
    if windows.is_empty() {
        return 0;
    }
    let overlaps = |from: u64, to: u64| windows.iter().any(|&(start, end)| from <= end && to >= start);
    let ok = history.ops().into_iter().filter(|op| op.op_type() == OpType::Ok);
    ok.filter(|op| overlaps(op.invoke_time_ns, op.completion.as_ref().map_or(u64::MAX, |c| c.time_ns))).count() as u64
}

/// Turns a valid result into unknown when fewer than `min_ok` operations
/// completed ok during faults; invalid and unknown results stay as they are
/// (a violation found is real whatever the fault coverage).
pub fn guard_during_faults(result: &mut CheckResult, history: &History, min_ok: u64) {
    let seen = ok_ops_during_faults(history);
    if result.verdict != Verdict::Valid || seen >= min_ok {
        return;
    }
    let windows = history.fault_windows().len();
    result.verdict = Verdict::Unknown;
    result.summary = format!(
        "vacuous: {seen} ok operation(s) overlapped the {windows} fault window(s), below the {min_ok} asked for with `during_faults`; (was: {})",
        result.summary
    );
    if let Some(details) = result.details.as_object_mut() {
        details.insert("ok_ops_during_faults".into(), seen.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shakedown_history::{EventKind, FaultEvent, FaultPhase, Header, HistoryBuilder, ProcessId};

    fn fault(b: &mut HistoryBuilder, t: u64, id: u64, phase: FaultPhase) {
        let event = FaultEvent { fault_id: id, phase, fault: "kill".into(), target: "kv".into(), detail: None };
        b.push(t, EventKind::Fault(event));
    }

    fn history(ok_during: bool) -> History {
        let mut b = HistoryBuilder::new(Header::new("t", 1));
        let p = ProcessId(0);
        b.invoke(10, p, "a", "write", json!(1));
        b.complete(20, p, OpType::Ok, json!(1), None);
        fault(&mut b, 30, 0, FaultPhase::Start);
        b.invoke(40, p, "a", "write", json!(2));
        let during = if ok_during { OpType::Ok } else { OpType::Fail };
        b.complete(50, p, during, json!(2), None);
        fault(&mut b, 60, 0, FaultPhase::End);
        b.invoke(70, p, "a", "write", json!(3));
        b.complete(80, p, OpType::Ok, json!(3), None);
        b.finish()
    }

    #[test]
    fn counts_only_ok_ops_overlapping_windows() {
        assert_eq!(ok_ops_during_faults(&history(true)), 1);
        assert_eq!(ok_ops_during_faults(&history(false)), 0);
    }

    #[test]
    fn a_valid_result_without_ops_during_faults_becomes_unknown() {
        let valid = CheckResult::new("set", Verdict::Valid, "all there", json!({}));
        let mut r = valid.clone();
        guard_during_faults(&mut r, &history(false), 1);
        assert_eq!(r.verdict, Verdict::Unknown);
        assert!(r.summary.starts_with("vacuous: 0 ok operation(s)"), "{}", r.summary);
        let mut r = valid.clone();
        guard_during_faults(&mut r, &history(true), 1);
        assert_eq!(r, valid);
        let mut invalid = CheckResult::new("set", Verdict::Invalid, "lost 3", json!({}));
        guard_during_faults(&mut invalid, &history(false), 1);
        assert_eq!(invalid.verdict, Verdict::Invalid);
    }
}
