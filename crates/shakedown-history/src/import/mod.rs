//! Importers: histories recorded by other tools (Jepsen logs and EDN, Porcupine's
//! key-value files) turned into valid shakedown [`History`]s.
//!
//! Conventions shared by every importer:
//! - Each imported op's actor is the source process as text, its process the
//!   same number, except that a source process invoking again after an `info`
//!   completion gets a fresh [`ProcessId`] above every id in the file (Jepsen
//!   retires such processes; shakedown requires it).
//! - Times are the source's `:time` when every op has one and they never go
//!   backwards; otherwise `line × 1000` ns (plus the position within the line).
//! - A completion's value is the source's; when that is nil or absent the
//!   invoke value is kept, except for `read`/`get`, where null is what was read.
//!   In the Jepsen formats a keyword on a `fail`/`info` completion (`:timed-out`)
//!   is its error, not its value.
//! - Ops still pending at the end stay pending.
//!
//! ```
//! use shakedown_history::import::{import, Format};
//!
//! let log = "INFO  jepsen.util - 0\t:invoke\t:write\t3\nINFO  jepsen.util - 0\t:ok\t:write\t3\n";
//! let history = import(log, Format::JepsenLog, "etcd").unwrap();
//! assert_eq!(history.ops().len(), 1);
//! ```

pub mod edn;
mod jepsen_edn;
mod jepsen_log;
mod porcupine_kv;

use crate::codec::{read_jsonl, DecodeError};
use crate::event::{Completion, Event, EventKind, Header, Invoke, OpType, ProcessId};
use crate::ops::History;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// A history format this crate can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// shakedown's own JSON Lines.
    Jsonl,
    /// Jepsen `jepsen.util` log lines.
    JepsenLog,
    /// Jepsen EDN op maps, one per line or in one vector.
    JepsenEdn,
    /// Porcupine's key-value EDN maps with a `:key`.
    PorcupineKv,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Jsonl, Format::JepsenLog, Format::JepsenEdn, Format::PorcupineKv];

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::JepsenLog => "jepsen-log",
            Format::JepsenEdn => "jepsen-edn",
            Format::PorcupineKv => "porcupine-kv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name given to [`Format::from_str`] is none of the known formats.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown history format {0:?} (expected jsonl, jepsen-log, jepsen-edn or porcupine-kv)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// Why a history could not be imported; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ImportError {
    pub line: usize,
    pub message: String,
}

impl ImportError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> ImportError {
        ImportError { line, message: message.into() }
    }
}

impl From<edn::EdnError> for ImportError {
    fn from(e: edn::EdnError) -> ImportError {
        ImportError { line: e.line, message: e.message }
    }
}

/// How many non-blank lines [`detect`] looks at for a `jepsen.util` line.
const DETECT_LINES: usize = 50;

/// Guesses the format from the first non-blank lines; `None` when nothing fits.
pub fn detect(text: &str) -> Option<Format> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with(';'));
    let first = lines.clone().next()?;
    if first.starts_with('{') && !first.starts_with("{:") && first.contains("\"shakedown-history\"") {
        return Some(Format::Jsonl);
    }
    if first.starts_with("{:") {
        let has_key = match edn::parse_one(first) {
            Ok(map) => map.get("key").is_some(),
            Err(_) => first.contains(":key ") || first.contains(":key,"),
        };
        return Some(if has_key { Format::PorcupineKv } else { Format::JepsenEdn });
    }
    if first.starts_with('[') {
        return Some(Format::JepsenEdn);
    }
    lines.by_ref().take(DETECT_LINES).any(|l| l.contains("jepsen.util -")).then_some(Format::JepsenLog)
}

/// Imports `text` in `format`. Imported histories get `Header::new(name, 0)`
/// with meta `imported_from`; a shakedown JSON Lines history keeps its own header.
pub fn import(text: &str, format: Format, name: &str) -> Result<History, ImportError> {
    let records = match format {
        Format::Jsonl => return read_jsonl(text.as_bytes()).map_err(from_decode_error),
        Format::JepsenLog => jepsen_log::parse(text)?,
        Format::JepsenEdn => jepsen_edn::parse(text)?,
        Format::PorcupineKv => porcupine_kv::parse(text)?,
    };
    let mut header = Header::new(name, 0);
    header.meta.insert("imported_from".to_string(), Value::from(format.name()));
    build(header, records)
}

/// Imports `text`, detecting the format when `format` is `None`.
pub fn read_any(text: &str, format: Option<Format>, name: &str) -> Result<(History, Format), ImportError> {
    let format = match format.or_else(|| detect(text)) {
        Some(f) => f,
        None => {
            let message = "expected a recognisable history (shakedown jsonl, a jepsen log, jepsen edn or porcupine kv)";
            return Err(ImportError::new(1, message));
        }
    };
    Ok((import(text, format, name)?, format))
}

fn from_decode_error(e: DecodeError) -> ImportError {
    let line = match &e {
        DecodeError::Io(_) => 1,
        DecodeError::Empty { line }
        | DecodeError::Header { line, .. }
        | DecodeError::Version { line, .. }
        | DecodeError::Event { line, .. }
        | DecodeError::WellFormed { line, .. } => *line,
    };
    let text = e.to_string();
    let message = text.strip_prefix(&format!("line {line}: ")).unwrap_or(&text).to_string();
    ImportError { line: line.max(1), message }
}

/// One op line of a source history, before conversion.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub line: usize,
    pub process: u64,
    /// `None` for an invocation.
    pub completion: Option<OpType>,
    pub f: String,
    /// `None` when the source had nil or no value.
    pub value: Option<Value>,
    pub error: Option<String>,
    pub time_ns: Option<u64>,
}

/// The op type for a source `:type` name.
pub(crate) fn op_type(name: &str) -> Option<Option<OpType>> {
    Some(match name {
        "invoke" => None,
        "ok" => Some(OpType::Ok),
        "fail" => Some(OpType::Fail),
        "info" => Some(OpType::Info),
        _ => return None,
    })
}

/// Where each source process stands while converting.
#[derive(Debug, Default)]
struct Processes {
    /// Source process -> the shakedown process it currently runs as.
    current: BTreeMap<u64, ProcessId>,
    /// Source processes whose last op ended info, so their next invoke needs a fresh id.
    retired: BTreeSet<u64>,
    /// Source process -> (line, f, invoke value) of its pending op.
    pending: BTreeMap<u64, (usize, String, Value)>,
    next_fresh: u64,
}

/// Converts records into a history, checking every rule first so the result validates.
fn build(header: Header, records: Vec<Record>) -> Result<History, ImportError> {
    let use_source_time =
        records.iter().all(|r| r.time_ns.is_some()) && records.windows(2).all(|w| w[0].time_ns <= w[1].time_ns);
    let max_process = records.iter().map(|r| r.process).max().unwrap_or(0);
    let mut procs = Processes { next_fresh: max_process.saturating_add(1), ..Processes::default() };
    let mut events = Vec::with_capacity(records.len());
    let mut lines = Vec::with_capacity(records.len());
    let mut same_line = 0u64;
    for (i, r) in records.into_iter().enumerate() {
        same_line = if i > 0 && lines.last() == Some(&r.line) { same_line + 1 } else { 0 };
        let time_ns = match r.time_ns {
            Some(t) if use_source_time => t,
            _ => u64::try_from(r.line).unwrap_or(u64::MAX).saturating_mul(1000).saturating_add(same_line.min(999)),
        };
        let kind = convert(&mut procs, &r)?;
        events.push(Event { index: u64::try_from(i).unwrap_or(u64::MAX), time_ns, kind });
        lines.push(r.line);
    }
    let history = History { header, events };
    // Postcondition: the checks above are meant to cover every rule.
    if let Err(e) = history.validate() {
        let line = usize::try_from(e.event_index()).ok().and_then(|i| lines.get(i)).copied().unwrap_or(1);
        return Err(ImportError::new(line, e.to_string()));
    }
    Ok(history)
}

fn convert(procs: &mut Processes, r: &Record) -> Result<EventKind, ImportError> {
    let actor = r.process.to_string();
    let Some(op_type) = r.completion else {
        if let Some((line, _, _)) = procs.pending.get(&r.process) {
            let message =
                format!("expected process {} to complete its op from line {line} before invoking again", r.process);
            return Err(ImportError::new(r.line, message));
        }
        if procs.retired.remove(&r.process) {
            let fresh = procs.next_fresh;
            procs.next_fresh =
                fresh.checked_add(1).ok_or_else(|| ImportError::new(r.line, "expected fewer process ids"))?;
            procs.current.insert(r.process, ProcessId(fresh));
        }
        let process = *procs.current.entry(r.process).or_insert(ProcessId(r.process));
        let value = r.value.clone().unwrap_or(Value::Null);
        procs.pending.insert(r.process, (r.line, r.f.clone(), value.clone()));
        return Ok(EventKind::Invoke(Invoke { process, actor, f: r.f.clone(), value }));
    };
    let Some((_, f, invoke_value)) = procs.pending.remove(&r.process) else {
        let message =
            format!("completion for process {} has no pending invocation (expected an invoke first)", r.process);
        return Err(ImportError::new(r.line, message));
    };
    if f != r.f {
        let message = format!("expected completion f {f:?} to match its invocation, found {:?}", r.f);
        return Err(ImportError::new(r.line, message));
    }
    if op_type == OpType::Info {
        procs.retired.insert(r.process);
    }
    let value = match &r.value {
        Some(v) => v.clone(),
        None if f == "read" || f == "get" => Value::Null,
        None => invoke_value,
    };
    let process = procs.current.get(&r.process).copied().unwrap_or(ProcessId(r.process));
    let c = Completion { process, actor, f, value, error: r.error.clone(), unexpected: false };
    Ok(EventKind::completion_of(op_type, c))
}

#[cfg(test)]
mod tests;
