//! The run directory: resolved scenario, history, logs, report.json, junit.xml.

use shakedown_history::History;
use shakedown_report::Report;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `.shakedown/runs/<scenario>-<UTC time>-<seed>`, made unique if it exists.
pub fn default_run_dir(scenario: &str, seed: u64) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().chars().filter(char::is_ascii_alphanumeric).collect();
    let safe: String = scenario.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let base = PathBuf::from(".shakedown").join("runs");
    let mut dir = base.join(format!("{safe}-{stamp}-{seed}"));
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = base.join(format!("{safe}-{stamp}-{seed}-{n}"));
    }
    dir
}

/// Writes `scenario.toml`: the scenario's text with its seed pinned, so the run
/// can be repeated from the directory alone.
pub fn write_resolved_scenario(run_dir: &Path, text: Option<&str>, seed: u64) -> std::io::Result<()> {
    let Some(text) = text else { return Ok(()) };
    let seed_line = regex::Regex::new(r"(?m)^seed\s*=.*$").expect("static regex");
    let first_table = text.find("\n[").unwrap_or(text.len());
    let pinned = match seed_line.find(&text[..first_table]) {
        Some(m) => format!("{}seed = {seed}{}", &text[..m.start()], &text[m.end()..]),
        None => format!("seed = {seed}\n{text}"),
    };
    let header = format!("# Resolved by shakedown {}: the seed is pinned.\n", env!("CARGO_PKG_VERSION"));
    std::fs::write(run_dir.join("scenario.toml"), header + &pinned)
}

/// Writes `history.jsonl`, `report.json` and `junit.xml`.
pub fn write_outputs(run_dir: &Path, history: &History, report: &Report) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(run_dir.join("history.jsonl"))?);
    shakedown_history::write_jsonl(&mut out, history)?;
    out.flush()?;
    report.write_json(&run_dir.join("report.json")).map_err(std::io::Error::other)?;
    shakedown_report::write_junit(report, &run_dir.join("junit.xml")).map_err(std::io::Error::other)?;
    Ok(())
}
