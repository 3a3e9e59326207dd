//! Versioned JSON Lines: one header line, then one event per line.

use crate::event::{Event, Header, FORMAT_NAME, FORMAT_VERSION};
use crate::ops::{History, WellFormedError};
use std::io::{BufRead, Write};

/// Why a history could not be read; names the line where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("read history: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: the history is empty (expected a header line)")]
    Empty { line: usize },
    #[error("line {line}: invalid header: {message}")]
    Header { line: usize, message: String },
    #[error("line {line}: unsupported history format {format:?} version {version} (this build reads {FORMAT_NAME:?} version {FORMAT_VERSION})")]
    Version { line: usize, format: String, version: u32 },
    #[error("line {line}: invalid event: {message}")]
    Event { line: usize, message: String },
    #[error("line {line}: {source}")]
    WellFormed { line: usize, source: WellFormedError },
}

/// Writes the header line.
pub fn write_header(out: &mut impl Write, header: &Header) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, header)?;
    out.write_all(b"\n")
}

/// Writes one event line.
pub fn write_event(out: &mut impl Write, event: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")
}

/// Writes a whole history.
pub fn write_jsonl(out: &mut impl Write, history: &History) -> std::io::Result<()> {
    write_header(out, &history.header)?;
    history.events.iter().try_for_each(|e| write_event(out, e))
}

/// Reads and validates a whole history. Blank lines are ignored.
pub fn read_jsonl(input: impl BufRead) -> Result<History, DecodeError> {
    read_lines(input, false).map(|r| r.history)
}

/// A history as a run left it on disk, possibly cut short.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub history: History,
    /// The last line was cut mid-write (no newline, not JSON) and was left
    /// out: the harness died while writing it.
    pub cut_line: Option<usize>,
}

/// Reads a history a run recorded, which may be a prefix: a harness that
/// died leaves no end event and perhaps half a last line, which is left out
/// (said in [`Recorded::cut_line`]). Every complete line must be valid.
pub fn read_recorded(input: impl BufRead) -> Result<Recorded, DecodeError> {
    read_lines(input, true)
}

fn read_lines(mut input: impl BufRead, allow_cut: bool) -> Result<Recorded, DecodeError> {
    let mut header: Option<Header> = None;
    let mut events = Vec::new();
    let mut line_numbers = Vec::new();
    let mut raw = Vec::new();
    let mut cut_line = None;
    for line_no in 1.. {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        let complete = raw.last() == Some(&b'\n');
        let text = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let line = match std::str::from_utf8(text) {
            Ok(line) => line,
            Err(_) if allow_cut && !complete => {
                cut_line = Some(line_no);
                break;
            }
            Err(e) => {
                let message = format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1);
                return Err(DecodeError::Event { line: line_no, message });
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if header.is_none() {
            header = Some(parse_header(line_no, line)?);
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(event) => {
                events.push(event);
                line_numbers.push(line_no);
            }
            Err(_) if allow_cut && !complete => {
                cut_line = Some(line_no);
                break;
            }
            Err(e) => return Err(DecodeError::Event { line: line_no, message: e.to_string() }),
        }
    }
    let header = header.ok_or(DecodeError::Empty { line: 1 })?;
    let history = History { header, events };
    history.validate().map_err(|source| {
        let at = line_numbers.get(source.event_index() as usize).copied();
        DecodeError::WellFormed { line: at.unwrap_or(0), source }
    })?;
    Ok(Recorded { history, cut_line })
}

fn parse_header(line_no: usize, line: &str) -> Result<Header, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| DecodeError::Header { line: line_no, message: e.to_string() })?;
    let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("").to_string();
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    if format != FORMAT_NAME || version != FORMAT_VERSION {
        return Err(DecodeError::Version { line: line_no, format, version });
    }
    serde_json::from_value(value).map_err(|e| DecodeError::Header { line: line_no, message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HistoryBuilder, OpType, ProcessId};
    use serde_json::json;

    fn sample() -> History {
        let mut b = HistoryBuilder::new(Header::new("t", 3));
        b.invoke(1, ProcessId(0), "alice", "add", json!(1));
        b.invoke(2, ProcessId(1), "bob", "read", json!(null));
        b.complete(3, ProcessId(0), OpType::Ok, json!(1), None);
        b.complete(4, ProcessId(1), OpType::Info, json!(null), Some("timeout".into()));
        b.finish()
    }

    #[test]
    fn round_trips() {
        let h = sample();
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &h).unwrap();
        let back = read_jsonl(&buf[..]).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.ops().len(), 2);
        assert_eq!(back.ops()[1].op_type(), OpType::Info);
    }

    fn decode(text: &str) -> Result<History, DecodeError> {
        read_jsonl(text.as_bytes())
    }

    const HEADER: &str = r#"{"format":"shakedown-history","version":1,"scenario":"t","seed":1}"#;

    #[test]
    fn rejects_bad_input_naming_the_line() {
        let cases = [
            ("", "empty"),
            ("not json", "line 1: invalid header"),
            (r#"{"format":"shakedown-history","version":9,"scenario":"t","seed":1}"#, "version 9"),
            (&format!("{HEADER}\n{{\"index\":0}}"), "line 2: invalid event"),
            (
                &format!(
                    "{HEADER}\n{}",
                    r#"{"index":0,"time_ns":1,"type":"ok","process":0,"actor":"a","f":"add","value":1}"#
                ),
                "line 2: event 0: completion for process 0 has no pending invocation",
            ),
            (
                &format!(
                    "{HEADER}\n{}\n{}",
                    r#"{"index":0,"time_ns":5,"type":"invoke","process":0,"actor":"a","f":"add","value":1}"#,
                    r#"{"index":1,"time_ns":4,"type":"ok","process":0,"actor":"a","f":"add","value":1}"#
                ),
                "line 3: event 1: time 4 ns goes backwards",
            ),
            (
                &format!(
                    "{HEADER}\n{}\n{}\n{}",
                    r#"{"index":0,"time_ns":1,"type":"invoke","process":0,"actor":"a","f":"add","value":1}"#,
                    r#"{"index":1,"time_ns":2,"type":"info","process":0,"actor":"a","f":"add","value":1}"#,
                    r#"{"index":2,"time_ns":3,"type":"invoke","process":0,"actor":"a","f":"add","value":2}"#
                ),
                "retired",
            ),
        ];
        for (text, want) in cases {
            let err = decode(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn a_cut_last_line_is_left_out_only_when_reading_a_recording() {
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &sample()).unwrap();
        let whole = buf.len();
        buf.extend_from_slice(br#"{"index":4,"time_ns":9,"type":"inv"#);
        let r = read_recorded(&buf[..]).unwrap();
        assert_eq!((r.history.events.len(), r.cut_line), (4, Some(6)));
        assert!(r.history.end().is_none(), "a cut recording has no end event");
        assert!(read_jsonl(&buf[..]).unwrap_err().to_string().contains("line 6"));
        // A complete but broken line is an error even in a recording.
        buf.truncate(whole);
        buf.extend_from_slice(b"{\"index\":4}\n");
        assert!(read_recorded(&buf[..]).unwrap_err().to_string().contains("line 6: invalid event"));
        // Invalid UTF-8 names its line.
        buf.truncate(whole);
        buf.extend_from_slice(b"\xff\xfe\n");
        assert!(read_recorded(&buf[..]).unwrap_err().to_string().contains("line 6: invalid event: invalid UTF-8"));
    }

    #[test]
    fn nothing_may_follow_the_end_event() {
        let mut h = sample();
        let end = crate::EndEvent { status: "completed".into(), detail: None };
        h.events.push(crate::Event { index: 4, time_ns: 5, kind: crate::EventKind::End(end) });
        let mut buf = Vec::new();
        write_jsonl(&mut buf, &h).unwrap();
        let back = read_jsonl(&buf[..]).unwrap();
        assert_eq!(back.end().map(|e| e.status.as_str()), Some("completed"));
        buf.extend_from_slice(br#"{"index":5,"time_ns":6,"type":"service","service":"s","event":"x","expected":true}"#);
        buf.push(b'\n');
        assert!(read_jsonl(&buf[..]).unwrap_err().to_string().contains("after the run's end"));
    }

    #[test]
    #[should_panic(expected = "completes with nothing pending")]
    fn builder_asserts_pairing() {
        let mut b = HistoryBuilder::new(Header::new("t", 3));
        b.complete(1, ProcessId(0), OpType::Ok, json!(1), None);
    }
}
