//! Logs as entries: each line a service or actor printed, parsed as JSON, logfmt
//! or a regex into a timestamp, level, message and fields, and the queries
//! steps and checks ask of them (first match, first after a time, all).
//!
//! Entries are kept on the history's clock (nanoseconds since the run began):
//! the entry's own timestamp when it has one and the run's start is known,
//! else the time the line was received.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The service or actor that printed it.
    pub source: String,
    /// Nanoseconds since the run began.
    pub time_ns: u64,
    /// Lowercase, when the line says (`level`, `lvl`, `severity`).
    pub level: Option<String>,
    pub message: String,
    /// Every other field, as text.
    pub fields: BTreeMap<String, String>,
    /// The line as printed.
    pub line: String,
}

/// How a source's lines are parsed.
#[derive(Debug, Clone)]
pub enum LogFormat {
    /// One JSON object per line; other lines become plain entries.
    Json,
    /// `key=value key2="quoted value"` pairs.
    Logfmt,
    /// Named groups become fields; `level`, `msg`/`message` and `ts`/`time`
    /// groups fill those parts. A line that does not match is a plain entry.
    Regex(Regex),
    /// The whole line is the message.
    Plain,
}

const MESSAGE_KEYS: &[&str] = &["msg", "message"];
const LEVEL_KEYS: &[&str] = &["level", "lvl", "severity"];
const TIME_KEYS: &[&str] = &["ts", "time", "timestamp"];

/// Parses one line. `received_ns` is when it arrived (the history's clock);
/// `run_start_unix_ns`, the wall time the run began, lets an RFC 3339
/// timestamp in the line take its place.
pub fn parse_line(
    format: &LogFormat,
    source: &str,
    line: &str,
    received_ns: u64,
    run_start_unix_ns: Option<u64>,
) -> LogEntry {
    let mut fields = match format {
        LogFormat::Json => json_fields(line),
        LogFormat::Logfmt => logfmt_fields(line),
        LogFormat::Regex(re) => regex_fields(re, line),
        LogFormat::Plain => None,
    }
    .unwrap_or_default();
    let take = |fields: &mut BTreeMap<String, String>, keys: &[&str]| keys.iter().find_map(|k| fields.remove(*k));
    let message = take(&mut fields, MESSAGE_KEYS).unwrap_or_else(|| {
        if fields.is_empty() {
            line.to_string()
        } else {
            String::new()
        }
    });
    let level = take(&mut fields, LEVEL_KEYS).map(|l| l.to_ascii_lowercase());
    let stamped =
        take(&mut fields, TIME_KEYS).and_then(|ts| Some((ts.clone(), entry_time_ns(&ts, run_start_unix_ns?)?)));
    let time_ns = match stamped {
        Some((_, ns)) => ns,
        None => received_ns,
    };
    LogEntry { source: source.to_string(), time_ns, level, message, fields, line: line.to_string() }
}

/// An RFC 3339 timestamp on the history's clock; before the run began counts as 0.
fn entry_time_ns(ts: &str, run_start_unix_ns: u64) -> Option<u64> {
    let at = humantime::parse_rfc3339_weak(ts.trim()).ok()?;
    let unix_ns = u64::try_from(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos()).ok()?;
    Some(unix_ns.saturating_sub(run_start_unix_ns))
}

fn json_fields(line: &str) -> Option<BTreeMap<String, String>> {
    let serde_json::Value::Object(map) = serde_json::from_str(line.trim()).ok()? else { return None };
    Some(
        map.into_iter()
            .map(|(k, v)| {
                let text = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text)
            })
            .collect(),
    )
}

/// logfmt: `key=value`, `key="quoted \"value\""`, bare `key` (true).
fn logfmt_fields(line: &str) -> Option<BTreeMap<String, String>> {
    let mut fields = BTreeMap::new();
    let mut chars = line.trim().chars().peekable();
    while chars.peek().is_some() {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != '=')).collect();
        if key.is_empty() {
            // A stray `=`: not logfmt.
            return chars.peek().is_none().then_some(fields);
        }
        let value = if chars.next_if_eq(&'=').is_some() {
            if chars.next_if_eq(&'"').is_some() {
                let mut v = String::new();
                loop {
                    match chars.next()? {
                        '\\' => v.push(chars.next()?),
                        '"' => break v,
                        c => v.push(c),
                    }
                }
            } else {
                std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect()
            }
        } else {
            "true".to_string()
        };
        fields.insert(key, value);
    }
    (!fields.is_empty()).then_some(fields)
}

fn regex_fields(re: &Regex, line: &str) -> Option<BTreeMap<String, String>> {
    let caps = re.captures(line)?;
    Some(
        re.capture_names()
            .flatten()
            .filter_map(|name| Some((name.to_string(), caps.name(name)?.as_str().to_string())))
            .collect(),
    )
}

/// Parses a log file as the runner writes it (`logs/NAME.log`: seconds since
/// the run began, the stream, the text), skipping shakedown's own `sys` notes.
/// Lines in another shape are kept as plain entries at the previous line's time.
pub fn parse_captured(text: &str, source: &str, format: &LogFormat, run_start_unix_ns: Option<u64>) -> Vec<LogEntry> {
    let mut parser = CapturedParser::default();
    text.lines().filter_map(|raw| parser.parse(raw, source, format, run_start_unix_ns)).collect()
}

/// Parses captured lines one at a time, carrying the last time forward.
#[derive(Debug, Default)]
struct CapturedParser {
    last_ns: u64,
}

impl CapturedParser {
    fn parse(
        &mut self,
        raw: &str,
        source: &str,
        format: &LogFormat,
        run_start_unix_ns: Option<u64>,
    ) -> Option<LogEntry> {
        let mut parts = raw.trim_start().splitn(3, ' ');
        let (secs, stream, rest) = (parts.next(), parts.next(), parts.next());
        let parsed = secs.and_then(|s| s.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
        let (received_ns, stream, line) = match (parsed, stream) {
            (Some(s), Some(stream)) => (seconds_to_ns(s), stream, rest.unwrap_or("")),
            _ => (self.last_ns, "out", raw),
        };
        self.last_ns = received_ns;
        (stream != "sys").then(|| parse_line(format, source, line, received_ns, run_start_unix_ns))
    }
}

/// Seconds as written in a captured log, as nanoseconds (saturating).
fn seconds_to_ns(s: f64) -> u64 {
    let ns = (s * 1e9).round();
    if ns >= u64::MAX as f64 {
        u64::MAX
    } else {
        ns as u64
    }
}

/// The longest captured line read; the runner never writes longer ones, and
/// a longer line in a hand-edited file is cut.
pub const MAX_CAPTURED_LINE_BYTES: usize = 128 * 1024;

/// What to keep of captured logs that may be far larger than memory.
#[derive(Debug, Clone, Copy)]
pub struct Keep<'a> {
    /// Entries matching any of these are kept (up to `max_matched`).
    pub matching: &'a [LogMatch],
    /// The last entries of each source, kept whatever they say, for context.
    pub tail_per_source: usize,
    /// The most matching entries kept in all; past it the logs say they were cut.
    pub max_matched: usize,
}

/// Reads one captured log file line by line, keeping only what `keep` asks
/// for: memory is bounded by `keep`, never by the file's size.
pub fn read_captured(
    input: impl std::io::BufRead,
    source: &str,
    format: &LogFormat,
    keep: Keep<'_>,
    logs: &mut Logs,
) -> std::io::Result<()> {
    use std::io::{BufRead, Read};
    let mut parser = CapturedParser::default();
    let mut tail: std::collections::VecDeque<LogEntry> = std::collections::VecDeque::new();
    let limit = u64::try_from(MAX_CAPTURED_LINE_BYTES).unwrap_or(u64::MAX);
    let mut input = input;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = (&mut input).take(limit).read_until(b'\n', &mut raw)?;
        if n == 0 {
            break;
        }
        if raw.last() != Some(&b'\n') && n as u64 == limit {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            while input.read_until(b'\n', &mut rest)? > 0 && rest.last() != Some(&b'\n') {
                rest.clear();
            }
        }
        let text = String::from_utf8_lossy(&raw);
        let Some(entry) = parser.parse(text.trim_end_matches(['\r', '\n']), source, format, None) else { continue };
        logs.total += 1;
        if keep.matching.iter().any(|m| m.matches(&entry)) {
            if logs.matched < keep.max_matched {
                logs.matched += 1;
                logs.entries.push(entry);
            } else {
                logs.cut = true;
            }
            continue;
        }
        if keep.tail_per_source > 0 {
            if tail.len() == keep.tail_per_source {
                tail.pop_front();
            }
            tail.push_back(entry);
        }
    }
    logs.entries.extend(tail);
    Ok(())
}

/// What a query or check looks for in an entry: all given parts must hold.
#[derive(Debug, Clone, Default)]
pub struct LogMatch {
    pub source: Option<String>,
    pub level: Option<String>,
    /// Searched in the message, or the whole line when the message is empty.
    pub message: Option<Regex>,
    /// Fields that must be present with exactly these values.
    pub fields: BTreeMap<String, String>,
}

impl LogMatch {
    pub fn matches(&self, e: &LogEntry) -> bool {
        self.source.as_ref().is_none_or(|s| *s == e.source)
            && self.level.as_ref().is_none_or(|l| e.level.as_deref() == Some(l.to_ascii_lowercase().as_str()))
            && self
                .message
                .as_ref()
                .is_none_or(|re| re.is_match(if e.message.is_empty() { &e.line } else { &e.message }))
            && self.fields.iter().all(|(k, v)| e.fields.get(k) == Some(v))
    }

    /// A short description for verdicts, e.g. `primary: /saved/ level=info`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.source.as_ref().map(|s| format!("{s}:")));
        parts.extend(self.message.as_ref().map(|re| format!("/{}/", re.as_str())));
        parts.extend(self.level.as_ref().map(|l| format!("level={l}")));
        parts.extend(self.fields.iter().map(|(k, v)| format!("{k}={v}")));
        if parts.is_empty() {
            "any entry".to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// The queries on a run's entries, which are kept in time order.
///
/// Read with [`read_captured`], a run's logs hold only the entries some
/// check looks for and the last lines of each source; [`Logs::total`] counts
/// every entry read.
#[derive(Debug, Clone, Default)]
pub struct Logs {
    entries: Vec<LogEntry>,
    total: usize,
    matched: usize,
    cut: bool,
}

impl Logs {
    /// Sorts by time (stable: lines of one source keep their order).
    pub fn new(mut entries: Vec<LogEntry>) -> Logs {
        entries.sort_by_key(|e| e.time_ns);
        Logs { total: entries.len(), entries, matched: 0, cut: false }
    }

    /// Puts entries read by [`read_captured`] in time order.
    pub fn sorted(mut self) -> Logs {
        self.entries.sort_by_key(|e| e.time_ns);
        self
    }

    /// Every entry read, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Whether matching entries past the cap were left out.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    pub fn entries(&self) -> &[LogEntry] {
        &self.entries
    }

    pub fn first(&self, m: &LogMatch) -> Option<&LogEntry> {
        self.entries.iter().find(|e| m.matches(e))
    }

    /// The first matching entry strictly after `time_ns`.
    pub fn first_after(&self, time_ns: u64, m: &LogMatch) -> Option<&LogEntry> {
        let start = self.entries.partition_point(|e| e.time_ns <= time_ns);
        self.entries[start..].iter().find(|e| m.matches(e))
    }

    /// The first matching entry at position `from` or later, with its position.
    pub fn first_from(&self, from: usize, m: &LogMatch) -> Option<(usize, &LogEntry)> {
        self.entries.iter().enumerate().skip(from).find(|(_, e)| m.matches(e))
    }

    pub fn all<'a>(&'a self, m: &'a LogMatch) -> impl Iterator<Item = &'a LogEntry> + 'a {
        self.entries.iter().filter(move |e| m.matches(e))
    }

    /// The last `n` entries of each of `sources` at or before `time_ns`, in
    /// time order: what a person reads when a log check fails.
    pub fn recent(&self, sources: &[&str], time_ns: u64, n: usize) -> Vec<&LogEntry> {
        let end = self.entries.partition_point(|e| e.time_ns <= time_ns);
        let mut out: Vec<&LogEntry> = Vec::new();
        for source in sources {
            let mine: Vec<&LogEntry> = self.entries[..end].iter().filter(|e| e.source == *source).collect();
            out.extend(&mine[mine.len().saturating_sub(n)..]);
        }
        out.sort_by_key(|e| e.time_ns);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_795_000_000_000_000_000;

    fn entry(format: &LogFormat, line: &str) -> LogEntry {
        parse_line(format, "svc", line, 42, Some(START))
    }

    #[test]
    fn json_lines_fill_level_message_time_and_fields() {
        let e = entry(
            &LogFormat::Json,
            r#"{"ts":"2026-11-18T21:46:41.000Z","level":"WARN","msg":"saved","id":7,"ok":true}"#,
        );
        assert_eq!(e.level.as_deref(), Some("warn"));
        assert_eq!(e.message, "saved");
        assert_eq!(e.fields.get("id").map(String::as_str), Some("7"));
        assert_eq!(e.fields.get("ok").map(String::as_str), Some("true"));
        let ts = humantime::parse_rfc3339("2026-11-18T21:46:41.000Z").unwrap();
        let unix = ts.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert_eq!(e.time_ns, unix - START);
        let plain = entry(&LogFormat::Json, "not json {");
        assert_eq!((plain.message.as_str(), plain.time_ns), ("not json {", 42), "a non-JSON line stays a plain entry");
        let no_start = parse_line(&LogFormat::Json, "svc", r#"{"ts":"2026-11-18T21:46:41Z","msg":"m"}"#, 42, None);
        assert_eq!(no_start.time_ns, 42, "without the run's start, the receive time");
    }

    #[test]
    fn logfmt_handles_quotes_escapes_and_bare_keys() {
        let e = entry(&LogFormat::Logfmt, r#"level=info msg="lock \"a\" taken" holder=bob dry"#);
        assert_eq!(e.message, r#"lock "a" taken"#);
        assert_eq!(e.level.as_deref(), Some("info"));
        assert_eq!(e.fields.get("holder").map(String::as_str), Some("bob"));
        assert_eq!(e.fields.get("dry").map(String::as_str), Some("true"));
        for broken in [r#"msg="unterminated"#, "= oops", ""] {
            let e = entry(&LogFormat::Logfmt, broken);
            assert!(e.fields.is_empty() && e.message == broken, "{broken:?} is a plain entry: {e:?}");
        }
    }

    #[test]
    fn regex_groups_become_fields() {
        let re = Regex::new(r"^(?P<level>[A-Z]+) (?P<msg>.*) in (?P<ms>\d+)ms$").unwrap();
        let e = entry(&LogFormat::Regex(re.clone()), "ERROR request failed in 31ms");
        assert_eq!((e.level.as_deref(), e.message.as_str()), (Some("error"), "request failed"));
        assert_eq!(e.fields.get("ms").map(String::as_str), Some("31"));
        assert_eq!(entry(&LogFormat::Regex(re), "something else").message, "something else");
    }

    #[test]
    fn captured_files_parse_line_by_line_without_shakedowns_notes() {
        let text = "     0.007 out {\"level\":\"info\",\"msg\":\"listening\"}\n     0.010 sys [shakedown] started\n     1.500 err boom\ncontinued\n";
        let entries = parse_captured(text, "kv", &LogFormat::Json, None);
        let got: Vec<(u64, &str)> = entries.iter().map(|e| (e.time_ns, e.message.as_str())).collect();
        assert_eq!(got, [(7_000_000, "listening"), (1_500_000_000, "boom"), (1_500_000_000, "continued")]);
        assert!(entries.iter().all(|e| e.source == "kv"));
    }

    #[test]
    fn reading_a_huge_log_keeps_only_matches_and_tails() {
        let mut text = String::new();
        for i in 0..50_000 {
            text.push_str(&format!("{:>10.3} out line {i}\n", i as f64 / 1000.0));
        }
        text.push_str("     0.001 sys [shakedown] note\n");
        let wanted = [LogMatch { message: Some(Regex::new("^line 4[0-9]$").unwrap()), ..LogMatch::default() }];
        let keep = Keep { matching: &wanted, tail_per_source: 3, max_matched: 5 };
        let mut logs = Logs::default();
        read_captured(text.as_bytes(), "kv", &LogFormat::Plain, keep, &mut logs).unwrap();
        let logs = logs.sorted();
        let lines: Vec<&str> = logs.entries().iter().map(|e| e.line.as_str()).collect();
        assert_eq!(
            lines,
            ["line 40", "line 41", "line 42", "line 43", "line 44", "line 49997", "line 49998", "line 49999"]
        );
        assert_eq!(logs.total(), 50_000);
        assert!(logs.is_cut(), "ten lines matched and five were kept");
    }

    #[test]
    fn queries_find_first_first_after_and_all() {
        let at = |t: u64, source: &str, msg: &str| LogEntry {
            source: source.into(),
            time_ns: t,
            level: Some("info".into()),
            message: msg.into(),
            fields: BTreeMap::new(),
            line: msg.into(),
        };
        let logs =
            Logs::new(vec![at(30, "b", "saved"), at(10, "a", "saved"), at(20, "a", "error"), at(40, "a", "saved")]);
        let saved = LogMatch { message: Some(Regex::new("saved").unwrap()), ..LogMatch::default() };
        assert_eq!(logs.first(&saved).unwrap().time_ns, 10);
        assert_eq!(logs.first_after(10, &saved).unwrap().time_ns, 30);
        assert!(logs.first_after(40, &saved).is_none());
        let a_saved = LogMatch { source: Some("a".into()), ..saved.clone() };
        assert_eq!(logs.all(&a_saved).map(|e| e.time_ns).collect::<Vec<_>>(), [10, 40]);
        assert_eq!(logs.recent(&["a"], 35, 1).iter().map(|e| e.time_ns).collect::<Vec<_>>(), [20]);
        assert_eq!(a_saved.describe(), "a: /saved/");
    }
}
