//! Test helpers: a compact way to write histories and assert a check's verdict.

use crate::{Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{EventKind, FaultEvent, FaultPhase, Header, History, HistoryBuilder, OpType, ProcessId, Skip};

/// One step of a sequential test history.
pub(crate) enum Step {
    /// An op on a fresh process that completes before the next step starts.
    Op { f: &'static str, value: Value, op_type: OpType, out: Value, error: Option<String>, unexpected: bool },
    /// An op invoked and never completed (the run ended first).
    Pending { f: &'static str, value: Value },
    /// An op skipped for lack of a target.
    Skip { f: &'static str },
    /// A fault window starting (`true`) or ending (`false`) on a target.
    Fault(&'static str, &'static str, bool),
}

pub(crate) fn ok(f: &'static str, value: Value, out: Value) -> Step {
    Step::Op { f, value, op_type: OpType::Ok, out, error: None, unexpected: false }
}

pub(crate) fn fail(f: &'static str, value: Value) -> Step {
    Step::Op { f, value, op_type: OpType::Fail, out: json!(null), error: Some("refused".into()), unexpected: false }
}

pub(crate) fn info(f: &'static str, value: Value) -> Step {
    Step::Op { f, value, op_type: OpType::Info, out: json!(null), error: Some("timeout".into()), unexpected: false }
}

pub(crate) fn unexpected(f: &'static str, value: Value, error: &str) -> Step {
    Step::Op { f, value, op_type: OpType::Info, out: json!(null), error: Some(error.into()), unexpected: true }
}

pub(crate) fn pending(f: &'static str, value: Value) -> Step {
    Step::Pending { f, value }
}

pub(crate) fn skip(f: &'static str) -> Step {
    Step::Skip { f }
}

/// Builds a history in which step `i` runs on process `i`, ten nanoseconds apart.
pub(crate) fn history(steps: &[Step]) -> History {
    let mut b = HistoryBuilder::new(Header::new("test", 1));
    let mut open_faults: Vec<(&str, u64)> = Vec::new();
    let mut next_fault = 0;
    for (i, step) in steps.iter().enumerate() {
        let p = ProcessId(i as u64);
        let t = 10 * i as u64;
        match step {
            Step::Op { f, value, op_type, out, error, unexpected } => {
                b.invoke(t, p, actor(i), f, value.clone());
                b.complete_with(t + 5, p, *op_type, out.clone(), error.clone(), *unexpected);
            }
            Step::Pending { f, value } => {
                b.invoke(t, p, actor(i), f, value.clone());
            }
            Step::Skip { f } => {
                let skip = Skip { process: p, actor: actor(i).into(), f: f.to_string(), reason: "no target".into() };
                b.push(t, EventKind::Skip(skip));
            }
            Step::Fault(fault, target, start) => {
                let (fault_id, phase) = if *start {
                    next_fault += 1;
                    open_faults.push((fault, next_fault - 1));
                    (next_fault - 1, FaultPhase::Start)
                } else {
                    let at = open_faults.iter().rposition(|(f, _)| f == fault).expect("a started fault ends");
                    (open_faults.remove(at).1, FaultPhase::End)
                };
                let e =
                    FaultEvent { fault_id, phase, fault: fault.to_string(), target: target.to_string(), detail: None };
                b.push(t, EventKind::Fault(e));
            }
        }
    }
    b.finish()
}

fn actor(i: usize) -> &'static str {
    ["alice", "bob", "carol"][i % 3]
}

/// Runs `check` and asserts its verdict and that its summary contains `summary`.
pub(crate) fn assert_check(check: &dyn Check, h: &History, verdict: Verdict, summary: &str) -> CheckResult {
    let result = check.check(&CheckInput::new(h));
    assert_eq!(result.kind, check.kind());
    assert_eq!(result.verdict, verdict, "summary: {}\ndetails: {:#}", result.summary, result.details);
    assert!(result.summary.contains(summary), "summary {:?} lacks {summary:?}", result.summary);
    // A check is a pure function of its input.
    assert_eq!(check.check(&CheckInput::new(h)), result);
    result
}

/// One event of a concurrent test history: process `p` invokes or completes.
pub(crate) enum Ev {
    Invoke { p: u64, f: &'static str, value: Value },
    Complete { p: u64, op_type: OpType, out: Value },
}

pub(crate) fn inv(p: u64, f: &'static str, value: Value) -> Ev {
    Ev::Invoke { p, f, value }
}

pub(crate) fn ret(p: u64, out: Value) -> Ev {
    Ev::Complete { p, op_type: OpType::Ok, out }
}

pub(crate) fn ret_as(p: u64, op_type: OpType, out: Value) -> Ev {
    Ev::Complete { p, op_type, out }
}

/// Builds a history from events in order, ten nanoseconds apart; process `p`
/// belongs to actor `actor(p)`, so processes 0 and 3 share "alice".
pub(crate) fn interleaved(events: &[Ev]) -> History {
    let mut b = HistoryBuilder::new(Header::new("test", 1));
    for (i, e) in events.iter().enumerate() {
        let t = 10 * i as u64;
        match e {
            Ev::Invoke { p, f, value } => {
                b.invoke(t, ProcessId(*p), actor(*p as usize), f, value.clone());
            }
            Ev::Complete { p, op_type, out } => {
                let error = (*op_type != OpType::Ok).then(|| "timeout".to_string());
                b.complete(t, ProcessId(*p), *op_type, out.clone(), error);
            }
        }
    }
    b.finish()
}
