//! Suites: finding the scenarios under the paths given to `shakedown run`,
//! selecting them by tag, name and partition, running several at once, and the
//! suite's summary, `junit.xml` and `suite.json`.

use shakedown::crates::history::metrics::Metrics;
use shakedown::crates::spec::Cell;
use shakedown::{ExitCode, Finished, RunConfig, Scenario};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Tags that keep a scenario found in a directory out of a run unless `--tags` names them.
pub const OFF_BY_DEFAULT: &[&str] = &["extended", "stress"];

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("find scenarios in {0}: it holds no `*.toml` scenario")]
    Empty(String),
    #[error("parse partition `{0}`: expected k/n with 1 <= k <= n, e.g. 1/2")]
    Partition(String),
}

/// A scenario file to consider, and whether it was named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub path: PathBuf,
    /// Named directly: its off-by-default tags do not keep it out.
    pub explicit: bool,
}

/// A parsed scenario of the suite.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub text: String,
    pub scenario: Scenario,
    pub explicit: bool,
}

/// The scenario files under `paths`: files as given, directories searched
/// recursively for `*.toml` in sorted order, minus shared includes (files
/// starting with `_` and anything under a directory named `include`).
pub fn discover(paths: &[PathBuf]) -> Result<Vec<Found>, SuiteError> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let before = found.len();
            walk(path, &mut found, &mut std::collections::HashSet::new())?;
            if found.len() == before {
                return Err(SuiteError::Empty(path.display().to_string()));
            }
        } else {
            found.push(Found { path: path.clone(), explicit: true });
        }
    }
    // One scenario file reached by two paths (through a symlink) runs once.
    let mut seen = std::collections::HashSet::new();
    found.retain(|f| seen.insert(f.path.canonicalize().unwrap_or_else(|_| f.path.clone())));
    Ok(found)
}

/// Collects the scenario files below `dir`. A directory reached twice (a
/// symlink loop, or two links to one place) is walked once.
fn walk(
    dir: &Path,
    found: &mut Vec<Found>,
    visited: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), SuiteError> {
    let read_err = |source| SuiteError::Read { path: dir.display().to_string(), source };
    if !visited.insert(dir.canonicalize().map_err(read_err)?) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    for path in entries {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if name != "include" {
                walk(&path, found, visited)?;
            }
        } else if name.ends_with(".toml") {
            found.push(Found { path, explicit: false });
        }
    }
    Ok(())
}

/// `--partition k/n`: the k-th of n shards, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub k: usize,
    pub n: usize,
}

impl std::str::FromStr for Partition {
    type Err = SuiteError;

    fn from_str(s: &str) -> Result<Partition, SuiteError> {
        let bad = || SuiteError::Partition(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Partition { k, n })
    }
}

/// Which scenarios of the suite run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--tags`: scenarios carrying any of these run; off-by-default tags named here are on.
    pub tags: Vec<String>,
    /// `--filter`: a substring of the scenario's name.
    pub filter: Option<String>,
    pub partition: Option<Partition>,
}

/// A scenario left out, and the one-line reason.
#[derive(Debug, Clone)]
pub struct Skip {
    pub name: String,
    pub path: PathBuf,
    pub reason: String,
}

/// Splits the suite into what runs and what is skipped. Tags and the filter
/// go first; the partition then takes every n-th of what remains, starting
/// at the k-th, so shards of one selection are disjoint and cover it.
pub fn select(entries: Vec<Entry>, sel: &Selection) -> (Vec<Entry>, Vec<Skip>) {
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for e in entries {
        match selection_reason(&e, sel) {
            Some(reason) => skipped.push(skip(&e, reason)),
            None => kept.push(e),
        }
    }
    let Some(p) = sel.partition else { return (kept, skipped) };
    let mut shard = Vec::new();
    for (idx, e) in kept.into_iter().enumerate() {
        if idx % p.n == p.k - 1 {
            shard.push(e);
        } else {
            skipped.push(skip(&e, format!("in another partition than {}/{}", p.k, p.n)));
        }
    }
    (shard, skipped)
}

fn skip(e: &Entry, reason: String) -> Skip {
    Skip { name: e.scenario.name.clone(), path: e.path.clone(), reason }
}

fn selection_reason(e: &Entry, sel: &Selection) -> Option<String> {
    let s = &e.scenario;
    if !e.explicit {
        if let Some(off) = OFF_BY_DEFAULT.iter().find(|t| s.has_tag(t) && !sel.tags.iter().any(|x| x == *t)) {
            return Some(format!("tagged `{off}`, which runs only with --tags {off}"));
        }
    }
    if !sel.tags.is_empty() && !sel.tags.iter().any(|t| s.has_tag(t)) {
        return Some(format!("has none of the tags {}", sel.tags.join(", ")));
    }
    match &sel.filter {
        Some(f) if !s.name.contains(f.as_str()) => Some(format!("name does not contain `{f}`")),
        _ => None,
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    pub path: PathBuf,
    pub seed: u64,
    pub run_dir: PathBuf,
    pub code: ExitCode,
    /// valid, invalid, unknown, error or interrupted.
    pub verdict: String,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub finished: Option<Finished>,
    pub error: Option<String>,
}

/// What the suite runs with, shared by every scenario.
#[derive(Clone)]
pub struct SuiteConfig {
    pub jobs: usize,
    pub seed: Option<u64>,
    pub out: Option<PathBuf>,
    pub cancel: watch::Receiver<bool>,
    /// `--baseline`: each completed run's comparison, a check in its report.
    pub baseline: Option<Arc<shakedown::BaselineFn>>,
}

/// Runs the entries, at most `jobs` at once, each in its own run directory.
/// Outcomes come back in the entries' order. Once cancelled, scenarios not yet
/// started are reported interrupted without starting.
pub async fn run_all(entries: Vec<Entry>, cfg: SuiteConfig) -> Vec<Outcome> {
    let dirs = run_dirs(&entries, &cfg);
    let permits = Arc::new(tokio::sync::Semaphore::new(cfg.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (idx, (entry, (seed, dir))) in entries.into_iter().zip(dirs).enumerate() {
        // Taken here, not in the task, so scenarios start in the suite's order.
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (cancel, baseline) = (cfg.cancel.clone(), cfg.baseline.clone());
        tasks.spawn(async move {
            let _permit = permit;
            (idx, run_one(entry, seed, dir, cancel, baseline).await)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(o) => outcomes.push(o),
            Err(e) => tracing::error!("a suite task failed: {e}"),
        }
    }
    outcomes.sort_by_key(|(idx, _)| *idx);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// Each entry's seed and run directory, distinct even for equal names.
fn run_dirs(entries: &[Entry], cfg: &SuiteConfig) -> Vec<(u64, PathBuf)> {
    let mut taken = std::collections::HashSet::new();
    entries
        .iter()
        .map(|e| {
            let seed = cfg.seed.or(e.scenario.seed).unwrap_or_else(rand::random);
            let base = match &cfg.out {
                Some(out) => out.join(safe_name(&e.scenario.name)),
                None => shakedown::default_run_dir(&e.scenario.name, seed),
            };
            let mut dir = base.clone();
            let mut n = 1;
            while !taken.insert(dir.clone()) {
                n += 1;
                dir = PathBuf::from(format!("{}-{n}", base.display()));
            }
            (seed, dir)
        })
        .collect()
}

fn safe_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

async fn run_one(
    entry: Entry,
    seed: u64,
    run_dir: PathBuf,
    cancel: watch::Receiver<bool>,
    baseline: Option<Arc<shakedown::BaselineFn>>,
) -> Outcome {
    let started_ms = now_ms();
    let mut outcome = Outcome {
        name: entry.scenario.name.clone(),
        path: entry.path.clone(),
        seed,
        run_dir: run_dir.clone(),
        code: ExitCode::Interrupted,
        verdict: "interrupted".into(),
        started_ms,
        finished_ms: started_ms,
        finished: None,
        error: None,
    };
    if *cancel.borrow() {
        return outcome;
    }
    eprintln!("shakedown: running {} (seed {seed})", entry.scenario.name);
    let cfg = RunConfig {
        seed: Some(seed),
        out: Some(run_dir),
        scenario_dir: Some(parent_dir(&entry.path)),
        scenario_text: Some(entry.text),
        cancel: Some(cancel),
        baseline,
        ..RunConfig::default()
    };
    let result = shakedown::run(&entry.scenario, cfg).await;
    outcome.finished_ms = now_ms();
    match result {
        Ok(f) => {
            outcome.code = shakedown::exit_code(&f);
            outcome.verdict = match (&f.end, outcome.code) {
                (shakedown_runner::RunEnd::Completed, _) => f.report.verdict.as_str().to_string(),
                (_, ExitCode::Interrupted) => "interrupted".into(),
                (_, ExitCode::Harness) => "error".into(),
                _ => "unknown".into(),
            };
            outcome.run_dir = f.run_dir.clone();
            outcome.finished = Some(f);
        }
        Err(e) => {
            outcome.code =
                if matches!(e, shakedown::Error::RunDirInUse(_)) { ExitCode::Usage } else { ExitCode::Harness };
            outcome.verdict = "error".into();
            outcome.error = Some(e.to_string());
        }
    }
    outcome
}

/// The directory a scenario file is in, `.` for a bare file name.
pub fn parent_dir(file: &Path) -> PathBuf {
    file.parent().map_or_else(
        || PathBuf::from("."),
        |p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() },
    )
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The one-line summary of a scenario's outcome.
pub fn summary_line(o: &Outcome) -> String {
    let secs = o.finished_ms.saturating_sub(o.started_ms) as f64 / 1000.0;
    format!(
        "{:<12} {} (seed {}, {secs:.1}s) run directory: {}",
        o.verdict.to_uppercase(),
        o.name,
        o.seed,
        o.run_dir.display()
    )
}

/// `suite.json`: the suite's exit code, each scenario's outcome, and what was skipped.
pub fn suite_json(outcomes: &[Outcome], skipped: &[Skip], code: ExitCode) -> serde_json::Value {
    let scenarios: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            serde_json::json!({
                "name": o.name,
                "file": o.path.display().to_string(),
                "verdict": o.verdict,
                "exit_code": o.code.code(),
                "seed": o.seed,
                "run_dir": o.run_dir.display().to_string(),
                "started_ms": o.started_ms,
                "finished_ms": o.finished_ms,
                "error": o.error,
            })
        })
        .collect();
    let skipped: Vec<serde_json::Value> = skipped
        .iter()
        .map(|s| serde_json::json!({ "name": s.name, "file": s.path.display().to_string(), "reason": s.reason }))
        .collect();
    let tables: Vec<serde_json::Value> = metrics_tables(outcomes).iter().map(MetricsTable::to_json).collect();
    serde_json::json!({
        "shakedown_version": env!("CARGO_PKG_VERSION"),
        "exit_code": code.code(),
        "scenarios": scenarios,
        "skipped": skipped,
        "metrics_table": tables,
    })
}

/// The metrics of a scenario's matrix cells side by side: one row per cell,
/// one column per chosen metric: the overall throughputs, each action's median
/// latency, then each service's peak RSS and CPU.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsTable {
    pub scenario: String,
    /// The matrix dimensions, the first columns.
    pub dims: Vec<String>,
    /// Metric names, the other columns.
    pub columns: Vec<String>,
    pub rows: Vec<(Cell, Metrics)>,
}

/// One table per scenario that ran two or more matrix cells with metrics, in suite order.
pub fn metrics_tables(outcomes: &[Outcome]) -> Vec<MetricsTable> {
    let mut tables: Vec<MetricsTable> = Vec::new();
    for f in outcomes.iter().filter_map(|o| o.finished.as_ref()) {
        let report = &f.report;
        if report.matrix.is_empty() || report.metrics.is_empty() {
            continue;
        }
        let suffix = format!("[{}]", shakedown::crates::spec::cell_name(&report.matrix));
        let base = report.scenario.strip_suffix(&suffix).unwrap_or(&report.scenario).to_string();
        let row = (report.matrix.clone(), report.metrics.clone());
        match tables.iter_mut().find(|t| t.scenario == base) {
            Some(t) => t.rows.push(row),
            None => {
                tables.push(MetricsTable { scenario: base, dims: Vec::new(), columns: Vec::new(), rows: vec![row] })
            }
        }
    }
    tables.retain(|t| t.rows.len() > 1);
    for t in &mut tables {
        let dims: BTreeSet<&String> = t.rows.iter().flat_map(|(cell, _)| cell.keys()).collect();
        t.dims = dims.into_iter().cloned().collect();
        let services: BTreeSet<String> = t.rows.iter().flat_map(|(_, m)| m.services()).collect();
        // Overall throughputs: ops.per_s and any other rate not per action (a job's items/s).
        let rates: BTreeSet<&String> = t
            .rows
            .iter()
            .flat_map(|(_, m)| m.iter())
            .filter(|(name, m)| m.unit.ends_with("/s") && (*name == "ops.per_s" || !name.starts_with("ops.")))
            .map(|(name, _)| name)
            .collect();
        let rates: Vec<String> = rates.into_iter().cloned().collect();
        let medians: BTreeSet<&String> = t
            .rows
            .iter()
            .flat_map(|(_, m)| m.iter())
            .map(|(name, _)| name)
            .filter(|n| n.ends_with(".p50_ms"))
            .collect();
        let medians: Vec<String> = medians.into_iter().cloned().collect();
        t.columns = rates
            .into_iter()
            .chain(medians)
            .chain(services.iter().flat_map(|s| [format!("service.{s}.peak_rss_bytes"), format!("service.{s}.cpu_ms")]))
            .collect();
    }
    tables
}

impl MetricsTable {
    /// The table for a terminal, columns aligned; a missing value is `-`.
    pub fn render(&self) -> String {
        let header: Vec<String> = self.dims.iter().chain(&self.columns).map(|c| short_column(c)).collect();
        let mut lines = vec![header];
        for (cell, metrics) in &self.rows {
            let dims = self.dims.iter().map(|d| cell.get(d).cloned().unwrap_or_else(|| "-".into()));
            let values = self.columns.iter().map(|c| metrics.get(c).map_or_else(|| "-".into(), |m| m.display()));
            lines.push(dims.chain(values).collect());
        }
        let widths: Vec<usize> =
            (0..lines[0].len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
        let mut out = format!("metrics of {} over {} cells:\n", self.scenario, self.rows.len());
        for line in lines {
            let cells: Vec<String> = line.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
            out.push_str(&format!("  {}\n", cells.join("  ").trim_end()));
        }
        out
    }

    /// `suite.json`'s form: the columns, and each row's cell and values.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(cell, m)| {
                let values: serde_json::Map<String, serde_json::Value> =
                    self.columns.iter().map(|c| (c.clone(), serde_json::json!(m.value(c)))).collect();
                serde_json::json!({ "cell": cell, "metrics": values })
            })
            .collect();
        serde_json::json!({ "scenario": self.scenario, "dims": self.dims, "columns": self.columns, "rows": rows })
    }
}

/// "kv peak RSS" for `service.kv.peak_rss_bytes`, "kv CPU" for `service.kv.cpu_ms`.
fn short_column(name: &str) -> String {
    let Some(rest) = name.strip_prefix("service.") else { return name.to_string() };
    match (rest.strip_suffix(".peak_rss_bytes"), rest.strip_suffix(".cpu_ms")) {
        (Some(s), _) => format!("{s} peak RSS"),
        (_, Some(s)) => format!("{s} CPU"),
        _ => name.to_string(),
    }
}

/// The suite's JUnit XML: each run's own test suite, and a suite with an
/// error case for a scenario that left no report.
pub fn suite_junit(outcomes: &[Outcome]) -> String {
    let mut body = String::new();
    for o in outcomes {
        match &o.finished {
            Some(f) => body.push_str(&inner_suites(&shakedown_report::junit_xml(&f.report))),
            None => body.push_str(&format!(
                "    <testsuite name=\"{name}\" tests=\"1\" failures=\"0\" errors=\"1\">\n        \
                 <testcase name=\"harness\" classname=\"{name}\">\n            <error message=\"{msg}\"/>\n        \
                 </testcase>\n    </testsuite>\n",
                name = xml_escape(&o.name),
                msg = xml_escape(o.error.as_deref().unwrap_or(&o.verdict)),
            )),
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"shakedown-suite\" tests=\"{}\">\n{body}</testsuites>\n",
        outcomes.len()
    )
}

/// The `<testsuite>` elements of a run's JUnit document.
fn inner_suites(xml: &str) -> String {
    match (xml.find("<testsuite "), xml.rfind("</testsuite>")) {
        (Some(start), Some(end)) if start < end => format!("    {}\n", &xml[start..end + "</testsuite>".len()]),
        _ => String::new(),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Writes `suite.json` and `junit.xml` into `dir`.
pub fn write_outputs(dir: &Path, outcomes: &[Outcome], skipped: &[Skip], code: ExitCode) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(&suite_json(outcomes, skipped, code)).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("suite.json"), json + "\n")?;
    std::fs::write(dir.join("junit.xml"), suite_junit(outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(name: &str, size: &str, per_s: f64, rss_mib: u64) -> Outcome {
        let mut report = shakedown::Report::build(
            shakedown::crates::report::RunMeta::new(format!("{name}[size={size}]"), 1),
            &shakedown::crates::history::HistoryBuilder::new(shakedown::crates::history::Header::new(name, 1)).finish(),
            Vec::new(),
        );
        report.matrix = [("size".to_string(), size.to_string())].into();
        report.metrics.insert("ops.per_s", per_s, "ops/s", shakedown::crates::history::metrics::Better::Higher);
        report.metrics.add_service("kv", rss_mib << 20, 120);
        report.metrics.insert("ops.add.per_s", per_s, "ops/s", shakedown::crates::history::metrics::Better::Higher);
        report.metrics.insert("latency.add.p99_ms", 9.0, "ms", shakedown::crates::history::metrics::Better::Lower);
        Outcome {
            name: report.scenario.clone(),
            path: PathBuf::from("s.toml"),
            seed: 1,
            run_dir: PathBuf::from("r"),
            code: ExitCode::Valid,
            verdict: "valid".into(),
            started_ms: 0,
            finished_ms: 0,
            finished: Some(Finished {
                report,
                history: shakedown::crates::history::HistoryBuilder::new(shakedown::crates::history::Header::new(
                    name, 1,
                ))
                .finish(),
                run_dir: PathBuf::from("r"),
                end: shakedown::RunEnd::Completed,
            }),
            error: None,
        }
    }

    #[test]
    fn a_symlink_loop_finds_each_scenario_once() {
        let tmp = tempfile::tempdir().unwrap();
        let suite = tmp.path().join("suite");
        std::fs::create_dir_all(suite.join("sub")).unwrap();
        std::fs::write(suite.join("a.toml"), "name = \"a\"").unwrap();
        std::fs::write(suite.join("sub/b.toml"), "name = \"b\"").unwrap();
        std::os::unix::fs::symlink(&suite, suite.join("sub/loop")).unwrap();
        std::os::unix::fs::symlink(suite.join("sub"), suite.join("again")).unwrap();
        let found = discover(std::slice::from_ref(&suite)).unwrap();
        let names: Vec<String> = found.iter().map(|f| f.path.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["a.toml", "b.toml"]);
    }

    #[test]
    fn matrix_cells_make_a_metrics_table() {
        let outcomes =
            [finished("batch", "10", 50.0, 8), finished("batch", "1000", 900.5, 24), finished("lonely", "1", 1.0, 1)];
        let tables = metrics_tables(&outcomes);
        assert_eq!(tables.len(), 1, "a scenario with one cell has no table");
        let text = tables[0].render();
        let want = "metrics of batch over 2 cells:\n  \
                    size  ops.per_s    kv peak RSS  kv CPU\n  \
                    10    50.0 ops/s   8.0 MiB      120.0 ms\n  \
                    1000  900.5 ops/s  24.0 MiB     120.0 ms\n";
        assert_eq!(text, want);
        let json = suite_json(&outcomes, &[], ExitCode::Valid);
        assert_eq!(json["metrics_table"][0]["rows"][1]["cell"]["size"], "1000");
        assert_eq!(json["metrics_table"][0]["rows"][1]["metrics"]["ops.per_s"], 900.5);
        assert_eq!(json["metrics_table"][0]["columns"][1], "service.kv.peak_rss_bytes");
    }

    #[test]
    fn a_jobs_rate_is_a_column_and_per_action_rates_are_not() {
        let mut outcomes = [finished("copy", "10", 5.0, 8), finished("copy", "100", 6.0, 9)];
        for (o, rate) in outcomes.iter_mut().zip([300.0, 2500.0]) {
            let metrics = &mut o.finished.as_mut().unwrap().report.metrics;
            metrics.insert("job.items_per_s", rate, "items/s", shakedown::crates::history::metrics::Better::Higher);
            metrics.insert(
                "latency.job.p50_ms",
                1000.0 / rate,
                "ms",
                shakedown::crates::history::metrics::Better::Lower,
            );
        }
        let columns = &metrics_tables(&outcomes)[0].columns;
        let want =
            ["job.items_per_s", "ops.per_s", "latency.job.p50_ms", "service.kv.peak_rss_bytes", "service.kv.cpu_ms"];
        assert_eq!(columns, &want, "p99 latencies are left out");
    }

    #[test]
    fn partitions_parse_or_explain() {
        assert_eq!("2/3".parse::<Partition>().unwrap(), Partition { k: 2, n: 3 });
        for bad in ["0/2", "3/2", "1/0", "1", "a/b", "1/2/3", ""] {
            let err = bad.parse::<Partition>().unwrap_err().to_string();
            assert!(err.contains("expected k/n"), "{bad}: {err}");
        }
    }

    fn entry(name: &str, tags: &[&str], explicit: bool) -> Entry {
        let tags = tags.iter().map(|t| format!("{t:?}")).collect::<Vec<_>>().join(", ");
        let text = format!("name = \"{name}\"\ntags = [{tags}]\n");
        let scenario = shakedown_spec::parse(&text, "t.toml").unwrap();
        Entry { path: PathBuf::from(format!("{name}.toml")), text, scenario, explicit }
    }

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.scenario.name.as_str()).collect()
    }

    #[test]
    fn selection_by_tag_filter_and_partition() {
        let all = || vec![entry("a", &[], false), entry("b", &["extended"], false), entry("c", &["fast"], false)];
        let (run, skipped) = select(all(), &Selection::default());
        assert_eq!(names(&run), ["a", "c"]);
        assert!(skipped[0].reason.contains("--tags extended"), "{:?}", skipped[0]);
        let sel = |tags: &[&str], filter: Option<&str>, partition| Selection {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            filter: filter.map(String::from),
            partition,
        };
        assert_eq!(names(&select(all(), &sel(&["extended"], None, None)).0), ["b"]);
        assert_eq!(names(&select(all(), &sel(&["fast"], None, None)).0), ["c"]);
        assert_eq!(names(&select(all(), &sel(&[], Some("a"), None)).0), ["a"]);
        let one = select(all(), &sel(&[], None, Some(Partition { k: 1, n: 2 }))).0;
        let two = select(all(), &sel(&[], None, Some(Partition { k: 2, n: 2 }))).0;
        assert_eq!((names(&one), names(&two)), (vec!["a"], vec!["c"]));
        let explicit = vec![entry("x", &["stress"], true)];
        assert_eq!(names(&select(explicit, &Selection::default()).0), ["x"], "a file named directly runs");
    }

    #[test]
    fn discovery_skips_includes_and_sorts() {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["b.toml", "a/z.toml", "a/_shared.toml", "include/x.toml", "a/include/y.toml", "notes.md"] {
            let path = tmp.path().join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let found = discover(&[tmp.path().to_path_buf()]).unwrap();
        let rel: Vec<String> =
            found.iter().map(|f| f.path.strip_prefix(tmp.path()).unwrap().display().to_string()).collect();
        assert_eq!(rel, ["a/z.toml", "b.toml"]);
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(discover(&[empty]).unwrap_err().to_string().contains("no `*.toml`"));
    }
}
