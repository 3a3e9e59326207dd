//! Baselines: a run's metrics saved under a name (`--save-baseline NAME`) and
//! later runs compared with them (`--baseline NAME --max-regression 10%`).
//!
//! A baseline is `.shakedown/baselines/NAME.json` (the directory is
//! `$SHAKEDOWN_BASELINE_DIR` when set), holding each run's metrics keyed by
//! scenario name and matrix cell (`batch[size=100]`). Saving merges into the
//! file, so the cells of a suite accumulate. A comparison adds a `baseline`
//! check to the run's report: invalid, naming each metric that moved in its
//! bad direction (throughput down; RSS, CPU, latency up) by more than the
//! threshold, with the old and new values.
//!
//! Noise: a metric whose baseline value is below its floor ([`noise_floor`])
//! is not compared, since a small absolute wobble there is a large ratio.

use shakedown::crates::history::metrics::{Better, Metric, Metrics};
use shakedown::{CheckResult, Finished, Verdict};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Overrides the directory baselines are kept in.
pub const DIR_ENV: &str = "SHAKEDOWN_BASELINE_DIR";

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("read baseline {}: no such file; save one first with --save-baseline {name}", path.display())]
    Missing { name: String, path: PathBuf },
    #[error("read baseline {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse baseline {}: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("find `{key}` in baseline {}: it holds {known}", path.display())]
    NoScenario { key: String, path: PathBuf, known: String },
    #[error("write baseline {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("use baseline name `{0}`: expected letters, digits, `-`, `_` or `.` (not starting with `.`)")]
    BadName(String),
}

/// What a baseline file holds: `{"shakedown_version": ..., "runs": {KEY: METRICS}}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Baseline {
    pub shakedown_version: String,
    /// Metrics by run key (scenario name and matrix cell).
    pub runs: BTreeMap<String, Metrics>,
}

impl Baseline {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "shakedown_version": self.shakedown_version, "runs": self.runs })
    }

    fn from_json(text: &str) -> Result<Baseline, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_str(text)?;
        let version = value.get("shakedown_version").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let runs = serde_json::from_value(value.get_mut("runs").map(serde_json::Value::take).unwrap_or_default())?;
        Ok(Baseline { shakedown_version: version, runs })
    }
}

/// The file of baseline `name`.
pub fn path(name: &str) -> Result<PathBuf, BaselineError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(BaselineError::BadName(name.to_string()));
    }
    let dir = std::env::var_os(DIR_ENV).map_or_else(|| Path::new(".shakedown").join("baselines"), PathBuf::from);
    Ok(dir.join(format!("{name}.json")))
}

/// Reads baseline `name`; a missing file is [`BaselineError::Missing`].
pub fn load(name: &str) -> Result<(PathBuf, Baseline), BaselineError> {
    let path = path(name)?;
    let text = match crate::input::read_small(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BaselineError::Missing { name: name.to_string(), path })
        }
        Err(source) => return Err(BaselineError::Read { path, source }),
    };
    let baseline = Baseline::from_json(&text).map_err(|source| BaselineError::Parse { path: path.clone(), source })?;
    Ok((path, baseline))
}

/// The stored metrics for `key`, or an error naming the file and what it holds.
pub fn lookup<'a>(path: &Path, baseline: &'a Baseline, key: &str) -> Result<&'a Metrics, BaselineError> {
    baseline.runs.get(key).ok_or_else(|| {
        let names: Vec<&str> = baseline.runs.keys().map(String::as_str).collect();
        let known = if names.is_empty() { "no runs".to_string() } else { format!("only {}", names.join(", ")) };
        BaselineError::NoScenario { key: key.to_string(), path: path.to_path_buf(), known }
    })
}

/// Adds (or replaces) runs' metrics in baseline `name`, creating it when absent.
pub fn save(name: &str, runs: Vec<(String, Metrics)>) -> Result<PathBuf, BaselineError> {
    let mut baseline = match load(name) {
        Ok((_, b)) => b,
        Err(BaselineError::Missing { .. }) => Baseline::default(),
        Err(e) => return Err(e),
    };
    let path = path(name)?;
    baseline.shakedown_version = env!("CARGO_PKG_VERSION").to_string();
    baseline.runs.extend(runs);
    let write = |source| BaselineError::Write { path: path.clone(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let text = serde_json::to_string_pretty(&baseline.to_json()).map_err(|e| write(std::io::Error::other(e)))?;
    // Written aside and renamed, so an interrupted save leaves the old baseline whole.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n").map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(write)?;
    Ok(path)
}

/// A run's key in a baseline: its scenario name with the matrix cell, as
/// `shakedown run` names cells (`name[engine=sqlite]`).
pub fn key(scenario: &str, cell: &BTreeMap<String, String>) -> String {
    let suffix = format!("[{}]", shakedown::crates::spec::cell_name(cell));
    if cell.is_empty() || scenario.ends_with(&suffix) {
        scenario.to_string()
    } else {
        format!("{scenario}{suffix}")
    }
}

/// What `--save-baseline` and `--baseline` asked for, resolved before any run.
#[derive(Debug, Default)]
pub struct Plan {
    pub save: Option<String>,
    /// The baseline compared with: its name, file, content and threshold (a fraction).
    pub compare: Option<(String, PathBuf, Baseline, f64)>,
}

impl Plan {
    /// Reads the baseline to compare with and checks it holds every run
    /// about to happen (`keys`), so a missing one fails before anything runs.
    pub fn resolve(
        save: Option<String>,
        compare: Option<&str>,
        max_regression: f64,
        keys: &[String],
    ) -> Result<Plan, BaselineError> {
        if let Some(name) = &save {
            path(name)?;
        }
        let compare = match compare {
            None => None,
            Some(name) => {
                let (path, baseline) = load(name)?;
                for key in keys {
                    lookup(&path, &baseline, key)?;
                }
                Some((name.to_string(), path, baseline, max_regression))
            }
        };
        Ok(Plan { save, compare })
    }

    /// The comparison each completed run gets before its outputs are
    /// written: a `baseline` check joining its report (and its verdict).
    pub fn comparison(&self) -> Option<std::sync::Arc<shakedown::BaselineFn>> {
        let (name, path, baseline, max) = self.compare.clone()?;
        Some(std::sync::Arc::new(move |report: &shakedown::Report| {
            if report.end != shakedown::RunEnd::Completed.status() {
                return None;
            }
            let key = key(&report.scenario, &report.matrix);
            Some(match lookup(&path, &baseline, &key) {
                Ok(old) => check_result(&name, &compare(old, &report.metrics, max), max),
                Err(e) => CheckResult::new("baseline", Verdict::Unknown, e.to_string(), serde_json::json!({})),
            })
        }))
    }

    /// Saves the completed runs' metrics; the file written, if any.
    pub fn save_runs<'a>(
        &self,
        runs: impl IntoIterator<Item = &'a Finished>,
    ) -> Result<Option<PathBuf>, BaselineError> {
        let Some(name) = &self.save else { return Ok(None) };
        let done = runs.into_iter().filter(|f| f.end == shakedown::RunEnd::Completed);
        let entries: Vec<(String, Metrics)> =
            done.map(|f| (key(&f.report.scenario, &f.report.matrix), f.report.metrics.clone())).collect();
        if entries.is_empty() {
            return Ok(None);
        }
        save(name, entries).map(Some)
    }
}

/// `--max-regression`: a percentage, "10%" (or "10"), as a fraction (0.1).
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(pct) if pct.is_finite() && pct >= 0.0 => Ok(pct / 100.0),
        _ => Err(format!("`{text}` is not a percentage; expected one like 10%")),
    }
}

/// Below this baseline value a metric is noise and is not compared: 1 per
/// second for throughputs (`ops/s`, `items/s`), 5 ms of latency, 100 ms of
/// CPU time, 1 MiB of memory.
pub fn noise_floor(name: &str, m: &Metric) -> f64 {
    match m.unit.as_str() {
        unit if unit.ends_with("/s") => 1.0,
        "bytes" => (1u64 << 20) as f64,
        "ms" if name.ends_with(".cpu_ms") => 100.0,
        "ms" => 5.0,
        _ => 0.0,
    }
}

/// One metric that moved the bad way by more than the threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub metric: String,
    pub old: f64,
    pub new: f64,
    pub unit: String,
    /// How much worse, as a fraction of the old value (0.25 = 25% worse).
    pub worse_by: f64,
}

/// The outcome of comparing a run's metrics with its baseline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    pub regressions: Vec<Regression>,
    /// Metrics compared and within the threshold.
    pub within: Vec<String>,
    /// Baseline values under their noise floor.
    pub below_floor: Vec<String>,
    /// In the baseline but not in this run.
    pub missing: Vec<String>,
}

/// Compares every baseline metric with the run's; `max_regression` is a fraction (0.1 = 10%).
pub fn compare(old: &Metrics, new: &Metrics, max_regression: f64) -> Comparison {
    let mut c = Comparison::default();
    for (name, was) in old.iter() {
        let Some(now) = new.get(name) else {
            c.missing.push(name.clone());
            continue;
        };
        if was.value < noise_floor(name, was) || was.value <= 0.0 {
            c.below_floor.push(name.clone());
            continue;
        }
        let worse_by = match was.better {
            Better::Higher => (was.value - now.value) / was.value,
            Better::Lower => (now.value - was.value) / was.value,
        };
        if worse_by > max_regression {
            let unit = was.unit.clone();
            c.regressions.push(Regression { metric: name.clone(), old: was.value, new: now.value, unit, worse_by });
        } else {
            c.within.push(name.clone());
        }
    }
    c
}

/// The `baseline` check result for a comparison.
pub fn check_result(name: &str, c: &Comparison, max_regression: f64) -> CheckResult {
    let details = serde_json::json!({
        "baseline": name,
        "max_regression": max_regression,
        "regressions": c.regressions.iter().map(|r| serde_json::json!({
            "metric": r.metric, "old": r.old, "new": r.new, "unit": r.unit, "worse_by": r.worse_by,
        })).collect::<Vec<_>>(),
        "within": c.within,
        "below_floor": c.below_floor,
        "missing": c.missing,
    });
    let pct = max_regression * 100.0;
    if c.regressions.is_empty() {
        let summary = format!(
            "{} metrics within {pct:.0}% of baseline {name} ({} under the noise floor)",
            c.within.len(),
            c.below_floor.len()
        );
        let verdict = if c.within.is_empty() { Verdict::Unknown } else { Verdict::Valid };
        return CheckResult::new("baseline", verdict, summary, details);
    }
    let lines: Vec<String> = c
        .regressions
        .iter()
        .map(|r| {
            let show = |v: f64| Metric::new(v, &r.unit, Better::Lower).display();
            format!("{} {} -> {} ({:.0}% worse)", r.metric, show(r.old), show(r.new), r.worse_by * 100.0)
        })
        .collect();
    let summary = format!("regressed beyond {pct:.0}% of baseline {name}: {}", lines.join(", "));
    CheckResult::new("baseline", Verdict::Invalid, summary, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(values: &[(&str, f64)]) -> Metrics {
        let mut m = Metrics::default();
        for (name, v) in values {
            let (unit, better) = match name {
                n if n.ends_with("per_s") => ("ops/s", Better::Higher),
                n if n.ends_with("bytes") => ("bytes", Better::Lower),
                _ => ("ms", Better::Lower),
            };
            m.insert(name, *v, unit, better);
        }
        m
    }

    const MIB: f64 = 1048576.0;

    #[test]
    fn regressions_are_in_the_bad_direction_only_and_beyond_the_threshold() {
        let old = metrics(&[
            ("ops.per_s", 100.0),
            ("latency.add.p99_ms", 20.0),
            ("service.kv.peak_rss_bytes", 10.0 * MIB),
            ("service.kv.cpu_ms", 1000.0),
        ]);
        type Values<'a> = &'a [(&'a str, f64)];
        let cases: &[(Values, &[&str])] = &[
            (
                &[
                    ("ops.per_s", 95.0),
                    ("latency.add.p99_ms", 21.0),
                    ("service.kv.peak_rss_bytes", 10.5 * MIB),
                    ("service.kv.cpu_ms", 1050.0),
                ],
                &[],
            ),
            (
                &[
                    ("ops.per_s", 500.0),
                    ("latency.add.p99_ms", 2.0),
                    ("service.kv.peak_rss_bytes", MIB),
                    ("service.kv.cpu_ms", 10.0),
                ],
                &[],
            ),
            (
                &[
                    ("ops.per_s", 80.0),
                    ("latency.add.p99_ms", 20.0),
                    ("service.kv.peak_rss_bytes", 10.0 * MIB),
                    ("service.kv.cpu_ms", 1000.0),
                ],
                &["ops.per_s"],
            ),
            (
                &[
                    ("ops.per_s", 100.0),
                    ("latency.add.p99_ms", 30.0),
                    ("service.kv.peak_rss_bytes", 12.0 * MIB),
                    ("service.kv.cpu_ms", 1500.0),
                ],
                &["latency.add.p99_ms", "service.kv.cpu_ms", "service.kv.peak_rss_bytes"],
            ),
        ];
        for (new, want) in cases {
            let c = compare(&old, &metrics(new), 0.1);
            let got: Vec<&str> = c.regressions.iter().map(|r| r.metric.as_str()).collect();
            assert_eq!(got, *want, "{new:?}");
        }
    }

    #[test]
    fn tiny_baselines_are_skipped_and_missing_metrics_listed() {
        let old = metrics(&[
            ("ops.per_s", 0.5),
            ("latency.add.p99_ms", 1.0),
            ("service.kv.cpu_ms", 40.0),
            ("ops.read.per_s", 50.0),
        ]);
        let c = compare(
            &old,
            &metrics(&[("ops.per_s", 0.1), ("latency.add.p99_ms", 4.0), ("service.kv.cpu_ms", 90.0)]),
            0.1,
        );
        assert!(c.regressions.is_empty(), "{c:?}");
        assert_eq!(c.below_floor, ["latency.add.p99_ms", "ops.per_s", "service.kv.cpu_ms"]);
        assert_eq!(c.missing, ["ops.read.per_s"]);
    }

    #[test]
    fn the_check_names_each_regressed_metric_with_old_and_new() {
        let old = metrics(&[("ops.per_s", 100.0), ("latency.add.p99_ms", 20.0)]);
        let c = compare(&old, &metrics(&[("ops.per_s", 40.0), ("latency.add.p99_ms", 20.0)]), 0.1);
        let r = check_result("main", &c, 0.1);
        assert_eq!(r.verdict, Verdict::Invalid);
        assert_eq!(r.summary, "regressed beyond 10% of baseline main: ops.per_s 100.0 ops/s -> 40.0 ops/s (60% worse)");
        assert_eq!(r.details["regressions"][0]["old"], 100.0);
        let ok = check_result("main", &compare(&old, &old, 0.1), 0.1);
        assert_eq!(
            (ok.verdict, ok.summary.as_str()),
            (Verdict::Valid, "2 metrics within 10% of baseline main (0 under the noise floor)")
        );
    }

    #[test]
    fn keys_carry_the_matrix_cell_once() {
        let cell: BTreeMap<String, String> = [("n".to_string(), "1".to_string())].into();
        assert_eq!(key("b", &BTreeMap::new()), "b");
        assert_eq!(key("b", &cell), "b[n=1]");
        assert_eq!(key("b[n=1]", &cell), "b[n=1]");
    }

    #[test]
    fn thresholds_and_names_parse_or_explain() {
        assert_eq!(parse_threshold("10%"), Ok(0.1));
        assert_eq!(parse_threshold("25"), Ok(0.25));
        for bad in ["", "-5%", "ten", "nan%"] {
            assert!(parse_threshold(bad).unwrap_err().contains("expected one like 10%"), "{bad}");
        }
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(matches!(path(bad), Err(BaselineError::BadName(_))), "{bad}");
        }
    }

    #[test]
    fn saves_merge_and_lookups_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        // Tests in this binary that set the variable run here only.
        std::env::set_var(DIR_ENV, dir.path());
        let err = load("main").unwrap_err().to_string();
        assert!(
            err.contains(&dir.path().join("main.json").display().to_string()) && err.contains("--save-baseline main"),
            "{err}"
        );
        save("main", vec![("a".into(), metrics(&[("ops.per_s", 1.0)]))]).unwrap();
        let path = save("main", vec![("b[n=1]".into(), metrics(&[("ops.per_s", 2.0)]))]).unwrap();
        let (read_path, b) = load("main").unwrap();
        assert_eq!((read_path, b.runs.len()), (path.clone(), 2));
        let err = lookup(&path, &b, "c").unwrap_err().to_string();
        assert!(err.contains("find `c` in baseline") && err.contains("only a, b[n=1]"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(load("main").unwrap_err().to_string().starts_with("parse baseline"));
    }
}
