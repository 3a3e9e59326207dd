//! The run directory's name and its resolved `scenario.toml`; the runner
//! streams the history and logs into it, and `finish` writes the reports.

use std::path::{Path, PathBuf};

/// Where run directories go when no `--out` names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsBase {
    pub dir: PathBuf,
    /// Why it is not the current directory's `.shakedown/runs`, when it is not.
    pub fallback: Option<String>,
}

/// The current directory's `.shakedown/runs` when it can be made there; else
/// the user's state directory (`$XDG_STATE_HOME/shakedown/runs`, or
/// `~/.local/state/shakedown/runs`), so a read-only checkout still runs.
pub fn runs_base() -> RunsBase {
    let local = PathBuf::from(".shakedown").join("runs");
    let why = match shakedown_runner::files::create_dir_private(&local) {
        Ok(()) => return RunsBase { dir: local, fallback: None },
        Err(e) => format!("cannot create {} here ({e})", local.display()),
    };
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    match state {
        Some(state) => RunsBase { dir: state.join("shakedown").join("runs"), fallback: Some(why) },
        None => RunsBase { dir: std::env::temp_dir().join("shakedown-runs"), fallback: Some(why) },
    }
}

/// `<runs base>/<scenario>-<UTC time>-<seed>` (see [`runs_base`]), made
/// unique if it exists.
pub fn default_run_dir(scenario: &str, seed: u64) -> PathBuf {
    let stamp: String = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let safe: String =
        scenario.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let base = runs_base().dir;
    let mut dir = base.join(format!("{safe}-{stamp}-{seed}"));
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = base.join(format!("{safe}-{stamp}-{seed}-{n}"));
    }
    dir
}

/// Writes `scenario.toml`: the scenario's text with its seed and base directory
/// pinned, so the run can be repeated from the run directory alone. The text
/// is edited as TOML (comments and layout kept), never searched.
pub fn write_resolved_scenario(run_dir: &Path, text: Option<&str>, seed: u64, base_dir: &Path) -> std::io::Result<()> {
    let Some(text) = text else { return Ok(()) };
    let pinned = pin(text, seed, base_dir).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let header = format!("# Resolved by shakedown {}: seed and base_dir are pinned.\n", env!("CARGO_PKG_VERSION"));
    let text = shakedown_history::redact::redact(&(header + &pinned));
    shakedown_runner::files::write_private(&run_dir.join("scenario.toml"), text.as_bytes())
}

/// `text` with top-level `seed` and `base_dir` set: the seed as an integer,
/// or as text when it is past TOML's i64 integers (the scenario reads both).
fn pin(text: &str, seed: u64, base_dir: &Path) -> Result<String, String> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("re-read the scenario: {e}"))?;
    doc["seed"] = match i64::try_from(seed) {
        Ok(n) => toml_edit::value(n),
        Err(_) => toml_edit::value(seed.to_string()),
    };
    doc["base_dir"] = toml_edit::value(base_dir.display().to_string());
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::pin;
    use std::path::Path;

    #[test]
    fn pins_only_top_level_keys_and_keeps_comments() {
        let text = "# why\nname = \"x\" # the name\nseed = 1\n[service.a]\nseed = 2\n";
        let pinned = pin(text, 9, Path::new("/b")).unwrap();
        assert_eq!(pinned, "# why\nname = \"x\" # the name\nseed = 9\nbase_dir = \"/b\"\n[service.a]\nseed = 2\n");
        let pinned = pin("[t]\nseed = 2\n", u64::MAX, Path::new("/b")).unwrap();
        let s = shakedown_spec::parse(&pinned.replace("[t]\nseed = 2", "name = \"n\""), "t.toml").unwrap();
        assert_eq!(s.seed, Some(u64::MAX), "a seed past i64 is pinned as text and read back: {pinned}");
        // A comment mentioning `seed = 3` before a table is a comment, not a key.
        let pinned = pin("name = \"x\"\n# seed = 3\n", 4, Path::new("/b")).unwrap();
        assert!(pinned.contains("# seed = 3") && pinned.contains("\nseed = 4\n"), "{pinned}");
    }
}
