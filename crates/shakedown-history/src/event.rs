//! Event types of a history and their JSON shape.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Name written in every header, so a file can be recognised.
pub const FORMAT_NAME: &str = "shakedown-history";
/// Version of the JSON Lines format; bumped on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// A logical client process. Jepsen semantics: a process whose operation ends
/// `info` is retired and its worker continues under a fresh id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProcessId(pub u64);

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The first line of a history file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub scenario: String,
    pub seed: u64,
    /// Free-form, e.g. the matrix cell; empty when absent.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, Value>,
}

impl Header {
    pub fn new(scenario: impl Into<String>, seed: u64) -> Header {
        Header {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            scenario: scenario.into(),
            seed,
            meta: serde_json::Map::new(),
        }
    }
}

/// How an operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// Took effect.
    Ok,
    /// Definitely did not take effect (an expected refusal is a fail).
    Fail,
    /// Indeterminate: may or may not have taken effect (timeout, crash, unexpected reply).
    Info,
}

impl OpType {
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a history after the header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, starting at 0 and dense.
    pub index: u64,
    /// Monotonic nanoseconds since the run started.
    pub time_ns: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EventKind {
    Invoke(Invoke),
    Ok(Completion),
    Fail(Completion),
    Info(Completion),
    Skip(Skip),
    Fault(FaultEvent),
    Service(ServiceEvent),
    /// The last event of a run that finished, however it ended; a history
    /// without one was cut short (the harness died while recording).
    End(EndEvent),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invoke {
    pub process: ProcessId,
    pub actor: String,
    pub f: String,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    pub process: ProcessId,
    pub actor: String,
    pub f: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The reply matched neither the ok nor the fail mapping; `error` holds it in full.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unexpected: bool,
}

/// An operation that was not attempted because it had no suitable target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skip {
    pub process: ProcessId,
    pub actor: String,
    pub f: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultPhase {
    Start,
    End,
}

/// The start or end of a fault window. Start and end share a `fault_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultEvent {
    pub fault_id: u64,
    pub phase: FaultPhase,
    pub fault: String,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A service lifecycle event (started, ready, exited, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEvent {
    pub service: String,
    pub event: String,
    /// False when the event was not caused by shakedown (a crash).
    pub expected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How the run that recorded a history ended: its last line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndEvent {
    /// `completed`, `interrupted`, `failed` or `unsupported`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl EventKind {
    /// The completion and its type, when this event completes an operation.
    pub fn completion(&self) -> Option<(OpType, &Completion)> {
        match self {
            EventKind::Ok(c) => Some((OpType::Ok, c)),
            EventKind::Fail(c) => Some((OpType::Fail, c)),
            EventKind::Info(c) => Some((OpType::Info, c)),
            _ => None,
        }
    }

    /// Masks secrets in every string the event carries.
    pub fn redact(&mut self, r: &crate::redact::Redactor) {
        if r.is_empty() {
            return;
        }
        let mut strings: Vec<&mut String> = Vec::new();
        match self {
            EventKind::Invoke(i) => {
                r.redact_value(&mut i.value);
                strings.extend([&mut i.actor, &mut i.f]);
            }
            EventKind::Ok(c) | EventKind::Fail(c) | EventKind::Info(c) => {
                r.redact_value(&mut c.value);
                strings.extend([&mut c.actor, &mut c.f]);
                strings.extend(c.error.as_mut());
            }
            EventKind::Skip(s) => strings.extend([&mut s.actor, &mut s.f, &mut s.reason]),
            EventKind::Fault(f) => {
                strings.extend([&mut f.fault, &mut f.target]);
                strings.extend(f.detail.as_mut());
            }
            EventKind::Service(e) => {
                strings.extend([&mut e.service, &mut e.event]);
                strings.extend(e.detail.as_mut());
            }
            EventKind::End(e) => strings.extend(e.detail.as_mut()),
        }
        strings.into_iter().for_each(|s| r.redact_string(s));
    }

    pub fn completion_of(op_type: OpType, c: Completion) -> EventKind {
        match op_type {
            OpType::Ok => EventKind::Ok(c),
            OpType::Fail => EventKind::Fail(c),
            OpType::Info => EventKind::Info(c),
        }
    }
}
