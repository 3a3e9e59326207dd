//! Fuzzing the history codec: arbitrary and mutated input never panics, every
//! rejection names a line, and valid histories round-trip exactly.
//!
//! The case counts are fixed and modest so the suite stays fast; deeper runs use
//! the `cargo fuzz` targets in `fuzz/`.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use shakedown_history::{
    read_jsonl, write_jsonl, DecodeError, EventKind, FaultEvent, FaultPhase, Header, History, HistoryBuilder, OpType,
    ProcessId, ServiceEvent, Skip,
};

const HEADER: &str = r#"{"format":"shakedown-history","version":1,"scenario":"t","seed":1}"#;

/// Pieces of history lines, so random text gets past the JSON parser often
/// enough to reach event decoding and the well-formedness rules.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "\n", "\r\n", " ", "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u0000", "\\ud800", "0", "1", "-1", "1.5",
    "1e400", "18446744073709551615", "18446744073709551616", "null", "true", "false", "\"index\"",
    "\"time_ns\"", "\"type\"", "\"invoke\"", "\"ok\"", "\"fail\"", "\"info\"", "\"skip\"", "\"fault\"",
    "\"service\"", "\"process\"", "\"actor\"", "\"f\"", "\"value\"", "\"error\"", "\"unexpected\"",
    "\"reason\"", "\"fault_id\"", "\"phase\"", "\"start\"", "\"end\"", "\"target\"", "\"event\"",
    "\"expected\"", "\"format\"", "\"shakedown-history\"", "\"version\"", "\"scenario\"", "\"seed\"",
    "\"meta\"", "ü",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..120).prop_map(|t| t.concat())
}

/// Arbitrary bytes, token soup, or a valid header followed by token soup.
fn any_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        token_soup().prop_map(String::into_bytes),
        token_soup().prop_map(|t| format!("{HEADER}\n{t}").into_bytes()),
    ]
}

/// Asserts that a rejection of `text` names a line that exists (or line 1 of an empty text).
fn check_names_line(text: &str, err: &DecodeError) -> Result<(), TestCaseError> {
    let message = err.to_string();
    prop_assert!(message.contains("line "), "no line in {:?}", message);
    let n_lines = text.lines().count().max(1);
    let line =
        message.strip_prefix("line ").and_then(|rest| rest.split(':').next()).and_then(|n| n.parse::<usize>().ok());
    prop_assert!(line.is_some_and(|n| (1..=n_lines).contains(&n)), "line outside 1..={}: {:?}", n_lines, message);
    Ok(())
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |x| x.is_finite()).prop_map(Value::from),
    ]
}

/// JSON values, floats included: the workspace enables serde_json's
/// `float_roundtrip`, without which float text does not read back bit-exact.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => json_leaf(),
        1 => prop::collection::vec(json_leaf(), 0..4).prop_map(Value::from),
        1 => prop::collection::btree_map(any::<String>(), json_leaf(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (any::<String>(), any::<u64>(), prop::collection::btree_map("[a-z]{1,6}", json_leaf(), 0..3)).prop_map(
        |(scenario, seed, meta)| {
            let mut h = Header::new(scenario, seed);
            h.meta = meta.into_iter().collect();
            h
        },
    )
}

/// What one step of a simulated run records.
#[derive(Debug, Clone)]
enum StepKind {
    /// Invokes when the worker is idle, else completes its pending op with this type.
    Op(OpType),
    /// Starts a fault window, or ends the open one.
    Fault,
    Service,
    Skip,
}

#[derive(Debug, Clone)]
struct Step {
    /// Taken modulo the number of workers.
    worker: usize,
    kind: StepKind,
    dt_ns: u64,
    f: &'static str,
    value: Value,
    error: Option<String>,
    unexpected: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let kind = prop_oneof![
        8 => prop::sample::select(vec![OpType::Ok, OpType::Fail, OpType::Info]).prop_map(StepKind::Op),
        1 => Just(StepKind::Fault),
        1 => Just(StepKind::Service),
        1 => Just(StepKind::Skip),
    ];
    let f = prop::sample::select(vec!["add", "read", "cas", "fé"]);
    (0..4usize, kind, 0..1_000u64, f, json_value(), proptest::option::of(any::<String>()), any::<bool>()).prop_map(
        |(worker, kind, dt_ns, f, value, error, unexpected)| Step { worker, kind, dt_ns, f, value, error, unexpected },
    )
}

/// A well-formed history from a simulated run; process ids and times start at
/// the given bases so large numbers get exercised too.
fn history() -> impl Strategy<Value = History> {
    let base_process = prop_oneof![Just(0u64), u64::MAX / 2..u64::MAX / 2 + 10];
    let base_time_ns = prop_oneof![Just(0u64), 0..u64::MAX / 2];
    (header(), 1..5usize, base_process, base_time_ns, prop::collection::vec(step(), 0..60))
        .prop_map(|(h, n_workers, p0, t0, steps)| simulate(h, n_workers, p0, t0, steps))
}

struct Worker {
    process: ProcessId,
    pending: bool,
}

fn simulate(header: Header, n_workers: usize, base_process: u64, base_time_ns: u64, steps: Vec<Step>) -> History {
    let mut b = HistoryBuilder::new(header);
    let mut workers: Vec<Worker> =
        (0..n_workers as u64).map(|i| Worker { process: ProcessId(base_process + i), pending: false }).collect();
    let mut next_process = base_process + n_workers as u64;
    let mut open_fault: Option<u64> = None;
    let mut next_fault_id = 0;
    let mut time_ns = base_time_ns;
    for s in steps {
        time_ns += s.dt_ns;
        let w_idx = s.worker % n_workers;
        let w = &mut workers[w_idx];
        let actor = format!("actor-{w_idx}");
        match s.kind {
            StepKind::Op(_) if !w.pending => {
                b.invoke(time_ns, w.process, &actor, s.f, s.value);
                w.pending = true;
            }
            StepKind::Op(op_type) => {
                b.complete_with(time_ns, w.process, op_type, s.value, s.error, s.unexpected);
                w.pending = false;
                // An info op may still take effect, so its process retires and the worker goes on under a fresh id.
                if op_type == OpType::Info {
                    w.process = ProcessId(next_process);
                    next_process += 1;
                }
            }
            StepKind::Fault => {
                let (fault_id, phase) = match open_fault.take() {
                    Some(id) => (id, FaultPhase::End),
                    None => {
                        next_fault_id += 1;
                        open_fault = Some(next_fault_id);
                        (next_fault_id, FaultPhase::Start)
                    }
                };
                let fe = FaultEvent { fault_id, phase, fault: "kill".into(), target: "kv".into(), detail: s.error };
                b.push(time_ns, EventKind::Fault(fe));
            }
            StepKind::Service => {
                let se = ServiceEvent {
                    service: "kv".into(),
                    event: "exited".into(),
                    expected: s.unexpected,
                    detail: s.error,
                };
                b.push(time_ns, EventKind::Service(se));
            }
            StepKind::Skip => {
                let reason = s.error.unwrap_or_default();
                b.push(time_ns, EventKind::Skip(Skip { process: w.process, actor, f: s.f.into(), reason }));
            }
        }
    }
    b.finish()
}

fn to_text(h: &History) -> String {
    let mut buf = Vec::new();
    write_jsonl(&mut buf, h).expect("writing to memory cannot fail");
    String::from_utf8(buf).expect("the codec writes UTF-8")
}

/// One edit of one line of a history's text.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(Index),
    SwapLines(Index, Index),
    /// Replaces one run of digits (anywhere in the text) with `number`.
    ChangeNumber {
        at: Index,
        number: String,
    },
    /// Cuts a line short at a char boundary.
    TruncateLine {
        line: Index,
        at: Index,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let number = prop_oneof![
        (0..20u64).prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec!["-1", "1.5", "1e3", "18446744073709551616", "", "00"]).prop_map(String::from),
    ];
    prop_oneof![
        any::<Index>().prop_map(Mutation::DeleteLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<Index>(), number).prop_map(|(at, number)| Mutation::ChangeNumber { at, number }),
        (any::<Index>(), any::<Index>()).prop_map(|(line, at)| Mutation::TruncateLine { line, at }),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if lines.is_empty() {
        return text.to_string();
    }
    match m {
        Mutation::DeleteLine(i) => {
            lines.remove(i.index(lines.len()));
        }
        Mutation::SwapLines(a, b) => {
            let (a, b) = (a.index(lines.len()), b.index(lines.len()));
            lines.swap(a, b);
        }
        Mutation::ChangeNumber { at, number } => return change_number(text, at, number),
        Mutation::TruncateLine { line, at } => {
            let line_idx = line.index(lines.len());
            let line = &mut lines[line_idx];
            let boundaries: Vec<usize> = line.char_indices().map(|(i, _)| i).chain([line.len()]).collect();
            line.truncate(boundaries[at.index(boundaries.len())]);
        }
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Replaces the digit run picked by `at`; digits are ASCII, so the cuts are char boundaries.
fn change_number(text: &str, at: &Index, number: &str) -> String {
    let bytes = text.as_bytes();
    let starts: Vec<usize> =
        (0..bytes.len()).filter(|&i| bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit())).collect();
    if starts.is_empty() {
        return text.to_string();
    }
    let start = starts[at.index(starts.len())];
    let end = (start..bytes.len()).find(|&i| !bytes[i].is_ascii_digit()).unwrap_or(bytes.len());
    format!("{}{number}{}", &text[..start], &text[end..])
}

#[test]
fn simulated_history_is_rich() {
    let steps = (0..40u64)
        .map(|i| Step {
            worker: i as usize * 7,
            kind: match i % 6 {
                0 => StepKind::Fault,
                1 => StepKind::Op(OpType::Info),
                2 => StepKind::Skip,
                3 => StepKind::Service,
                _ => StepKind::Op(OpType::Ok),
            },
            dt_ns: i,
            f: "add",
            value: json!({"n": i}),
            error: None,
            unexpected: false,
        })
        .collect();
    let h = simulate(Header::new("t", 1), 3, 0, 0, steps);
    assert_eq!(read_jsonl(to_text(&h).as_bytes()).unwrap(), h);
    assert!(h.ops().iter().any(|op| op.op_type() == OpType::Info));
    assert!(!h.fault_windows().is_empty());
}

/// The `history` fuzz target's body, compiled here so it keeps building
/// against this crate; `cargo fuzz` runs it deeper.
#[path = "../../../fuzz/fuzz_targets/history_check.rs"]
mod history_target;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_input_never_panics(input in any_input()) {
        match read_jsonl(&input[..]) {
            // Invalid UTF-8 surfaces as an I/O error from the line reader.
            Ok(_) | Err(DecodeError::Io(_)) => {}
            Err(e) => check_names_line(&String::from_utf8_lossy(&input), &e)?,
        }
    }

    #[test]
    fn the_fuzz_target_body_holds(input in any_input()) {
        history_target::check(&input);
    }

    #[test]
    fn valid_histories_round_trip(h in history()) {
        let text = to_text(&h);
        let back = read_jsonl(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&back, &h);
        prop_assert_eq!(to_text(&back), text);
    }

    #[test]
    fn mutated_histories_never_panic_and_errors_name_the_line(h in history(), m in mutation()) {
        let text = apply(&to_text(&h), &m);
        if let Err(e) = read_jsonl(text.as_bytes()) {
            check_names_line(&text, &e)?;
        }
        history_target::check(text.as_bytes());
    }
}

// Importers: arbitrary and EDN-shaped text never panics the importers or the EDN
// reader, every rejection names a line of the input, and simulated Jepsen logs import.

mod importers {
    use proptest::prelude::*;
    use shakedown_history::import::{edn, import, read_any, Format, ImportError};
    use shakedown_history::OpType;

    /// Pieces of Jepsen logs and EDN op maps, so random text reaches the op checks.
    #[rustfmt::skip]
    const IMPORT_TOKENS: &[&str] = &[
        "\n", "\r\n", " ", "\t", ",", "{", "}", "[", "]", "(", ")", "#{", "#_", "#", ";", "\"", "\\", "\\u00e9",
        "\\n", ":", ":process", ":type", ":f", ":value", ":key", ":time", ":index", ":error", ":invoke", ":ok",
        ":fail", ":info", ":read", ":write", ":cas", ":get", ":append", ":nemesis", ":timed-out", "nil", "true",
        "0", "1", "2", "-1", "1.5", "1e400", "12N", "3M", "99999999999999999999", "18446744073709551615",
        "\"0\"", "\"x y\"", "INFO  jepsen.util - ", "jepsen.util -", "nemesis", "ü",
        "{\"format\":\"shakedown-history\",\"version\":1,\"scenario\":\"t\",\"seed\":1}",
    ];

    fn import_soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(IMPORT_TOKENS), 0..120).prop_map(|t| t.concat())
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), import_soup()]
    }

    /// The line of an error must exist: 1 up to one past the last newline.
    fn check_line(text: &str, line: usize, message: &str) -> Result<(), TestCaseError> {
        let max_line = text.matches('\n').count() + 1;
        prop_assert!((1..=max_line).contains(&line), "line {} outside 1..={}: {}", line, max_line, message);
        Ok(())
    }

    fn check_import(text: &str, result: Result<shakedown_history::History, ImportError>) -> Result<(), TestCaseError> {
        match result {
            Ok(h) => prop_assert!(h.validate().is_ok(), "imported history does not validate"),
            Err(e) => {
                let prefix = format!("line {}: ", e.line);
                prop_assert!(e.to_string().starts_with(&prefix), "{}", e);
                check_line(text, e.line, &e.message)?;
            }
        }
        Ok(())
    }

    /// A well-formed Jepsen log of a few processes: each step invokes on an idle
    /// process or completes its pending op with the given type.
    fn jepsen_log() -> impl Strategy<Value = (String, usize)> {
        let step = (0..4u64, prop::sample::select(vec![OpType::Ok, OpType::Fail, OpType::Info]), 0..3usize, 0..5i64);
        prop::collection::vec(step, 0..60).prop_map(|steps| {
            let mut pending: [Option<usize>; 4] = [None; 4];
            let mut log = String::from("INFO  jepsen.core - starting\n");
            let mut n_invokes = 0;
            for (p, op_type, f_idx, v) in steps {
                let fs = ["read", "write", "cas"];
                let (kind, f, value) = match pending[p as usize].take() {
                    None => {
                        pending[p as usize] = Some(f_idx);
                        n_invokes += 1;
                        let value = match f_idx {
                            0 => "nil".to_string(),
                            1 => v.to_string(),
                            _ => format!("[{v} 1]"),
                        };
                        ("invoke", fs[f_idx], value)
                    }
                    Some(f) if op_type == OpType::Info => ("info", fs[f], ":timed-out".to_string()),
                    Some(f) => (op_type.as_str(), fs[f], if f == 2 { format!("[{v} 1]") } else { v.to_string() }),
                };
                log.push_str(&format!("INFO  jepsen.util - {p}\t:{kind}\t:{f}\t{value}\n"));
            }
            (log, n_invokes)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn importers_never_panic_and_errors_name_a_line(text in any_text()) {
            for format in [Format::JepsenLog, Format::JepsenEdn, Format::PorcupineKv, Format::Jsonl] {
                check_import(&text, import(&text, format, "fuzz"))?;
            }
            check_import(&text, read_any(&text, None, "fuzz").map(|(h, _)| h))?;
        }

        #[test]
        fn edn_reader_never_panics_and_errors_name_a_line(text in any_text()) {
            match edn::parse_all(&text) {
                Ok(forms) => {
                    for (line, form) in forms {
                        check_line(&text, line, "form line")?;
                        let _ = form.to_json();
                    }
                }
                Err(e) => check_line(&text, e.line, &e.message)?,
            }
        }

        #[test]
        fn simulated_jepsen_logs_import((log, n_invokes) in jepsen_log()) {
            let h = import(&log, Format::JepsenLog, "sim").map_err(|e| TestCaseError::fail(format!("{e}\n{log}")))?;
            prop_assert!(h.validate().is_ok());
            prop_assert_eq!(h.ops().len(), n_invokes);
        }
    }
}
