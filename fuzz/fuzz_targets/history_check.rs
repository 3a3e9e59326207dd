//! The body of the `history` fuzz target, also compiled and run by
//! shakedown-history's tests (`tests/fuzz.rs`), so that it keeps building
//! against the history crate where `cargo fuzz` is not installed.
//!
//! History input never panics the JSON Lines reader or the importers, every
//! rejection names a line that exists, and whatever the reader accepts writes
//! back and reads again unchanged.

use shakedown_history::import::read_any;
use shakedown_history::{read_jsonl, write_jsonl, DecodeError};

/// Runs every check on one input; panics (a fuzz failure) when one fails.
pub fn check(data: &[u8]) {
    match read_jsonl(data) {
        Ok(history) => {
            let mut text = Vec::new();
            write_jsonl(&mut text, &history).expect("writing to memory cannot fail");
            let back = read_jsonl(&text[..]).expect("a written history reads back");
            assert_eq!(back, history, "round trip changed the history");
        }
        // Invalid UTF-8 surfaces as an I/O error from the line reader.
        Err(DecodeError::Io(_)) => {}
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("line "), "no line in {message:?}");
        }
    }
    // `shakedown check` reads files as UTF-8 text first, then detects the format.
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = read_any(text, None, "fuzz") {
        // Lines 1 up to one past the last newline exist.
        let max_line = text.matches('\n').count() + 1;
        assert!((1..=max_line).contains(&e.line), "line {} outside 1..={max_line}: {e}", e.line);
    }
}
