//! Command lines of `shakedown-testbed sync-server` and `shakedown-testbed sync-client`, resolved into their configs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::client::{self, ClientError, ClientOptions, Command};
use super::{ClientBug, Config, Merge, ServerBug};
use crate::lock::parse_duration;

/// `sync-server --listen ADDR --data DIR [--bug duplicate-event-on-retry]`.
#[derive(Debug, Args)]
pub struct SyncServerArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Data directory holding sync.db (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Bug switch to turn on: duplicate-event-on-retry.
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<ServerBug>,
}

impl SyncServerArgs {
    pub fn config(&self) -> Config {
        let config = Config::new(&self.data);
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }
}

/// `sync-client --db PATH --server URL --actor NAME [--bug whole-row-merge] COMMAND`.
#[derive(Debug, Args)]
pub struct SyncClientArgs {
    /// The actor's local SQLite file (created if missing; one actor per file).
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    /// The sync server's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Who makes the changes.
    #[arg(long, value_name = "NAME")]
    pub actor: String,
    /// Deadline for connecting and for each read or write of one request.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, global = true)]
    pub timeout: Duration,
    /// How many times a push or pull whose connection broke or timed out is retried (same event ids).
    #[arg(long, value_name = "N", default_value_t = 5, global = true)]
    pub retries: u32,
    /// Bug switch to turn on: whole-row-merge.
    #[arg(long = "bug", value_name = "NAME", global = true)]
    pub bugs: Vec<ClientBug>,
    #[command(subcommand)]
    pub command: SyncCommand,
}

/// What the sync client does; each prints JSON on stdout.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Create an entity; prints {"id":..,"event_id":..}.
    Create {
        #[arg(long, value_name = "T")]
        title: String,
        /// A field to set, k=v (status, priority, assignee); repeat for several.
        #[arg(long = "field", value_name = "K=V", value_parser = parse_field)]
        fields: Vec<(String, String)>,
    },
    /// Set fields of an entity.
    Update {
        id: String,
        /// A field to set, k=v (title, status, priority, assignee); repeat for several.
        #[arg(long = "field", value_name = "K=V", value_parser = parse_field, required = true)]
        fields: Vec<(String, String)>,
    },
    /// Mark an entity deleted.
    Delete { id: String },
    /// Mark a deleted entity not deleted.
    Restore { id: String },
    /// Revert this actor's last local action with a new event.
    Undo,
    /// Send pending events; prints {"pushed":..,"duplicates":..,"last_seq":..}.
    Push,
    /// Fetch and merge the server's log; prints {"pulled":..,"last_seq":..}.
    Pull,
    /// Push, then pull.
    Sync,
    /// Print the entities as a JSON array ordered by id.
    List,
    /// Print the pulled action log as a JSON array ordered by server_seq.
    Events,
}

fn parse_field(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not K=V")),
    }
}

impl SyncClientArgs {
    pub fn options(&self) -> ClientOptions {
        let mut options = ClientOptions::new(&self.db, &self.server, &self.actor);
        if self.bugs.contains(&ClientBug::WholeRowMerge) {
            options.merge = Merge::WholeRow;
        }
        options.timeout = self.timeout;
        options.retries = self.retries;
        options
    }

    pub fn command(&self) -> Command {
        match &self.command {
            SyncCommand::Create { title, fields } => Command::Create { title: title.clone(), fields: fields.clone() },
            SyncCommand::Update { id, fields } => Command::Update { id: id.clone(), fields: fields.clone() },
            SyncCommand::Delete { id } => Command::Delete { id: id.clone() },
            SyncCommand::Restore { id } => Command::Restore { id: id.clone() },
            SyncCommand::Undo => Command::Undo,
            SyncCommand::Push => Command::Push,
            SyncCommand::Pull => Command::Pull,
            SyncCommand::Sync => Command::Sync,
            SyncCommand::List => Command::List,
            SyncCommand::Events => Command::Events,
        }
    }

    /// Runs the command and prints its JSON result on stdout.
    pub fn run(&self) -> Result<(), ClientError> {
        let output = client::run(&self.options(), &self.command())?;
        println!("{output}");
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
    fn parses_the_server() {
        let args = ["sync-server", "--listen", "127.0.0.1:9", "--data", "/d", "--bug", "duplicate-event-on-retry"];
        let Ok(Service::SyncServer(args)) = parse(&args) else { panic!("not sync-server") };
        assert!(args.config().has(ServerBug::DuplicateEventOnRetry));
        let bad = ["sync-server", "--listen", "127.0.0.1:9", "--data", "/d", "--bug", "whole-row-merge"];
        assert_eq!(parse(&bad).unwrap_err().kind(), ErrorKind::ValueValidation);
    }

    #[test]
    fn parses_client_commands() {
        let base = ["sync-client", "--db", "/a.db", "--server", "http://127.0.0.1:9", "--actor", "alice"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        let Ok(Service::SyncClient(args)) =
            with(&["create", "--title", "t", "--field", "status=open", "--field", "priority=P1"])
        else {
            panic!("not sync-client")
        };
        let fields = vec![("status".to_string(), "open".to_string()), ("priority".to_string(), "P1".to_string())];
        assert_eq!(args.command(), Command::Create { title: "t".to_string(), fields });
        assert_eq!(args.options().merge, Merge::FieldLevel);
        let Ok(Service::SyncClient(args)) = with(&["update", "x", "--field", "title=a=b", "--bug", "whole-row-merge"])
        else {
            panic!("not sync-client")
        };
        let fields = vec![("title".to_string(), "a=b".to_string())];
        assert_eq!(args.command(), Command::Update { id: "x".to_string(), fields });
        assert_eq!(args.options().merge, Merge::WholeRow);
        for (words, command) in [(["sync"], Command::Sync), (["undo"], Command::Undo), (["events"], Command::Events)] {
            let Ok(Service::SyncClient(args)) = with(&words) else { panic!("not sync-client") };
            assert_eq!(args.command(), command);
        }
        let bad: [(&[&str], ErrorKind); 4] = [
            (&["update", "x"], ErrorKind::MissingRequiredArgument),
            (&["create", "--title", "t", "--field", "novalue"], ErrorKind::ValueValidation),
            (&["list", "--bug", "nope"], ErrorKind::ValueValidation),
            (&["merge"], ErrorKind::InvalidSubcommand),
        ];
        for (extra, kind) in bad {
            assert_eq!(with(extra).unwrap_err().kind(), kind, "{extra:?}");
        }
    }
}
