//! The `shakedown` command line.

// First, so that its print macros replace std's in every module below.
#[macro_use]
mod output;
mod input;

mod baseline;
mod cli;
mod profile;
mod proxy_cmd;
mod replay;
mod shrink;
mod suite;

fn main() -> std::process::ExitCode {
    cli::main().into()
}
