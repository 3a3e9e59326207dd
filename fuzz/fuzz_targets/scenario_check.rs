//! The body of the `scenario` fuzz target, also compiled and run by
//! shakedown-spec's tests (`tests/it/fuzz.rs`), so that it keeps building
//! against the spec crate where `cargo fuzz` is not installed.
//!
//! Scenario bytes never panic the reader or the parser; bytes that are not
//! UTF-8 are refused at the line and column of the first bad byte; every
//! scenario error lies within the text and renders as `origin:line:col: `;
//! and whatever is accepted is within the documented limits.

use shakedown_spec::{limits, ReadError, ResultSpec, Scenario, Template};

const ORIGIN: &str = "fuzz.toml";

/// Runs every check on one input; panics (a fuzz failure) when one fails.
pub fn check(data: &[u8]) {
    let text = match shakedown_spec::utf8_text(data.to_vec(), ORIGIN) {
        Ok(text) => text,
        Err(e) => return check_utf8_error(data, &e),
    };
    match shakedown_spec::parse(&text, ORIGIN) {
        Ok(s) => check_within_limits(&s),
        Err(errs) => {
            assert!(!errs.errors.is_empty(), "a rejection without errors");
            for e in &errs.errors {
                assert!(e.span.start <= e.span.end && e.span.end <= text.len(), "span {:?} outside the text", e.span);
                let (line, col) = errs.line_col(e.span.start);
                assert!(line >= 1 && col >= 1, "line_col {:?}", (line, col));
            }
            let shown = errs.to_string();
            assert!(shown.starts_with(&format!("{ORIGIN}:")), "{shown}");
        }
    }
    if let Ok(t) = Template::parse(&text) {
        assert_eq!(t.source(), text);
    }
    let literal = Template::literal(&text);
    assert_eq!(literal.render::<()>(|_| Err(())).as_deref(), Ok(text.as_str()));
    let _ = text.parse::<ResultSpec>();
}

/// The error names the line and column of the first byte that is not UTF-8.
fn check_utf8_error(data: &[u8], e: &ReadError) {
    let ReadError::InvalidUtf8 { line, col, byte, .. } = e else { panic!("not a UTF-8 error: {e}") };
    let valid = match std::str::from_utf8(data) {
        Err(u) => u.valid_up_to(),
        Ok(_) => panic!("valid UTF-8 refused: {e}"),
    };
    assert_eq!(*byte, data[valid], "{e}");
    let before = std::str::from_utf8(&data[..valid]).expect("a valid prefix");
    assert_eq!(*line, before.matches('\n').count() + 1, "{e}");
    assert_eq!(*col, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1, "{e}");
    assert!(e.to_string().starts_with(&format!("{ORIGIN}:{line}:{col}: ")), "{e}");
}

/// An accepted scenario never carries a value past a limit.
fn check_within_limits(s: &Scenario) {
    assert!(s.duration.is_none_or(|d| d.0 <= limits::MAX_DURATION), "{:?}", s.duration);
    assert!(s.clients.is_none_or(|n| n.get() <= limits::MAX_CLIENTS), "{:?}", s.clients);
    assert!(s.ops.is_none_or(|n| n.get() <= limits::MAX_OPS), "{:?}", s.ops);
    assert!(s.name.chars().count() <= limits::MAX_RUN_NAME_CHARS);
    assert!(s.service.len() <= limits::MAX_SERVICES);
    assert!(s.cells().len() <= limits::MAX_MATRIX_CELLS);
    for a in &s.action {
        assert!(a.weight.unwrap_or(1) <= limits::MAX_WEIGHT);
        assert!(a.timeout.is_none_or(|d| d.0 <= limits::MAX_OP_TIMEOUT));
    }
    for f in &s.fault {
        let durations = f.at.iter().flat_map(|at| at.get_ref().iter()).chain(f.duration.iter());
        assert!(durations.into_iter().all(|d| d.0 <= limits::MAX_DURATION));
    }
}
