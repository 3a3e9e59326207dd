//! The terminal summary: what a person reads on stderr when a run ends.

use crate::json_text::json_lines;
use crate::{FaultRecord, OpCounts, Report, ServiceRecord};
use shakedown_check::stats::{describe_results, RESULTS};
use shakedown_check::{CheckResult, Verdict};
use shakedown_history::metrics::Metrics;
use std::collections::BTreeMap;

/// How to render: colors only on a terminal that wants them (`NO_COLOR` is the caller's business).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

/// How many lines of a check's details the terminal shows; report.json has all.
const DETAIL_LINES: usize = 40;
/// How many unexpected events of one service the terminal lists.
const CRASH_LINES: usize = 5;

/// The summary of a run, ending with the line that replays it. On a run that
/// is not valid it also shows each invalid check's details and the tail of
/// every service log, so the counterexample is on screen without opening files.
pub fn render_summary(report: &Report, style: Style) -> String {
    let mut out = vec![header(report, style)];
    out.extend(op_lines(&report.ops));
    out.push(fault_line(&report.faults, report.ok_ops_during_faults));
    out.extend(metrics_line(&report.metrics));
    out.extend(report.services.iter().flat_map(|s| crash_lines(s, style)));
    out.extend(check_lines(&report.checks, style));
    out.extend(
        report.errors.iter().map(|e| format!("  {} harness error: {}", style.paint(Verdict::Unknown, "!"), clean(e))),
    );
    if report.verdict != Verdict::Valid {
        for check in report.checks.iter().filter(|c| c.verdict == Verdict::Invalid) {
            out.extend(detail_lines(check, style));
        }
        for service in &report.services {
            out.extend(log_lines(service));
        }
        out.push(String::new());
    }
    out.push(replay_line(report));
    out.join("\n") + "\n"
}

/// `shakedown <scenario>  seed <seed>  <VERDICT>  in <duration>`.
fn header(report: &Report, style: Style) -> String {
    let cell = report.matrix_cell();
    let cell = if cell.is_empty() { String::new() } else { format!("  [{cell}]") };
    let verdict = style.paint(report.verdict, &report.verdict.as_str().to_uppercase());
    let duration = human_duration(report.duration_ms);
    format!("shakedown {}{cell}  seed {}  {verdict}  in {duration}", clean(&report.scenario), report.seed)
}

fn op_lines(ops: &OpCounts) -> Vec<String> {
    let mut lines = vec![format!("  ops     {} total: {}", ops.total, describe_results(&ops.by_result))];
    let width = ops.by_action.keys().map(|f| f.chars().count()).max().unwrap_or(0);
    for (f, counts) in &ops.by_action {
        // Zero counts are noise on a per-action line; ok always shows so a
        // line never reads empty.
        let parts: Vec<String> = RESULTS
            .iter()
            .filter_map(|r| {
                let n = counts.get(*r).copied().unwrap_or(0);
                (n > 0 || *r == "ok").then(|| format!("{n} {r}"))
            })
            .collect();
        lines.push(format!("    {:<width$}  {}", clean(f), parts.join(", ")));
    }
    lines
}

/// "  faults  3 applied: kill ×2, pause ×1; 120 ok ops during them".
fn fault_line(faults: &[FaultRecord], ok_during: u64) -> String {
    if faults.is_empty() {
        return "  faults  none".to_string();
    }
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for fault in faults {
        *by_kind.entry(&fault.kind).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{} ×{n}", clean(k))).collect();
    format!("  faults  {} applied: {}; {ok_during} ok ops during them", faults.len(), kinds.join(", "))
}

/// "  metrics 850.0 ops/s; kv peak RSS 8.0 MiB, CPU 120.0 ms", when measured.
fn metrics_line(metrics: &Metrics) -> Option<String> {
    if metrics.is_empty() {
        return None;
    }
    let mut parts = vec![metrics.get("ops.per_s").map_or_else(|| "no ok ops".to_string(), |m| m.display())];
    for name in metrics.services() {
        let rss = metrics.get(&format!("service.{name}.peak_rss_bytes")).map(|m| m.display()).unwrap_or_default();
        let cpu = metrics.get(&format!("service.{name}.cpu_ms")).map(|m| m.display()).unwrap_or_default();
        parts.push(format!("{} peak RSS {rss}, CPU {cpu}", clean(&name)));
    }
    Some(format!("  metrics {}", parts.join("; ")))
}

/// "  ! kv exited unexpectedly at 0.055s: signal 9", for each event shakedown did not cause.
fn crash_lines(service: &ServiceRecord, style: Style) -> Vec<String> {
    let unexpected: Vec<_> = service.events.iter().filter(|e| !e.expected).collect();
    let mut lines: Vec<String> = unexpected
        .iter()
        .take(CRASH_LINES)
        .map(|e| {
            let detail = e.detail.as_deref().map(|d| format!(": {}", clean(d))).unwrap_or_default();
            let at = e.time_ns / 1_000_000;
            let (name, event) = (clean(&service.name), clean(&e.event));
            format!(
                "  {} {name} {event} unexpectedly at {}.{:03}s{detail}",
                style.paint(Verdict::Invalid, "!"),
                at / 1000,
                at % 1000
            )
        })
        .collect();
    if unexpected.len() > CRASH_LINES {
        lines.push(format!(
            "    ... and {} more unexpected events of {}",
            unexpected.len() - CRASH_LINES,
            clean(&service.name)
        ));
    }
    lines
}

/// "  ✓ set  <summary>", names aligned.
fn check_lines(checks: &[CheckResult], style: Style) -> Vec<String> {
    let width = checks.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
    checks
        .iter()
        .map(|c| {
            format!("  {} {:<width$}  {}", style.paint(c.verdict, mark(c.verdict)), clean(&c.name), clean(&c.summary))
        })
        .collect()
}

fn detail_lines(check: &CheckResult, style: Style) -> Vec<String> {
    let all = json_lines(&check.details);
    let mut lines = vec![
        String::new(),
        format!("  {} {} details:", style.paint(check.verdict, mark(check.verdict)), clean(&check.name)),
    ];
    lines.extend(all.iter().take(DETAIL_LINES).map(|l| format!("    {}", clean(l))));
    if all.len() > DETAIL_LINES {
        lines.push(format!("    ... {} more lines in report.json", all.len() - DETAIL_LINES));
    }
    lines
}

fn log_lines(service: &ServiceRecord) -> Vec<String> {
    if service.log.is_empty() && service.log_tail.is_empty() {
        return Vec::new();
    }
    let log = if service.log.is_empty() { "its log" } else { &service.log };
    let mut lines = vec![String::new(), format!("  last lines of {} (service {}):", clean(log), clean(&service.name))];
    if service.log_tail.is_empty() {
        lines.push("    (empty)".to_string());
    }
    lines.extend(service.log_tail.iter().map(|l| format!("    {}", clean(l))));
    lines
}

/// The command that replays the run, with the version as a shell comment so
/// the line still pastes.
fn replay_line(report: &Report) -> String {
    let scenario = format!("{}/scenario.toml", report.run_dir.trim_end_matches('/'));
    let cell: String =
        report.matrix.iter().map(|(k, v)| format!(" --matrix {}", shell_quote(&clean(&format!("{k}={v}"))))).collect();
    format!(
        "replay: shakedown run {} --seed {}{cell}  # shakedown {}",
        shell_quote(&clean(&scenario)),
        report.seed,
        clean(&report.shakedown_version)
    )
}

fn mark(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Valid => "✓",
        Verdict::Unknown => "?",
        Verdict::Invalid => "✗",
    }
}

impl Style {
    /// Colors `text` by verdict: green, yellow, red.
    fn paint(self, verdict: Verdict, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match verdict {
            Verdict::Valid => "32",
            Verdict::Unknown => "33",
            Verdict::Invalid => "31",
        };
        format!("\x1b[1;{code}m{text}\x1b[0m")
    }
}

/// "850ms", "3.2s", "2m05s", "1h02m".
fn human_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", ms / 1_000, ms % 1_000 / 100),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1_000),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// The most characters of one piece of foreign text the terminal shows (a
/// whole unexpected reply, say); report.json has it all.
const MAX_SHOWN_CHARS: usize = 1000;

/// Escapes control characters, so text from services and logs cannot move the
/// cursor, recolor the terminal or break a line, and cuts it at [`MAX_SHOWN_CHARS`].
fn clean(text: &str) -> String {
    let n_chars = text.chars().count();
    let shown = text.chars().take(MAX_SHOWN_CHARS);
    let mut out: String = if text.chars().any(|c| c.is_control() && c != '\t') {
        shown
            .map(|c| if c.is_control() && c != '\t' { c.escape_default().to_string() } else { c.to_string() })
            .collect()
    } else {
        shown.collect()
    };
    if n_chars > MAX_SHOWN_CHARS {
        out.push_str(&format!(" ... ({} more characters in report.json)", n_chars - MAX_SHOWN_CHARS));
    }
    out
}

/// Quotes a path for a POSIX shell unless it is plainly safe.
fn shell_quote(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use serde_json::json;
    use shakedown_check::CheckResult;

    const PLAIN: Style = Style { color: false };

    #[test]
    fn metrics_show_throughput_and_each_services_use_in_one_line() {
        let mut r = fixture::report(false);
        assert!(!render_summary(&r, PLAIN).contains("metrics"), "no line without metrics");
        r.metrics.insert(
            "ops.per_s",
            850.0,
            shakedown_history::metrics::PER_S,
            shakedown_history::metrics::Better::Higher,
        );
        r.metrics.add_service("kv", 8 << 20, 120);
        let text = render_summary(&r, PLAIN);
        assert!(text.contains("\n  metrics 850.0 ops/s; kv peak RSS 8.0 MiB, CPU 120.0 ms\n"), "{text}");
    }

    #[test]
    fn an_invalid_run_shows_the_counterexample_and_the_logs() {
        let text = render_summary(&fixture::report(true), PLAIN);
        let version = env!("CARGO_PKG_VERSION");
        let want = format!(
            r#"shakedown kv-set  seed 42  INVALID  in 3.2s
  ops     4 total: 3 ok, 0 fail, 0 info, 1 skip
    add     2 ok
    delete  0 ok, 1 skip
    read    1 ok
  faults  2 applied: kill ×1, pause ×1; 1 ok ops during them
  ! kv exited unexpectedly at 0.000s: signal 9
  ✓ stats       4 ops: 3 ok, 0 fail, 0 info, 1 skip
  ✗ set         1 of 2 acknowledged adds lost: 2
  ✓ unexpected  no unexpected replies in 3 completed ops

  ✗ set details:
    {{
      "acknowledged": 2,
      "adds_after_final_read": 0,
      "concurrent_ok_adds": 0,
      "duplicated_in_read": [],
      "fail_adds": 0,
      "final_read": {{"actor": "alice", "index": 10, "invoke_index": 9, "process": 0, "size": 1}},
      "info_adds": 0,
      "lost": [2],
      "ok_adds": 2,
      "recovered": [],
      "unexpected": [],
      "unexpected_present_after_fail": []
    }}

  last lines of logs/kv.log (service kv):
    listening on :7000
    panicked at src/store.rs:10

replay: shakedown run .shakedown/runs/r1/scenario.toml --seed 42  # shakedown {version}
"#
        );
        assert_eq!(text, want, "got:\n{text}");
    }

    #[test]
    fn a_valid_run_is_short() {
        let text = render_summary(&fixture::report(false), PLAIN);
        assert!(text.starts_with("shakedown kv-set  seed 42  VALID  in 3.2s\n"), "{text}");
        assert!(text.contains("\n  ✓ set         all 2 acknowledged adds in the final read of 2 elements\n"), "{text}");
        assert!(!text.contains("details:") && !text.contains("last lines of"), "{text}");
        let end = "\n  ✓ unexpected  no unexpected replies in 3 completed ops\n\
            replay: shakedown run .shakedown/runs/r1/scenario.toml --seed 42  # shakedown ";
        assert!(text.ends_with(&format!("{end}{}\n", env!("CARGO_PKG_VERSION"))), "{text}");
    }

    #[test]
    fn unknown_checks_errors_and_the_matrix_cell_are_shown() {
        let mut report = fixture::report(false);
        report.checks[1] = CheckResult::new("set", Verdict::Unknown, "vacuous: no add was acknowledged", json!({}));
        report.verdict = Verdict::Unknown;
        report.errors = vec!["service kv never became ready".into()];
        report.matrix = [("engine".to_string(), "binlog".to_string())].into();
        let text = render_summary(&report, PLAIN);
        assert!(text.starts_with("shakedown kv-set  [engine=binlog]  seed 42  UNKNOWN  in 3.2s\n"), "{text}");
        assert!(text.contains("\n  ? set         vacuous: no add was acknowledged\n"), "{text}");
        assert!(text.contains("\n  ! harness error: service kv never became ready\n"), "{text}");
        assert!(text.contains("last lines of logs/kv.log (service kv):"), "logs show on any run that is not valid");
        assert!(text.contains(" --seed 42 --matrix engine=binlog  # shakedown"), "the replay names the cell: {text}");
    }

    #[test]
    fn colors_only_when_asked() {
        let report = fixture::report(true);
        let colored = render_summary(&report, Style { color: true });
        assert!(colored.contains("\x1b[1;31mINVALID\x1b[0m"), "{colored}");
        assert!(colored.contains("\x1b[1;32m✓\x1b[0m stats"), "{colored}");
        assert!(!render_summary(&report, PLAIN).contains('\x1b'));
    }

    #[test]
    fn a_long_summary_is_cut_on_the_terminal() {
        let mut report = fixture::report(false);
        report.checks[0].summary = "x".repeat(70_000);
        let text = render_summary(&report, Style { color: false });
        assert!(text.contains(&format!("{} ... (69000 more characters in report.json)", "x".repeat(1000))), "{text}");
        assert!(text.len() < 10_000, "{} bytes", text.len());
    }

    #[test]
    fn details_are_bounded_and_foreign_text_is_escaped() {
        let mut report = fixture::report(true);
        let objects: Vec<_> = (0..100).map(|i| json!([{"key": i}])).collect();
        report.checks[1].details = json!({"lost": objects});
        report.services[0].log_tail = vec!["\x1b[2Jcleared\rline".into()];
        let text = render_summary(&report, PLAIN);
        assert!(
            text.contains(&format!("\n    ... {} more lines in report.json\n", 4 + 100 * 3 - DETAIL_LINES)),
            "{text}"
        );
        assert!(text.contains("\n    \\u{1b}[2Jcleared\\rline\n"), "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\r'));
    }

    #[test]
    fn many_crashes_are_bounded() {
        let mut report = fixture::report(true);
        let crash = report.services[0].events[1].clone();
        report.services[0].events = vec![crash; 8];
        let text = render_summary(&report, PLAIN);
        assert_eq!(text.matches("kv exited unexpectedly").count(), CRASH_LINES);
        assert!(text.contains("    ... and 3 more unexpected events of kv\n"), "{text}");
    }

    #[test]
    fn durations_and_paths_read_well() {
        let cases =
            [(0, "0ms"), (999, "999ms"), (1_000, "1.0s"), (3_250, "3.2s"), (125_000, "2m05s"), (3_720_000, "1h02m")];
        for (ms, want) in cases {
            assert_eq!(human_duration(ms), want);
        }
        assert_eq!(shell_quote("runs/a-1/scenario.toml"), "runs/a-1/scenario.toml");
        assert_eq!(shell_quote("my runs/it's"), r"'my runs/it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
