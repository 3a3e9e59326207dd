//! `shakedown shrink RUN_DIR`: makes a failing run's scenario smaller while it
//! still fails the same way.
//!
//! Shrinking edits the scenario, not the history: it tries a shorter run (half
//! the `duration` or `ops`), fewer `clients`, and each `[[fault]]` and each
//! drawn action left out, in that order, and keeps an edit when a run of the
//! edited scenario (same seed, same matrix cell) is still invalid on one of the
//! checks the original failed. Runs are real, so a failure that needs luck
//! may not repeat; every attempt is bounded by `max_runs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The shortest duration a candidate may have.
const MIN_DURATION_MS: u64 = 1_000;
/// The fewest operations a candidate may run.
const MIN_OPS: i64 = 10;

/// One edit of a scenario, said as people would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub what: String,
    pub text: String,
}

/// The smaller scenarios to try next from `text`, most promising first.
pub fn candidates(text: &str) -> Vec<Edit> {
    let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(ms) = table.get("duration").and_then(|d| d.as_str()).and_then(duration_ms) {
        if ms / 2 >= MIN_DURATION_MS {
            let mut t = table.clone();
            t.insert("duration".into(), toml::Value::String(format!("{}ms", ms / 2)));
            out.extend(edit(format!("duration {} -> {}ms", humantime_ms(ms), ms / 2), &t));
        }
    }
    if let Some(ops) = table.get("ops").and_then(|o| o.as_integer()).filter(|o| o / 2 >= MIN_OPS) {
        let mut t = table.clone();
        t.insert("ops".into(), toml::Value::Integer(ops / 2));
        out.extend(edit(format!("ops {ops} -> {}", ops / 2), &t));
    }
    if let Some(clients) = table.get("clients").and_then(|c| c.as_integer()).filter(|c| *c > 1) {
        let mut t = table.clone();
        t.insert("clients".into(), toml::Value::Integer(clients / 2));
        out.extend(edit(format!("clients {clients} -> {}", clients / 2), &t));
    }
    out.extend(without_each(&table, "fault", |f| {
        let kind = f.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
        let name = f.get("name").and_then(|k| k.as_str()).map(|n| format!(" `{n}`")).unwrap_or_default();
        format!("{kind} fault{name}")
    }));
    out.extend(without_each(&table, "action", |a| {
        let label = a.get("name").or_else(|| a.get("f")).and_then(|k| k.as_str()).unwrap_or("?");
        format!("action `{label}`")
    }));
    out
}

/// The table with one element of the array of tables `key` left out, for
/// each element; actions that only `finally` or steps run (weight 0) stay.
fn without_each(table: &toml::Table, key: &str, label: impl Fn(&toml::Table) -> String) -> Vec<Edit> {
    let Some(items) = table.get(key).and_then(|v| v.as_array()) else { return Vec::new() };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(item) = item.as_table() else { continue };
        if key == "action" && item.get("weight").and_then(|w| w.as_integer()) == Some(0) {
            continue;
        }
        let mut rest = items.clone();
        rest.remove(i);
        let mut t = table.clone();
        if rest.is_empty() {
            t.remove(key);
        } else {
            t.insert(key.into(), toml::Value::Array(rest));
        }
        out.extend(edit(format!("without the {}", label(item)), &t));
    }
    out
}

/// The edited table as text; None (the edit is not tried) in the unlikely
/// case the serializer refuses what the parser accepted.
fn edit(what: String, table: &toml::Table) -> Option<Edit> {
    toml::to_string(table).ok().map(|text| Edit { what, text })
}

fn duration_ms(text: &str) -> Option<u64> {
    humantime::parse_duration(text).ok().map(|d| d.as_millis() as u64)
}

fn humantime_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

/// The text without its top-level `seed = N` line: a TOML integer holds
/// only i64, a seed any u64, and every run passes the seed with `--seed`.
pub fn without_seed(text: &str) -> String {
    let first_table = text.lines().position(|l| l.trim_start().starts_with('[')).unwrap_or(usize::MAX);
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, l)| !(*i < first_table && l.trim_start().starts_with("seed") && l.contains('=')))
        .map(|(_, l)| l)
        .collect();
    kept.join("\n") + "\n"
}

/// Whether a run with `invalid` checks still fails the way the original did.
pub fn same_failure(original: &BTreeSet<String>, invalid: &BTreeSet<String>) -> bool {
    !original.is_disjoint(invalid)
}

/// Greedy shrinking: from `text`, keep applying the first candidate edit
/// whose run (`still_fails`) still fails, until none does or `max_runs` runs
/// were made. Returns the smallest scenario and the edits kept.
pub fn shrink(text: &str, max_runs: usize, mut still_fails: impl FnMut(&Edit) -> bool) -> (String, Vec<String>, usize) {
    let (mut current, mut kept, mut runs) = (text.to_string(), Vec::new(), 0);
    'outer: while runs < max_runs {
        for candidate in candidates(&current) {
            if runs == max_runs {
                break 'outer;
            }
            runs += 1;
            if still_fails(&candidate) {
                kept.push(candidate.what);
                current = candidate.text;
                continue 'outer;
            }
        }
        break;
    }
    (current, kept, runs)
}

/// Why shrinking could not start or finish: bad input (a usage error) or a
/// file that could not be written (a harness failure).
pub enum Problem {
    Usage(String),
    Harness(String),
}

/// `shakedown shrink`: shrinks `run_dir`'s scenario into `out` (default
/// `RUN_DIR/shrink`), printing each run, and writes `shrunk.toml`.
pub fn shrink_run(run_dir: &Path, out: Option<PathBuf>, max_runs: usize) -> Result<(), Problem> {
    let replay = crate::replay::resolve(run_dir).map_err(|e| Problem::Usage(e.to_string()))?;
    let Some(seed) = replay.seed else {
        let why = "it has no report.json, so which checks failed is unknown";
        return Err(Problem::Usage(format!("shrink {}: {why}", run_dir.display())));
    };
    if replay.invalid.is_empty() {
        return Err(Problem::Usage(format!("shrink {}: nothing to shrink: no check is invalid", run_dir.display())));
    }
    let out = out.unwrap_or_else(|| run_dir.join("shrink"));
    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(Problem::Usage(format!("shrink into {}: it is not empty", out.display())));
    }
    let text = crate::input::read_scenario(&replay.scenario)
        .map_err(|e| Problem::Usage(format!("read {}: {e}", replay.scenario.display())))?;
    let failing: Vec<&str> = replay.invalid.iter().map(String::as_str).collect();
    let scenario = replay.scenario.display();
    eprintln!("shakedown: shrinking {scenario} (failing: {}), at most {max_runs} runs", failing.join(", "));
    let seed = seed.to_string();
    let mut attempt = 0;
    let (small, kept, runs) = shrink(&without_seed(&text), max_runs, |candidate| {
        attempt += 1;
        let run = out.join(format!("run-{attempt:02}"));
        let fails = attempt_fails(&candidate.text, &run, &seed, &replay.cell, &replay.invalid);
        let result = if fails { "still fails: kept" } else { "does not fail the same way" };
        eprintln!("  run {attempt:>2}: {}: {result}", candidate.what);
        fails
    });
    let shrunk = out.join("shrunk.toml");
    std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(&shrunk, format!("seed = {seed}\n{small}")))
        .map_err(|e| Problem::Harness(format!("write {}: {e}", shrunk.display())))?;
    match kept.is_empty() {
        true => eprintln!("shakedown: no smaller scenario failed the same way in {runs} runs"),
        false => eprintln!("shakedown: kept {} of {runs} edits: {}", kept.len(), kept.join("; ")),
    }
    let cell: String = replay.cell.iter().map(|(k, v)| format!(" --matrix {k}={v}")).collect();
    eprintln!("shrunk scenario: {}\nrun it: shakedown run {} --seed {seed}{cell}", shrunk.display(), shrunk.display());
    Ok(())
}

/// Runs `candidate` (written beside its run directory) with the seed and
/// cell; true when a check the original failed is invalid again.
fn attempt_fails(
    candidate: &str,
    run: &Path,
    seed: &str,
    cell: &[(String, String)],
    original: &BTreeSet<String>,
) -> bool {
    let file = run.with_extension("toml");
    if std::fs::create_dir_all(run.parent().unwrap_or(run)).and_then(|()| std::fs::write(&file, candidate)).is_err() {
        return false;
    }
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("shakedown"));
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("run").arg(&file).args(["--seed", seed, "--log-summary", "never", "--out"]).arg(run);
    for (k, v) in cell {
        cmd.arg("--matrix").arg(format!("{k}={v}"));
    }
    let ran = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status();
    if !ran.is_ok_and(|s| s.code() == Some(1)) {
        return false;
    }
    crate::replay::read_report(&run.join("report.json")).is_ok_and(|now| same_failure(original, &now.invalid))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
name = "s"
duration = "8s"
clients = 4
[[action]]
f = "add"
[[action]]
f = "read"
[[action]]
f = "drain"
weight = 0
[[fault]]
kind = "kill"
target = "kv"
every = "1s"
[[fault]]
kind = "pause"
target = "kv"
every = "2s"
"#;

    #[test]
    fn candidates_shorten_thin_and_leave_out_faults_and_drawn_actions() {
        let whats: Vec<String> = candidates(TEXT).into_iter().map(|e| e.what).collect();
        assert_eq!(
            whats,
            [
                "duration 8s -> 4000ms",
                "clients 4 -> 2",
                "without the kill fault",
                "without the pause fault",
                "without the action `add`",
                "without the action `read`",
            ]
        );
        let shorter = &candidates(TEXT)[0].text;
        assert!(shorter.contains("duration = \"4000ms\""), "{shorter}");
        assert!(candidates("not toml [").is_empty());
    }

    #[test]
    fn shrinking_keeps_only_edits_that_still_fail_and_stops_at_the_budget() {
        // Fails while the kill fault is there, whatever else changes.
        let fails = |e: &Edit| e.text.contains("kind = \"kill\"");
        let (small, kept, runs) = shrink(TEXT, 100, fails);
        assert!(small.contains("kind = \"kill\"") && !small.contains("kind = \"pause\""), "{small}");
        assert!(kept.contains(&"without the pause fault".to_string()), "{kept:?}");
        assert!(small.contains("clients = 1"), "{small}");
        assert!(small.contains("duration = \"1000ms\""), "{small}");
        assert!(runs < 100);
        let (_, _, runs) = shrink(TEXT, 3, |_| false);
        assert_eq!(runs, 3, "the budget bounds the runs");
    }

    #[test]
    fn a_pinned_seed_too_large_for_toml_integers_is_taken_out() {
        let text = "# header\nseed = 15944542894851091541\nname = \"s\"\nduration = \"2s\"\n[[fault]]\nseed = 1\n";
        assert!(text.parse::<toml::Table>().is_err(), "u64 beyond i64 does not parse");
        let out = without_seed(text);
        assert_eq!(out, "# header\nname = \"s\"\nduration = \"2s\"\n[[fault]]\nseed = 1\n");
        assert_eq!(candidates(&out)[0].what, "duration 2s -> 1000ms", "the rest parses");
    }

    #[test]
    fn the_same_failure_means_a_check_the_original_failed() {
        let original: BTreeSet<String> = ["set".to_string()].into();
        assert!(same_failure(&original, &["set".to_string(), "stats".to_string()].into()));
        assert!(!same_failure(&original, &["unexpected".to_string()].into()));
        assert!(!same_failure(&original, &BTreeSet::new()));
    }
}
