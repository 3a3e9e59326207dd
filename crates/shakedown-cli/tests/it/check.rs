//! `shakedown check` on existing histories: verdicts, exit codes, bad input.

use crate::common::{shakedown, stderr, write_file};
use std::path::Path;

/// Porcupine's histories, kept in the repository (see its README and license).
const PORCUPINE: &str = "testdata/porcupine";

fn check_files(model: &str, files: &[&str]) -> (Option<i32>, Vec<serde_json::Value>, String) {
    let mut args = vec!["check", "--model", model, "--format", "json"];
    args.extend_from_slice(files);
    let o = shakedown(&args);
    let lines = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (o.status.code(), lines, stderr(&o))
}

#[test]
fn porcupine_sample_verdicts_match() {
    let root = crate::common::repo_root().join(PORCUPINE);
    let table = std::fs::read_to_string(root.join("VERDICTS.tsv")).expect("the sample is in the repository");
    let expected: Vec<(String, bool)> =
        table.lines().skip(1).filter_map(|l| l.split_once('\t')).map(|(f, v)| (f.to_string(), v == "true")).collect();
    for (model, dir) in [("cas-register", "etcd/"), ("kv", "kv/")] {
        let files: Vec<String> = expected
            .iter()
            .filter(|(f, _)| f.starts_with(dir))
            .map(|(f, _)| root.join(f).display().to_string())
            .collect();
        let refs: Vec<&str> = files.iter().map(String::as_str).collect();
        let (code, lines, err) = check_files(model, &refs);
        assert_eq!(lines.len(), files.len(), "{err}");
        let any_invalid = expected.iter().any(|(f, v)| f.starts_with(dir) && !v);
        assert_eq!(code, Some(if any_invalid { 1 } else { 0 }), "{err}");
        for line in lines {
            let file = line["file"].as_str().unwrap();
            let (_, want) = expected.iter().find(|(f, _)| file.ends_with(f.as_str())).unwrap();
            assert_eq!(line["valid"], serde_json::Value::Bool(*want), "{file}: {}", line["summary"]);
            assert!(line["ops"].as_u64().unwrap() > 0 && line["elapsed_ms"].is_number());
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    write_file(dir, name, text).display().to_string()
}

const GOOD: &str = "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\nINFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\t1\n";
const STALE: &str = "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t1\nINFO  jepsen.util - 1\t:invoke\t:read\tnil\nINFO  jepsen.util - 1\t:ok\t:read\tnil\n";

#[test]
fn exit_codes_follow_the_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write(tmp.path(), "good.log", GOOD);
    let stale = write(tmp.path(), "stale.log", STALE);
    let (code, lines, err) = check_files("cas-register", &[&good]);
    assert_eq!((code, &lines[0]["valid"]), (Some(0), &serde_json::Value::Bool(true)), "{err}");
    let (code, lines, _) = check_files("cas-register", &[&good, &stale]);
    assert_eq!(code, Some(1));
    assert_eq!(lines[1]["valid"], false);
    assert!(
        lines[1]["summary"].as_str().unwrap().contains("read"),
        "the summary names the op: {}",
        lines[1]["summary"]
    );
    let (code, lines, _) = check_files("register", &[&good, "--timeout", "5s"]);
    assert_eq!((code, &lines[0]["valid"]), (Some(0), &serde_json::Value::Bool(true)));
    assert_eq!(shakedown(&["check", "--model", "register", "--timeout", "soon", &good]).status.code(), Some(3));
}

#[test]
fn malformed_histories_exit_3_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = write(tmp.path(), "bad.log", &format!("{GOOD}INFO  jepsen.util - 2\t:ok\t:read\t1\n"));
    let (code, _, err) = check_files("cas-register", &[&bad]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("bad.log:5:"), "{err}");
    let garbage =
        write(tmp.path(), "garbage.edn", "{:process 0, :type :invoke, :f :get, :key \"1\" :value [unclosed\n");
    let (code, _, err) = check_files("kv", &[&garbage]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("garbage.edn:") && err.contains("expected ']'"), "{err}");
    let (code, _, err) = check_files("kv", &["/nonexistent/history.edn"]);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(shakedown(&["check", "--model", "nonsense", &bad]).status.code(), Some(3));
}
