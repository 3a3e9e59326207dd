//! The history recorder: one clock and one order, streamed to `history.jsonl`
//! as events happen.
//!
//! Invocations are stamped before the client is called and completions after it
//! returns, so an operation's window in the history always contains its real
//! window. Each event is serialized by the thread that records it (into a
//! reused per-thread buffer); only stamping it (index and time) and copying
//! its line into a shared buffer happen under one short lock, so index order
//! is real-time order and the lines are already in order. A writer thread
//! swaps that buffer out and appends it to the file at least every
//! [`FLUSH_EVERY`], sooner when it fills, and whenever [`Recorder::flush`] is
//! called (at phase boundaries), so a harness killed mid-run leaves a readable
//! prefix. [`Recorder::finish`] writes the closing `end` event.
//!
//! Nothing per operation stays in memory: the file is the record. The shared
//! buffer is bounded ([`MAX_BUFFERED_BYTES`]): a disk slower than the
//! workload makes recording threads wait rather than memory grow.

use serde::Serialize;
use serde_json::Value;
use shakedown_history::redact::Redactor;
use shakedown_history::{
    Completion, EndEvent, EventKind, FaultEvent, FaultPhase, Header, Invoke, OpType, ProcessId, ServiceEvent, Skip,
};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a recorded event waits in memory before it reaches the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Buffered lines past which the writer is woken before its timer.
const WAKE_WRITER_BYTES: usize = 256 * 1024;
/// Buffered lines past which recording threads wait for the writer.
pub const MAX_BUFFERED_BYTES: usize = 8 * 1024 * 1024;
/// How long `flush` and `finish` wait for the writer before giving up.
const WRITER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Recorder {
    start: Instant,
    path: PathBuf,
    shared: Arc<Shared>,
    next_fault_id: AtomicU64,
    redactor: Arc<Redactor>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Completed operations, shared with progress displays.
    pub completed: Arc<AtomicU64>,
}

/// What recording threads and the writer share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: the buffer filled, a flush was asked for, or recording ended.
    wake_writer: Condvar,
    /// Wakes recording threads: the writer took the buffer, or finished a flush.
    drained: Condvar,
}

struct State {
    next_index: u64,
    last_time_ns: u64,
    /// Whole lines, in index order, not yet handed to the writer.
    buf: Vec<u8>,
    /// The writer has been woken for the current buffer.
    writer_woken: bool,
    /// Flushes asked for and done, as generations.
    flush_asked: u64,
    flush_done: u64,
    /// The end event is in: nothing more is recorded.
    closed: bool,
    /// The writer has written everything and stopped.
    writer_done: bool,
    /// The first write error; the file holds only what came before it.
    error: Option<String>,
    rules: Rules,
}

/// What the writer needs to assert the history's rules as events come in.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Invoke(ProcessId),
    Complete(ProcessId),
    FaultStart(u64),
    FaultEnd(u64),
    Other,
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
    // Gives back the rest of a long text's buffer now, not when the event is recorded.
    text.shrink_to_fit();
    text
}

thread_local! {
    /// Each recording thread serializes into its own buffer, reused.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl Recorder {
    /// Creates `path` (which must not exist) and starts streaming to it,
    /// beginning with the header. Secrets known to the process when it is
    /// created are masked in every event.
    pub fn create(path: &Path, header: Header, completed: Arc<AtomicU64>) -> std::io::Result<Recorder> {
        let mut file = crate::files::create_private(path)?;
        let mut line = serde_json::to_vec(&header)?;
        line.push(b'\n');
        file.write_all(&line)?;
        let state = State {
            next_index: 0,
            last_time_ns: 0,
            buf: Vec::with_capacity(WAKE_WRITER_BYTES),
            writer_woken: false,
            flush_asked: 0,
            flush_done: 0,
            closed: false,
            writer_done: false,
            error: None,
            rules: Rules::default(),
        };
        let shared =
            Arc::new(Shared { state: Mutex::new(state), wake_writer: Condvar::new(), drained: Condvar::new() });
        let for_writer = shared.clone();
        let writer = std::thread::Builder::new()
            .name("shakedown-history".into())
            .spawn(move || write_events(file, &for_writer, FLUSH_EVERY))?;
        Ok(Recorder {
            start: Instant::now(),
            path: path.to_path_buf(),
            shared,
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

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Masks secrets in `kind`, then records it.
    fn push(&self, mut kind: EventKind, shape: Shape) {
        kind.redact(&self.redactor);
        self.push_serialized(&kind, shape);
    }

    /// Serializes `kind` on this thread, then stamps it and appends its line in order.
    fn push_serialized(&self, kind: &impl Serialize, shape: Shape) {
        SCRATCH.with_borrow_mut(|body| {
            body.clear();
            serde_json::to_writer(&mut *body, kind).expect("history events serialize");
            assert_eq!(body.first(), Some(&b'{'), "an event kind is a JSON object");
            let time_ns = self.elapsed_ns();
            let mut st = self.lock();
            while st.buf.len() >= MAX_BUFFERED_BYTES && !st.writer_done {
                // The disk is behind: wait for the writer rather than grow.
                st = self.shared.drained.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.closed {
                // The run has ended: a straggler (a service exiting as it is killed) is not recorded.
                return;
            }
            // Stamped under the lock so times never go backwards between events.
            let time_ns = time_ns.max(st.last_time_ns);
            let index = st.next_index;
            st.next_index += 1;
            st.last_time_ns = time_ns;
            st.rules.admit(shape);
            let (mut i, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
            st.buf.extend_from_slice(b"{\"index\":");
            st.buf.extend_from_slice(i.format(index).as_bytes());
            st.buf.extend_from_slice(b",\"time_ns\":");
            st.buf.extend_from_slice(t.format(time_ns).as_bytes());
            st.buf.push(b',');
            st.buf.extend_from_slice(&body[1..]);
            st.buf.push(b'\n');
            if st.buf.len() >= WAKE_WRITER_BYTES && !st.writer_woken {
                st.writer_woken = true;
                self.shared.wake_writer.notify_one();
            }
        });
    }

    pub fn invoke(&self, process: ProcessId, actor: &str, f: &str, value: &Value) {
        if !self.redactor.is_empty() {
            let inv = Invoke { process, actor: actor.to_string(), f: f.to_string(), value: value.clone() };
            return self.push(EventKind::Invoke(inv), Shape::Invoke(process));
        }
        // The hot path: serialized from borrows, the same JSON as `EventKind::Invoke`.
        self.push_serialized(&Hot::Invoke { process, actor, f, value }, Shape::Invoke(process));
    }

    /// Completes the pending op of `process`, which invoked `f` as `actor`
    /// with `invoked`.
    pub fn complete(&self, process: ProcessId, actor: &str, f: &str, invoked: &Value, outcome: Outcome) {
        let error = outcome.error.map(|e| cap_text(e, MAX_ERROR_BYTES));
        if !self.redactor.is_empty() {
            let value = outcome.value.unwrap_or_else(|| invoked.clone());
            let (actor, f) = (actor.to_string(), f.to_string());
            let c = Completion { process, actor, f, value, error, unexpected: outcome.unexpected };
            self.push(EventKind::completion_of(outcome.op_type, c), Shape::Complete(process));
        } else {
            let value = outcome.value.as_ref().unwrap_or(invoked);
            let c = HotCompletion { process, actor, f, value, error: error.as_deref(), unexpected: outcome.unexpected };
            let hot = match outcome.op_type {
                OpType::Ok => Hot::Ok(c),
                OpType::Fail => Hot::Fail(c),
                OpType::Info => Hot::Info(c),
            };
            self.push_serialized(&hot, Shape::Complete(process));
        }
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
        self.lock().next_index
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits (bounded) until everything recorded so far is in the file: at
    /// phase boundaries, and before anything reads the file.
    pub fn flush(&self) {
        let mut st = self.lock();
        st.flush_asked += 1;
        let want = st.flush_asked;
        self.shared.wake_writer.notify_one();
        let deadline = Instant::now() + WRITER_TIMEOUT;
        while st.flush_done < want && !st.writer_done {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                tracing::warn!("the history writer did not flush within {WRITER_TIMEOUT:?}");
                return;
            };
            st = self.shared.drained.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Records the end event (`status`: completed, interrupted, failed or
    /// unsupported), closes the file and says what was written. Later events
    /// are dropped. A second call returns what the first wrote.
    pub fn finish(&self, status: &str, detail: Option<String>) -> Recorded {
        self.push(EventKind::End(EndEvent { status: status.to_string(), detail }), Shape::Other);
        self.close();
        let st = self.lock();
        Recorded { path: self.path.clone(), events: st.next_index, error: st.error.clone() }
    }

    /// Stops recording and waits for the writer to put everything in the file.
    fn close(&self) {
        self.lock().closed = true;
        self.shared.wake_writer.notify_one();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                self.lock().error.get_or_insert_with(|| "the history writer panicked".into());
            }
        }
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `finish` (a panic unwinding the run) still
    /// gets what it recorded into the file, without an end event.
    fn drop(&mut self) {
        self.close();
    }
}

/// Invocations and completions as borrows: serialized exactly as
/// [`EventKind`] serializes its owned events, without copying strings and
/// values first.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Hot<'a> {
    Invoke { process: ProcessId, actor: &'a str, f: &'a str, value: &'a Value },
    Ok(HotCompletion<'a>),
    Fail(HotCompletion<'a>),
    Info(HotCompletion<'a>),
}

#[derive(Serialize)]
struct HotCompletion<'a> {
    process: ProcessId,
    actor: &'a str,
    f: &'a str,
    value: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unexpected: bool,
}

/// The writer thread: takes the buffered lines whenever they pass
/// [`WAKE_WRITER_BYTES`], a flush is asked for, or `every` has passed, and
/// appends them to the file; ends once recording is closed and all is written.
fn write_events(mut file: File, shared: &Shared, every: Duration) {
    let mut spare: Vec<u8> = Vec::with_capacity(WAKE_WRITER_BYTES);
    loop {
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let timer = Instant::now() + every;
        loop {
            let asked = st.flush_asked > st.flush_done || st.closed || st.buf.len() >= WAKE_WRITER_BYTES;
            let Some(left) = timer.checked_duration_since(Instant::now()).filter(|_| !asked) else { break };
            st = shared.wake_writer.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        std::mem::swap(&mut st.buf, &mut spare);
        st.writer_woken = false;
        let (flush_asked, closed) = (st.flush_asked, st.closed);
        let failed = st.error.is_some();
        drop(st);
        shared.drained.notify_all();
        let written = if failed || spare.is_empty() { Ok(()) } else { file.write_all(&spare) };
        spare.clear();
        if spare.capacity() > 2 * WAKE_WRITER_BYTES {
            // A burst grew it; give the memory back.
            spare = Vec::with_capacity(WAKE_WRITER_BYTES);
        }
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = written {
            st.error.get_or_insert_with(|| format!("write the history: {e}"));
        }
        st.flush_done = flush_asked;
        let done = closed && st.buf.is_empty();
        st.writer_done = done;
        drop(st);
        shared.drained.notify_all();
        if done {
            return;
        }
    }
}

/// The structural rules, asserted as events are recorded (and checked again,
/// as errors, when the file is read): one pending op per process,
/// completions only of pending ops, matched fault windows. Indexes are dense
/// and times monotonic by construction.
#[derive(Default)]
struct Rules {
    pending: HashSet<ProcessId>,
    open_faults: BTreeSet<u64>,
}

impl Rules {
    fn admit(&mut self, shape: Shape) {
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
        r.invoke(ProcessId(0), "a", "add", &json!(1));
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
                        r.invoke(p, "a", "w", &json!(i));
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
    fn the_hot_path_writes_what_the_event_types_read() {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path());
        r.invoke(ProcessId(3), "al\"ice", "cas", &json!({"from": 1, "to": [2]}));
        r.complete(ProcessId(3), "al\"ice", "cas", &json!(null), Outcome { unexpected: true, ..Outcome::info("odd") });
        r.invoke(ProcessId(4), "bob", "read", &json!(null));
        r.complete(ProcessId(4), "bob", "read", &json!(null), Outcome::ok(Some(json!(7))));
        r.finish("completed", None);
        let h = shakedown_history::read_jsonl(&std::fs::read(r.path()).unwrap()[..]).unwrap();
        let ops = h.ops();
        assert_eq!((ops[0].actor.as_str(), &ops[0].invoke_value), ("al\"ice", &json!({"from": 1, "to": [2]})));
        let c = ops[0].completion.as_ref().unwrap();
        assert_eq!(
            (c.op_type, c.unexpected, c.error.as_deref(), &c.value),
            (OpType::Info, true, Some("odd"), &json!(null))
        );
        assert_eq!(ops[1].value(), &json!(7));
    }

    #[test]
    fn long_errors_are_capped_once() {
        let dir = tempfile::tempdir().unwrap();
        let r = recorder(dir.path());
        r.invoke(ProcessId(0), "a", "get", &json!(null));
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

    #[test]
    fn a_capped_text_gives_its_buffer_back() {
        let capped = cap_text("é".repeat(MAX_ERROR_BYTES), MAX_ERROR_BYTES);
        assert!(capped.ends_with(&format!(" [truncated: {} bytes in all]", 2 * MAX_ERROR_BYTES)), "{capped}");
        assert!(capped.capacity() < MAX_ERROR_BYTES + 64, "{} bytes still held", capped.capacity());
        let short = cap_text("short".to_string(), MAX_ERROR_BYTES);
        assert_eq!(short, "short");
    }
}
