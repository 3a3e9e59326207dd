//! The retry sweep (issue 6, seed 000) end to end: `examples/migrate/retry-sweep.toml`
//! is valid on the correct migrate testbed, and with `--bug sweep-skips-last` on its
//! sweep the sql checks name the item left behind.

use crate::common::{check, repo_root, report, shakedown, stderr};
use serde_json::Value;

/// Runs the example (its text passed through `edit`, written to a temp dir);
/// returns the exit code, stderr and the report.
fn run(edit: impl Fn(String) -> String) -> (Option<i32>, String, Value) {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/migrate/retry-sweep.toml")).unwrap();
    let scenario = tmp.path().join("retry-sweep.toml");
    std::fs::write(&scenario, edit(text)).unwrap();
    let out = tmp.path().join("out");
    let o = shakedown(&["run", scenario.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    (o.status.code(), stderr(&o), report(&out))
}

const CHECKS: [&str; 5] = [
    "no item left failed or retry",
    "every item copied or swept",
    "the swept items are the failed ones",
    "the destination",
    "the source",
];

#[test]
fn the_sweep_copies_exactly_the_items_marked_for_retry() {
    let (code, err, r) = run(|t| t);
    assert_eq!(code, Some(0), "{err}");
    for name in CHECKS.iter().chain(&["steps"]) {
        assert_eq!(check(&r, name)["verdict"], "valid", "{name}: {:#}", check(&r, name));
    }
    assert_eq!(r["verdict"], "valid");
    assert_eq!(r["ops"]["by_action"]["exec"]["ok"], 3, "the migration, the marking and the sweep: {:#}", r["ops"]);
}

#[test]
fn a_sweep_that_forgets_the_last_marked_item_is_caught_naming_it() {
    let with_bug = |t: String| {
        let out = t.replace("\"--sweep\"]", "\"--sweep\", \"--bug\", \"sweep-skips-last\"]");
        assert_ne!(out, t, "the sweep command takes --bug");
        out
    };
    let (code, err, r) = run(with_bug);
    assert_eq!(code, Some(1), "{err}");
    // The sweep itself exits 0 and the steps complete: the tables tell.
    assert_eq!(check(&r, "steps")["verdict"], "valid");
    let left = check(&r, "no item left failed or retry");
    assert_eq!(left["verdict"], "invalid");
    assert!(left["summary"].as_str().unwrap().contains("[\"items:294\",\"retry\""), "{left:#}");
    assert_eq!(left["details"]["got"]["-"][0][0], "items:294");
    let counts = check(&r, "every item copied or swept");
    assert_eq!(counts["details"]["got"]["-"], serde_json::json!([["copied", 258], ["retry", 1], ["swept", 41]]));
    assert_eq!(check(&r, "the destination")["verdict"], "invalid");
    assert_eq!(check(&r, "the destination")["details"]["got"]["-"][0][0], 299);
    assert_eq!(check(&r, "the source")["verdict"], "valid", "the source is untouched");
}
