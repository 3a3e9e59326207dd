//! The history recorder: one lock, one clock, so index order is real-time order.
//!
//! Invocations are stamped before the client is called and completions after it
//! returns, both under the lock, so an operation's window in the history always
//! contains its real window.

use serde_json::Value;
use shakedown_history::{
    EventKind, FaultEvent, FaultPhase, Header, History, HistoryBuilder, OpType, ProcessId, ServiceEvent, Skip,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct Recorder {
    start: Instant,
    builder: Mutex<HistoryBuilder>,
    next_fault_id: AtomicU64,
    /// Completed operations, shared with progress displays.
    pub completed: Arc<AtomicU64>,
}

/// Why an operation ended, as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub op_type: OpType,
    /// The completion value; `None` keeps the invoked value.
    pub value: Option<Value>,
    pub error: Option<String>,
    /// The reply matched neither the ok nor the fail mapping.
    pub unexpected: bool,
}

impl Outcome {
    pub fn ok(value: Option<Value>) -> Outcome {
        Outcome { op_type: OpType::Ok, value, error: None, unexpected: false }
    }

    pub fn fail(error: impl Into<String>) -> Outcome {
        Outcome { op_type: OpType::Fail, value: None, error: Some(error.into()), unexpected: false }
    }

    pub fn info(error: impl Into<String>) -> Outcome {
        Outcome { op_type: OpType::Info, value: None, error: Some(error.into()), unexpected: false }
    }

    /// A reply outside every mapping: indeterminate, and kept in full for the report.
    pub fn unexpected(error: impl Into<String>) -> Outcome {
        Outcome { op_type: OpType::Info, value: None, error: Some(error.into()), unexpected: true }
    }
}

impl Recorder {
    pub fn new(header: Header, completed: Arc<AtomicU64>) -> Recorder {
        Recorder {
            start: Instant::now(),
            builder: Mutex::new(HistoryBuilder::new(header)),
            next_fault_id: AtomicU64::new(0),
            completed,
        }
    }

    /// When the run's clock started.
    pub fn start(&self) -> Instant {
        self.start
    }

    pub fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn push(&self, kind: EventKind) -> u64 {
        let mut b = self.builder.lock().unwrap_or_else(|p| p.into_inner());
        // Stamped under the lock so times never go backwards between events.
        let time_ns = self.elapsed_ns().max(b.last_time_ns());
        b.push(time_ns, kind)
    }

    pub fn invoke(&self, process: ProcessId, actor: &str, f: &str, value: Value) {
        let inv = shakedown_history::Invoke { process, actor: actor.to_string(), f: f.to_string(), value };
        self.push(EventKind::Invoke(inv));
    }

    pub fn complete(&self, process: ProcessId, invoked: &Value, outcome: Outcome) {
        let mut b = self.builder.lock().unwrap_or_else(|p| p.into_inner());
        let time_ns = self.elapsed_ns().max(b.last_time_ns());
        let value = outcome.value.unwrap_or_else(|| invoked.clone());
        b.complete_with(time_ns, process, outcome.op_type, value, outcome.error, outcome.unexpected);
        drop(b);
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn skip(&self, process: ProcessId, actor: &str, f: &str, reason: String) {
        let skip = Skip { process, actor: actor.to_string(), f: f.to_string(), reason };
        self.push(EventKind::Skip(skip));
    }

    /// Records the start of a fault window and returns its id for [`Recorder::fault_end`].
    pub fn fault_start(&self, fault: &str, target: &str, detail: Option<String>) -> u64 {
        let fault_id = self.next_fault_id.fetch_add(1, Ordering::Relaxed);
        let e = FaultEvent { fault_id, phase: FaultPhase::Start, fault: fault.into(), target: target.into(), detail };
        self.push(EventKind::Fault(e));
        fault_id
    }

    /// How many fault windows have opened so far.
    pub fn faults_started(&self) -> u64 {
        self.next_fault_id.load(Ordering::Relaxed)
    }

    pub fn fault_end(&self, fault_id: u64, fault: &str, target: &str, detail: Option<String>) {
        let e = FaultEvent { fault_id, phase: FaultPhase::End, fault: fault.into(), target: target.into(), detail };
        self.push(EventKind::Fault(e));
    }

    pub fn service(&self, service: &str, event: &str, expected: bool, detail: Option<String>) {
        let e = ServiceEvent { service: service.into(), event: event.into(), expected, detail };
        self.push(EventKind::Service(e));
    }

    pub fn snapshot(&self) -> History {
        self.builder.lock().unwrap_or_else(|p| p.into_inner()).history().clone()
    }
}
