//! Log checks in scenarios: services' JSON lines are parsed into entries, an
//! ordered sequence passes or fails, and the recent entries are printed on a
//! failure and with `--log-summary always`.

use crate::common::{repo_root, run_text, stderr};

fn example() -> String {
    std::fs::read_to_string(repo_root().join("examples/logs/kv-lifecycle.toml")).unwrap()
}

#[test]
fn an_ordered_log_sequence_passes_and_the_summary_prints_only_when_asked() {
    let (o, r) = run_text(&example(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(r["checks"].as_array().unwrap().iter().all(|c| c["verdict"] == "valid"), "{}", r["checks"]);
    assert!(!stderr(&o).contains("recent log entries"));
    let (o, _) = run_text(&example(), &["--log-summary", "always"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("recent log entries") && err.contains("kv") && err.contains("info  listening"), "{err}");
}

#[test]
fn a_sequence_out_of_order_fails_and_prints_the_recent_entries() {
    let reversed = example()
        .replace("\"^listening$\", level = \"info\"", "\"^TMP$\"")
        .replace("\"^shutting down$\"", "\"^listening$\"")
        .replace("\"^TMP$\"", "\"^shutting down$\"");
    let (o, r) = run_text(&reversed, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let check = &r["checks"][0];
    assert_eq!(check["verdict"], "invalid");
    assert_eq!(check["summary"], "step 2 (kv: /^listening$/) never appeared after step 1");
    assert!(check["details"]["recent"].as_array().is_some_and(|r| !r.is_empty()), "{}", check["details"]);
    assert!(stderr(&o).contains("recent log entries"), "{}", stderr(&o));
}

#[test]
fn a_panic_in_the_logs_fails_log_absent() {
    let text =
        example().replace("entry = { match = \"panicked\" }", "entry = { source = \"kv\", match = \"listening\" }");
    let (o, r) = run_text(&text, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(r["checks"][1]["verdict"], "invalid");
    let bad =
        example().replace("source = \"kv\", match = \"^listening$\"", "source = \"nope\", match = \"^listening$\"");
    let (o, _) = run_text(&bad, &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("log source `nope` is not a service"), "{}", stderr(&o));
}

#[test]
fn a_suite_prints_each_runs_summary_with_log_summary_always() {
    let text = example().replacen("\n[service.kv]", "\n[matrix]\nround = [\"a\", \"b\"]\n\n[service.kv]", 1);
    assert_ne!(text, example());
    let (o, _) = run_text(&text, &["--log-summary", "always"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    for cell in ["round=a", "round=b"] {
        assert!(err.contains(&format!("recent log entries of kv-lifecycle[{cell}]")), "{err}");
    }
    assert!(err.contains("listening addr=127.0.0.1:"), "entries show their fields: {err}");
}
