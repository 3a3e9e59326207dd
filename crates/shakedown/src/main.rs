//! The `shakedown` command line.

fn main() {}
