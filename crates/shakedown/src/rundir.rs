//! The run directory's name and its resolved `scenario.toml`; the runner
//! streams the history and logs into it, and `finish` writes the reports.

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
    let text = shakedown_history::redact::redact(&(header + &pinned));
    shakedown_runner::files::write_private(&run_dir.join("scenario.toml"), text.as_bytes())
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
