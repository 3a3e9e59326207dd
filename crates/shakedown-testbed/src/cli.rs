//! Command line of `shakedown-testbed`: one subcommand per service, resolved into its config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::kv;

/// Small services with bug switches, for shakedown's own tests and quick start.
#[derive(Debug, Parser)]
#[command(name = "shakedown-testbed", version)]
pub struct Cli {
    #[command(subcommand)]
    pub service: Service,
}

/// The service to run. Each one logs JSON lines on stdout and stops on SIGTERM or SIGINT.
#[derive(Debug, Subcommand)]
pub enum Service {
    /// HTTP key-value and set service persisted to DIR/kv.log.
    Kv(KvArgs),
}

#[derive(Debug, Args)]
pub struct KvArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Bug switch to turn on; repeat for several.
    #[arg(long = "bug", value_name = "NAME", value_parser = bug_parser())]
    pub bugs: Vec<kv::Bug>,
}

fn bug_parser() -> impl TypedValueParser<Value = kv::Bug> {
    PossibleValuesParser::new(kv::Bug::ALL.map(kv::Bug::name))
        .try_map(|name| name.parse::<kv::Bug>())
}

impl KvArgs {
    fn config(&self) -> kv::Config {
        let config = kv::Config::new(&self.data);
        self.bugs
            .iter()
            .fold(config, |config, &bug| config.with_bug(bug))
    }
}

/// Parses the process arguments and runs the chosen service. Exit codes:
/// 0 after a graceful shutdown, 1 when the service cannot start or fails,
/// 2 for bad arguments.
pub fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("start the async runtime: {e}")),
    };
    let result = match &cli.service {
        Service::Kv(args) => runtime.block_on(kv::run(args.listen, args.config())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(what: &str) -> ExitCode {
    eprintln!("shakedown-testbed: failed to {what}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["shakedown-testbed"].iter().chain(args))
    }

    #[test]
    fn parses_kv_with_bugs() {
        let cli = parse(&[
            "kv",
            "--listen",
            "127.0.0.1:9",
            "--data",
            "/d",
            "--bug",
            "stale-read",
            "--bug",
            "lost-write",
        ])
        .unwrap();
        let Service::Kv(args) = cli.service;
        let config = args.config();
        assert_eq!(args.listen.to_string(), "127.0.0.1:9");
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        assert_eq!(config.bugs.into_iter().collect::<Vec<_>>(), kv::Bug::ALL);
    }

    #[test]
    fn rejects_bad_arguments() {
        let cases: [(&[&str], ErrorKind); 4] = [
            (
                &[
                    "kv",
                    "--listen",
                    "127.0.0.1:9",
                    "--data",
                    "/d",
                    "--bug",
                    "nope",
                ],
                ErrorKind::InvalidValue,
            ),
            (
                &["kv", "--listen", "localhost", "--data", "/d"],
                ErrorKind::ValueValidation,
            ),
            (&["kv", "--data", "/d"], ErrorKind::MissingRequiredArgument),
            (&["queue"], ErrorKind::InvalidSubcommand),
        ];
        for (args, kind) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn unknown_bug_error_lists_valid_names() {
        let err = parse(&[
            "kv",
            "--listen",
            "127.0.0.1:9",
            "--data",
            "/d",
            "--bug",
            "nope",
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("lost-write") && text.contains("stale-read"),
            "{text}"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
