//! Fuzzing the scenario parsers: arbitrary and mutated input never panics, and
//! every rejection names a place inside the text it was given.
//!
//! The case counts are fixed and modest so the suite stays fast; deeper runs use
//! the `cargo fuzz` targets in `fuzz/`.

use proptest::prelude::*;
use proptest::sample::Index;
use shakedown_spec::{ResultSpec, SpecErrors, Template};
use std::sync::Arc;

const ORIGIN: &str = "fuzz.toml";

/// A valid scenario touching most of the format, with a non-ASCII name so that
/// mutations meet multi-byte characters.
const BASE: &str = r#"
name = "fuzz — ü"
seed = 7
clients = 2
duration = "2s"
rate = 50.0
finally = ["read"]

[[build]]
command = ["true", "{scenario.dir}"]
timeout = "1m"

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
env = { KV_ADMIN = "{port.admin}" }
ports = ["admin"]
ready = { log = "listening", timeout = "5s" }
stop = { signal = "TERM", grace = "1s" }
disk = { path = "{dir}/data", size = "1MiB" }

[link.api]
upstream = "127.0.0.1:{service.kv.port}"
kind = "http"

[link.raw]
upstream = "127.0.0.1:{service.kv.port.admin}"

[actor.alice]
env = { HOME_HINT = "{actor.home}" }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"
timeout = "500ms"

[[action]]
f = "add"
value = { n = "{int 0..=9}", id = "{seq}", tags = ["a", 1, true] }
request = { method = "POST", path = "/set/s/{value}", headers = { x-actor = "{actor.name}" } }
ok = { status = [200, 201] }
fail = { status = [409], match = "conflict" }
result = "body:int"
capture = "ids"

[[action]]
f = "delete"
target = "ids"
remove = true
request = { method = "DELETE", path = "/set/s/{target}" }

[[action]]
f = "read"
weight = 0
request = { path = "/set/s" }
result = "body:json:/items"

[[fault]]
kind = "kill"
target = "kv"
every = "1s"
for = "200ms"

[[fault]]
kind = "pause"
target = ["kv"]
at = ["1s", "1500ms"]

[[fault]]
kind = "toxic"
target = "raw"
toxic = { type = "slicer", average-size = 2, delay = "1ms" }
stream = "upstream"
toxicity = 0.5
every = "1s"

[[fault]]
kind = "http"
target = "api"
http = { status = 429, retry_after = 1, probability = 0.5 }
at = ["1s"]

[[fault]]
kind = "clock"
target = "kv"
offset = "-5s"
rate = 2.0
at = ["2s"]

[[fault]]
kind = "disk-full"
target = "kv"
leave = "4KiB"
at = ["2s"]
for = "1s"

[[check]]
kind = "set"
add = "add"
read = "read"

[[check]]
kind = "stats"
"#;

/// Pieces of TOML and of this format, so random text gets past the tokenizer
/// often enough to reach deserialization and validation.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    "\n", " ", "=", "[", "]", "[[", "]]", "{", "}", ",", ".", "\"", "'", "\"\"\"", "#", "\\", "-", "0", "1",
    "-1", "1e309", "99999999999999999999", "0.0", "nan", "inf", "true", "false", "1979-05-27T07:32:00Z",
    "link", "network", "namespaces", "toxic", "toxicity", "stream", "http", "partition", "clock", "offset",
    "disk", "leave", "disk-full", "latency", "slicer", "upstream", "retry", "during_faults", "{link.api.port}", "{host}",
    "name", "seed", "clients", "ops", "rate", "duration", "finally", "build", "service", "actor", "client",
    "action", "fault", "check", "command", "ready", "stop", "ports", "env", "kind", "f", "value", "target",
    "every", "at", "for", "result", "request", "path", "\"2s\"", "\"18446744073709551615s\"", "\"kv\"",
    "\"{port}\"", "\"{int 0..9}\"", "\"{int -9223372036854775808..=9223372036854775807}\"", "\"{seq}\"",
    "\"{pick ids}\"", "\"body:json\"", "\"stdout:regex:(\"", "\"http\"", "\"exec\"", "\"kill\"", "\"set\"",
    "ü", "—", "é", "\u{0}", "\r\n", "\t",
    "\"30days\"", "\"31days\"", "\"0s\"", "\"99999999999h\"", "1024", "1025", "10000001", "4294967295",
    "9223372036854775807", "1e-300", "\"ht!tp://x\"", "\"http://{host}:{port}\"", "\"127.0.0.1:0\"", "weight",
    "timeout", "interval", "repeat", "steps", "step", "sleep", "matrix", "dataset", "log", "base", "average-size",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..80).prop_map(|t| t.concat())
}

/// Arbitrary Unicode, printable ASCII with newlines, or token soup.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[ -~\n]{0,200}", token_soup()]
}

/// Asserts that every error lies within `text` and renders as `ORIGIN:line:col: message`.
fn check_located(text: &str, errs: &SpecErrors) -> Result<(), TestCaseError> {
    prop_assert!(!errs.errors.is_empty(), "a rejection without errors");
    prop_assert_eq!(errs.origin.as_str(), ORIGIN);
    prop_assert_eq!(&*errs.text, text);
    let n_lines = text.matches('\n').count() + 1;
    for e in &errs.errors {
        prop_assert!(
            e.span.start <= e.span.end && e.span.end <= text.len(),
            "span {:?} outside {} bytes",
            e.span,
            text.len()
        );
        let (line, col) = errs.line_col(e.span.start);
        prop_assert!(line >= 1 && line <= n_lines && col >= 1, "line_col {:?} of {}", (line, col), e.span.start);
    }
    let shown = errs.to_string();
    prop_assert!(shown.starts_with(&format!("{ORIGIN}:")), "{}", shown);
    let rest = &shown[ORIGIN.len() + 1..];
    let (line, rest) = rest.split_once(':').unwrap_or(("", rest));
    let (col, _) = rest.split_once(": ").unwrap_or(("", rest));
    prop_assert!(is_positive(line) && is_positive(col), "not `{}:line:col: `: {}", ORIGIN, shown);
    Ok(())
}

fn is_positive(digits: &str) -> bool {
    digits.parse::<usize>().is_ok_and(|n| n >= 1)
}

fn check_parse(text: &str) -> Result<(), TestCaseError> {
    match shakedown_spec::parse(text, ORIGIN) {
        Ok(_) => Ok(()),
        Err(errs) => check_located(text, &errs),
    }
}

/// One edit of a scenario's text; positions are resolved against the text at hand.
#[derive(Debug, Clone)]
enum Mutation {
    /// Deletes up to `len_bytes` bytes, widened to char boundaries.
    DeleteRange {
        at: Index,
        len_bytes: usize,
    },
    DuplicateLine(Index),
    /// Inserts `text` at a char boundary.
    Insert {
        at: Index,
        text: String,
    },
    SwapLines(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..40usize).prop_map(|(at, len_bytes)| Mutation::DeleteRange { at, len_bytes }),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), prop_oneof![any::<String>(), token_soup()])
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    match m {
        Mutation::DeleteRange { at, len_bytes } => {
            let start = floor_boundary(text, at.index(text.len() + 1));
            let end = ceil_boundary(text, (start + len_bytes).min(text.len()));
            format!("{}{}", &text[..start], &text[end..])
        }
        Mutation::DuplicateLine(i) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let i = i.index(lines.len());
                lines.insert(i, lines[i]);
            }
            lines.concat()
        }
        Mutation::Insert { at, text: new } => {
            let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            let i = boundaries[at.index(boundaries.len())];
            format!("{}{new}{}", &text[..i], &text[i..])
        }
        Mutation::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            lines.concat()
        }
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The `scenario` fuzz target's body, compiled here so it keeps building
/// against this crate; `cargo fuzz` runs it deeper.
#[path = "../../../../fuzz/fuzz_targets/scenario_check.rs"]
mod scenario_target;

/// Bytes: arbitrary, token soup, or the base scenario with bytes spliced in.
fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<Vec<u8>>(),
        token_soup().prop_map(String::into_bytes),
        (any::<Index>(), any::<Vec<u8>>()).prop_map(|(at, bytes)| {
            let mut text = BASE.as_bytes().to_vec();
            let i = at.index(text.len() + 1);
            text.splice(i..i, bytes);
            text
        }),
    ]
}

/// Renders a template with every placeholder failing, so only literals render.
fn render_literal(t: &Template) -> Option<String> {
    t.render(|_| Err(())).ok()
}

#[test]
fn base_scenario_is_valid() {
    if let Err(e) = shakedown_spec::parse(BASE, ORIGIN) {
        panic!("the fuzz base must be valid:\n{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics_and_errors_are_located(text in any_text()) {
        check_parse(&text)?;
    }

    #[test]
    fn mutated_scenarios_never_panic_and_errors_are_located(edits in prop::collection::vec(mutation(), 1..4)) {
        let text = edits.iter().fold(BASE.to_string(), |t, m| apply(&t, m));
        check_parse(&text)?;
        scenario_target::check(text.as_bytes());
    }

    #[test]
    fn the_fuzz_target_body_holds(bytes in any_bytes()) {
        scenario_target::check(&bytes);
    }

    #[test]
    fn line_col_is_one_based_for_any_offset(text in any_text(), offset in 0..400usize) {
        let errs = SpecErrors { origin: ORIGIN.into(), text: Arc::from(text.as_str()), errors: vec![], segments: vec![] };
        let (line, col) = errs.line_col(offset);
        prop_assert!(line >= 1 && col >= 1);
    }

    #[test]
    fn templates_never_panic(text in prop_oneof![any_text(), "([a-z. ]|\\{|\\}|\\.\\.=?|-?[0-9]{1,20}|int |pick )*"]) {
        if let Ok(t) = Template::parse(&text) {
            prop_assert_eq!(t.source(), text.as_str());
            let again = Template::parse(t.source()).expect("a parsed template's source parses");
            prop_assert_eq!(again.parts(), t.parts());
            let rendered = t.render::<()>(|_| Ok("x".into()));
            prop_assert!(rendered.is_ok());
        }
    }

    #[test]
    fn literal_templates_render_back(text in any::<String>()) {
        let t = Template::literal(&text);
        prop_assert_eq!(render_literal(&t), Some(text.clone()));
        let parsed = Template::parse(t.source()).expect("a literal's source parses");
        prop_assert_eq!(parsed.parts(), t.parts());
        prop_assert_eq!(render_literal(&parsed), Some(text));
    }

    #[test]
    fn result_specs_never_panic(
        text in prop_oneof![
            any_text(),
            "(body|status|stdout|stderr|exit|x)?(:(int|string|json|lines|regex|x))?(:[ -~]{0,12})?",
        ]
    ) {
        let _ = text.parse::<ResultSpec>();
    }
}
