//! Captured output of services, drivers and builds: a timestamped file per
//! process and a bounded in-memory ring that readiness probes and reports read.
//!
//! The file is written as output arrives (flushed after every read from the
//! process), so a harness that dies leaves the output it saw on disk; the
//! ring holds at most [`RING_LINES`] lines and [`RING_BYTES`] bytes, so memory
//! does not grow with what a process prints. Secrets are masked before a
//! line reaches either. On disk a log holds at most [`max_file_bytes`]
//! (1 GiB unless raised, `shakedown run --max-log-bytes`): past it, lines
//! are counted, not written, and when the log closes its last lines (the
//! ring) follow a note saying how much was left out.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::Notify;

/// Lines kept in memory per log; older ones stay only in the file.
pub const RING_LINES: usize = 10_000;
/// Bytes of text kept in memory per log, whichever limit comes first.
pub const RING_BYTES: usize = 1024 * 1024;
/// The default cap on one log file's size.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

static MAX_FILE_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(DEFAULT_MAX_FILE_BYTES);

/// Sets the cap on each log file's size for logs created from now on.
pub fn set_max_file_bytes(bytes: u64) {
    MAX_FILE_BYTES.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// The cap on each log file's size.
pub fn max_file_bytes() -> u64 {
    MAX_FILE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Longest line kept; longer lines are cut so one runaway line cannot exhaust memory.
const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct LogLine {
    /// Sequence number across the log's whole life.
    pub seq: u64,
    pub elapsed_ms: u64,
    pub stream: &'static str,
    pub text: String,
}

/// One process's captured output.
pub struct LogSink {
    pub name: String,
    pub path: PathBuf,
    start: Instant,
    state: Mutex<SinkState>,
    redactor: std::sync::Arc<shakedown_history::redact::Redactor>,
    pub notify: Notify,
}

struct SinkState {
    file: Option<BufWriter<File>>,
    ring: VecDeque<LogLine>,
    ring_bytes: usize,
    next_seq: u64,
    /// Bytes written to the file so far, and the most it may hold.
    written: u64,
    max_bytes: u64,
    /// Past the cap: the first line left out of the file, and how much was.
    cut_from_seq: Option<u64>,
    left_out_bytes: u64,
}

impl LogSink {
    pub fn create(name: &str, path: &Path, start: Instant) -> std::io::Result<LogSink> {
        let file = crate::files::append_private(path)?;
        let state = SinkState {
            file: Some(BufWriter::with_capacity(64 * 1024, file)),
            ring: VecDeque::new(),
            ring_bytes: 0,
            next_seq: 0,
            written: 0,
            max_bytes: max_file_bytes(),
            cut_from_seq: None,
            left_out_bytes: 0,
        };
        Ok(LogSink {
            name: name.to_string(),
            path: path.to_path_buf(),
            start,
            state: Mutex::new(state),
            redactor: shakedown_history::redact::current(),
            notify: Notify::new(),
        })
    }

    /// Appends a line to the file (with time and stream) and to the ring, and
    /// flushes the file.
    pub fn push(&self, stream: &'static str, text: &str) {
        self.push_line(stream, text);
        self.flush();
    }

    /// Writes what is buffered to the file.
    pub fn flush(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = st.file.as_mut() {
            // A full disk must not stop the run; the ring still has the lines.
            let _ = f.flush();
        }
    }

    /// [`LogSink::push`] without the flush, for a batch of lines.
    fn push_line(&self, stream: &'static str, text: &str) {
        let mut text = self.redactor.redact(text.trim_end_matches(['\r', '\n']));
        if text.len() > MAX_LINE_BYTES {
            let mut cut = MAX_LINE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" [line cut]");
        }
        let elapsed_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let line = format_line(elapsed_ms, stream, &text);
        let seq = st.next_seq;
        st.write_capped(seq, &line);
        st.next_seq += 1;
        st.ring_bytes += text.len();
        st.ring.push_back(LogLine { seq, elapsed_ms, stream, text });
        while st.ring.len() > RING_LINES || (st.ring_bytes > RING_BYTES && st.ring.len() > 1) {
            let old = st.ring.pop_front().expect("the ring has more than one line");
            st.ring_bytes -= old.text.len();
        }
        drop(st);
        self.notify.notify_waiters();
    }

    /// Flushes the file and, for a log that reached its cap, writes a note of
    /// what was left out and then the last lines (those still in the ring).
    /// Later lines go to the ring only. Called when the run ends, and on drop.
    pub fn close(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.close();
    }

    /// The sequence number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).next_seq
    }

    /// Lines with `seq >= from` still in the ring.
    pub fn lines_from(&self, from: u64) -> Vec<LogLine> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.ring.iter().filter(|l| l.seq >= from).cloned().collect()
    }

    /// The last `n` lines, formatted as in the file.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let skip = st.ring.len().saturating_sub(n);
        st.ring
            .iter()
            .skip(skip)
            .map(|l| format!("{:>10.3} {} {}", l.elapsed_ms as f64 / 1000.0, l.stream, l.text))
            .collect()
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.state.get_mut().unwrap_or_else(|p| p.into_inner()).close();
    }
}

impl SinkState {
    /// Writes `line` (of sequence `seq`) unless the file is at its cap.
    fn write_capped(&mut self, seq: u64, line: &str) {
        let len = u64::try_from(line.len()).unwrap_or(u64::MAX);
        if self.cut_from_seq.is_none() && self.written.saturating_add(len) > self.max_bytes {
            self.cut_from_seq = Some(seq);
        }
        if self.cut_from_seq.is_some() {
            self.left_out_bytes = self.left_out_bytes.saturating_add(len);
            return;
        }
        if let Some(f) = self.file.as_mut() {
            // A full disk must not stop the run; the ring still has the line.
            let _ = f.write_all(line.as_bytes());
        }
        self.written += len;
    }

    fn close(&mut self) {
        let Some(mut f) = self.file.take() else { return };
        if let Some(from) = self.cut_from_seq {
            let tail: Vec<&LogLine> = self.ring.iter().filter(|l| l.seq >= from).collect();
            let tail_bytes: u64 = tail.iter().map(|l| u64::try_from(l.text.len()).unwrap_or(0)).sum();
            let note = format!(
                "[shakedown] this log reached its cap of {} bytes (--max-log-bytes): {} bytes of output were left \
                 out; its last {} lines follow",
                self.max_bytes,
                self.left_out_bytes.saturating_sub(tail_bytes),
                tail.len()
            );
            let elapsed_ms = tail.first().map_or(0, |l| l.elapsed_ms);
            let _ = f.write_all(format_line(elapsed_ms, "sys", &note).as_bytes());
            for l in tail {
                let _ = f.write_all(format_line(l.elapsed_ms, l.stream, &l.text).as_bytes());
            }
        }
        let _ = f.flush();
    }
}

/// A line as the file holds it: seconds since the run began, the stream, the text.
fn format_line(elapsed_ms: u64, stream: &str, text: &str) -> String {
    format!("{:>10.3} {stream} {text}\n", elapsed_ms as f64 / 1000.0)
}

/// Copies lines from `reader` into `sink` until EOF. A line longer than
/// `MAX_LINE_BYTES` is pushed in pieces, so memory stays bounded whatever the
/// process prints.
pub async fn pump(sink: std::sync::Arc<LogSink>, stream: &'static str, reader: impl AsyncRead + Unpin) {
    pump_keep(sink, stream, reader, 0).await;
}

/// [`pump`], also returning the first `keep_bytes` of the output (lines as pushed).
pub async fn pump_keep(
    sink: std::sync::Arc<LogSink>,
    stream: &'static str,
    reader: impl AsyncRead + Unpin,
    keep_bytes: usize,
) -> String {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line: Vec<u8> = Vec::new();
    let mut kept = String::new();
    let mut push = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        if kept.len() < keep_bytes {
            kept.push_str(&text);
        }
        sink.push_line(stream, &text);
    };
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        // Every whole line of the chunk, then one flush for all of them.
        let mut used = 0;
        while used < chunk.len() {
            let rest = &chunk[used..];
            let (take, ends_line) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (i + 1, true),
                None => (rest.len(), false),
            };
            let n = take.min(MAX_LINE_BYTES - line.len());
            line.extend_from_slice(&rest[..n]);
            used += n;
            if (ends_line && n == take) || line.len() == MAX_LINE_BYTES {
                push(&line);
                line.clear();
            }
        }
        reader.consume(used);
        sink.flush();
    }
    if !line.is_empty() {
        push(&line);
    }
    sink.flush();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn pump_splits_lines_and_bounds_long_ones() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(LogSink::create("t", &dir.path().join("t.log"), Instant::now()).unwrap());
        let mut input = b"one\ntwo\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE_BYTES + 10));
        input.extend(b"\nlast");
        pump(sink.clone(), "out", &input[..]).await;
        let lines: Vec<String> = sink.lines_from(0).into_iter().map(|l| l.text).collect();
        assert_eq!(&lines[..2], ["one", "two"]);
        assert_eq!(lines.last().unwrap(), "last");
        assert!(lines.len() >= 6, "the long line arrives in bounded pieces: {}", lines.len());
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE_BYTES));
        let xs: usize = lines.iter().map(|l| l.matches('x').count()).sum();
        assert_eq!(xs, 3 * MAX_LINE_BYTES + 10, "no byte is dropped");
        let file = std::fs::read_to_string(dir.path().join("t.log")).unwrap();
        assert!(file.contains(" out one\n") && file.contains(" out last\n"));
    }

    #[tokio::test]
    async fn a_log_past_its_cap_keeps_its_head_and_its_last_lines_and_says_what_it_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.log");
        let sink = Arc::new(LogSink::create("t", &path, Instant::now()).unwrap());
        sink.state.lock().unwrap().max_bytes = 10_000;
        let input: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        pump(sink.clone(), "out", input.as_bytes()).await;
        sink.close();
        let file = std::fs::read_to_string(&path).unwrap();
        // The cap, then at most the ring: its text and each line's time and stream.
        let bound = 10_000 + RING_BYTES + RING_LINES * 32 + 1024;
        assert!(file.len() < bound, "the file is bounded: {} bytes", file.len());
        assert!(file.contains(" out line 0\n"), "the head is kept");
        assert!(file.contains(" out line 49999\n"), "the last lines are kept");
        let note = file.lines().find(|l| l.contains("reached its cap")).expect("a note says what was cut");
        assert!(note.contains("cap of 10000 bytes") && note.contains("bytes of output were left out"), "{note}");
        let numbers: Vec<u32> = file.lines().filter_map(|l| l.split(" out line ").nth(1)?.parse().ok()).collect();
        assert!(!numbers.iter().any(|n| (1000..30_000).contains(n)), "the middle is left out");
    }

    #[tokio::test]
    async fn the_ring_is_bounded_by_bytes_and_the_file_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(LogSink::create("t", &dir.path().join("t.log"), Instant::now()).unwrap());
        let line = "y".repeat(60 * 1024) + "\n";
        let input = line.repeat(200);
        pump(sink.clone(), "out", input.as_bytes()).await;
        let ring: usize = sink.lines_from(0).iter().map(|l| l.text.len()).sum();
        assert!(ring <= RING_BYTES, "the ring holds {ring} bytes");
        assert!(sink.lines_from(0).len() >= 10, "the most recent lines are kept");
        assert_eq!(sink.next_seq(), 200);
        let file = std::fs::metadata(dir.path().join("t.log")).unwrap().len();
        assert!(file > 200 * 60 * 1024, "the file has every line: {file} bytes");
    }
}
