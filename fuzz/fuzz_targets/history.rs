//! Fuzz target: history input never panics the reader, every rejection names a
//! line, and whatever is accepted writes back and reads again unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shakedown_history::{read_jsonl, write_jsonl, DecodeError};

fuzz_target!(|data: &[u8]| {
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
});
