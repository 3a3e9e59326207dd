//! Command line of `shakedown-testbed migrate`, its signal handling and its exit codes.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{default_events_path, Bug, Config, Kind, Outcome, StopFlag};
use crate::lock::parse_duration;
use crate::log::Logger;

/// Exit code of a run stopped by SIGINT or SIGTERM after a checkpoint.
pub const EXIT_INTERRUPTED: u8 = 130;

/// `migrate --source PATH --dest PATH --state FILE [--kind sqlite|tree] [--batch-size N]
/// [--batch-delay DUR] [--events FILE] [--resume | --sweep] [--fail-every N] [--bug NAME]...`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// What to copy: an SQLite database file, or a directory tree.
    #[arg(long, value_name = "PATH")]
    pub source: PathBuf,
    /// Where to copy it: an SQLite file or a directory (created if missing).
    #[arg(long, value_name = "PATH")]
    pub dest: PathBuf,
    /// The JSON state file (plan and progress), written atomically before and after every batch.
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// The SQLite file holding the migrate_events table [default: the --state path + .events.sqlite].
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Kind of source.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub kind: Kind,
    /// Items (rows or files) per batch when planning; a resume keeps the plan's.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Pause inside each batch, e.g. 20ms (a slowed build; room for interruptions).
    #[arg(long, value_name = "DURATION", default_value = "0ms", value_parser = parse_duration)]
    pub batch_delay: Duration,
    /// Continue from the state file; a missing one starts fresh.
    #[arg(long)]
    pub resume: bool,
    /// Fail (leave out, status failed) every item whose id is a multiple of N: the rowid, or a file's 1-based position in sorted order; 0 never.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_every: u64,
    /// Instead of migrating, copy again the items marked retry in migrate_items (--fail-every does not apply).
    #[arg(long, conflicts_with = "resume")]
    pub sweep: bool,
    /// Bug switch to turn on (resume-skips-batch, torn-state-write, empty-never-completes, sweep-skips-last); repeat for several.
    #[arg(long = "bug", value_name = "NAME")]
    pub bugs: Vec<Bug>,
}

impl MigrateArgs {
    pub fn config(&self) -> Config {
        let mut config = Config::new(self.kind, &self.source, &self.dest, &self.state);
        config.events = self.events.clone().unwrap_or_else(|| default_events_path(&self.state));
        config.batch_size = self.batch_size;
        config.batch_delay = self.batch_delay;
        config.resume = self.resume;
        config.fail_every = self.fail_every;
        config.sweep = self.sweep;
        self.bugs.iter().fold(config, |c, &bug| c.with_bug(bug))
    }

    /// Runs the job (or the sweep) with SIGINT and SIGTERM asking it to stop
    /// after the current batch (or item). Returns the exit code: 0 complete, 130 interrupted,
    /// 2 bad arguments, 3 corrupt state file, 1 any other failure.
    pub fn run(&self) -> u8 {
        let config = self.config();
        let stop = StopFlag::new();
        if let Err(e) = watch_signals(stop.clone(), config.log.clone()) {
            eprintln!("shakedown-testbed: failed to install signal handlers: {e}");
            return 1;
        }
        match super::run(&config, &stop) {
            Ok(Outcome::Complete { .. } | Outcome::Swept { .. }) => 0,
            Ok(Outcome::Interrupted { .. }) => EXIT_INTERRUPTED,
            Err(e) => {
                config.log.error("failed", &[("error", e.to_string().into()), ("exit", e.exit_code().into())]);
                match e.exit_code() {
                    1 => eprintln!("shakedown-testbed: failed to {e}"),
                    _ => eprintln!("shakedown-testbed: {e}"),
                }
                e.exit_code()
            }
        }
    }
}

/// Installs SIGINT and SIGTERM handlers now (so no signal sent after this
/// returns can kill the process) and sets `stop` on the first one, from a
/// thread of its own.
fn watch_signals(stop: StopFlag, log: Logger) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let (mut term, mut int) = {
        let _entered = runtime.enter();
        (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)
    };
    std::thread::Builder::new().name("migrate-signals".into()).spawn(move || {
        runtime.block_on(async move {
            loop {
                let name = tokio::select! {
                    _ = term.recv() => "SIGTERM",
                    _ = int.recv() => "SIGINT",
                };
                log.info("stopping after this batch", &[("signal", name.into())]);
                stop.stop();
            }
        })
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Service};

    fn parse(args: &[&str]) -> Result<MigrateArgs, clap::Error> {
        let words = ["shakedown-testbed", "migrate"].iter().chain(args);
        Cli::try_parse_from(words).map(|cli| match cli.service {
            Service::Migrate(args) => args,
            other => panic!("not migrate: {other:?}"),
        })
    }

    #[test]
    fn parses_defaults_and_every_flag() {
        let base = ["--source", "/s.db", "--dest", "/d.db", "--state", "/st.json"];
        let config = parse(&base).unwrap().config();
        assert_eq!((config.kind, config.batch_size, config.batch_delay), (Kind::Sqlite, 100, Duration::ZERO));
        assert_eq!(config.events, PathBuf::from("/st.json.events.sqlite"));
        assert!(!config.resume && !config.sweep && config.fail_every == 0 && config.bugs.is_empty());
        let mut full = base.to_vec();
        full.extend(["--kind", "tree", "--batch-size", "7", "--batch-delay", "20ms", "--resume", "--events", "/e"]);
        full.extend(["--bug", "resume-skips-batch", "--bug", "torn-state-write", "--bug", "empty-never-completes"]);
        full.extend(["--bug", "sweep-skips-last", "--fail-every", "7"]);
        let config = parse(&full).unwrap().config();
        assert_eq!((config.kind, config.batch_size, config.batch_delay), (Kind::Tree, 7, Duration::from_millis(20)));
        assert_eq!((config.events, config.resume, config.fail_every), (PathBuf::from("/e"), true, 7));
        assert_eq!(config.bugs.into_iter().collect::<Vec<_>>(), Bug::ALL);
        let sweep = parse(&[&base[..], &["--sweep"]].concat()).unwrap().config();
        assert!(sweep.sweep && !sweep.resume);
    }

    #[test]
    fn rejects_bad_arguments_with_exit_code_2() {
        let base = ["--source", "/s", "--dest", "/d", "--state", "/st"];
        let cases: [(&[&str], ErrorKind); 7] = [
            (&["--fail-every", "seven"], ErrorKind::ValueValidation),
            (&["--sweep", "--resume"], ErrorKind::ArgumentConflict),
            (&["--batch-size", "0"], ErrorKind::ValueValidation),
            (&["--batch-delay", "5"], ErrorKind::ValueValidation),
            (&["--kind", "postgres"], ErrorKind::InvalidValue),
            (&["--bug", "lost-write"], ErrorKind::ValueValidation),
            (&["--resume=yes"], ErrorKind::TooManyValues),
        ];
        for (extra, kind) in cases {
            let err = parse(&[&base[..], extra].concat()).unwrap_err();
            assert_eq!((err.kind(), err.exit_code()), (kind, 2), "{extra:?}");
        }
        assert_eq!(parse(&base[..4]).unwrap_err().kind(), ErrorKind::MissingRequiredArgument);
    }
}
