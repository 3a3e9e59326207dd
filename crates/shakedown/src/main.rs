//! The `shakedown` command line.

mod cli;
mod proxy_cmd;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(cli::main())
}
