//! Fuzz target: scenario bytes never panic the reader or the parser, errors
//! are located, and accepted scenarios are within the limits; the checks are
//! in `scenario_check.rs`, which shakedown-spec's tests run too.

#![no_main]

use libfuzzer_sys::fuzz_target;

mod scenario_check;

fuzz_target!(|data: &[u8]| scenario_check::check(data));
