//! Fuzz target: scenario text, templates and result specs never panic, and
//! every scenario error lies within the text and renders as `origin:line:col: `.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shakedown_spec::{ResultSpec, Template};

const ORIGIN: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    // Scenario files are read as UTF-8 text; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(errs) = shakedown_spec::parse(text, ORIGIN) {
        assert!(!errs.errors.is_empty(), "a rejection without errors");
        for e in &errs.errors {
            assert!(e.span.start <= e.span.end && e.span.end <= text.len(), "span {:?} outside the text", e.span);
            let (line, col) = errs.line_col(e.span.start);
            assert!(line >= 1 && col >= 1, "line_col {:?}", (line, col));
        }
        let shown = errs.to_string();
        assert!(shown.starts_with(&format!("{ORIGIN}:")), "{shown}");
    }
    if let Ok(t) = Template::parse(text) {
        assert_eq!(t.source(), text);
    }
    let literal = Template::literal(text);
    assert_eq!(literal.render::<()>(|_| Err(())).as_deref(), Ok(text));
    let _ = text.parse::<ResultSpec>();
});
