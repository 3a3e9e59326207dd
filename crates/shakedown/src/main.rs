//! The `shakedown` command line.

#[macro_use]
mod output;
mod baseline;
mod cli;
mod profile;
mod proxy_cmd;
mod replay;
mod shrink;
mod suite;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(cli::main())
}
