//! `migrate`: a one-shot job copying an SQLite database or a directory tree in batches, resumable from a JSON state file.
//!
//! Two phases: **traversal** enumerates the source into a plan of batches
//! (rowid ranges of one table, or ranges of sorted file paths) kept in the state file
//! ([`state`]), then **copy** copies the batches in order. The state file is
//! written atomically before each batch (`in_flight` set) and after it
//! (`next_batch` advanced), and every batch write is idempotent (INSERT OR
//! REPLACE by rowid; a file written to a temporary name and renamed), so a
//! resume that redoes the in-flight batch never duplicates. Each phase's start
//! and end and each batch's start, end, failure or retry is a row of
//! `migrate_events` ([`events`]), and each item's fate a row of
//! `migrate_items` ([`items`]): `--fail-every N` fails items on purpose, an
//! operator marks failed ones `retry`, and `--sweep` ([`sweep`]) copies
//! exactly those again. A stop request (SIGINT or SIGTERM in the
//! binary) lets the current batch finish, then logs `checkpoint` and ends the
//! run as [`Outcome::Interrupted`]. Bug switches: [`Bug`].
//!
//! `examples/migrate/README.md` is the contract scenario files rely on: the
//! command line, the state format, the events table, the log lines and the exit codes.

mod args;
pub mod events;
pub mod items;
mod sqlite;
pub mod state;
mod sweep;
mod tree;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::log::Logger;
use crate::service::bug_switches;
pub use args::MigrateArgs;
use events::{Events, EventsError, Status};
use items::{ItemStatus, ItemsError};
pub use state::{Batch, Phase, State, StateError};

/// How often a pause (`--batch-delay`, the empty-source bug) looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(10);

bug_switches! {
    /// A deliberate defect the migrate job can be run with.
    pub enum Bug {
        /// On resume, the batch an earlier run left in flight is marked done
        /// without being copied: its items are missing from the destination.
        ResumeSkipsBatch = "resume-skips-batch",
        /// The state file is rewritten in place (truncated, then written in
        /// small pieces with pauses), so a kill mid-write leaves it torn.
        TornStateWrite = "torn-state-write",
        /// With an empty source the job never marks itself complete and never
        /// logs `complete`: it waits until it is stopped or killed.
        EmptyNeverCompletes = "empty-never-completes",
        /// The sweep forgets the last item marked `retry` (in plan order): it
        /// is not copied and stays `retry`.
        SweepSkipsLast = "sweep-skips-last",
    }
}

crate::service::config_builders!(Config, Bug);

/// What is being migrated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An SQLite database: every table, rows in rowid order.
    Sqlite,
    /// A directory tree: every regular file, at the same relative path.
    Tree,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Tree => "tree",
        }
    }
}

/// Everything one run of the job needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub kind: Kind,
    pub source: PathBuf,
    pub dest: PathBuf,
    pub state: PathBuf,
    /// The SQLite file holding `migrate_events`.
    pub events: PathBuf,
    /// Items per batch in a new plan (a resume keeps the plan's).
    pub batch_size: u64,
    /// A pause inside each batch, after `in_flight` is written and before the copy.
    pub batch_delay: Duration,
    /// Continue from the state file (a missing one starts fresh).
    pub resume: bool,
    /// Fail every item whose id (rowid, or a file's 1-based position in
    /// sorted order) is a multiple of this; 0 fails none. Not used by a sweep.
    pub fail_every: u64,
    /// Instead of migrating, copy the items marked `retry` again.
    pub sweep: bool,
    pub bugs: BTreeSet<Bug>,
    pub log: Logger,
}

impl Config {
    /// A fresh correct run: batches of 100, no delay, events in `<state>.events.sqlite`, logging to stdout.
    pub fn new(kind: Kind, source: impl Into<PathBuf>, dest: impl Into<PathBuf>, state: impl Into<PathBuf>) -> Config {
        let state = state.into();
        Config {
            kind,
            source: source.into(),
            dest: dest.into(),
            events: default_events_path(&state),
            state,
            batch_size: 100,
            batch_delay: Duration::ZERO,
            resume: false,
            fail_every: 0,
            sweep: false,
            bugs: BTreeSet::new(),
            log: Logger::Stdout,
        }
    }
}

/// `<state>.events.sqlite`.
pub fn default_events_path(state: &Path) -> PathBuf {
    let mut path = state.as_os_str().to_owned();
    path.push(".events.sqlite");
    PathBuf::from(path)
}

/// Asks a running job to stop after its current batch; shared with the signal handlers.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a run ended, short of an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every item copied (now, or by an earlier run when the state already said so).
    Complete { items: u64 },
    /// Stopped between batches; the state file says where to resume.
    Interrupted { done: u64 },
    /// A sweep copied `retried` items marked `retry` (others may have failed again).
    Swept { retried: u64 },
}

/// Why a run failed. [`MigrateError::exit_code`] maps each to the binary's exit code.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error(transparent)]
    Items(#[from] ItemsError),
    #[error("traverse the source: {0}")]
    Traverse(CopyError),
    #[error("prepare the destination: {0}")]
    Prepare(CopyError),
    #[error("resume: the destination {} is missing but the state file says {done} items were copied", dest.display())]
    DestMissing { dest: PathBuf, done: u64 },
    #[error("copy batch {batch}: {source}")]
    Copy { batch: u64, source: CopyError },
}

impl MigrateError {
    /// 2 for bad arguments, 3 for a corrupt state file, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::BadArguments(_) => 2,
            MigrateError::State(StateError::Corrupt { .. }) => 3,
            _ => 1,
        }
    }
}

/// Why reading the source or writing the destination failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{what}: {source}")]
    Sqlite { what: String, source: rusqlite::Error },
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Unsupported(String),
    #[error("the source changed since the traversal: {0}")]
    SourceChanged(String),
}

/// Runs the job until it completes, is stopped through `stop`, or fails.
pub fn run(config: &Config, stop: &StopFlag) -> Result<Outcome, MigrateError> {
    check_source(config)?;
    let bugs: Vec<Value> = config.bugs.iter().map(|bug| bug.name().into()).collect();
    let fields = [
        ("kind", config.kind.name().into()),
        ("source", config.source.display().to_string().into()),
        ("dest", config.dest.display().to_string().into()),
        ("resume", config.resume.into()),
        ("bugs", bugs.into()),
        ("fail_every", config.fail_every.into()),
        ("sweep", config.sweep.into()),
    ];
    config.log.info("starting", &fields);
    if config.sweep {
        return sweep::run(config, stop);
    }
    let (mut state, resumed) = initial_state(config)?;
    if state.complete {
        config.log.info("complete", &[("items", state.total.into()), ("already", true.into())]);
        return Ok(Outcome::Complete { items: state.total });
    }
    // Only a run without --resume starts the events over: a resume that finds no state file keeps the history.
    let events = Events::open(&config.events, !config.resume)?;
    let mut job = Job { config, stop, events: &events, torn: config.has(Bug::TornStateWrite) };
    if !resumed {
        job.save(&state)?;
    }
    if state.phase == Phase::Traversal && !job.traverse(&mut state)? {
        return Ok(job.checkpoint(&state));
    }
    job.copy(&mut state)
}

/// The source must exist and be the right kind of thing; a missing one is a bad argument.
fn check_source(config: &Config) -> Result<(), MigrateError> {
    let source = config.source.display();
    match (config.kind, std::fs::metadata(&config.source)) {
        (_, Err(e)) => Err(MigrateError::BadArguments(format!("--source {source}: {e}"))),
        (Kind::Sqlite, Ok(meta)) if !meta.is_file() => Err(MigrateError::BadArguments(format!(
            "--source {source} is not a file (use --kind tree for a directory)"
        ))),
        (Kind::Tree, Ok(meta)) if !meta.is_dir() => {
            Err(MigrateError::BadArguments(format!("--source {source} is not a directory")))
        }
        _ => Ok(()),
    }
}

/// The state to continue from and whether it came from the state file.
fn initial_state(config: &Config) -> Result<(State, bool), MigrateError> {
    let fresh = State::new(config.kind, &config.source, &config.dest, config.batch_size);
    if !config.resume {
        return Ok((fresh, false));
    }
    let Some(state) = State::load(&config.state)? else {
        config.log.info("no state file, starting fresh", &[("state", config.state.display().to_string().into())]);
        return Ok((fresh, false));
    };
    check_same_job(config, &state)?;
    if !state.complete && state.done > 0 && !config.dest.exists() {
        return Err(MigrateError::DestMissing { dest: config.dest.clone(), done: state.done });
    }
    let fields = [
        ("phase", state.phase.name().into()),
        ("done", state.done.into()),
        ("total", state.total.into()),
        ("next_batch", state.next_batch.into()),
        ("in_flight", state.in_flight.into()),
    ];
    config.log.info("resuming", &fields);
    Ok((state, true))
}

/// A state file for another `--kind`, `--source` or `--dest` is a bad argument.
fn check_same_job(config: &Config, state: &State) -> Result<(), MigrateError> {
    let ours = State::new(config.kind, &config.source, &config.dest, 1);
    let mismatch = |what: &str, theirs: &str, ours: &str| {
        let path = config.state.display();
        Err(MigrateError::BadArguments(format!("state file {path} is for {what} {theirs}, not {ours}")))
    };
    if state.kind != config.kind {
        return mismatch("--kind", state.kind.name(), config.kind.name());
    }
    if state.source != ours.source {
        return mismatch("--source", &state.source, &ours.source);
    }
    if state.dest != ours.dest {
        return mismatch("--dest", &state.dest, &ours.dest);
    }
    Ok(())
}

/// One run in progress: the config, the stop flag and the open events file.
struct Job<'a> {
    config: &'a Config,
    stop: &'a StopFlag,
    events: &'a Events,
    torn: bool,
}

impl Job<'_> {
    fn save(&self, state: &State) -> Result<(), MigrateError> {
        Ok(state.save(&self.config.state, self.torn)?)
    }

    fn phase(&self, phase: Phase) {
        self.config.log.info("phase", &[("phase", phase.name().into())]);
    }

    /// Plans the batches and moves the state to the copy phase; false when stopped first.
    fn traverse(&mut self, state: &mut State) -> Result<bool, MigrateError> {
        self.phase(Phase::Traversal);
        self.events.record("traversal", None, 0, Status::Started)?;
        let config = self.config;
        let stopped = || self.stop.is_set();
        let batch_size = state.batch_size;
        let plan = match config.kind {
            Kind::Sqlite => sqlite::plan(&config.source, batch_size, &stopped),
            Kind::Tree => tree::plan(&config.source, batch_size, &config.log, &stopped),
        };
        let Some(batches) = plan.map_err(MigrateError::Traverse)? else {
            return Ok(false);
        };
        state.total = batches.iter().map(Batch::count).sum();
        state.batches = batches;
        state.phase = Phase::Copy;
        self.save(state)?;
        self.events.record("traversal", None, state.total, Status::Done)?;
        Ok(true)
    }

    fn copy(&mut self, state: &mut State) -> Result<Outcome, MigrateError> {
        self.phase(Phase::Copy);
        self.events.record("copy", None, state.total, Status::Started)?;
        let mut copier = Copier::open(self.config).map_err(MigrateError::Prepare)?;
        if let Some(batch) = state.in_flight {
            self.settle_in_flight(state, batch)?;
        }
        if state.total == 0 && self.config.has(Bug::EmptyNeverCompletes) {
            while !self.stop.is_set() {
                std::thread::sleep(STOP_POLL);
            }
            return Ok(self.checkpoint(state));
        }
        while (state.next_batch as usize) < state.batches.len() {
            // A batch left in flight by an earlier run is the current batch: it is redone even when stopping.
            if self.stop.is_set() && state.in_flight.is_none() {
                return Ok(self.checkpoint(state));
            }
            self.copy_batch(state, &mut copier)?;
        }
        state.phase = Phase::Complete;
        state.complete = true;
        self.save(state)?;
        self.events.record("copy", None, state.total, Status::Done)?;
        let failed = self.events.items().count(ItemStatus::Failed)?;
        self.config.log.info("complete", &[("items", state.total.into()), ("failed", failed.into())]);
        Ok(Outcome::Complete { items: state.total })
    }

    /// A batch an earlier run left in flight: redone (recorded as `retry`),
    /// or with `resume-skips-batch` marked done without copying.
    fn settle_in_flight(&self, state: &mut State, batch: u64) -> Result<(), MigrateError> {
        let count = state.batches[batch as usize].count();
        if !self.config.has(Bug::ResumeSkipsBatch) {
            self.events.record("copy", Some(batch), count, Status::Retry)?;
            return Ok(());
        }
        state.in_flight = None;
        state.next_batch += 1;
        state.done += count;
        self.save(state)?;
        self.events.record("copy", Some(batch), count, Status::Done)?;
        Ok(())
    }

    fn copy_batch(&self, state: &mut State, copier: &mut Copier) -> Result<(), MigrateError> {
        let idx = state.next_batch;
        let batch = state.batches[idx as usize].clone();
        state.in_flight = Some(idx);
        self.save(state)?;
        self.events.record("copy", Some(idx), batch.count(), Status::Started)?;
        self.pause(self.config.batch_delay);
        let outcomes = match copier.copy(&batch, self.config.fail_every) {
            Ok(outcomes) => outcomes,
            Err(source) => {
                self.events.record("copy", Some(idx), batch.count(), Status::Failed)?;
                return Err(MigrateError::Copy { batch: idx, source });
            }
        };
        assert_eq!(outcomes.len() as u64, batch.count(), "an outcome per item of batch {idx}");
        self.events.items().record_batch(idx, &outcomes)?;
        state.in_flight = None;
        state.next_batch += 1;
        state.done += batch.count();
        self.save(state)?;
        self.events.record("copy", Some(idx), batch.count(), Status::Done)?;
        let fields = [
            ("phase", "copy".into()),
            ("done", state.done.into()),
            ("total", state.total.into()),
            ("batch", idx.into()),
            ("batches", state.batches.len().into()),
        ];
        self.config.log.info("progress", &fields);
        Ok(())
    }

    /// Sleeps `delay`, cut short by a stop request (the batch still finishes).
    fn pause(&self, delay: Duration) {
        let deadline = Instant::now() + delay;
        while !self.stop.is_set() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }

    /// Logs where a stopped run left off; the state file already says so.
    fn checkpoint(&self, state: &State) -> Outcome {
        let fields = [
            ("done", state.done.into()),
            ("phase", state.phase.name().into()),
            ("next_batch", state.next_batch.into()),
        ];
        self.config.log.info("checkpoint", &fields);
        Outcome::Interrupted { done: state.done }
    }
}

/// The open source and destination of the copy phase.
enum Copier {
    // Boxed: the SQLite copier holds a connection and its cached statements.
    Sqlite(Box<sqlite::Copier>),
    Tree(tree::Copier),
}

impl Copier {
    /// Opens both ends and creates the destination's tables (or directories).
    fn open(config: &Config) -> Result<Copier, CopyError> {
        match config.kind {
            Kind::Sqlite => Ok(Copier::Sqlite(Box::new(sqlite::Copier::open(&config.source, &config.dest)?))),
            Kind::Tree => Ok(Copier::Tree(tree::Copier::open(&config.source, &config.dest)?)),
        }
    }

    /// Copies `batch` but the items `fail_every` picks; an outcome per item, in order.
    fn copy(&mut self, batch: &Batch, fail_every: u64) -> Result<Vec<items::ItemOutcome>, CopyError> {
        match (self, batch) {
            (Copier::Sqlite(copier), Batch::Rows(range)) => copier.copy(range, fail_every),
            (Copier::Tree(copier), Batch::Files(range)) => copier.copy(range, fail_every),
            // State::validate refuses a plan whose batches do not match its kind,
            // and a sweep builds its batches for the config's kind.
            _ => unreachable!("a batch of the other kind"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bug_names_round_trip() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().unwrap(), bug);
        }
        assert!("skip".parse::<Bug>().unwrap_err().to_string().contains("resume-skips-batch"));
    }

    fn sqlite_config(dir: &Path, n_rows: u64) -> Config {
        let source = dir.join("source.sqlite");
        let db = rusqlite::Connection::open(&source).unwrap();
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").unwrap();
        for id in 0..n_rows {
            db.execute("INSERT INTO t VALUES (?1, 'v')", [id as i64]).unwrap();
        }
        let mut config = Config::new(Kind::Sqlite, source, dir.join("dest.sqlite"), dir.join("state.json"));
        config.batch_size = 2;
        config.with_log(Logger::memory())
    }

    fn statuses(config: &Config) -> Vec<(Option<i64>, String)> {
        let db = rusqlite::Connection::open(&config.events).unwrap();
        let mut stmt = db.prepare("SELECT batch, status FROM migrate_events ORDER BY seq").unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_stop_during_traversal_keeps_no_plan_and_the_resume_redoes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = sqlite_config(dir.path(), 5);
        let stop = StopFlag::new();
        stop.stop();
        assert_eq!(run(&config, &stop).unwrap(), Outcome::Interrupted { done: 0 });
        let state = State::load(&config.state).unwrap().unwrap();
        assert_eq!((state.phase, state.batches.len()), (Phase::Traversal, 0));
        assert!(config.log.lines().last().unwrap().contains(r#""msg":"checkpoint","done":0,"phase":"traversal""#));
        config.resume = true;
        assert_eq!(run(&config, &StopFlag::new()).unwrap(), Outcome::Complete { items: 5 });
        let statuses = statuses(&config);
        // Traversal twice, copy once, three batches.
        assert_eq!(statuses.iter().filter(|(_, s)| s == "started").count(), 2 + 1 + 3, "{statuses:?}");
    }

    #[test]
    fn a_batch_left_in_flight_is_redone_before_a_requested_stop() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = sqlite_config(dir.path(), 5);
        assert_eq!(run(&config, &StopFlag::new()).unwrap(), Outcome::Complete { items: 5 });
        let mut state = State::load(&config.state).unwrap().unwrap();
        (state.phase, state.complete, state.next_batch, state.in_flight, state.done) =
            (Phase::Copy, false, 1, Some(1), 2);
        state.save(&config.state, false).unwrap();
        config.resume = true;
        let stop = StopFlag::new();
        stop.stop();
        assert_eq!(run(&config, &stop).unwrap(), Outcome::Interrupted { done: 4 });
        let state = State::load(&config.state).unwrap().unwrap();
        assert_eq!((state.next_batch, state.in_flight), (2, None));
        let tail: Vec<_> = statuses(&config).into_iter().rev().take(3).collect();
        let want = [(Some(1), "done"), (Some(1), "started"), (Some(1), "retry")].map(|(b, s)| (b, s.to_string()));
        assert_eq!(tail, want);
    }

    #[test]
    fn exit_codes_by_failure_class() {
        let corrupt = StateError::Corrupt { path: "s".into(), why: "x".into() };
        assert_eq!(MigrateError::from(corrupt).exit_code(), 3);
        assert_eq!(MigrateError::BadArguments("x".into()).exit_code(), 2);
        let io = std::io::Error::other("x");
        let write = StateError::Write { path: "s".into(), source: io };
        assert_eq!(MigrateError::from(write).exit_code(), 1);
        assert_eq!(default_events_path(Path::new("/t/s.json")), Path::new("/t/s.json.events.sqlite"));
    }
}
