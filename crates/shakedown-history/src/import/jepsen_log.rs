//! Jepsen `jepsen.util` log lines: `INFO  jepsen.util - PROCESS\t:TYPE\t:F\tVALUE`.
//!
//! Lines without `jepsen.util - ` are other log output and are ignored, as are
//! `jepsen.util` lines whose second field is not a keyword (messages, not ops).
//! A line that has the op shape but a bad field is an error. Nemesis lines are skipped.

use super::edn::{self, Edn};
use super::{op_type, ImportError, Record};

const MARKER: &str = "jepsen.util - ";

pub(crate) fn parse(text: &str) -> Result<Vec<Record>, ImportError> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(r) = parse_line(i + 1, line)? {
            records.push(r);
        }
    }
    Ok(records)
}

/// The record on one line, `None` when the line is not a client op line.
fn parse_line(line_no: usize, line: &str) -> Result<Option<Record>, ImportError> {
    let Some(at) = line.find(MARKER) else { return Ok(None) };
    let rest = &line[at + MARKER.len()..];
    let (process, rest) = split_field(rest);
    let (type_field, rest) = split_field(rest);
    // A message such as "jepsen.util - Waiting :a while" is not an op: an op line
    // has a keyword second field and an integer process or a known op type.
    let integer_process = process.strip_prefix('-').unwrap_or(process).bytes().all(|b| b.is_ascii_digit());
    let known_type = type_field.strip_prefix(':').and_then(op_type).is_some();
    if !type_field.starts_with(':') || !(integer_process && !process.is_empty() || known_type) {
        return Ok(None);
    }
    if process == "nemesis" || process == ":nemesis" {
        return Ok(None);
    }
    let err = |message: String| ImportError::new(line_no, message);
    let process: u64 =
        process.parse().map_err(|_| err(format!("expected a non-negative integer process, found {process:?}")))?;
    let completion = op_type(&type_field[1..])
        .ok_or_else(|| err(format!("expected op type :invoke, :ok, :fail or :info, found {type_field}")))?;
    let (f_field, value_text) = split_field(rest);
    let f = f_field
        .strip_prefix(':')
        .filter(|f| !f.is_empty())
        .ok_or_else(|| err(format!("expected a keyword f such as :read, found {f_field:?}")))?;
    if value_text.trim().is_empty() {
        return Err(err("expected a value after the f (nil when there is none)".to_string()));
    }
    let value = edn::parse_one(value_text).map_err(|e| err(format!("invalid value: {}", e.message)))?;
    let (value, error) = value_and_error(completion.is_some_and(|t| t != super::OpType::Ok), value);
    Ok(Some(Record { line: line_no, process, completion, f: f.to_string(), value, error, time_ns: None }))
}

/// Splits off the first whitespace-separated field.
fn split_field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(end) => (&s[..end], &s[end..]),
        None => (s, ""),
    }
}

/// The value and error of a source op: nil is no value, and a keyword on a
/// fail or info completion (`:timed-out`) is the error rather than the value.
pub(crate) fn value_and_error(failed: bool, value: Edn) -> (Option<serde_json::Value>, Option<String>) {
    match value {
        Edn::Nil => (None, None),
        Edn::Keyword(k) if failed => (None, Some(k)),
        v => (Some(v.to_json()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format};
    use crate::{OpType, ProcessId};
    use serde_json::json;

    const SAMPLE: &str = "\
2016-01-01 INFO  jepsen.core - Running test
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:invoke\t:write\t4
INFO  jepsen.util - nemesis\t:info\t:start\tnil
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.util - 1  :info  :write  :timed-out
INFO  jepsen.util - 1\t:invoke\t:cas\t[4 0]
INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:fail\t:cas\t[4 0]
INFO  jepsen.util - Some message without an op
INFO  jepsen.util - Waiting :a while
";

    #[test]
    fn imports_ops_and_retires_info_processes() {
        let h = import(SAMPLE, Format::JepsenLog, "t").unwrap();
        h.validate().unwrap();
        assert_eq!(h.header.meta["imported_from"], json!("jepsen-log"));
        let ops = h.ops();
        assert_eq!(ops.len(), 4);
        assert_eq!((ops[0].f.as_str(), ops[0].value()), ("read", &json!(null)));
        assert_eq!(ops[1].op_type(), OpType::Info);
        assert_eq!(ops[1].value(), &json!(4));
        assert_eq!(ops[1].completion.as_ref().unwrap().error.as_deref(), Some("timed-out"));
        // Process 1 ended info, so its next op runs as a fresh id above every id in the file.
        assert_eq!((ops[2].process, ops[2].actor.as_str()), (ProcessId(2), "1"));
        assert_eq!((ops[2].op_type(), ops[2].value()), (OpType::Fail, &json!([4, 0])));
        assert!(ops[3].completion.is_none(), "pending at the end stays pending");
        assert_eq!(ops[0].invoke_time_ns, 2000);
    }

    #[test]
    fn rejects_malformed_op_lines_naming_the_line() {
        let cases = [
            ("INFO  jepsen.util - 0\t:invoke\t:read\t[1", "line 1: invalid value: expected ']'"),
            ("\nINFO  jepsen.util - 0\t:begin\t:read\tnil", "line 2: expected op type"),
            ("INFO  jepsen.util - 0\t:ok\t:read\tnil", "line 1: completion for process 0 has no pending"),
            ("INFO  jepsen.util - x\t:invoke\t:read\tnil", "line 1: expected a non-negative integer process"),
            ("INFO  jepsen.util - -1\t:invoke\t:read\tnil", "line 1: expected a non-negative integer process"),
            ("INFO  jepsen.util - 0\t:invoke\tread\tnil", "line 1: expected a keyword f"),
            ("INFO  jepsen.util - 0\t:invoke\t:read", "line 1: expected a value"),
            (
                "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:invoke\t:read\tnil",
                "line 2: expected process 0 to complete its op from line 1",
            ),
            (
                "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:write\t1",
                "line 2: expected completion f \"read\"",
            ),
        ];
        for (text, want) in cases {
            let err = import(text, Format::JepsenLog, "t").expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }
}
