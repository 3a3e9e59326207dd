//! The run directory: resolved scenario, history, logs, report.json, junit.xml,
//! and states.json (the state checks' snapshots).

use shakedown_history::History;
use shakedown_report::Report;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `.shakedown/runs/<scenario>-<UTC time>-<seed>`, made unique if it exists.
pub fn default_run_dir(scenario: &str, seed: u64) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let safe: String =
        scenario.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let base = PathBuf::from(".shakedown").join("runs");
    let mut dir = base.join(format!("{safe}-{stamp}-{seed}"));
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = base.join(format!("{safe}-{stamp}-{seed}-{n}"));
    }
    dir
}

/// Writes `scenario.toml`: the scenario's text with its seed and base directory
/// pinned, so the run can be repeated from the run directory alone.
pub fn write_resolved_scenario(run_dir: &Path, text: Option<&str>, seed: u64, base_dir: &Path) -> std::io::Result<()> {
    let Some(text) = text else { return Ok(()) };
    let base = toml::Value::String(base_dir.display().to_string()).to_string();
    let pinned = pin_top_level(&pin_top_level(text, "seed", &seed.to_string()), "base_dir", &base);
    let header = format!("# Resolved by shakedown {}: seed and base_dir are pinned.\n", env!("CARGO_PKG_VERSION"));
    std::fs::write(run_dir.join("scenario.toml"), header + &pinned)
}

/// Sets a top-level `key = value` line: replaced where the text has one before
/// its first table, else added at the top.
fn pin_top_level(text: &str, key: &str, value: &str) -> String {
    let line = regex::Regex::new(&format!(r"(?m)^{key}\s*=.*$")).expect("key names are plain words");
    let first_table =
        regex::Regex::new(r"(?m)^\s*\[").expect("static regex").find(text).map_or(text.len(), |m| m.start());
    match line.find(&text[..first_table]) {
        Some(m) => format!("{}{key} = {value}{}", &text[..m.start()], &text[m.end()..]),
        None => format!("{key} = {value}\n{text}"),
    }
}

/// Writes `history.jsonl`, `report.json`, `junit.xml` and `report.html`.
pub fn write_outputs(run_dir: &Path, history: &History, report: &Report) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(run_dir.join("history.jsonl"))?);
    shakedown_history::write_jsonl(&mut out, history)?;
    out.flush()?;
    report.write_json(&run_dir.join("report.json")).map_err(std::io::Error::other)?;
    shakedown_report::write_junit(report, &run_dir.join("junit.xml")).map_err(std::io::Error::other)?;
    shakedown_report::write_html(report, history, &run_dir.join("report.html")).map_err(std::io::Error::other)?;
    Ok(())
}

/// Writes `states.json`, the state checks' snapshots, when there are any.
pub fn write_states(run_dir: &Path, states: &[shakedown_history::state::Snapshot]) -> std::io::Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let text = serde_json::to_string_pretty(states).map_err(std::io::Error::other)?;
    std::fs::write(run_dir.join("states.json"), text + "\n")
}

#[cfg(test)]
mod tests {
    use super::pin_top_level;

    #[test]
    fn pins_only_top_level_keys() {
        let text = "name = \"x\"\nseed = 1\n[service.a]\nseed = 2\n";
        assert_eq!(pin_top_level(text, "seed", "9"), "name = \"x\"\nseed = 9\n[service.a]\nseed = 2\n");
        assert_eq!(pin_top_level("[t]\nseed = 2\n", "seed", "9"), "seed = 9\n[t]\nseed = 2\n");
    }
}
