//! Argument parsing, terminal output and exit codes of the `shakedown` binary.
//!
//! Exit codes: 0 every check valid; 1 a check found the system wrong; 2 a check
//! could not decide; 3 invalid scenario or usage; 4 harness or environment
//! failure; 130 interrupted.

use clap::{Parser, Subcommand, ValueEnum};
use shakedown::{Finished, RunConfig, RunEnd};
use shakedown_report::{render_summary, Style};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shakedown::ExitCode;

#[derive(Parser)]
#[command(
    name = "shakedown",
    version,
    about = "Put a stateful service through its paces: real processes, seeded workloads, faults, checked histories."
)]
#[command(
    after_help = "Exit codes: 0 all checks valid, 1 a check found the system wrong, 2 a check could not decide, \
3 invalid scenario or usage, 4 harness or environment failure, 130 interrupted."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario file against real processes and check the history.
    Run(RunArgs),
    /// Run a finished run again from its run directory: its resolved
    /// scenario, seed and matrix cell, so the workload and faults repeat.
    Replay(ReplayArgs),
    /// Check a run directory again from its files and write its reports anew:
    /// after a change to shakedown, or for a run whose harness was killed
    /// (its history is a prefix; the report says the harness died).
    Report(ReportArgs),
    /// Make a failing run's scenario smaller while it still fails: shorter,
    /// fewer clients, faults and actions left out, each tried by a real run.
    Shrink(ShrinkArgs),
    /// Check existing history files (shakedown JSONL, Jepsen EDN or logs, Porcupine kv) for linearizability.
    Check(CheckArgs),
    /// Serve a fault proxy with a toxiproxy-compatible HTTP API, until interrupted.
    Proxy(ProxyArgs),
    /// Show which fault tiers this machine has, and why a missing one is missing.
    Doctor(DoctorArgs),
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// The run directory to replay (.shakedown/runs/... or a run's --out).
    run_dir: PathBuf,
    /// Run directory of the replay (default: a new one under .shakedown/runs).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output on stdout: nothing (human summary on stderr) or the report as JSON.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// When to print the recent log entries of every service.
    #[arg(long, value_enum, default_value_t = LogSummary::OnFailure)]
    log_summary: LogSummary,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The run directory (.shakedown/runs/... or a run's --out).
    run_dir: PathBuf,
    /// Output on stdout: nothing (human summary on stderr) or the report as JSON.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(clap::Args)]
struct ShrinkArgs {
    /// The failing run's directory.
    run_dir: PathBuf,
    /// Where the attempts and `shrunk.toml` go (default: RUN_DIR/shrink); must
    /// be new or empty.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The most runs to try.
    #[arg(long, default_value = "20", value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_runs: u32,
}

#[derive(clap::Args)]
struct ProxyArgs {
    /// Where the control API listens; loopback only.
    #[arg(long, default_value = "127.0.0.1:8474")]
    listen: std::net::SocketAddr,
    /// A JSON file of proxies to create at start, as toxiproxy's `-config`
    /// (`[{"name": ..., "listen": ..., "upstream": ..., "enabled": true}]`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed for toxicity rolls and jitter (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(clap::Args)]
struct DoctorArgs {
    /// Output on stdout: a table for people, or JSON.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(clap::Args)]
struct CheckArgs {
    /// History files to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The model: register, cas-register, kv, mutex, set, fifo-queue, unordered-queue, counter.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(shakedown_spec::MODELS.iter().copied()))]
    model: String,
    /// The files' format (default: detected): jsonl, jepsen-log, jepsen-edn, porcupine-kv.
    #[arg(long)]
    input_format: Option<String>,
    /// Search budget per file; past it the verdict is unknown (default 60s).
    #[arg(long, value_parser = crate::input::parse_duration, default_value = "60s")]
    timeout: Duration,
    /// The largest history file read (bytes, or with a unit: 512MiB, 4GiB);
    /// a larger one is refused (exit 3) before it is read.
    #[arg(long, value_name = "SIZE", value_parser = crate::input::parse_size, default_value = crate::input::DEFAULT_MAX_HISTORY_BYTES)]
    max_history_bytes: u64,
    /// Output on stdout: a line per file for people, or one JSON object per file.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario files (TOML), or directories: every `*.toml` below one runs,
    /// except files starting with `_` and anything under an `include` directory.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Seed for every random choice (default: the scenario's, else drawn and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default: .shakedown/runs/<scenario>-<time>-<seed>); for a
    /// suite, each scenario runs in DIR/<scenario>/ and the suite's junit.xml
    /// and suite.json go in DIR.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output on stdout: nothing (human summary on stderr) or the report as JSON.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Run without the scenario's `[[fault]]`s: the baseline a fault is judged against.
    #[arg(long)]
    no_faults: bool,
    /// Resume scenarios: run only interruption case N (after the golden run),
    /// to replay a failing point alone with the same seed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    point: Option<u32>,
    /// Run only scenarios carrying one of these tags (comma-separated); `extended`
    /// and `stress` scenarios found in directories run only when named here.
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Run only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Run the k-th of n shards of the selected scenarios (1-based, e.g. 1/2).
    #[arg(long)]
    partition: Option<crate::suite::Partition>,
    /// Scenarios run at once, each with its own run directory and ports (at most 256).
    #[arg(long, default_value = "1", value_parser = crate::input::parse_jobs)]
    jobs: std::num::NonZeroUsize,
    /// Load `[profile.NAME]` from .config/shakedown.toml and `.env.NAME` files
    /// into the environment; variables already set in the shell win.
    #[arg(long)]
    profile: Option<String>,
    /// Run only the matrix cells with this value, e.g. `--matrix engine=sqlite`
    /// (repeatable; one value per dimension).
    #[arg(long, value_parser = parse_cell_filter)]
    matrix: Vec<(String, String)>,
    /// When to print the recent log entries of every service: when a log
    /// check fails (default), always, or never.
    #[arg(long, value_enum, default_value_t = LogSummary::OnFailure)]
    log_summary: LogSummary,
    /// Save each completed run's metrics as baseline NAME, in
    /// .shakedown/baselines/NAME.json (or $SHAKEDOWN_BASELINE_DIR/NAME.json),
    /// keyed by scenario and matrix cell; other runs already in it are kept.
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Compare each run's metrics with baseline NAME: a `baseline` check fails
    /// the run (exit 1) naming every metric worse by more than --max-regression.
    /// A missing baseline, or a run it lacks, is a usage error (exit 3).
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// How much worse than its baseline a metric may get: throughput lower,
    /// latency, RSS or CPU higher.
    #[arg(long, value_name = "PERCENT", value_parser = crate::baseline::parse_threshold, default_value = "10%", requires = "baseline")]
    max_regression: f64,
    /// The most each service, driver or build log file may hold; past it,
    /// output is counted, not written, and the log ends with its last lines.
    #[arg(long, value_name = "SIZE", value_parser = crate::input::parse_size, default_value = "1GiB")]
    max_log_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogSummary {
    OnFailure,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

pub fn main() -> ExitCode {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { ExitCode::Usage } else { ExitCode::Valid };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Run(args) => run_command(args),
        Command::Replay(args) => replay_command(args),
        Command::Report(args) => report_command(args),
        Command::Shrink(args) => shrink_command(args),
        Command::Check(args) => check_command(args),
        Command::Proxy(args) => crate::proxy_cmd::proxy_command(args.listen, args.config, args.seed),
        Command::Doctor(args) => crate::proxy_cmd::doctor_command(args.format == Format::Json),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHAKEDOWN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| crate::output::MaskedStderr).init();
}

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Resolves the paths into selected, valid scenarios with their variables set,
/// then runs one as before or several as a suite.
fn run_command(args: RunArgs) -> ExitCode {
    shakedown_runner::logs::set_max_file_bytes(args.max_log_bytes);
    let found = match crate::suite::discover(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("shakedown: failed to {e}");
            return ExitCode::Usage;
        }
    };
    let entries = match parse_entries(found.clone(), args.no_faults, args.point) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let (entries, guarded) = match expand_cells(entries, &args.matrix) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let suite_mode = found.len() > 1 || args.paths.iter().any(|p| p.is_dir()) || entries.len() + guarded.len() > 1;
    let selection =
        crate::suite::Selection { tags: args.tags.clone(), filter: args.filter.clone(), partition: args.partition };
    let (entries, mut skipped) = crate::suite::select(entries, &selection);
    skipped.extend(guarded);
    for s in &skipped {
        eprintln!("SKIP         {} ({}): {}", s.name, s.path.display(), s.reason);
    }
    if let Err(code) = prepare_env(&entries, args.profile.as_deref()) {
        return code;
    }
    let keys: Vec<String> = entries.iter().map(|e| crate::baseline::key(&e.scenario.name, &e.scenario.cell)).collect();
    let plan = match crate::baseline::Plan::resolve(
        args.save_baseline.clone(),
        args.baseline.as_deref(),
        args.max_regression,
        &keys,
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("shakedown: failed to {e}; nothing was run");
            return ExitCode::Usage;
        }
    };
    match entries.len() {
        0 => {
            eprintln!("shakedown: no scenario selected; nothing was run");
            if suite_mode {
                write_suite(&args, &[], &skipped, ExitCode::Valid)
            } else {
                ExitCode::Valid
            }
        }
        1 if !suite_mode => run_single(entries.into_iter().next().expect("one entry"), &args, &plan),
        _ => run_suite(entries, &skipped, &args, &plan),
    }
}

/// Runs a run directory's resolved scenario again with its seed and cell.
fn replay_command(args: ReplayArgs) -> ExitCode {
    let replay = match crate::replay::resolve(&args.run_dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("shakedown: failed to {e}");
            return ExitCode::Usage;
        }
    };
    if let Some(note) = &replay.note {
        eprintln!("shakedown: {note}");
    }
    run_command(RunArgs {
        paths: vec![replay.scenario],
        seed: replay.seed,
        out: args.out,
        format: args.format,
        no_faults: false,
        point: None,
        tags: Vec::new(),
        filter: None,
        partition: None,
        jobs: std::num::NonZeroUsize::MIN,
        profile: None,
        matrix: replay.cell,
        log_summary: args.log_summary,
        save_baseline: None,
        baseline: None,
        max_regression: 0.10,
        max_log_bytes: shakedown_runner::logs::DEFAULT_MAX_FILE_BYTES,
    })
}

/// Checks a run directory again from its files and rewrites its reports.
fn report_command(args: ReportArgs) -> ExitCode {
    let (scenario, file) = match crate::replay::scenario_of(&args.run_dir) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("shakedown: failed to {e}");
            return ExitCode::Usage;
        }
    };
    let dir = args.run_dir.canonicalize().unwrap_or_else(|_| args.run_dir.clone());
    match shakedown::finish(&scenario, &dir, &shakedown::FinishOptions::default()) {
        Ok(f) => report(&f, args.format, &file),
        Err(e) => {
            eprintln!("shakedown: failed to {e}");
            ExitCode::Usage
        }
    }
}

/// Shrinks a failing run's scenario by real runs of smaller ones; exit 1 with
/// the smallest that still fails, 3 when the run did not fail.
fn shrink_command(args: ShrinkArgs) -> ExitCode {
    match crate::shrink::shrink_run(&args.run_dir, args.out, args.max_runs as usize) {
        Ok(()) => ExitCode::Invalid,
        Err(crate::shrink::Problem::Usage(e)) => {
            eprintln!("shakedown: failed to {e}");
            ExitCode::Usage
        }
        Err(crate::shrink::Problem::Harness(e)) => {
            eprintln!("shakedown: failed to {e}");
            ExitCode::Harness
        }
    }
}

/// Reads and validates every scenario; any problem stops everything (exit 3).
fn parse_entries(
    found: Vec<crate::suite::Found>,
    no_faults: bool,
    point: Option<u32>,
) -> Result<Vec<crate::suite::Entry>, ExitCode> {
    let mut entries = Vec::new();
    let mut failed = false;
    for f in found {
        let text = match crate::input::read_scenario(&f.path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("shakedown: cannot read scenario {}; nothing was run", f.path.display());
                failed = true;
                continue;
            }
        };
        let dir = f.path.parent().unwrap_or(std::path::Path::new("."));
        match shakedown_spec::parse_file(&text, &f.path.display().to_string(), dir) {
            // The run directory keeps the combined text, so replays need no includes.
            Ok((s, text)) => {
                let mut scenario = if no_faults { shakedown::Scenario { fault: Vec::new(), ..s } } else { s };
                if let Some(n) = point {
                    match scenario.resume.as_mut() {
                        Some(r) if n <= r.n_points() => r.only_point = Some(n),
                        Some(r) => {
                            eprintln!("shakedown: --point {n}: {} has {} points", f.path.display(), r.n_points());
                            failed = true;
                        }
                        None => {
                            eprintln!("shakedown: --point {n}: {} is not a resume scenario", f.path.display());
                            failed = true;
                        }
                    }
                }
                entries.push(crate::suite::Entry { path: f.path, text, scenario, explicit: f.explicit });
            }
            Err(errors) => {
                print_spec_errors(&errors);
                failed = true;
            }
        }
    }
    if failed {
        Err(ExitCode::Usage)
    } else {
        Ok(entries)
    }
}

/// `KEY=VALUE` for `--matrix`.
fn parse_cell_filter(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
            Ok((k.trim().to_string(), v.trim().to_string()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE, e.g. engine=sqlite")),
    }
}

/// One entry per matrix cell (named `NAME[engine=sqlite]`), keeping the cells
/// `--matrix` selects; guarded-out parts print a one-line skip, and a scenario
/// guarded out of a cell is skipped with its reason. A `--matrix` key that
/// no selected scenario has is a usage error (exit 3).
fn expand_cells(
    entries: Vec<crate::suite::Entry>,
    filters: &[(String, String)],
) -> Result<(Vec<crate::suite::Entry>, Vec<crate::suite::Skip>), ExitCode> {
    for (key, value) in filters {
        let known = entries.iter().any(|e| e.scenario.matrix.get(key).is_some_and(|vs| vs.contains(value)));
        if !known {
            eprintln!("shakedown: --matrix {key}={value}: no scenario has a matrix dimension `{key}` with the value `{value}`");
            return Err(ExitCode::Usage);
        }
    }
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for e in entries {
        let cells = e.scenario.cells();
        let single = cells.len() == 1 && e.scenario.matrix.is_empty();
        for cell in cells {
            let wanted = filters.iter().all(|(k, v)| cell.get(k).is_none_or(|have| have == v));
            let name = if single {
                e.scenario.name.clone()
            } else {
                format!("{}[{}]", e.scenario.name, shakedown_spec::cell_name(&cell))
            };
            if !wanted {
                continue;
            }
            match e.scenario.for_cell(&cell) {
                Ok((mut scenario, notes)) => {
                    for note in notes {
                        eprintln!("SKIP         {name}: {note}");
                    }
                    scenario.name = name;
                    out.push(crate::suite::Entry { scenario, ..e.clone() });
                }
                Err(why) => skipped.push(crate::suite::Skip {
                    name,
                    path: e.path.clone(),
                    reason: format!("guarded out of this cell: {why}"),
                }),
            }
        }
    }
    Ok((out, skipped))
}

/// Loads the profile for each scenario's directory, fails (exit 3) naming
/// every variable a scenario needs but nobody sets, and sets the profile's
/// variables that the shell does not already set. Only names are printed.
fn prepare_env(entries: &[crate::suite::Entry], profile: Option<&str>) -> Result<(), ExitCode> {
    use crate::profile;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut loaded: std::collections::BTreeMap<PathBuf, profile::Profile> = Default::default();
    let mut failed = false;
    for e in entries {
        let dir = crate::suite::parent_dir(&e.path);
        if let (Some(name), false) = (profile, loaded.contains_key(&dir)) {
            match profile::load(name, &dir, &cwd) {
                Ok(p) => _ = loaded.insert(dir.clone(), p),
                Err(err) => {
                    eprintln!("shakedown: failed to {err}");
                    return Err(ExitCode::Usage);
                }
            }
        }
        let p = loaded.get(&dir);
        let missing = profile::missing_vars(&e.scenario, p, |v| std::env::var_os(v).is_some());
        if !missing.is_empty() {
            eprintln!("shakedown: {}", profile::missing_help(&e.scenario.name, &e.path, &missing, p));
            failed = true;
        }
    }
    if failed {
        eprintln!("shakedown: nothing was run");
        return Err(ExitCode::Usage);
    }
    set_profile_vars(loaded.values())
}

/// Sets each profile variable the shell leaves unset; two profiles giving one
/// variable different values is an error, since scenarios share the process.
fn set_profile_vars<'a>(profiles: impl Iterator<Item = &'a crate::profile::Profile>) -> Result<(), ExitCode> {
    let mut chosen: std::collections::BTreeMap<&str, &crate::profile::Var> = Default::default();
    for p in profiles {
        for (k, v) in &p.vars {
            match chosen.get(k.as_str()) {
                Some(other) if other.value != v.value => {
                    eprintln!(
                        "shakedown: failed to load profile `{}`: {k} differs between {} and {}; run the scenarios separately",
                        p.name,
                        other.source.display(),
                        v.source.display()
                    );
                    return Err(ExitCode::Usage);
                }
                _ => _ = chosen.insert(k, v),
            }
        }
    }
    // Profile values are secrets wherever they came from: masked in every output.
    shakedown::redact::add_secrets(chosen.values().map(|v| v.value.clone()));
    let set: Vec<&str> = chosen.keys().copied().filter(|k| std::env::var_os(k).is_none()).collect();
    for k in &set {
        // Before any runtime or child exists: no other thread reads the environment yet.
        std::env::set_var(k, &chosen[k].value);
    }
    if !chosen.is_empty() {
        eprintln!(
            "shakedown: profile set {} (values hidden)",
            if set.is_empty() { "nothing new".into() } else { set.join(", ") }
        );
    }
    Ok(())
}

/// Kills what an earlier shakedown that died left running, and says so on stderr.
pub(crate) fn report_leftovers() {
    for leftover in shakedown_runner::containment::reap_leftovers() {
        eprintln!("shakedown: {leftover}");
    }
}

/// Says where run directories go when `--out` is absent and the current
/// directory cannot hold them.
fn say_runs_base(out: Option<&std::path::Path>) {
    if out.is_some() {
        return;
    }
    if let Some(why) = shakedown::runs_base().fallback {
        eprintln!("shakedown: {why}; run directories go to {}", shakedown::runs_base().dir.display());
    }
}

/// One scenario file: the terminal output and exit code of a plain run.
fn run_single(entry: crate::suite::Entry, args: &RunArgs, plan: &crate::baseline::Plan) -> ExitCode {
    let crate::suite::Entry { path: file, text, scenario, .. } = entry;
    let seed = args.seed.or(scenario.seed).unwrap_or_else(rand::random);
    eprintln!("shakedown {}: running {} (seed {seed})", env!("CARGO_PKG_VERSION"), scenario.name);
    report_leftovers();
    say_runs_base(args.out.as_deref());
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shakedown: cannot start the async runtime: {e}");
            return ExitCode::Harness;
        }
    };
    let scenario_dir = Some(crate::suite::parent_dir(&file));
    let completed = Arc::new(AtomicU64::new(0));
    let finished = rt.block_on(async {
        let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
        tokio::spawn(watch_signals(cancel_tx));
        let bar = progress_bar(&scenario, completed.clone());
        let cfg = RunConfig {
            seed: Some(seed),
            out: args.out.clone(),
            scenario_dir,
            scenario_text: Some(text),
            cancel: Some(cancel),
            completed: Some(completed),
            baseline: plan.comparison(),
            ..RunConfig::default()
        };
        let result = shakedown::run(&scenario, cfg).await;
        bar.abort();
        let _ = bar.await;
        result
    });
    // Nothing may outlive the run, whatever happened in it.
    shakedown_runner::kill_all_groups();
    rt.shutdown_timeout(Duration::from_secs(2));
    match finished {
        Ok(f) => {
            let code = report(&f, args.format, &file);
            log_summary(&scenario, &f, args.log_summary);
            let saved = save_baseline(plan, [&f]);
            ExitCode::worst([code, saved])
        }
        Err(e @ shakedown::Error::RunDirInUse(_)) => {
            eprintln!("shakedown: {e}");
            ExitCode::Usage
        }
        Err(e) => {
            eprintln!("shakedown: {e}");
            ExitCode::Harness
        }
    }
}

/// Several scenarios: `--jobs` at a time, a summary line each, the suite's
/// outputs in `--out`, and the worst exit code.
fn run_suite(
    entries: Vec<crate::suite::Entry>,
    skipped: &[crate::suite::Skip],
    args: &RunArgs,
    plan: &crate::baseline::Plan,
) -> ExitCode {
    eprintln!(
        "shakedown {}: running {} scenario(s), {} at a time",
        env!("CARGO_PKG_VERSION"),
        entries.len(),
        args.jobs
    );
    report_leftovers();
    say_runs_base(args.out.as_deref());
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shakedown: cannot start the async runtime: {e}");
            return ExitCode::Harness;
        }
    };
    // Kept for the log summaries: the runs take the entries.
    let scenarios: Vec<shakedown::Scenario> = entries.iter().map(|e| e.scenario.clone()).collect();
    let outcomes = rt.block_on(async {
        let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
        tokio::spawn(watch_signals(cancel_tx));
        let cfg = crate::suite::SuiteConfig {
            jobs: args.jobs.get(),
            seed: args.seed,
            out: args.out.clone(),
            cancel,
            baseline: plan.comparison(),
        };
        crate::suite::run_all(entries, cfg).await
    });
    // Only now: the runs share the process, so killing groups earlier would hit a neighbour's.
    shakedown_runner::kill_all_groups();
    rt.shutdown_timeout(Duration::from_secs(2));
    for o in &outcomes {
        match (&o.finished, &o.error) {
            (Some(f), _) if o.code != ExitCode::Valid => {
                eprint!("{}", render_summary(&f.report, Style { color: color() }))
            }
            (_, Some(e)) => eprintln!("shakedown: {}: {e}", o.name),
            _ => {}
        }
    }
    for (o, s) in outcomes.iter().zip(&scenarios) {
        if let Some(f) = &o.finished {
            log_summary(s, f, args.log_summary);
        }
    }
    for o in &outcomes {
        eprintln!("{}", crate::suite::summary_line(o));
    }
    for table in crate::suite::metrics_tables(&outcomes) {
        eprint!("{}", table.render());
    }
    let saved = save_baseline(plan, outcomes.iter().filter_map(|o| o.finished.as_ref()));
    let code = ExitCode::worst(outcomes.iter().map(|o| o.code).chain([saved]));
    if args.format == Format::Json {
        print_line(&crate::suite::suite_json(&outcomes, skipped, code).to_string());
    }
    eprintln!("shakedown: {} run, {} skipped; exit code {}", outcomes.len(), skipped.len(), code.code());
    write_suite(args, &outcomes, skipped, code)
}

/// `--save-baseline`: stores the completed runs' metrics; failing to is a harness failure.
fn save_baseline<'a>(plan: &crate::baseline::Plan, runs: impl IntoIterator<Item = &'a Finished>) -> ExitCode {
    match plan.save_runs(runs) {
        Ok(Some(path)) => {
            eprintln!("baseline saved: {}", path.display());
            ExitCode::Valid
        }
        Ok(None) => {
            if let Some(name) = &plan.save {
                eprintln!("shakedown: no run completed; baseline {name} not saved");
            }
            ExitCode::Valid
        }
        Err(e) => {
            eprintln!("shakedown: failed to {e}");
            ExitCode::Harness
        }
    }
}

/// Writes the suite's `junit.xml` and `suite.json` when `--out` is given;
/// failing to is a harness failure unless something worse happened.
fn write_suite(
    args: &RunArgs,
    outcomes: &[crate::suite::Outcome],
    skipped: &[crate::suite::Skip],
    code: ExitCode,
) -> ExitCode {
    let Some(dir) = &args.out else { return code };
    match crate::suite::write_outputs(dir, outcomes, skipped, code) {
        Ok(()) => {
            eprintln!("suite outputs: {} and {}", dir.join("suite.json").display(), dir.join("junit.xml").display());
            code
        }
        Err(e) => {
            eprintln!("shakedown: failed to write the suite outputs in {}: {e}", dir.display());
            ExitCode::worst([code, ExitCode::Harness])
        }
    }
}

/// First SIGINT or SIGTERM: stop the run and clean up. A second: kill everything now.
async fn watch_signals(cancel: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    eprintln!("\nshakedown: interrupted; stopping services (press Ctrl-C again to kill at once)");
    let _ = cancel.send(true);
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    shakedown_runner::kill_all_groups();
    std::process::exit(i32::from(ExitCode::Interrupted.code()));
}

/// A progress bar on a terminal: elapsed time against the planned duration, and ops done.
fn progress_bar(s: &shakedown::Scenario, completed: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    let planned = s.duration.map(|d| d.0).unwrap_or(shakedown_runner::DEFAULT_DURATION);
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(planned.as_millis() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    let start = std::time::Instant::now();
    tokio::spawn(async move {
        let _clear = ClearOnDrop(bar.clone());
        loop {
            bar.set_position(start.elapsed().as_millis() as u64);
            bar.set_message(format!("{} ops", completed.load(Ordering::Relaxed)));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

struct ClearOnDrop(indicatif::ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Entries per source the log summary shows.
const LOG_SUMMARY_LINES: usize = 10;

/// The last entries of every service, in time order, on stderr: after a
/// failed log check, or always when asked.
fn log_summary(s: &shakedown::Scenario, f: &Finished, when: LogSummary) {
    let failed = f.report.checks.iter().any(|c| c.kind.starts_with("log-") && c.verdict == shakedown::Verdict::Invalid);
    if !(when == LogSummary::Always || (when == LogSummary::OnFailure && failed)) {
        return;
    }
    let logs = shakedown::read_logs(s, &f.run_dir, &[]);
    let sources: std::collections::BTreeSet<&str> = logs.entries().iter().map(|e| e.source.as_str()).collect();
    let sources: Vec<&str> = sources.into_iter().collect();
    let width = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    let cell = f.report.matrix_cell();
    let label = if cell.is_empty() { f.report.scenario.clone() } else { format!("{}[{cell}]", f.report.scenario) };
    eprintln!("recent log entries of {label} ({LOG_SUMMARY_LINES} per source):");
    for e in logs.recent(&sources, u64::MAX, LOG_SUMMARY_LINES) {
        let level = e.level.as_deref().map(|l| format!("{l:<5} ")).unwrap_or_default();
        let text = if e.message.is_empty() { e.line.as_str() } else { e.message.as_str() };
        let fields: String = e.fields.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        eprintln!("  {:>10.3} {:<width$} {level}{text}{fields}", e.time_ns as f64 / 1e9, e.source);
    }
}

fn report(f: &Finished, format: Format, file: &std::path::Path) -> ExitCode {
    let code = shakedown::exit_code(f);
    if format == Format::Json {
        print_line(&f.report.to_json_pretty());
    }
    eprint!("{}", render_summary(&f.report, Style { color: color() }));
    match &f.end {
        RunEnd::Failed(why) => eprintln!("shakedown: harness failure: {why}"),
        RunEnd::Interrupted => eprintln!("shakedown: interrupted; partial run kept in {}", f.run_dir.display()),
        RunEnd::Unsupported(why) => {
            eprintln!(
                "shakedown: unknown: this machine cannot run the scenario's faults: {why} (see `shakedown doctor`)"
            )
        }
        RunEnd::Died(why) => eprintln!("shakedown: {why}"),
        RunEnd::Completed => {}
    }
    eprintln!("run directory: {} (scenario file: {})", f.run_dir.display(), file.display());
    code
}

/// Prints each problem as `file:line:col: message`, then miette's source view.
fn print_spec_errors(errors: &shakedown_spec::SpecErrors) {
    use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};
    let theme = if color() { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme);
    for e in &errors.errors {
        let (line, col) = errors.line_col(e.span.start);
        let (origin, text, span) = errors.source_of(e.span.clone());
        eprintln!("error: {origin}:{line}:{col}: {}", e.message);
        let label = LabeledSpan::at(span, "here");
        let diag = MietteDiagnostic::new(e.message.clone()).with_label(label);
        let report = miette::Report::new(diag).with_source_code(NamedSource::new(origin, text.to_string()));
        let mut out = String::new();
        if handler.render_report(&mut out, report.as_ref()).is_ok() {
            eprintln!("{out}");
        }
    }
    eprintln!("shakedown: {} problem(s) in {}; nothing was run", errors.errors.len(), errors.origin);
}

fn check_command(args: CheckArgs) -> ExitCode {
    let input_format =
        match args.input_format.as_deref().map(str::parse::<shakedown_history::import::Format>).transpose() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("shakedown check: {e}");
                return ExitCode::Usage;
            }
        };
    let (mut invalid, mut unknown, mut bad_input) = (false, false, false);
    for path in &args.files {
        let name = path.display().to_string();
        let text = match crate::input::read_history(path, args.max_history_bytes) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("shakedown check: cannot read history {e}");
                bad_input = true;
                continue;
            }
        };
        match shakedown::check_history_text(&name, &text, input_format, &args.model, Some(args.timeout)) {
            Err(e) => {
                eprintln!("shakedown check: {name}:{}: {}", e.line, e.message);
                bad_input = true;
            }
            Ok(v) => {
                invalid |= v.result.verdict == shakedown::Verdict::Invalid;
                unknown |= v.result.verdict == shakedown::Verdict::Unknown;
                let line = match args.format {
                    Format::Json => v.to_json().to_string(),
                    Format::Human => format!(
                        "{name}: {} ({} ops, {:.1} ms) {}",
                        v.result.verdict.as_str().to_uppercase(),
                        v.ops,
                        v.elapsed.as_secs_f64() * 1000.0,
                        v.result.summary
                    ),
                };
                if !print_line(&line) {
                    break;
                }
            }
        }
    }
    if bad_input {
        ExitCode::Usage
    } else if invalid {
        ExitCode::Invalid
    } else if unknown {
        ExitCode::Unknown
    } else {
        ExitCode::Valid
    }
}

/// Writes a line to stdout; false when stdout is closed (e.g. piped into `head`),
/// which ends output quietly instead of panicking.
fn print_line(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}
