//! Building histories with asserted invariants, and pairing invocations with completions.

use crate::event::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A complete history: header plus events in index order.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub header: Header,
    pub events: Vec<Event>,
}

/// An invocation paired with its completion (absent if the run ended first).
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    pub process: ProcessId,
    pub actor: String,
    pub f: String,
    pub invoke_index: u64,
    pub invoke_time_ns: u64,
    pub invoke_value: Value,
    pub completion: Option<OpCompletion>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpCompletion {
    pub op_type: OpType,
    pub index: u64,
    pub time_ns: u64,
    pub value: Value,
    pub error: Option<String>,
    pub unexpected: bool,
}

impl Op {
    /// The op's result type; an op that never completed counts as `info`.
    pub fn op_type(&self) -> OpType {
        self.completion.as_ref().map_or(OpType::Info, |c| c.op_type)
    }

    /// The completion's value when the op completed, else the invoked value.
    pub fn value(&self) -> &Value {
        self.completion.as_ref().map_or(&self.invoke_value, |c| &c.value)
    }
}

/// A violation of the history's structural rules, found while reading one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WellFormedError {
    #[error("event index {found} out of order (expected {expected})")]
    Index { expected: u64, found: u64 },
    #[error("event {index}: time {time_ns} ns goes backwards (previous {previous_ns} ns)")]
    TimeBackwards { index: u64, time_ns: u64, previous_ns: u64 },
    #[error("event {index}: process {process} invokes while its previous op is still pending")]
    DoubleInvoke { index: u64, process: ProcessId },
    #[error("event {index}: process {process} was retired by an info completion and cannot invoke again")]
    RetiredProcess { index: u64, process: ProcessId },
    #[error("event {index}: completion for process {process} has no pending invocation")]
    OrphanCompletion { index: u64, process: ProcessId },
    #[error("event {index}: completion f {found:?} does not match the invocation's f {expected:?}")]
    MismatchedF { index: u64, expected: String, found: String },
    #[error("event {index}: fault {fault_id} {phase:?} without a matching start")]
    UnmatchedFault { index: u64, fault_id: u64, phase: FaultPhase },
    #[error("event {index} comes after the run's end event")]
    AfterEnd { index: u64 },
}

impl WellFormedError {
    /// The index of the event that broke the rule.
    pub fn event_index(&self) -> u64 {
        match self {
            WellFormedError::Index { expected, .. } => *expected,
            WellFormedError::TimeBackwards { index, .. }
            | WellFormedError::DoubleInvoke { index, .. }
            | WellFormedError::RetiredProcess { index, .. }
            | WellFormedError::OrphanCompletion { index, .. }
            | WellFormedError::MismatchedF { index, .. }
            | WellFormedError::UnmatchedFault { index, .. }
            | WellFormedError::AfterEnd { index } => *index,
        }
    }
}

/// Tracks the rules a history must obey; shared by the builder (which asserts)
/// and the reader (which reports).
#[derive(Debug, Default)]
struct Rules {
    next_index: u64,
    last_time_ns: u64,
    pending: BTreeMap<ProcessId, (String, String)>,
    retired: BTreeSet<ProcessId>,
    open_faults: BTreeSet<u64>,
    ended: bool,
}

impl Rules {
    fn admit(&mut self, e: &Event) -> Result<(), WellFormedError> {
        let index = e.index;
        if index != self.next_index {
            return Err(WellFormedError::Index { expected: self.next_index, found: index });
        }
        if self.ended {
            return Err(WellFormedError::AfterEnd { index });
        }
        if e.time_ns < self.last_time_ns {
            return Err(WellFormedError::TimeBackwards { index, time_ns: e.time_ns, previous_ns: self.last_time_ns });
        }
        match &e.kind {
            EventKind::Invoke(inv) => {
                if self.retired.contains(&inv.process) {
                    return Err(WellFormedError::RetiredProcess { index, process: inv.process });
                }
                if self.pending.contains_key(&inv.process) {
                    return Err(WellFormedError::DoubleInvoke { index, process: inv.process });
                }
                self.pending.insert(inv.process, (inv.actor.clone(), inv.f.clone()));
            }
            EventKind::Ok(c) | EventKind::Fail(c) | EventKind::Info(c) => {
                let Some((_, f)) = self.pending.remove(&c.process) else {
                    return Err(WellFormedError::OrphanCompletion { index, process: c.process });
                };
                if f != c.f {
                    return Err(WellFormedError::MismatchedF { index, expected: f, found: c.f.clone() });
                }
                if matches!(e.kind, EventKind::Info(_)) {
                    self.retired.insert(c.process);
                }
            }
            EventKind::Fault(fe) => {
                let fresh = match fe.phase {
                    FaultPhase::Start => self.open_faults.insert(fe.fault_id),
                    FaultPhase::End => self.open_faults.remove(&fe.fault_id),
                };
                if !fresh {
                    return Err(WellFormedError::UnmatchedFault { index, fault_id: fe.fault_id, phase: fe.phase });
                }
            }
            EventKind::End(_) => self.ended = true,
            EventKind::Skip(_) | EventKind::Service(_) => {}
        }
        self.next_index += 1;
        self.last_time_ns = e.time_ns;
        Ok(())
    }
}

impl History {
    /// Checks every structural rule; used when reading a history from outside.
    pub fn validate(&self) -> Result<(), WellFormedError> {
        let mut rules = Rules::default();
        self.events.iter().try_for_each(|e| rules.admit(e))
    }

    /// Invocations paired with their completions, in invocation order.
    pub fn ops(&self) -> Vec<Op> {
        let mut ops: Vec<Op> = Vec::new();
        let mut open: BTreeMap<ProcessId, usize> = BTreeMap::new();
        for e in &self.events {
            match &e.kind {
                EventKind::Invoke(inv) => {
                    open.insert(inv.process, ops.len());
                    ops.push(Op {
                        process: inv.process,
                        actor: inv.actor.clone(),
                        f: inv.f.clone(),
                        invoke_index: e.index,
                        invoke_time_ns: e.time_ns,
                        invoke_value: inv.value.clone(),
                        completion: None,
                    });
                }
                kind => {
                    let Some((op_type, c)) = kind.completion() else { continue };
                    let Some(i) = open.remove(&c.process) else { continue };
                    ops[i].completion = Some(OpCompletion {
                        op_type,
                        index: e.index,
                        time_ns: e.time_ns,
                        value: c.value.clone(),
                        error: c.error.clone(),
                        unexpected: c.unexpected,
                    });
                }
            }
        }
        ops
    }

    /// Fault windows as (start event, end event if healed).
    pub fn fault_windows(&self) -> Vec<(&Event, Option<&Event>)> {
        let mut windows: Vec<(&Event, Option<&Event>)> = Vec::new();
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        for e in &self.events {
            let EventKind::Fault(fe) = &e.kind else { continue };
            match fe.phase {
                FaultPhase::Start => {
                    open.insert(fe.fault_id, windows.len());
                    windows.push((e, None));
                }
                FaultPhase::End => {
                    if let Some(i) = open.remove(&fe.fault_id) {
                        windows[i].1 = Some(e);
                    }
                }
            }
        }
        windows
    }

    /// How the run ended, when the history records it; `None` means the
    /// recording was cut short (the harness died) and this is a prefix.
    pub fn end(&self) -> Option<&EndEvent> {
        match self.events.last().map(|e| &e.kind) {
            Some(EventKind::End(end)) => Some(end),
            _ => None,
        }
    }

    pub fn skips(&self) -> impl Iterator<Item = &Skip> {
        self.events.iter().filter_map(|e| match &e.kind {
            EventKind::Skip(s) => Some(s),
            _ => None,
        })
    }

    pub fn service_events(&self) -> impl Iterator<Item = (&Event, &ServiceEvent)> {
        self.events.iter().filter_map(|e| match &e.kind {
            EventKind::Service(s) => Some((e, s)),
            _ => None,
        })
    }
}

/// Appends events with dense indexes, asserting the history's rules as it goes.
///
/// A violation here is a bug in the recorder, not bad input, so it panics.
#[derive(Debug)]
pub struct HistoryBuilder {
    history: History,
    rules: Rules,
}

impl HistoryBuilder {
    pub fn new(header: Header) -> HistoryBuilder {
        HistoryBuilder { history: History { header, events: Vec::new() }, rules: Rules::default() }
    }

    pub fn len(&self) -> usize {
        self.history.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.history.events.is_empty()
    }

    pub fn events(&self) -> &[Event] {
        &self.history.events
    }

    /// The time of the last event, so callers can keep time monotonic.
    pub fn last_time_ns(&self) -> u64 {
        self.rules.last_time_ns
    }

    /// Whether `process` has an invocation without a completion.
    pub fn is_pending(&self, process: ProcessId) -> bool {
        self.rules.pending.contains_key(&process)
    }

    pub fn push(&mut self, time_ns: u64, kind: EventKind) -> u64 {
        let index = self.rules.next_index;
        let event = Event { index, time_ns, kind };
        if let Err(e) = self.rules.admit(&event) {
            panic!("history invariant broken by the recorder: {e}");
        }
        self.history.events.push(event);
        index
    }

    pub fn invoke(&mut self, time_ns: u64, process: ProcessId, actor: &str, f: &str, value: Value) -> u64 {
        let inv = Invoke { process, actor: actor.to_string(), f: f.to_string(), value };
        self.push(time_ns, EventKind::Invoke(inv))
    }

    /// Completes the pending op of `process`, reusing its actor and f.
    pub fn complete(
        &mut self,
        time_ns: u64,
        process: ProcessId,
        op_type: OpType,
        value: Value,
        error: Option<String>,
    ) -> u64 {
        self.complete_with(time_ns, process, op_type, value, error, false)
    }

    pub fn complete_with(
        &mut self,
        time_ns: u64,
        process: ProcessId,
        op_type: OpType,
        value: Value,
        error: Option<String>,
        unexpected: bool,
    ) -> u64 {
        let (actor, f) = self.pending_op(process);
        let c = Completion { process, actor, f, value, error, unexpected };
        self.push(time_ns, EventKind::completion_of(op_type, c))
    }

    fn pending_op(&self, process: ProcessId) -> (String, String) {
        match self.rules.pending.get(&process) {
            Some(pending) => pending.clone(),
            None => panic!("process {process} completes with nothing pending"),
        }
    }

    pub fn finish(self) -> History {
        self.history
    }

    pub fn history(&self) -> &History {
        &self.history
    }
}
