//! `report.html`: one self-contained page (inline CSS and SVG, no scripts,
//! nothing fetched) with the run's verdict, its checks, an operation
//! timeline per process, throughput and latency over time with the fault
//! windows shaded, and each failed check's counterexample.

use crate::Report;
use shakedown_check::Verdict;
use shakedown_history::{History, Op, OpType};
use std::fmt::Write;

/// The most operations the timeline draws one by one; past it, it draws one
/// cell per lane and time bucket, over the whole run all the same.
pub const MAX_TIMELINE_OPS: usize = 20_000;
/// The most lanes the timeline draws; more concurrent processes share the last.
pub const MAX_LANES: usize = 64;
/// Time buckets of the throughput and latency charts.
const BUCKETS: usize = 100;
const WIDTH: f64 = 1000.0;
const LANE_PX: f64 = 14.0;
const CHART_PX: f64 = 140.0;
const LEFT_PX: f64 = 60.0;

/// The page for `report`, drawn from `history`.
pub fn html_report(report: &Report, history: &History) -> String {
    let ops = history.ops();
    let span = Span::of(&ops, report);
    let mut page = String::new();
    head(&mut page, report);
    checks_table(&mut page, report);
    timeline(&mut page, &ops, report, &span);
    charts(&mut page, &ops, report, &span);
    counterexamples(&mut page, report);
    page.push_str("</body></html>\n");
    page
}

/// Writes `report.html`.
pub fn write_html(report: &Report, history: &History, path: &std::path::Path) -> Result<(), crate::ReportError> {
    crate::write_file(path, &shakedown_history::redact::redact(&html_report(report, history)))
}

/// The time the charts cover, in nanoseconds since the run's start.
struct Span {
    start_ns: u64,
    end_ns: u64,
}

impl Span {
    fn of(ops: &[Op], report: &Report) -> Span {
        let times = ops
            .iter()
            .flat_map(|op| [Some(op.invoke_time_ns), op.completion.as_ref().map(|c| c.time_ns)])
            .flatten()
            .chain(report.faults.iter().flat_map(|f| [Some(f.start_ns), f.end_ns]).flatten());
        let (start_ns, end_ns) = times.fold((u64::MAX, 0), |(lo, hi), t| (lo.min(t), hi.max(t)));
        if start_ns > end_ns {
            return Span { start_ns: 0, end_ns: 1 };
        }
        Span { start_ns, end_ns: end_ns.max(start_ns + 1) }
    }

    /// The x coordinate of `t_ns` on a chart `WIDTH` wide after the left margin.
    fn x(&self, t_ns: u64) -> f64 {
        let frac = t_ns.saturating_sub(self.start_ns) as f64 / (self.end_ns - self.start_ns) as f64;
        LEFT_PX + frac.clamp(0.0, 1.0) * (WIDTH - LEFT_PX)
    }

    fn seconds(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e9
    }
}

fn head(page: &mut String, report: &Report) {
    let cell = report.matrix_cell();
    let title = if cell.is_empty() { report.scenario.clone() } else { format!("{} [{cell}]", report.scenario) };
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}: {v}</title><style>{CSS}</style></head><body>\
         <h1>{t} <span class=\"{v}\">{V}</span></h1>\
         <p>seed {seed} · {ms} ms · shakedown {ver} · started {at}</p>\
         <p class=\"mono\">replay: shakedown replay {dir}</p>",
        t = esc(&title),
        v = report.verdict.as_str(),
        V = report.verdict.as_str().to_uppercase(),
        seed = report.seed,
        ms = report.duration_ms,
        ver = esc(&report.shakedown_version),
        at = esc(&report.started_at),
        dir = esc(&report.run_dir),
    );
    for e in &report.errors {
        let _ = write!(page, "<p class=\"invalid\">{}</p>", esc(e));
    }
}

fn checks_table(page: &mut String, report: &Report) {
    page.push_str("<h2>Checks</h2><table><tr><th>check</th><th>kind</th><th>verdict</th><th>summary</th></tr>");
    for c in &report.checks {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td class=\"{v}\">{v}</td><td>{}</td></tr>",
            esc(&c.name),
            esc(&c.kind),
            esc(&c.summary),
            v = c.verdict.as_str()
        );
    }
    page.push_str("</table>");
}

/// Lanes of processes that never overlap in time: a worker's successive
/// processes (a fresh one after each `info`) share one lane, so a run has
/// about as many lanes as it had clients. Returns each op's lane and the
/// number of lanes; lanes past [`MAX_LANES`] fold into the last one.
fn pack_lanes(ops: &[Op], end_ns: u64) -> (Vec<usize>, usize) {
    use std::collections::BTreeMap;
    // Each process's first invocation and last completion.
    let mut extent: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for op in ops {
        let done = op.completion.as_ref().map_or(end_ns, |c| c.time_ns);
        let e = extent.entry(op.process.0).or_insert((op.invoke_time_ns, done));
        e.0 = e.0.min(op.invoke_time_ns);
        e.1 = e.1.max(done);
    }
    let mut by_start: Vec<(u64, u64, u64)> = extent.iter().map(|(p, (s, e))| (*s, *e, *p)).collect();
    by_start.sort_unstable();
    // Greedy interval colouring: a process takes the lane free the earliest.
    let mut free_at: Vec<u64> = Vec::new();
    let mut lane_of: BTreeMap<u64, usize> = BTreeMap::new();
    for (start, end, process) in by_start {
        let lane = match free_at.iter().position(|f| *f < start) {
            Some(l) => l,
            None => {
                free_at.push(0);
                free_at.len() - 1
            }
        };
        free_at[lane] = end;
        lane_of.insert(process, lane.min(MAX_LANES - 1));
    }
    let lanes = ops.iter().map(|op| lane_of.get(&op.process.0).copied().unwrap_or(0)).collect();
    (lanes, free_at.len().min(MAX_LANES))
}

/// The operation timeline over the whole run: one bar per operation while
/// there are at most [`MAX_TIMELINE_OPS`], past that one cell per lane and
/// time bucket, coloured by the worst result in it.
fn timeline(page: &mut String, ops: &[Op], report: &Report, span: &Span) {
    let (lane_of, n_lanes) = pack_lanes(ops, span.end_ns);
    let n_processes = ops.iter().map(|op| op.process.0).collect::<std::collections::BTreeSet<_>>().len();
    let height = n_lanes as f64 * LANE_PX + 20.0;
    let _ = write!(
        page,
        "<h2>Operations</h2><p>{} operations by {} processes in {} lanes (a process retired by an indeterminate op \
         gives way to a fresh one in its lane)",
        ops.len(),
        n_processes,
        n_lanes
    );
    let aggregated = ops.len() > MAX_TIMELINE_OPS;
    if aggregated {
        let _ = write!(
            page,
            "; each cell sums the operations of its lane completing in {:.0} ms",
            span.seconds() * 1000.0 / TIMELINE_BUCKETS as f64
        );
    }
    page.push_str(". Green ok, amber fail, red info (indeterminate); shaded bands are faults.</p>");
    let _ = write!(page, "<svg width=\"{WIDTH}\" height=\"{height}\" viewBox=\"0 0 {WIDTH} {height}\">");
    fault_bands(page, report, span, height);
    for lane in 0..n_lanes {
        let y = lane as f64 * LANE_PX;
        let _ = write!(page, "<text x=\"0\" y=\"{:.1}\" class=\"lane\">lane {lane}</text>", y + LANE_PX - 3.0);
    }
    if aggregated {
        cells(page, ops, &lane_of, n_lanes, span);
    } else {
        for (op, lane) in ops.iter().zip(&lane_of) {
            bar(page, op, *lane, span);
        }
    }
    page.push_str("</svg>");
}

/// One operation, from invocation to completion.
fn bar(page: &mut String, op: &Op, lane: usize, span: &Span) {
    let end_ns = op.completion.as_ref().map_or(span.end_ns, |c| c.time_ns);
    let (x0, x1) = (span.x(op.invoke_time_ns), span.x(end_ns));
    let result = op.completion.as_ref().map_or("pending".to_string(), |c| c.value.to_string());
    let _ = write!(
        page,
        "<rect x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"{}\"><title>#{} p{} {} {} → {} {}</title></rect>",
        lane as f64 * LANE_PX + 2.0,
        (x1 - x0).max(1.0),
        LANE_PX - 4.0,
        op.op_type().as_str(),
        op.invoke_index,
        op.process,
        esc(&op.f),
        esc(&truncate(&op.invoke_value.to_string())),
        op.op_type().as_str(),
        esc(&truncate(&result)),
    );
}

/// Time buckets of the aggregated timeline.
const TIMELINE_BUCKETS: usize = 250;

/// The aggregated timeline: per lane and bucket, how many ops completed
/// (or, never completing, were invoked) ok, fail and info.
fn cells(page: &mut String, ops: &[Op], lane_of: &[usize], n_lanes: usize, span: &Span) {
    let bucket_ns = ((span.end_ns - span.start_ns) / TIMELINE_BUCKETS as u64).max(1);
    let mut counts = vec![[0u32; 3]; n_lanes * TIMELINE_BUCKETS];
    for (op, lane) in ops.iter().zip(lane_of) {
        let at = op.completion.as_ref().map_or(op.invoke_time_ns, |c| c.time_ns);
        let bucket = (at.saturating_sub(span.start_ns) / bucket_ns).min(TIMELINE_BUCKETS as u64 - 1) as usize;
        let kind = match op.op_type() {
            OpType::Ok => 0,
            OpType::Fail => 1,
            OpType::Info => 2,
        };
        counts[lane * TIMELINE_BUCKETS + bucket][kind] += 1;
    }
    let cell_px = (WIDTH - LEFT_PX) / TIMELINE_BUCKETS as f64;
    for (i, [ok, fail, info]) in counts.iter().enumerate().filter(|(_, c)| c.iter().any(|n| *n > 0)) {
        let (lane, bucket) = (i / TIMELINE_BUCKETS, i % TIMELINE_BUCKETS);
        let class = if *info > 0 {
            "info"
        } else if *fail > 0 {
            "fail"
        } else {
            "ok"
        };
        let from_s = (span.start_ns + bucket as u64 * bucket_ns) as f64 / 1e9;
        let _ = write!(
            page,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"{class}\"><title>lane {lane}, {from_s:.2}–{:.2} s: {ok} ok, {fail} fail, {info} info</title></rect>",
            LEFT_PX + bucket as f64 * cell_px,
            lane as f64 * LANE_PX + 2.0,
            cell_px.max(1.0),
            LANE_PX - 4.0,
            from_s + bucket_ns as f64 / 1e9,
        );
    }
}

/// Throughput (ok completions per second) and latency (p50 and max of ok
/// operations completing) per time bucket.
fn charts(page: &mut String, ops: &[Op], report: &Report, span: &Span) {
    let bucket_ns = ((span.end_ns - span.start_ns) / BUCKETS as u64).max(1);
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); BUCKETS];
    for op in ops {
        let Some(done) = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok) else { continue };
        let bucket = (done.time_ns.saturating_sub(span.start_ns) / bucket_ns).min(BUCKETS as u64 - 1) as usize;
        latencies[bucket].push(done.time_ns.saturating_sub(op.invoke_time_ns));
    }
    let bucket_s = bucket_ns as f64 / 1e9;
    let throughput: Vec<f64> = latencies.iter().map(|l| l.len() as f64 / bucket_s).collect();
    let mut p50 = Vec::with_capacity(BUCKETS);
    let mut max = Vec::with_capacity(BUCKETS);
    for l in &mut latencies {
        l.sort_unstable();
        p50.push(l.get(l.len() / 2).map_or(f64::NAN, |ns| *ns as f64 / 1e6));
        max.push(l.last().map_or(f64::NAN, |ns| *ns as f64 / 1e6));
    }
    let _ = write!(page, "<h2>Throughput</h2><p>ok operations per second over {:.1} s</p>", span.seconds());
    chart(page, report, span, &[("ops", &throughput)], "ops/s");
    page.push_str("<h2>Latency</h2><p>p50 (dark) and max (light) of the ok operations completing, in ms</p>");
    chart(page, report, span, &[("p50", &p50), ("max", &max)], "ms");
}

fn chart(page: &mut String, report: &Report, span: &Span, series: &[(&str, &[f64])], unit: &str) {
    let top = series.iter().flat_map(|(_, s)| s.iter()).copied().filter(|v| v.is_finite()).fold(0.0, f64::max);
    let top = if top > 0.0 { top } else { 1.0 };
    let _ = write!(page, "<svg width=\"{WIDTH}\" height=\"{h}\" viewBox=\"0 0 {WIDTH} {h}\">", h = CHART_PX + 20.0);
    fault_bands(page, report, span, CHART_PX);
    let _ = write!(page, "<text x=\"0\" y=\"12\" class=\"lane\">{top:.0} {unit}</text>");
    let _ = write!(page, "<text x=\"0\" y=\"{CHART_PX}\" class=\"lane\">0</text>");
    let step = (WIDTH - LEFT_PX) / BUCKETS as f64;
    for (name, values) in series {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| {
                format!("{:.1},{:.1}", LEFT_PX + (i as f64 + 0.5) * step, CHART_PX - v / top * (CHART_PX - 10.0))
            })
            .collect();
        let _ = write!(page, "<polyline class=\"{name}\" points=\"{}\"/>", points.join(" "));
    }
    page.push_str("</svg>");
}

/// A translucent band per fault window, labelled with the fault and target.
fn fault_bands(page: &mut String, report: &Report, span: &Span, height: f64) {
    for f in &report.faults {
        let (x0, x1) = (span.x(f.start_ns), span.x(f.end_ns.unwrap_or(span.end_ns)));
        let _ = write!(
            page,
            "<rect class=\"fault\" x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{height:.1}\"><title>{} {}{}</title></rect>",
            (x1 - x0).max(1.0),
            esc(&f.kind),
            esc(&f.target),
            f.detail.as_deref().map(|d| format!(": {}", esc(d))).unwrap_or_default(),
        );
    }
}

/// Each check that is not valid, with its details as JSON.
fn counterexamples(page: &mut String, report: &Report) {
    let failed: Vec<_> = report.checks.iter().filter(|c| c.verdict != Verdict::Valid).collect();
    if failed.is_empty() {
        return;
    }
    page.push_str("<h2>Counterexamples</h2>");
    for c in failed {
        let details = serde_json::to_string_pretty(&c.details).unwrap_or_default();
        let _ = write!(
            page,
            "<details open><summary><b>{}</b> <span class=\"{v}\">{v}</span>: {}</summary><pre>{}</pre></details>",
            esc(&c.name),
            esc(&c.summary),
            esc(&details),
            v = c.verdict.as_str()
        );
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Text safe inside HTML elements and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#222}\
h1 span,td.valid,td.invalid,td.unknown{padding:0 6px;border-radius:3px}\
.valid{background:#d8f0d8}.invalid{background:#f6d0d0}.unknown{background:#f4e7c0}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}\
.mono,pre{font-family:ui-monospace,monospace;font-size:12px}pre{background:#f6f6f6;padding:8px;overflow:auto;max-height:480px}\
svg{display:block;border:1px solid #ddd;margin:6px 0}text.lane{font:10px ui-monospace,monospace;fill:#555}\
rect.ok{fill:#3a9a4a}rect.fail{fill:#d99a2b}rect.info{fill:#c23b3b}rect.fault{fill:#8a8aff;opacity:.18}\
polyline{fill:none;stroke-width:1.5}polyline.ops,polyline.p50{stroke:#2a5db0}polyline.max{stroke:#9bb5e0}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    #[test]
    fn the_page_has_the_verdict_checks_timeline_faults_and_counterexample() {
        let history = fixture::history(true);
        let page = html_report(&fixture::report(true), &history);
        assert!(page.starts_with("<!doctype html>") && page.ends_with("</body></html>\n"));
        assert!(page.contains("<span class=\"invalid\">INVALID</span>"), "{page}");
        assert_eq!(page.matches("<rect x=").count(), 3, "one bar per operation");
        // Two fault windows, shaded on the timeline and on both charts.
        assert_eq!(page.matches("<rect class=\"fault\"").count(), 6);
        assert!(page.contains("<h2>Counterexamples</h2>") && page.contains("<b>set</b>"));
        assert!(!page.contains("<script"), "self-contained and static");
        let valid = html_report(&fixture::report(false), &fixture::history(false));
        assert!(valid.contains("<span class=\"valid\">VALID</span>") && !valid.contains("Counterexamples"));
    }

    /// `n_workers` workers doing `per_worker` ops each, one op in 50 ending
    /// `info` (which retires the process: the next op is a fresh one's).
    fn busy_history(n_workers: u64, per_worker: u64) -> History {
        use serde_json::json;
        use shakedown_history::{Header, HistoryBuilder, ProcessId};
        let mut b = HistoryBuilder::new(Header::new("busy", 1));
        let mut process: Vec<u64> = (0..n_workers).collect();
        let mut next = n_workers;
        let mut t = 0;
        for i in 0..per_worker {
            for p in &process {
                t += 1000;
                b.invoke(t, ProcessId(*p), "a", "add", json!(i));
            }
            for (w, p) in process.iter_mut().enumerate() {
                t += 1000;
                let ty = if (i + w as u64).is_multiple_of(50) { OpType::Info } else { OpType::Ok };
                b.complete(t, ProcessId(*p), ty, json!(i), None);
                if ty == OpType::Info {
                    *p = next;
                    next += 1;
                }
            }
        }
        b.finish()
    }

    #[test]
    fn past_the_drawing_limit_the_timeline_covers_the_whole_run_in_every_lane() {
        let history = busy_history(23, 2000);
        let report = Report::build(crate::RunMeta::new("busy", 1), &history, Vec::new());
        let page = html_report(&report, &history);
        assert!(page.contains("46000 operations by") && page.contains("in 23 lanes"), "retired processes share lanes");
        assert!(page.contains("each cell sums the operations"), "aggregated past the limit");
        assert!(page.matches("<rect x=").count() <= 23 * TIMELINE_BUCKETS);
        for lane in 0..23 {
            let cells = page.matches(&format!("<title>lane {lane}, ")).count();
            assert!(cells > TIMELINE_BUCKETS / 2, "lane {lane} is drawn over the run: {cells} cells");
        }
        let last = format!("–{:.2} s:", history.events.last().unwrap().time_ns as f64 / 1e9);
        assert!(page.contains(&last), "the last bucket ends with the run ({last})");
        assert!(page.contains("class=\"info\"><title>lane"), "info ops show in their cells");
        let small = busy_history(3, 10);
        let report = Report::build(crate::RunMeta::new("small", 1), &small, Vec::new());
        assert_eq!(html_report(&report, &small).matches("<rect x=").count(), 30, "a bar per op below the limit");
    }

    #[test]
    fn text_from_the_run_is_escaped() {
        let mut report = fixture::report(true);
        report.scenario = "<script>alert(1)</script>".into();
        report.checks[1].summary = "a \"quoted\" & <b>bold</b> claim".into();
        let page = html_report(&report, &fixture::history(true));
        assert!(!page.contains("<script>alert"), "the scenario name is escaped");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt; claim"));
    }

    #[test]
    fn an_empty_history_still_renders() {
        let history = shakedown_history::HistoryBuilder::new(shakedown_history::Header::new("empty", 1)).finish();
        let report = Report::build(crate::RunMeta::new("empty", 1), &history, Vec::new());
        let page = html_report(&report, &history);
        assert!(page.contains("0 operations by 0 processes"), "{page}");
    }
}
