//! Integration tests of shakedown-spec, in one test binary.

mod fuzz;
mod spec;
