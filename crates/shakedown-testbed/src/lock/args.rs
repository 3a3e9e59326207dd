//! Command lines of `shakedown-testbed lock` and `shakedown-testbed lock-client`, resolved into their configs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::client::{self, ClientConfig, ClientError, Hold, Phase, Updated};
use super::{parse_duration, ClientBug, Config};
use crate::log::Logger;

/// `lock --listen ADDR --data DIR [--name NAME] [--drain D] [--shutdown D]`.
#[derive(Debug, Args)]
pub struct LockArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The shared backing store: point a primary and a backup at the same directory.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Name shown as `server` in every log line, e.g. primary or backup.
    #[arg(long, value_name = "NAME", default_value = "lock")]
    pub name: String,
    /// On SIGTERM/SIGINT, how long to refuse new leases and wait for the leases
    /// granted here to be released (fast test profile; production-like: 8s).
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = parse_duration)]
    pub drain: Duration,
    /// Then how long the HTTP shutdown waits for open requests (fast test
    /// profile; production-like: 2s).
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = parse_duration)]
    pub shutdown: Duration,
}

impl LockArgs {
    pub fn config(&self) -> Config {
        let mut config = Config::new(&self.data).with_name(&self.name);
        config.drain = self.drain;
        config.shutdown = self.shutdown;
        config
    }
}

/// `lock-client --endpoints URL1,URL2 [--shuffle] update KEY --append TEXT [...]`.
#[derive(Debug, Args)]
pub struct LockClientArgs {
    /// Base URLs of the lock servers, comma separated, tried in this order.
    #[arg(long, value_name = "URL,URL", value_delimiter = ',', required = true)]
    pub endpoints: Vec<String>,
    /// Try the endpoints in a random order instead.
    #[arg(long, global = true)]
    pub shuffle: bool,
    /// Lease owner (default client-PID); the same owner may re-acquire on another server.
    #[arg(long, value_name = "NAME", global = true)]
    pub owner: Option<String>,
    /// Lease time to live.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, global = true)]
    pub ttl: Duration,
    /// Deadline for connecting and for each read or write of one request.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
    /// Bug switch to turn on: no-failover.
    #[arg(long = "bug", value_name = "NAME", global = true)]
    pub bugs: Vec<ClientBug>,
    #[command(subcommand)]
    pub command: LockCommand,
}

/// What the lock client does.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Acquire KEY, read it, write it with TEXT appended, release; prints the final state as JSON.
    Update(UpdateArgs),
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The key to update (letters, digits and . _ - / :).
    pub key: String,
    /// Text appended to the key's content.
    #[arg(long, value_name = "TEXT")]
    pub append: String,
    /// Phase to hold at after logging it: handler-start, before-save or after-save.
    #[arg(long, value_name = "PHASE", requires = "hold_file")]
    pub hold_at: Option<Phase>,
    /// File whose existence releases the hold.
    #[arg(long, value_name = "PATH", requires = "hold_at")]
    pub hold_file: Option<PathBuf>,
    /// How long a hold waits for its file before the update fails.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub hold_timeout: Duration,
}

impl LockClientArgs {
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(self.endpoints.clone());
        config.shuffle = self.shuffle;
        if let Some(owner) = &self.owner {
            config.owner.clone_from(owner);
        }
        config.ttl = self.ttl;
        config.request_timeout = self.timeout;
        let LockCommand::Update(update) = &self.command;
        config.hold = update.hold_at.zip(update.hold_file.clone()).map(|(phase, file)| Hold { phase, file });
        config.hold_timeout = update.hold_timeout;
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }

    /// Runs the command; on success prints the final state as one JSON line on stdout.
    pub fn run(&self) -> Result<(), ClientError> {
        let LockCommand::Update(update) = &self.command;
        let config = self.config().with_log(Logger::Stdout);
        let updated: Updated = client::update(&config, &update.key, &update.append)?;
        println!("{}", serde_json::to_string(&updated).expect("the final state always encodes as JSON"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Service};

    fn parse(args: &[&str]) -> Result<Service, clap::Error> {
        Cli::try_parse_from(["shakedown-testbed"].iter().chain(args)).map(|cli| cli.service)
    }

    #[test]
    fn parses_the_server_with_both_stop_profiles() {
        let base = ["lock", "--listen", "127.0.0.1:9", "--data", "/d"];
        let Ok(Service::Lock(args)) = parse(&base) else { panic!("not lock") };
        let config = args.config();
        assert_eq!(
            (config.name.as_str(), config.drain, config.shutdown),
            ("lock", crate::lock::TEST_DRAIN, crate::lock::TEST_SHUTDOWN)
        );
        let slow = [&base[..], &["--name", "backup", "--drain", "8s", "--shutdown", "2s"]].concat();
        let Ok(Service::Lock(args)) = parse(&slow) else { panic!("not lock") };
        let config = args.config();
        assert_eq!(
            (config.name.as_str(), config.drain, config.shutdown),
            ("backup", Duration::from_secs(8), Duration::from_secs(2))
        );
        let bad = [&base[..], &["--drain", "8"]].concat();
        assert_eq!(parse(&bad).unwrap_err().kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn parses_the_client() {
        let args = [
            "lock-client",
            "--endpoints",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            "update",
            "k",
            "--append",
            "x",
            "--hold-at",
            "before-save",
            "--hold-file",
            "/tmp/go",
            "--bug",
            "no-failover",
            "--owner",
            "me",
        ];
        let Ok(Service::LockClient(args)) = parse(&args) else { panic!("not lock-client") };
        let config = args.config();
        assert_eq!(config.endpoints, ["http://127.0.0.1:1", "http://127.0.0.1:2"]);
        assert_eq!(config.hold, Some(Hold { phase: Phase::BeforeSave, file: PathBuf::from("/tmp/go") }));
        assert_eq!((config.owner.as_str(), config.shuffle), ("me", false));
        assert!(config.bugs.contains(&ClientBug::NoFailover));
        let base = ["lock-client", "--endpoints", "http://127.0.0.1:1", "update", "k", "--append", "x"];
        let Ok(Service::LockClient(args)) = parse(&[&base[..], &["--shuffle"]].concat()) else {
            panic!("not lock-client")
        };
        let config = args.config();
        assert!(config.shuffle && config.hold.is_none() && config.bugs.is_empty());
        let bad: [(&[&str], ErrorKind); 4] = [
            (&["--hold-at", "before-save"], ErrorKind::MissingRequiredArgument),
            (&["--hold-at", "midway", "--hold-file", "/f"], ErrorKind::ValueValidation),
            (&["--bug", "nope"], ErrorKind::ValueValidation),
            (&["--ttl", "soon"], ErrorKind::ValueValidation),
        ];
        for (extra, kind) in bad {
            assert_eq!(parse(&[&base[..], extra].concat()).unwrap_err().kind(), kind, "{extra:?}");
        }
        assert_eq!(
            parse(&["lock-client", "update", "k", "--append", "x"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
    }
}
