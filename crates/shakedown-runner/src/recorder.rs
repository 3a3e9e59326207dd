//! The history recorder: one clock and one order, streamed to `history.jsonl`
//! as events happen.
//!
//! Invocations are stamped before the client is called and completions after it
//! returns, so an operation's window in the history always contains its real
//! window. Each event is serialized by the thread that records it; only the
//! stamping (index and time) and the hand-off to the writer thread happen
//! under one short lock, so index order is real-time order and the writer
//! receives lines in index order. The writer appends them to the file and
//! flushes at least every [`FLUSH_EVERY`] and whenever [`Recorder::flush`] is
//! called (at phase boundaries), so a harness killed mid-run leaves a readable
//! prefix. [`Recorder::finish`] writes the closing `end` event.
//!
//! Nothing per operation stays in memory: the file is the record. The queue
//! to the writer is bounded, so a disk slower than the workload slows the
//! workload rather than growing memory.

use serde_json::Value;
use shakedown_history::redact::Redactor;
use shakedown_history::{
    Completion, EndEvent, EventKind, FaultEvent, FaultPhase, Header, Invoke, OpType, ProcessId, ServiceEvent, Skip,
};
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a recorded event waits in memory before it reaches the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Events queued for the writer before recording threads wait for it.
const QUEUE_EVENTS: usize = 16 * 1024;
/// How long `flush` waits for the writer before giving up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Recorder {
    start: Instant,
    path: PathBuf,
    order: Mutex<Order>,
    next_fault_id: AtomicU64,
    redactor: Arc<Redactor>,
    writer: Mutex<Option<JoinHandle<WriterEnd>>>,
    /// Completed operations, shared with progress displays.
    pub completed: Arc<AtomicU64>,
}

/// What only one recording thread at a time may touch: the next index, the
/// last time stamped, and the sending end of the writer's queue.
struct Order {
    next_index: u64,
    last_time_ns: u64,
    /// `None` once the end event has been sent.
    tx: Option<SyncSender<Message>>,
}

enum Message {
    /// One event: its index and time, and the rest of its JSON object
    /// (everything after the opening brace), already serialized.
    Event {
        index: u64,
        time_ns: u64,
        body: Vec<u8>,
        shape: Shape,
    },
    Flush(SyncSender<()>),
}

/// What the writer needs to assert the history's rules as it writes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Invoke(ProcessId),
    Complete(ProcessId),
    FaultStart(u64),
    FaultEnd(u64),
    Other,
}

/// How the writer thread ended.
struct WriterEnd {
    events: u64,
    error: Option<String>,
}

/// What recording left behind, from [`Recorder::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub path: PathBuf,
    pub events: u64,
    /// The first write error; the file holds only what came before it.
    pub error: Option<String>,
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

/// The longest error text stored with a completion; a longer one (a whole
/// unexpected reply body, say) is cut and marked.
pub const MAX_ERROR_BYTES: usize = 64 * 1024;

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

    /// A reply outside every mapping: indeterminate, and kept (up to
    /// [`MAX_ERROR_BYTES`]) for the report.
    pub fn unexpected(error: impl Into<String>) -> Outcome {
        Outcome { op_type: OpType::Info, value: None, error: Some(error.into()), unexpected: true }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, saying how much was left out.
pub fn cap_text(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(" [truncated: {total} bytes in all]"));
    text
}

impl Recorder {
    /// Creates `path` (which must not exist) and starts streaming to it,
    /// beginning with the header.
    /// Secrets known to the process when it is created are masked in every event.
    pub fn create(path: &Path, header: Header, completed: Arc<AtomicU64>) -> std::io::Result<Recorder> {
        let file = crate::files::create_private(path)?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        out.flush()?;
        let (tx, rx) = sync_channel(QUEUE_EVENTS);
        let writer = std::thread::Builder::new()
            .name("shakedown-history".into())
            .spawn(move || write_events(out, rx, FLUSH_EVERY))?;
        Ok(Recorder {
            start: Instant::now(),
            path: path.to_path_buf(),
            order: Mutex::new(Order { next_index: 0, last_time_ns: 0, tx: Some(tx) }),
            next_fault_id: AtomicU64::new(0),
            redactor: shakedown_history::redact::current(),
            writer: Mutex::new(Some(writer)),
            completed,
        })
    }

    /// When the run's clock started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Where the history is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Serializes `kind` here, then stamps and queues it in order.
    fn push(&self, mut kind: EventKind, shape: Shape) {
        kind.redact(&self.redactor);
        let mut body = serde_json::to_vec(&kind).expect("history events serialize");
        assert_eq!(body.first(), Some(&b'{'), "an event kind is a JSON object");
        body.remove(0);
        let time_ns = self.elapsed_ns();
        let mut order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = order.tx.clone() else {
            // The run has ended: a straggler (a service exiting as it is killed) is not recorded.
            return;
        };
        // Stamped under the lock so times never go backwards between events.
        let time_ns = time_ns.max(order.last_time_ns);
        let index = order.next_index;
        order.next_index += 1;
        order.last_time_ns = time_ns;
        // Sent under the lock too, so the writer receives events in index order.
        if tx.send(Message::Event { index, time_ns, body, shape }).is_err() {
            tracing::error!("the history writer stopped; event {index} is lost");
        }
    }

    pub fn invoke(&self, process: ProcessId, actor: &str, f: &str, value: Value) {
        let inv = Invoke { process, actor: actor.to_string(), f: f.to_string(), value };
        self.push(EventKind::Invoke(inv), Shape::Invoke(process));
    }

    /// Completes the pending op of `process`, which invoked `f` as `actor`
    /// with `invoked`.
    pub fn complete(&self, process: ProcessId, actor: &str, f: &str, invoked: &Value, outcome: Outcome) {
        let value = outcome.value.unwrap_or_else(|| invoked.clone());
        let error = outcome.error.map(|e| cap_text(e, MAX_ERROR_BYTES));
        let c = Completion {
            process,
            actor: actor.to_string(),
            f: f.to_string(),
            value,
            error,
            unexpected: outcome.unexpected,
        };
        self.push(EventKind::completion_of(outcome.op_type, c), Shape::Complete(process));
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn skip(&self, process: ProcessId, actor: &str, f: &str, reason: String) {
        let skip = Skip { process, actor: actor.to_string(), f: f.to_string(), reason };
        self.push(EventKind::Skip(skip), Shape::Other);
    }

    /// Records the start of a fault window and returns its id for [`Recorder::fault_end`].
    pub fn fault_start(&self, fault: &str, target: &str, detail: Option<String>) -> u64 {
        let fault_id = self.next_fault_id.fetch_add(1, Ordering::Relaxed);
        let e = FaultEvent { fault_id, phase: FaultPhase::Start, fault: fault.into(), target: target.into(), detail };
        self.push(EventKind::Fault(e), Shape::FaultStart(fault_id));
        fault_id
    }

    /// How many fault windows have opened so far.
    pub fn faults_started(&self) -> u64 {
        self.next_fault_id.load(Ordering::Relaxed)
    }

    pub fn fault_end(&self, fault_id: u64, fault: &str, target: &str, detail: Option<String>) {
        let e = FaultEvent { fault_id, phase: FaultPhase::End, fault: fault.into(), target: target.into(), detail };
        self.push(EventKind::Fault(e), Shape::FaultEnd(fault_id));
    }

    pub fn service(&self, service: &str, event: &str, expected: bool, detail: Option<String>) {
        let e = ServiceEvent { service: service.into(), event: event.into(), expected, detail };
        self.push(EventKind::Service(e), Shape::Other);
    }

    /// Events recorded so far.
    pub fn len(&self) -> u64 {
        self.order.lock().unwrap_or_else(|p| p.into_inner()).next_index
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits (bounded) until everything recorded so far is in the file: at
    /// phase boundaries, and before anything reads the file.
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = sync_channel(1);
        let tx = self.order.lock().unwrap_or_else(|p| p.into_inner()).tx.clone();
        let Some(tx) = tx else { return };
        if tx.send(Message::Flush(ack_tx)).is_ok() && ack_rx.recv_timeout(FLUSH_TIMEOUT).is_err() {
            tracing::warn!("the history writer did not flush within {FLUSH_TIMEOUT:?}");
        }
    }

    /// Records the end event (`status`: completed, interrupted, failed or
    /// unsupported), closes the file and says what was written. Later events
    /// are dropped. A second call returns what the first wrote.
    pub fn finish(&self, status: &str, detail: Option<String>) -> Recorded {
        let end = EndEvent { status: status.to_string(), detail };
        self.push(EventKind::End(end), Shape::Other);
        self.order.lock().unwrap_or_else(|p| p.into_inner()).tx = None;
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let end = match handle.map(JoinHandle::join) {
            Some(Ok(end)) => end,
            Some(Err(_)) => WriterEnd { events: 0, error: Some("the history writer panicked".into()) },
            None => WriterEnd { events: self.len(), error: None },
        };
        Recorded { path: self.path.clone(), events: end.events, error: end.error }
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `finish` (a panic unwinding the run) still
    /// gets its queued events into the file, without an end event.
    fn drop(&mut self) {
        self.order.get_mut().unwrap_or_else(|p| p.into_inner()).tx = None;
        if let Some(handle) = self.writer.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
    }
}

/// The writer thread: appends events in order, asserting the history's
/// rules, and flushes at least every `every`.
fn write_events(mut out: BufWriter<File>, rx: Receiver<Message>, every: Duration) -> WriterEnd {
    let mut rules = Rules::default();
    let mut error: Option<String> = None;
    let mut dirty_since: Option<Instant> = None;
    loop {
        let wait = dirty_since.map_or(Duration::from_secs(3600), |t| every.saturating_sub(t.elapsed()));
        let message = match rx.recv_timeout(wait) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        match message {
            Some(Message::Event { index, time_ns, body, shape }) => {
                rules.admit(index, time_ns, shape);
                if error.is_none() {
                    if let Err(e) = write_line(&mut out, index, time_ns, &body) {
                        error = Some(format!("write the history: {e}"));
                    }
                }
                dirty_since.get_or_insert_with(Instant::now);
                if dirty_since.is_some_and(|t| t.elapsed() >= every) {
                    flush(&mut out, &mut error, &mut dirty_since);
                }
            }
            Some(Message::Flush(ack)) => {
                flush(&mut out, &mut error, &mut dirty_since);
                let _ = ack.send(());
            }
            None => flush(&mut out, &mut error, &mut dirty_since),
        }
    }
    flush(&mut out, &mut error, &mut dirty_since);
    WriterEnd { events: rules.next_index, error }
}

fn write_line(out: &mut impl Write, index: u64, time_ns: u64, body: &[u8]) -> std::io::Result<()> {
    write!(out, "{{\"index\":{index},\"time_ns\":{time_ns},")?;
    out.write_all(body)?;
    out.write_all(b"\n")
}

fn flush(out: &mut BufWriter<File>, error: &mut Option<String>, dirty_since: &mut Option<Instant>) {
    *dirty_since = None;
    if error.is_none() {
        if let Err(e) = out.flush() {
            *error = Some(format!("write the history: {e}"));
        }
    }
}

/// The structural rules, asserted as events are written (and checked again,
/// as errors, when the file is read): dense indexes, one pending op per
/// process, completions only of pending ops, matched fault windows.
#[derive(Default)]
struct Rules {
    next_index: u64,
    pending: HashSet<ProcessId>,
    open_faults: BTreeSet<u64>,
}

impl Rules {
    fn admit(&mut self, index: u64, _time_ns: u64, shape: Shape) {
        assert_eq!(index, self.next_index, "history events reach the writer in index order");
        self.next_index += 1;
        match shape {
            Shape::Invoke(p) => assert!(self.pending.insert(p), "process {p} invokes while an op is pending"),
            Shape::Complete(p) => assert!(self.pending.remove(&p), "process {p} completes with nothing pending"),
            Shape::FaultStart(id) => assert!(self.open_faults.insert(id), "fault {id} starts twice"),
            Shape::FaultEnd(id) => assert!(self.open_faults.remove(&id), "fault {id} ends without a start"),
            Shape::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recorder(dir: &Path) -> Recorder {
        let path = dir.join("history.jsonl");
        Recorder::create(&path, Header::new("t", 1), Arc::default()).unwrap()
    }

    #[test]
    fn streams_a_readable_prefix_then_an_end() {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path());
        r.invoke(ProcessId(0), "a", "add", json!(1));
        r.fault_start("kill", "kv", None);
        r.flush();
        // Before the end: a prefix whose pending op and open fault are fine.
        let text = std::fs::read(r.path()).unwrap();
        let prefix = shakedown_history::read_recorded(&text[..]).unwrap();
        assert_eq!(prefix.history.events.len(), 2);
        assert!(prefix.history.end().is_none());
        r.complete(ProcessId(0), "a", "add", &json!(1), Outcome::ok(None));
        let done = r.finish("completed", None);
        assert_eq!((done.events, done.error), (4, None));
        r.service("kv", "exited", true, None);
        let text = std::fs::read(r.path()).unwrap();
        let h = shakedown_history::read_jsonl(&text[..]).unwrap();
        assert_eq!(h.end().map(|e| e.status.as_str()), Some("completed"));
        assert_eq!(h.ops()[0].value(), &json!(1));
        assert_eq!(h.events.len(), 4, "nothing is recorded after the end");
    }

    #[test]
    fn flushes_on_its_own_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path());
        r.service("kv", "started", true, None);
        let deadline = Instant::now() + FLUSH_EVERY * 20;
        loop {
            let text = std::fs::read_to_string(r.path()).unwrap();
            if text.lines().count() == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the event never reached the file: {text:?}");
            std::thread::sleep(FLUSH_EVERY / 4);
        }
    }

    #[test]
    fn concurrent_recording_keeps_index_order_and_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let r = Arc::new(recorder(dir.path()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u64 {
                        let p = ProcessId(t);
                        r.invoke(p, "a", "w", json!(i));
                        r.complete(p, "a", "w", &json!(i), Outcome::ok(None));
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(r.finish("completed", None).events, 16_001);
        let h = shakedown_history::read_jsonl(&std::fs::read(r.path()).unwrap()[..]).unwrap();
        assert_eq!(h.ops().len(), 8000);
    }

    #[test]
    fn long_errors_are_capped_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path());
        r.invoke(ProcessId(0), "a", "get", json!(null));
        let reply = "x".repeat(10 * 1024 * 1024);
        r.complete(ProcessId(0), "a", "get", &json!(null), Outcome::unexpected(reply));
        r.finish("completed", None);
        let size = std::fs::metadata(r.path()).unwrap().len();
        assert!(size < 2 * MAX_ERROR_BYTES as u64, "a 10 MB reply took {size} bytes of history");
        let h = shakedown_history::read_jsonl(&std::fs::read(r.path()).unwrap()[..]).unwrap();
        let error = h.ops()[0].completion.as_ref().unwrap().error.clone().unwrap();
        assert!(error.ends_with("[truncated: 10485760 bytes in all]"), "{}", &error[error.len() - 60..]);
        assert!(error.len() > MAX_ERROR_BYTES && error.len() < MAX_ERROR_BYTES + 64);
    }
}
