//! Checks on logs: an ordered sequence of matching entries across services,
//! the spacing between matching entries (a poll floor or ceiling), and the
//! absence of a pattern (panics). A failure carries the recent entries of the
//! sources involved, for a person to read.

use crate::{Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::logs::{LogEntry, LogMatch, Logs};
use std::time::Duration;

/// How many recent entries per source a failure shows.
const RECENT_PER_SOURCE: usize = 10;
/// How many offending entries a failure lists.
const LIST_LIMIT: usize = 20;

/// The steps appear in this order (each after the previous one's entry).
pub struct LogSequenceCheck {
    pub steps: Vec<LogMatch>,
}

/// Consecutive matching entries are at least `min` and at most `max` apart.
pub struct LogSpacingCheck {
    pub matcher: LogMatch,
    pub min: Option<Duration>,
    pub max: Option<Duration>,
}

/// No entry matches.
pub struct LogAbsentCheck {
    pub matcher: LogMatch,
}

fn logs_or_unknown<'a>(kind: &str, input: &CheckInput<'a>) -> Result<&'a Logs, CheckResult> {
    input.logs.ok_or_else(|| CheckResult::new(kind, Verdict::Unknown, "no logs were captured", json!({})))
}

fn entry_json(e: &LogEntry) -> Value {
    json!({ "source": e.source, "time_ms": e.time_ns as f64 / 1e6, "line": e.line })
}

/// The recent entries of `sources` (all sources when none is named) up to `time_ns`.
fn recent(logs: &Logs, sources: &[&str], time_ns: u64) -> Value {
    let all: Vec<&str>;
    let sources = if sources.is_empty() {
        all = logs
            .entries()
            .iter()
            .map(|e| e.source.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        &all
    } else {
        sources
    };
    Value::Array(logs.recent(sources, time_ns, RECENT_PER_SOURCE).into_iter().map(entry_json).collect())
}

impl Check for LogSequenceCheck {
    fn kind(&self) -> &'static str {
        "log-sequence"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let logs = match logs_or_unknown(self.kind(), input) {
            Ok(l) => l,
            Err(r) => return r,
        };
        assert!(!self.steps.is_empty(), "a log sequence has steps");
        let mut found: Vec<Value> = Vec::new();
        let mut from = 0;
        let mut last_time = 0;
        for (i, step) in self.steps.iter().enumerate() {
            let Some((at, entry)) = logs.first_from(from, step) else {
                let mut sources: Vec<&str> = self.steps.iter().filter_map(|s| s.source.as_deref()).collect();
                sources.dedup();
                let after = if i == 0 { String::new() } else { format!(" after step {i}") };
                let summary = format!("step {} ({}) never appeared{after}", i + 1, step.describe());
                let end = logs.entries().last().map_or(0, |e| e.time_ns);
                let details = json!({ "found": found, "missing_step": i + 1, "missing": step.describe(), "recent": recent(logs, &sources, end) });
                return CheckResult::new(self.kind(), Verdict::Invalid, summary, details);
            };
            assert!(entry.time_ns >= last_time, "logs are kept in time order");
            found.push(entry_json(entry));
            (from, last_time) = (at + 1, entry.time_ns);
        }
        let summary = format!("all {} steps appeared in order", self.steps.len());
        CheckResult::new(self.kind(), Verdict::Valid, summary, json!({ "found": found }))
    }
}

impl Check for LogSpacingCheck {
    fn kind(&self) -> &'static str {
        "log-spacing"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let logs = match logs_or_unknown(self.kind(), input) {
            Ok(l) => l,
            Err(r) => return r,
        };
        let matched: Vec<&LogEntry> = logs.all(&self.matcher).collect();
        if matched.len() < 2 {
            let summary = format!("{} entries match {}; spacing needs two", matched.len(), self.matcher.describe());
            return CheckResult::new(self.kind(), Verdict::Unknown, summary, json!({ "matched": matched.len() }));
        }
        if logs.is_cut() {
            let summary = format!(
                "more entries match {} than are kept in memory ({} kept); their spacing cannot be judged",
                self.matcher.describe(),
                matched.len()
            );
            return CheckResult::new(self.kind(), Verdict::Unknown, summary, json!({ "matched": matched.len() }));
        }
        let too_close = |gap: Duration| self.min.is_some_and(|min| gap < min);
        let too_far = |gap: Duration| self.max.is_some_and(|max| gap > max);
        let mut bad = Vec::new();
        for pair in matched.windows(2) {
            let gap = Duration::from_nanos(pair[1].time_ns.saturating_sub(pair[0].time_ns));
            if too_close(gap) || too_far(gap) {
                bad.push(json!({ "gap_ms": gap.as_secs_f64() * 1e3, "from": entry_json(pair[0]), "to": entry_json(pair[1]) }));
            }
        }
        let bounds = format!("min {:?}, max {:?}", self.min, self.max);
        if bad.is_empty() {
            let summary =
                format!("{} entries matching {} spaced within {bounds}", matched.len(), self.matcher.describe());
            return CheckResult::new(self.kind(), Verdict::Valid, summary, json!({ "matched": matched.len() }));
        }
        let summary =
            format!("{} of {} gaps between {} outside {bounds}", bad.len(), matched.len() - 1, self.matcher.describe());
        let shown: Vec<Value> = bad.iter().take(LIST_LIMIT).cloned().collect();
        CheckResult::new(
            self.kind(),
            Verdict::Invalid,
            summary,
            json!({ "violations": shown, "n_violations": bad.len() }),
        )
    }
}

impl Check for LogAbsentCheck {
    fn kind(&self) -> &'static str {
        "log-absent"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let logs = match logs_or_unknown(self.kind(), input) {
            Ok(l) => l,
            Err(r) => return r,
        };
        let found: Vec<&LogEntry> = logs.all(&self.matcher).collect();
        let Some(first) = found.first() else {
            let summary = format!("no entry matches {} in {} entries", self.matcher.describe(), logs.total());
            return CheckResult::new(self.kind(), Verdict::Valid, summary, json!({ "entries": logs.total() }));
        };
        let more = if logs.is_cut() { " or more" } else { "" };
        let summary =
            format!("{}{more} entries match {}; the first: {}", found.len(), self.matcher.describe(), first.line);
        let sources: Vec<&str> = vec![first.source.as_str()];
        let details = json!({
            "matches": found.iter().take(LIST_LIMIT).map(|e| entry_json(e)).collect::<Vec<_>>(),
            "n_matches": found.len(),
            "recent": recent(logs, &sources, first.time_ns),
        });
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use shakedown_history::{Header, HistoryBuilder};
    use std::collections::BTreeMap;

    fn entry(t_ms: u64, source: &str, msg: &str) -> LogEntry {
        LogEntry {
            source: source.into(),
            time_ns: t_ms * 1_000_000,
            level: None,
            message: msg.into(),
            fields: BTreeMap::new(),
            line: msg.into(),
        }
    }

    fn matching(source: Option<&str>, re: &str) -> LogMatch {
        LogMatch { source: source.map(String::from), message: Some(Regex::new(re).unwrap()), ..LogMatch::default() }
    }

    fn run(check: &dyn Check, entries: Vec<LogEntry>) -> CheckResult {
        let history = HistoryBuilder::new(Header::new("t", 1)).finish();
        let logs = Logs::new(entries);
        check.check(&CheckInput::new(&history).with_logs(&logs))
    }

    /// Seed 004's failover: the client logs an error for the primary, then a success on the backup.
    fn failover() -> LogSequenceCheck {
        LogSequenceCheck {
            steps: vec![matching(Some("client"), "error.*primary"), matching(Some("client"), "success.*backup")],
        }
    }

    #[test]
    fn a_sequence_in_order_passes_and_out_of_order_fails_with_recent_entries() {
        let ok = run(
            &failover(),
            vec![
                entry(1, "client", "error from primary"),
                entry(2, "primary", "down"),
                entry(3, "client", "success on backup"),
            ],
        );
        assert_eq!(ok.verdict, Verdict::Valid, "{}", ok.summary);
        let bad =
            run(&failover(), vec![entry(1, "client", "success on backup"), entry(2, "client", "error from primary")]);
        assert_eq!(bad.verdict, Verdict::Invalid);
        assert_eq!(bad.summary, "step 2 (client: /success.*backup/) never appeared after step 1");
        assert_eq!(bad.details["recent"].as_array().unwrap().len(), 2, "{}", bad.details);
        let history = HistoryBuilder::new(Header::new("t", 1)).finish();
        assert_eq!(failover().check(&CheckInput::new(&history)).verdict, Verdict::Unknown, "no logs: unknown");
    }

    #[test]
    fn spacing_finds_gaps_below_the_floor_and_above_the_ceiling() {
        let polls = |times: &[u64]| times.iter().map(|&t| entry(t, "worker", "poll")).collect::<Vec<_>>();
        let floor = LogSpacingCheck {
            matcher: matching(Some("worker"), "poll"),
            min: Some(Duration::from_millis(100)),
            max: None,
        };
        assert_eq!(run(&floor, polls(&[0, 100, 250, 400])).verdict, Verdict::Valid);
        let bad = run(&floor, polls(&[0, 100, 130, 400]));
        assert_eq!(bad.verdict, Verdict::Invalid);
        assert_eq!(bad.details["n_violations"], 1);
        let ceiling = LogSpacingCheck { max: Some(Duration::from_millis(200)), min: None, ..floor };
        assert_eq!(run(&ceiling, polls(&[0, 100, 400])).verdict, Verdict::Invalid);
        assert_eq!(run(&ceiling, polls(&[0])).verdict, Verdict::Unknown, "one entry has no spacing");
    }

    #[test]
    fn absence_fails_on_the_first_match() {
        let no_panics = LogAbsentCheck { matcher: matching(None, "panicked") };
        assert_eq!(run(&no_panics, vec![entry(1, "kv", "listening")]).verdict, Verdict::Valid);
        let bad = run(&no_panics, vec![entry(1, "kv", "listening"), entry(2, "kv", "thread 'main' panicked at x.rs")]);
        assert_eq!(bad.verdict, Verdict::Invalid);
        assert!(
            bad.summary.starts_with("1 entries match /panicked/; the first: thread 'main' panicked"),
            "{}",
            bad.summary
        );
    }
}
