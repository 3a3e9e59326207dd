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

const EXIT_USAGE: u8 = 3;
const EXIT_HARNESS: u8 = 4;
const EXIT_INTERRUPTED: u8 = 130;

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
    /// Check existing history files (shakedown JSONL, Jepsen EDN or logs, Porcupine kv) for linearizability.
    Check(CheckArgs),
    /// Serve a fault proxy with a toxiproxy-compatible HTTP API, until interrupted.
    Proxy(ProxyArgs),
    /// Show which fault tiers this machine has, and why a missing one is missing.
    Doctor(DoctorArgs),
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
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Output on stdout: a line per file for people, or one JSON object per file.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The scenario file (TOML).
    file: PathBuf,
    /// Seed for every random choice (default: the scenario's, else drawn and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory (default: .shakedown/runs/<scenario>-<time>-<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output on stdout: nothing (human summary on stderr) or the report as JSON.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Run without the scenario's `[[fault]]`s: the baseline a fault is judged against.
    #[arg(long)]
    no_faults: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

pub fn main() -> u8 {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Run(args) => run_command(args),
        Command::Check(args) => check_command(args),
        Command::Proxy(args) => crate::proxy_cmd::proxy_command(args.listen, args.config, args.seed),
        Command::Doctor(args) => crate::proxy_cmd::doctor_command(args.format == Format::Json),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHAKEDOWN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

fn run_command(args: RunArgs) -> u8 {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("shakedown: cannot read scenario {}: {e}", args.file.display());
            return EXIT_USAGE;
        }
    };
    let origin = args.file.display().to_string();
    let scenario = match shakedown_spec::parse(&text, &origin) {
        Ok(s) if args.no_faults => shakedown::Scenario { fault: Vec::new(), ..s },
        Ok(s) => s,
        Err(errors) => {
            print_spec_errors(&errors);
            return EXIT_USAGE;
        }
    };
    let seed = args.seed.or(scenario.seed).unwrap_or_else(rand::random);
    eprintln!("shakedown {}: running {} (seed {seed})", env!("CARGO_PKG_VERSION"), scenario.name);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shakedown: cannot start the async runtime: {e}");
            return EXIT_HARNESS;
        }
    };
    let scenario_dir =
        args.file.parent().map(|p| if p.as_os_str().is_empty() { PathBuf::from(".") } else { p.to_path_buf() });
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
        Ok(f) => report(&f, args.format, &args.file),
        Err(e @ shakedown::Error::RunDirInUse(_)) => {
            eprintln!("shakedown: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("shakedown: {e}");
            EXIT_HARNESS
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
    std::process::exit(i32::from(EXIT_INTERRUPTED));
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

fn report(f: &Finished, format: Format, file: &std::path::Path) -> u8 {
    let code = shakedown::exit_code(f);
    if format == Format::Json {
        print_line(&f.report.to_json_pretty());
    }
    eprint!("{}", render_summary(&f.report, Style { color: color() }));
    match &f.end {
        RunEnd::Failed(why) => eprintln!("shakedown: harness failure: {why}"),
        RunEnd::Interrupted => eprintln!("shakedown: interrupted; partial run kept in {}", f.run_dir.display()),
        RunEnd::Unsupported(why) => eprintln!(
            "shakedown: unknown: this machine cannot run the scenario's faults: {why} (see `shakedown doctor`)"
        ),
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
        eprintln!("error: {}:{line}:{col}: {}", errors.origin, e.message);
        let label = LabeledSpan::at(e.span.clone(), "here");
        let diag = MietteDiagnostic::new(e.message.clone()).with_label(label);
        let report =
            miette::Report::new(diag).with_source_code(NamedSource::new(&errors.origin, errors.text.to_string()));
        let mut out = String::new();
        if handler.render_report(&mut out, report.as_ref()).is_ok() {
            eprintln!("{out}");
        }
    }
    eprintln!("shakedown: {} problem(s) in {}; nothing was run", errors.errors.len(), errors.origin);
}

fn check_command(args: CheckArgs) -> u8 {
    let input_format =
        match args.input_format.as_deref().map(str::parse::<shakedown_history::import::Format>).transpose() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("shakedown check: {e}");
                return EXIT_USAGE;
            }
        };
    let (mut invalid, mut unknown, mut bad_input) = (false, false, false);
    for path in &args.files {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("shakedown check: {name}: cannot read: {e}");
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
        EXIT_USAGE
    } else if invalid {
        1
    } else if unknown {
        2
    } else {
        0
    }
}

/// Writes a line to stdout; false when stdout is closed (e.g. piped into `head`),
/// which ends output quietly instead of panicking.
fn print_line(line: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
}
