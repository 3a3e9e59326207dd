//! Operation histories: the only interface between running a scenario and checking it.
//!
//! A [`History`] is an append-only list of [`Event`]s: operation invocations and
//! their completions, faults with their windows, service lifecycle events and
//! skipped operations. It is written and read as versioned JSON Lines by
//! [`codec`], and asserted well-formed both when built ([`HistoryBuilder`]) and
//! when read back.
//!
//! ```
//! use shakedown_history::{HistoryBuilder, Header, OpType, ProcessId};
//! use serde_json::json;
//!
//! let mut b = HistoryBuilder::new(Header::new("doc", 7));
//! let p = ProcessId(0);
//! b.invoke(10, p, "alice", "add", json!(1));
//! b.complete(20, p, OpType::Ok, json!(1), None);
//! let history = b.finish();
//! assert_eq!(history.ops().len(), 1);
//! ```

pub mod codec;
mod event;
pub mod import;
pub mod logs;
pub mod metrics;
mod ops;
pub mod redact;
pub mod state;

pub use codec::{read_jsonl, read_recorded, write_jsonl, DecodeError, Recorded};
pub use event::{
    Completion, EndEvent, Event, EventKind, FaultEvent, FaultPhase, Header, Invoke, OpType, ProcessId, ServiceEvent,
    Skip, FORMAT_NAME, FORMAT_VERSION,
};
pub use ops::{History, HistoryBuilder, Op, OpCompletion, WellFormedError};
