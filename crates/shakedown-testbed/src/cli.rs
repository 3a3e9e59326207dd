//! Command line of `shakedown-testbed`: one subcommand per service, resolved into its config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::service::BugSwitch;
use crate::{bank, counter, ids, kv, lock, migrate, queue, repl, sync};

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
    /// HTTP job queue (enqueue with unique keys, claim with a 5 s lease, complete, cancel)
    /// in DIR/queue.log, in memory, or in DIR/queue.sqlite (--engine).
    Queue(QueueArgs),
    /// HTTP unique-id service reserving blocks of ids in DIR/ids.log.
    Ids(IdsArgs),
    /// HTTP counter with idempotency keys persisted to DIR/counter.log.
    Counter(CounterArgs),
    /// HTTP bank of accounts 0..N moving money between them, persisted to DIR/bank.log.
    Bank(BankArgs),
    /// HTTP kv API on a primary whose writes wait for an in-process replica's
    /// ack over a TCP link to --peer; reads come from the replica. In memory.
    Repl(ReplArgs),
    /// HTTP lease server over a directory that a primary and a backup share.
    Lock(lock::LockArgs),
    /// Client of the lock servers: an update callback that fails over between endpoints.
    LockClient(lock::LockClientArgs),
    /// HTTP action-log server for the sync clients, in DIR/sync.db.
    SyncServer(sync::SyncServerArgs),
    /// Offline-first client with SQLite state at --db: change entities, push, pull, merge.
    SyncClient(sync::SyncClientArgs),
    /// One-shot job copying an SQLite database or a directory tree in batches,
    /// resumable from a JSON state file (exits 0 complete, 130 interrupted, 3 corrupt state).
    Migrate(migrate::MigrateArgs),
}

/// Where a service listens and keeps its data.
#[derive(Debug, Args)]
pub struct Endpoint {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
}

#[derive(Debug, Args)]
pub struct KvArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Bug switch to turn on; repeat for several.
    #[arg(long = "bug", value_name = "NAME", value_parser = bug_parser::<kv::Bug>())]
    pub bugs: Vec<kv::Bug>,
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Storage engine: file (DIR/queue.log), memory (nothing on disk) or
    /// sqlite (DIR/queue.sqlite, shareable by several queue processes).
    #[arg(long, value_name = "ENGINE", default_value = "file", value_parser = choice_parser(queue::Engine::ALL, queue::Engine::name))]
    pub engine: queue::Engine,
    /// Build to run: new migrates a sqlite database to schema v2 (unique keys);
    /// old never migrates, uses only v1 columns and refuses unique keys (400).
    #[arg(long, value_name = "BUILD", default_value = "new", value_parser = choice_parser(queue::Build::ALL, queue::Build::name))]
    pub build: queue::Build,
    /// Bug switch to turn on; repeat for several.
    #[arg(long = "bug", value_name = "NAME", value_parser = bug_parser::<queue::Bug>())]
    pub bugs: Vec<queue::Bug>,
}

#[derive(Debug, Args)]
pub struct IdsArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Bug switch to turn on; repeat for several.
    #[arg(long = "bug", value_name = "NAME", value_parser = bug_parser::<ids::Bug>())]
    pub bugs: Vec<ids::Bug>,
}

#[derive(Debug, Args)]
pub struct CounterArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Bug switch to turn on; repeat for several.
    #[arg(long = "bug", value_name = "NAME", value_parser = bug_parser::<counter::Bug>())]
    pub bugs: Vec<counter::Bug>,
}

#[derive(Debug, Args)]
pub struct BankArgs {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// Number of accounts, numbered from 0.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub accounts: u32,
    /// Balance every account starts with.
    #[arg(long, value_name = "B", default_value_t = 100, value_parser = clap::value_parser!(i64).range(0..))]
    pub initial: i64,
    /// Bug switch to turn on; repeat for several.
    #[arg(long = "bug", value_name = "NAME", value_parser = bug_parser::<bank::Bug>())]
    pub bugs: Vec<bank::Bug>,
}

#[derive(Debug, Args)]
pub struct ReplArgs {
    /// Address of the HTTP API, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Address the replica takes replication connections on.
    #[arg(long, value_name = "ADDR")]
    pub repl_listen: SocketAddr,
    /// Where the primary sends writes: the replica's address, or a proxy in front of it.
    #[arg(long, value_name = "HOST:PORT")]
    pub peer: SocketAddr,
    /// How long a write waits for the replica's ack before it is answered 504.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = repl::parse_duration)]
    pub ack_timeout: std::time::Duration,
    /// Open a replication connection per batch of writes instead of keeping one open.
    #[arg(long)]
    pub dial_per_write: bool,
    /// Bug switch to turn on; repeat for several.
    #[arg(long = "bug", value_name = "NAME", value_parser = bug_parser::<repl::Bug>())]
    pub bugs: Vec<repl::Bug>,
}

/// Accepts exactly the service's bug names; clap's error lists them otherwise.
fn bug_parser<B: BugSwitch>() -> impl TypedValueParser<Value = B> {
    PossibleValuesParser::new(B::ALL.iter().map(|bug| bug.name())).try_map(|name| B::parse(&name))
}

/// Accepts exactly the names of `all`; clap's error lists them otherwise.
fn choice_parser<T>(all: &'static [T], name: fn(T) -> &'static str) -> impl TypedValueParser<Value = T>
where
    T: Copy + Send + Sync + std::str::FromStr + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    PossibleValuesParser::new(all.iter().map(move |&value| name(value))).try_map(|text| text.parse::<T>())
}

impl KvArgs {
    fn config(&self) -> kv::Config {
        let config = kv::Config::new(&self.endpoint.data);
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }
}

impl QueueArgs {
    fn config(&self) -> queue::Config {
        let config = queue::Config::new(&self.endpoint.data).with_engine(self.engine).with_build(self.build);
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }
}

impl IdsArgs {
    fn config(&self) -> ids::Config {
        let config = ids::Config::new(&self.endpoint.data);
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }
}

impl CounterArgs {
    fn config(&self) -> counter::Config {
        let config = counter::Config::new(&self.endpoint.data);
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }
}

impl BankArgs {
    fn config(&self) -> bank::Config {
        let config = bank::Config::new(&self.endpoint.data).with_accounts(self.accounts as usize, self.initial);
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }
}

impl ReplArgs {
    fn config(&self) -> repl::Config {
        let config = repl::Config::new(self.peer).with_ack_timeout(self.ack_timeout);
        let config = config.with_dial_per_write(self.dial_per_write);
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }
}

/// Parses the process arguments and runs the chosen service. Exit codes:
/// 0 after a graceful shutdown, 1 when the service cannot start or fails,
/// 2 for bad arguments.
pub fn main() -> ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("start the async runtime: {e}")),
    };
    let result = match &cli.service {
        Service::Kv(args) => runtime.block_on(kv::run(args.endpoint.listen, args.config())).map_err(|e| e.to_string()),
        Service::Queue(args) => {
            runtime.block_on(queue::run(args.endpoint.listen, args.config())).map_err(|e| e.to_string())
        }
        Service::Ids(args) => {
            runtime.block_on(ids::run(args.endpoint.listen, args.config())).map_err(|e| e.to_string())
        }
        Service::Counter(args) => {
            runtime.block_on(counter::run(args.endpoint.listen, args.config())).map_err(|e| e.to_string())
        }
        Service::Bank(args) => {
            runtime.block_on(bank::run(args.endpoint.listen, args.config())).map_err(|e| e.to_string())
        }
        Service::Repl(args) => {
            runtime.block_on(repl::run(args.listen, args.repl_listen, args.config())).map_err(|e| e.to_string())
        }
        Service::Lock(args) => runtime.block_on(lock::run(args.listen, args.config())).map_err(|e| e.to_string()),
        Service::LockClient(args) => args.run().map_err(|e| e.to_string()),
        Service::SyncServer(args) => runtime.block_on(sync::run(args.listen, args.config())).map_err(|e| e.to_string()),
        Service::SyncClient(args) => args.run().map_err(|e| e.to_string()),
        Service::Migrate(args) => return ExitCode::from(args.run()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
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
            "--bug",
            "racy-cas",
            "--bug",
            "ignore-write-errors",
        ])
        .unwrap();
        let Service::Kv(args) = cli.service else {
            panic!("not kv: {cli:?}");
        };
        let config = args.config();
        assert_eq!(args.endpoint.listen.to_string(), "127.0.0.1:9");
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        assert_eq!(config.bugs.into_iter().collect::<Vec<_>>(), kv::Bug::ALL);
    }

    #[test]
    fn rejects_bad_arguments() {
        let cases: [(&[&str], ErrorKind); 5] = [
            (&["kv", "--listen", "127.0.0.1:9", "--data", "/d", "--bug", "nope"], ErrorKind::InvalidValue),
            (&["kv", "--listen", "localhost", "--data", "/d"], ErrorKind::ValueValidation),
            (&["kv", "--data", "/d"], ErrorKind::MissingRequiredArgument),
            (&["queue", "--listen", "127.0.0.1:9"], ErrorKind::MissingRequiredArgument),
            (&["nope"], ErrorKind::InvalidSubcommand),
        ];
        for (args, kind) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn parses_the_other_services_with_their_bugs() {
        let endpoint = ["--listen", "127.0.0.1:9", "--data", "/d"];
        let with = |service: &str, bugs: &[&str]| {
            let mut args = vec![service];
            args.extend(endpoint);
            bugs.iter().for_each(|bug| args.extend(["--bug", bug]));
            parse(&args).unwrap().service
        };
        let Service::Queue(args) = with("queue", &["lost-on-kill", "double-claim", "broken-stats-query"]) else {
            panic!("not queue");
        };
        assert_eq!(args.config().bugs.into_iter().collect::<Vec<_>>(), queue::Bug::ALL);
        assert_eq!((args.config().engine, args.config().build), (queue::Engine::File, queue::Build::New));
        let Service::Ids(args) = with("ids", &["repeat-after-restart", "clock-ids"]) else {
            panic!("not ids");
        };
        assert_eq!(args.config().bugs.into_iter().collect::<Vec<_>>(), ids::Bug::ALL);
        let Service::Counter(args) = with("counter", &[]) else {
            panic!("not counter");
        };
        assert!(args.config().bugs.is_empty());
        assert_eq!(args.config().data_dir, PathBuf::from("/d"));
        let Service::Counter(args) = with("counter", &["double-apply", "stale-replica-read"]) else {
            panic!("not counter");
        };
        assert_eq!(args.config().bugs.into_iter().collect::<Vec<_>>(), counter::Bug::ALL);
        let Service::Bank(args) = with("bank", &["non-atomic-transfer"]) else {
            panic!("not bank");
        };
        let config = args.config();
        assert_eq!((config.accounts, config.initial), (5, 100));
        assert_eq!(config.bugs.into_iter().collect::<Vec<_>>(), bank::Bug::ALL);
    }

    #[test]
    fn parses_queue_engine_and_build() {
        let base = ["queue", "--listen", "127.0.0.1:9", "--data", "/d"];
        let parsed = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            parse(&args).map(|cli| match cli.service {
                Service::Queue(args) => args.config(),
                other => panic!("not queue: {other:?}"),
            })
        };
        let config = parsed(&["--engine", "sqlite", "--build", "old"]).unwrap();
        assert_eq!((config.engine, config.build), (queue::Engine::Sqlite, queue::Build::Old));
        assert_eq!(parsed(&["--engine", "memory"]).unwrap().engine, queue::Engine::Memory);
        for bad in [["--engine", "postgres"], ["--build", "newest"]] {
            let err = parsed(&bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidValue, "{bad:?}");
            assert!(err.to_string().contains("sqlite") || err.to_string().contains("old"), "{err}");
        }
    }

    #[test]
    fn parses_bank_sizes() {
        let args = ["bank", "--listen", "127.0.0.1:9", "--data", "/d", "--accounts", "3", "--initial", "7"];
        let Service::Bank(args) = parse(&args).unwrap().service else {
            panic!("not bank");
        };
        let config = args.config();
        assert_eq!((config.accounts, config.initial), (3, 7));
        assert!(config.bugs.is_empty());
        for bad in ["--accounts=0", "--initial=-1"] {
            let args = ["bank", "--listen", "127.0.0.1:9", "--data", "/d", bad];
            assert_eq!(parse(&args).unwrap_err().kind(), ErrorKind::ValueValidation, "{bad:?}");
        }
    }

    #[test]
    fn each_service_accepts_only_its_own_bugs() {
        let cases = [
            ("kv", "double-claim", ["lost-write", "racy-cas", "stale-read"].as_slice()),
            ("queue", "lost-write", &["double-claim", "lost-on-kill"]),
            ("ids", "double-apply", &["repeat-after-restart"]),
            ("counter", "stale-read", &["double-apply", "stale-replica-read"]),
            ("bank", "stale-read", &["non-atomic-transfer"]),
        ];
        for (service, bug, valid) in cases {
            let args = [service, "--listen", "127.0.0.1:9", "--data", "/d", "--bug", bug];
            let err = parse(&args).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidValue, "{args:?}");
            let text = err.to_string();
            assert!(valid.iter().all(|name| text.contains(name)), "{text}");
        }
    }

    #[test]
    fn unknown_bug_error_lists_valid_names() {
        let err = parse(&["kv", "--listen", "127.0.0.1:9", "--data", "/d", "--bug", "nope"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("lost-write") && text.contains("stale-read"), "{text}");
    }

    #[test]
    fn parses_repl() {
        let base = ["repl", "--listen", "127.0.0.1:9", "--repl-listen", "127.0.0.1:10", "--peer", "127.0.0.1:11"];
        let Service::Repl(args) = parse(&base).unwrap().service else {
            panic!("not repl");
        };
        let config = args.config();
        assert_eq!((args.listen.port(), args.repl_listen.port(), config.peer.port()), (9, 10, 11));
        assert_eq!((config.ack_timeout, config.dial_per_write), (std::time::Duration::from_millis(200), false));
        assert!(config.bugs.is_empty());
        let mut full = base.to_vec();
        full.extend(["--ack-timeout", "100ms", "--dial-per-write", "--bug", "ack-on-timeout"]);
        let Service::Repl(args) = parse(&full).unwrap().service else {
            panic!("not repl");
        };
        let config = args.config();
        assert_eq!((config.ack_timeout, config.dial_per_write), (std::time::Duration::from_millis(100), true));
        assert_eq!(config.bugs.into_iter().collect::<Vec<_>>(), repl::Bug::ALL);
        let bad: [(&[&str], ErrorKind); 3] = [
            (&["--ack-timeout", "100"], ErrorKind::ValueValidation),
            (&["--ack-timeout", "fast"], ErrorKind::ValueValidation),
            (&["--bug", "stale-read"], ErrorKind::InvalidValue),
        ];
        for (extra, kind) in bad {
            let mut args = base.to_vec();
            args.extend(extra);
            assert_eq!(parse(&args).unwrap_err().kind(), kind, "{extra:?}");
        }
        assert_eq!(parse(&base[..5]).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
