//! Fuzz target: history input never panics the reader or the importers,
//! every rejection names a line, and accepted histories round-trip; the
//! checks are in `history_check.rs`, which shakedown-history's tests run too.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod history_check;

fuzz_target!(|data: &[u8]| history_check::check(data));
