//! JSON-lines logger for testbed services: one object per line, flushed per line.
//!
//! The testbed's stdout *is* the service log a scenario watches (it waits for
//! `"msg":"listening"` with a regex), so this writes its own compact lines
//! instead of going through a `tracing` subscriber. Tests use the in-memory sink
//! to keep the test output clean and to assert on what was logged.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Where log lines go: the process's stdout, or a shared buffer for tests.
#[derive(Clone, Debug, Default)]
pub enum Logger {
    /// Write each line to stdout and flush it.
    #[default]
    Stdout,
    /// Keep lines in memory; read them back with [`Logger::lines`].
    Memory(Arc<Mutex<Vec<String>>>),
}

impl Logger {
    /// A logger that keeps its lines in memory.
    pub fn memory() -> Logger {
        Logger::Memory(Arc::default())
    }

    /// The lines logged so far (always empty for [`Logger::Stdout`]).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Logger::Stdout => Vec::new(),
            Logger::Memory(lines) => lock(lines).clone(),
        }
    }

    /// Log `msg` at info level with extra fields.
    pub fn info(&self, msg: &str, fields: &[(&str, Value)]) {
        self.emit("info", msg, fields);
    }

    /// Log `msg` at warn level with extra fields.
    pub fn warn(&self, msg: &str, fields: &[(&str, Value)]) {
        self.emit("warn", msg, fields);
    }

    /// Log `msg` at error level with extra fields.
    pub fn error(&self, msg: &str, fields: &[(&str, Value)]) {
        self.emit("error", msg, fields);
    }

    fn emit(&self, level: &str, msg: &str, fields: &[(&str, Value)]) {
        let line = render(&now_rfc3339(), level, msg, fields);
        match self {
            // A closed stdout must not take the service down: logging is best effort.
            Logger::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}").and_then(|()| out.flush());
            }
            Logger::Memory(lines) => lock(lines).push(line),
        }
    }
}

fn lock(lines: &Mutex<Vec<String>>) -> std::sync::MutexGuard<'_, Vec<String>> {
    // A panic while holding this lock cannot leave the Vec half-updated.
    lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One log line: `ts`, `level`, `msg`, then the fields in the order given.
///
/// Built by hand because `serde_json::Map` sorts its keys, and a fixed
/// `ts, level, msg` prefix keeps the lines easy to scan.
fn render(ts: &str, level: &str, msg: &str, fields: &[(&str, Value)]) -> String {
    let mut line =
        format!("{{\"ts\":{},\"level\":{},\"msg\":{}", Value::from(ts), Value::from(level), Value::from(msg));
    for (key, value) in fields {
        line.push_str(&format!(",{}:{value}", Value::from(*key)));
    }
    line.push('}');
    line
}

fn now_rfc3339() -> String {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    rfc3339_from_unix_ms(u64::try_from(unix_ms).unwrap_or(u64::MAX))
}

/// Formats a Unix timestamp in milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339_from_unix_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60,
        unix_ms % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (1_700_000_000_000, "2023-11-14T22:13:20.000Z"),
            (4_107_542_399_999, "2100-02-28T23:59:59.999Z"),
        ];
        for (unix_ms, expected) in cases {
            assert_eq!(rfc3339_from_unix_ms(unix_ms), expected, "{unix_ms}");
        }
    }

    #[test]
    fn renders_one_json_object_in_field_order() {
        let line = render("T", "info", "listening", &[("addr", Value::from("127.0.0.1:1"))]);
        assert_eq!(line, r#"{"ts":"T","level":"info","msg":"listening","addr":"127.0.0.1:1"}"#);
    }

    #[test]
    fn memory_logger_keeps_lines() {
        let log = Logger::memory();
        log.warn("torn line", &[("bytes", Value::from(3))]);
        let lines = log.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains(r#""level":"warn","msg":"torn line","bytes":3"#));
    }
}
