//! `shakedown replay RUN_DIR`: what to run again, from a run directory alone.
//!
//! The run directory's `scenario.toml` has the seed and base directory pinned
//! (and includes inlined); its `report.json` names the matrix cell. Replaying
//! runs that file with that seed in that cell, so workload draws and the fault
//! schedule repeat.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A run to repeat.
#[derive(Debug, PartialEq, Eq)]
pub struct Replay {
    /// The run directory's resolved `scenario.toml`.
    pub scenario: PathBuf,
    /// The seed of the run, from its report (None: the one pinned in the scenario).
    pub seed: Option<u64>,
    /// The matrix cell the run was, as `--matrix` filters.
    pub cell: Vec<(String, String)>,
    /// The names of the run's invalid checks (empty without a report).
    pub invalid: BTreeSet<String>,
    /// Why the report could not say everything, for a warning.
    pub note: Option<String>,
}

/// Why a directory cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("read the run directory {}: it has no scenario.toml; expected a directory a run wrote (.shakedown/runs/... or --out DIR)", .0.display())]
    NotARunDir(PathBuf),
    #[error("read {}: {message}", .path.display())]
    Report { path: PathBuf, message: String },
}

/// Reads what `run_dir` needs replayed.
pub fn resolve(run_dir: &Path) -> Result<Replay, ReplayError> {
    let scenario = run_dir.join("scenario.toml");
    if !scenario.is_file() {
        return Err(ReplayError::NotARunDir(run_dir.to_path_buf()));
    }
    let report = run_dir.join("report.json");
    let text = match crate::input::read_small(&report) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let note =
                "no report.json (the run did not finish): replaying with the scenario's pinned seed, every matrix cell";
            let invalid = BTreeSet::new();
            return Ok(Replay { scenario, seed: None, cell: Vec::new(), invalid, note: Some(note.to_string()) });
        }
        Err(e) => return Err(ReplayError::Report { path: report, message: e.to_string() }),
    };
    let facts = report_facts(&text).map_err(|message| ReplayError::Report { path: report, message })?;
    Ok(Replay { scenario, seed: Some(facts.seed), cell: facts.cell, invalid: facts.invalid, note: None })
}

/// The scenario a run directory ran, in the matrix cell it ran (named as a
/// suite names it, `NAME[engine=a]`), with its `scenario.toml` path. The
/// cell comes from the history's header, which even a killed run has.
pub fn scenario_of(run_dir: &Path) -> Result<(shakedown::Scenario, PathBuf), ReplayError> {
    let file = run_dir.join("scenario.toml");
    let text = crate::input::read_scenario(&file).map_err(|_| ReplayError::NotARunDir(run_dir.to_path_buf()))?;
    let base = file.parent().unwrap_or(Path::new("."));
    let not_valid = |message: String| ReplayError::Report { path: file.clone(), message };
    let (scenario, _) = shakedown::crates::spec::parse_file(&text, &file.display().to_string(), base)
        .map_err(|e| not_valid(e.to_string()))?;
    let cell = history_cell(&run_dir.join("history.jsonl"))?;
    if cell.is_empty() {
        return Ok((scenario, file));
    }
    let (mut scenario, _) = scenario.for_cell(&cell).map_err(not_valid)?;
    scenario.name = format!("{}[{}]", scenario.name, shakedown::crates::spec::cell_name(&cell));
    Ok((scenario, file))
}

/// The matrix cell in a history's header line (`meta.matrix`); empty when it has none.
fn history_cell(path: &Path) -> Result<shakedown::crates::spec::Cell, ReplayError> {
    use std::io::BufRead;
    let bad = |message: String| ReplayError::Report { path: path.to_path_buf(), message };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut line = String::new();
    std::io::BufReader::new(file).take(1 << 20).read_line(&mut line).map_err(|e| bad(e.to_string()))?;
    let header: serde_json::Value =
        serde_json::from_str(&line).map_err(|e| bad(format!("line 1: not a history header: {e}")))?;
    let Some(matrix) = header.pointer("/meta/matrix").and_then(|m| m.as_object()) else {
        return Ok(Default::default());
    };
    Ok(matrix.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
}

/// What a report.json says that replaying and shrinking need.
#[derive(Debug)]
pub struct Facts {
    pub seed: u64,
    pub cell: Vec<(String, String)>,
    /// The names of the checks it found invalid.
    pub invalid: BTreeSet<String>,
}

/// Reads a report.json's facts.
pub fn read_report(path: &Path) -> Result<Facts, String> {
    report_facts(&crate::input::read_small(path).map_err(|e| e.to_string())?)
}

fn report_facts(text: &str) -> Result<Facts, String> {
    #[derive(serde::Deserialize)]
    struct Check {
        name: String,
        verdict: String,
    }
    #[derive(serde::Deserialize)]
    struct Fields {
        seed: u64,
        #[serde(default)]
        matrix: BTreeMap<String, String>,
        #[serde(default)]
        checks: Vec<Check>,
    }
    let fields: Fields = serde_json::from_str(text).map_err(|e| format!("not a shakedown report: {e}"))?;
    let invalid = fields.checks.into_iter().filter(|c| c.verdict == "invalid").map(|c| c.name).collect();
    Ok(Facts { seed: fields.seed, cell: fields.matrix.into_iter().collect(), invalid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_gives_the_seed_the_cell_and_the_invalid_checks() {
        let text = r#"{"seed": 42, "matrix": {"engine": "sqlite"}, "checks": [
            {"name": "set", "verdict": "invalid", "details": {}}, {"name": "stats", "verdict": "valid"}]}"#;
        let facts = report_facts(text).unwrap();
        assert_eq!(facts.seed, 42);
        assert_eq!(facts.cell, [("engine".to_string(), "sqlite".to_string())]);
        assert_eq!(facts.invalid, BTreeSet::from(["set".to_string()]));
        let bare = report_facts(r#"{"seed": 1}"#).unwrap();
        assert!(bare.cell.is_empty() && bare.invalid.is_empty());
    }

    #[test]
    fn a_bad_report_or_directory_says_what_and_where() {
        let err = report_facts(r#"{"matrix": {}}"#).unwrap_err();
        assert!(err.contains("missing field `seed`"), "{err}");
        let err = report_facts("garbage").unwrap_err();
        assert!(err.starts_with("not a shakedown report"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("has no scenario.toml"), "{err}");
        std::fs::write(dir.path().join("scenario.toml"), "name = \"x\"").unwrap();
        let replay = resolve(dir.path()).unwrap();
        assert_eq!((replay.seed, replay.cell.len()), (None, 0));
        assert!(replay.note.unwrap().contains("no report.json"));
        std::fs::write(dir.path().join("report.json"), "{").unwrap();
        let err = resolve(dir.path()).unwrap_err().to_string();
        assert!(err.contains("report.json") && err.contains("not a shakedown report"), "{err}");
    }
}
