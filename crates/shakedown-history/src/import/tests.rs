//! Tests of format names, detection, `read_any`, and imports of the shared Porcupine sample.

use super::*;
use crate::{write_jsonl, HistoryBuilder};
use serde_json::json;
use std::path::Path;

#[test]
fn format_names_round_trip() {
    for format in Format::ALL {
        assert_eq!(format.name().parse::<Format>(), Ok(format));
        assert_eq!(format.to_string(), format.name());
    }
    let err = "edn".parse::<Format>().unwrap_err().to_string();
    assert!(err.contains("expected jsonl, jepsen-log"), "{err}");
}

#[test]
fn detects_formats_from_the_first_lines() {
    let cases = [
        ("{\"format\":\"shakedown-history\",\"version\":1,\"scenario\":\"t\",\"seed\":1}\n", Some(Format::Jsonl)),
        ("\n\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\n", Some(Format::JepsenLog)),
        ("12:00 INFO jepsen.core - starting\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\n", Some(Format::JepsenLog)),
        ("{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n", Some(Format::PorcupineKv)),
        ("{:process 0, :type :invoke, :f :read, :value nil}\n", Some(Format::JepsenEdn)),
        ("[{:process 0, :type :invoke, :f :read}]", Some(Format::JepsenEdn)),
        ("", None),
        ("hello\nworld\n", None),
    ];
    for (text, want) in cases {
        assert_eq!(detect(text), want, "{text:?}");
    }
}

#[test]
fn read_any_detects_and_reads_jsonl() {
    let mut b = HistoryBuilder::new(Header::new("own", 9));
    b.invoke(1, ProcessId(0), "a", "add", json!(1));
    b.complete(2, ProcessId(0), OpType::Ok, json!(1), None);
    let h = b.finish();
    let mut buf = Vec::new();
    write_jsonl(&mut buf, &h).unwrap();
    let (back, format) = read_any(std::str::from_utf8(&buf).unwrap(), None, "ignored").unwrap();
    assert_eq!((back, format), (h, Format::Jsonl));

    let log = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n";
    let (h, format) = read_any(log, None, "x").unwrap();
    assert_eq!((format, h.header.scenario.as_str(), h.ops().len()), (Format::JepsenLog, "x", 1));
}

#[test]
fn read_any_errors_name_the_line() {
    let bad_jsonl = "{\"format\":\"shakedown-history\",\"version\":1,\"scenario\":\"t\",\"seed\":1}\nnot json";
    let err = read_any(bad_jsonl, None, "t").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.to_string().starts_with("line 2: invalid event"), "{err}");
    let err = read_any("hello", None, "t").unwrap_err().to_string();
    assert!(err.starts_with("line 1: expected a recognisable history"), "{err}");
    let err = read_any("[1", Some(Format::JepsenEdn), "t").unwrap_err().to_string();
    assert!(err.starts_with("line 1: "), "{err}");
}

/// Porcupine's histories, kept in the repository (see its README and license).
fn sample_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/porcupine")
}

/// The `ops` column of `PORCUPINE_TIMES.tsv`, by file path relative to the sample dir.
fn expected_op_counts(dir: &Path) -> BTreeMap<String, usize> {
    let tsv = std::fs::read_to_string(dir.join("PORCUPINE_TIMES.tsv")).expect("the sample's times table");
    tsv.lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            Some((cols.next()?.to_string(), cols.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn imports_the_porcupine_sample() {
    let dir = &sample_dir();
    let expected = expected_op_counts(dir);
    assert!(expected.len() >= 55, "the sample's op counts are read");
    let mut n_files = 0;
    let mut mismatches = Vec::new();
    for (sub, format) in [("etcd", Format::JepsenLog), ("kv", Format::PorcupineKv)] {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else { continue };
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let rel = format!("{sub}/{}", path.file_name().unwrap().to_string_lossy());
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(detect(&text), Some(format), "{rel}");
            let h = import(&text, format, &rel).unwrap_or_else(|e| panic!("{rel}: {e}"));
            h.validate().unwrap();
            let n_ops = h.ops().len();
            match expected.get(&rel) {
                Some(&want) if want != n_ops => mismatches.push(format!("{rel}: {n_ops} ops, tsv says {want}")),
                _ => {}
            }
            n_files += 1;
        }
    }
    println!("imported {n_files} files; op count mismatches: {mismatches:?}");
    assert_eq!(n_files, 55, "every file of the sample is imported");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
