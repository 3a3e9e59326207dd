//! Running a scenario end to end: runner, checks, report and run directory.

use crate::rundir;
use shakedown_check::linear::LinearizableCheck;
use shakedown_check::log::{LogAbsentCheck, LogSequenceCheck, LogSpacingCheck};
use shakedown_check::resume::{Expect, ResumeCheck};
use shakedown_check::state::{
    CausalOrderCheck, ConvergeCheck, EventCountsCheck, FieldEdit, FieldMergeCheck, IdempotentCheck, OwnWritesCheck,
    SequenceCheck, SqlCheck,
};
use shakedown_check::steps::{StepsCheck, SCRIPT};
use shakedown_check::{
    BankCheck, Check, CheckInput, CheckResult, CounterCheck, Delivery, MonotonicCheck, ReadYourWritesCheck, SetCheck,
    SetFullCheck, StatsCheck, TotalQueueCheck, UnexpectedCheck, UniqueIdsCheck, Verdict,
};
use shakedown_history::logs::Logs;
use shakedown_history::{EventKind, History};
use shakedown_report::Report;
use shakedown_runner::triggers::log_match;
use shakedown_runner::{Client, RunEnd, RunOptions};
use shakedown_spec::CheckSpec;
use shakedown_spec::Spanned;
use shakedown_spec::{CheckKind, Scenario};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How to run: everything not in the scenario itself.
#[derive(Clone, Default)]
pub struct RunConfig {
    /// Overrides the scenario's seed; drawn at random when both are absent.
    pub seed: Option<u64>,
    /// The run directory; default `.shakedown/runs/<scenario>-<time>-<seed>`.
    pub out: Option<PathBuf>,
    /// The scenario file's directory (default: the current dir); the scenario's
    /// `base_dir`, if any, is resolved against it.
    pub scenario_dir: Option<PathBuf>,
    /// The scenario file's text, written to the run directory as `scenario.toml`.
    pub scenario_text: Option<String>,
    /// Replaces the scenario's `[client]` with an in-process one.
    pub client: Option<Arc<dyn Client>>,
    /// Set to true to interrupt the run.
    pub cancel: Option<watch::Receiver<bool>>,
    /// Completed operations, for progress displays.
    pub completed: Option<Arc<AtomicU64>>,
    /// Values masked as `***` in every output (profile and `.env` values);
    /// the scenario's `env_secret` variables are masked too.
    pub secrets: Vec<String>,
    /// Compares the run's metrics with a baseline before the outputs are written.
    pub baseline: Option<Arc<crate::finish::BaselineFn>>,
}

/// A finished run: its report, history and where it was written.
#[derive(Debug)]
pub struct Finished {
    pub report: Report,
    pub history: History,
    pub run_dir: PathBuf,
    pub end: RunEnd,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid scenario:\n{0}")]
    Spec(#[from] shakedown_spec::SpecErrors),
    #[error("write the run directory {path}: {source}")]
    RunDir { path: String, source: std::io::Error },
    #[error("the run directory {0} already exists and is not empty: choose another --out, or remove it")]
    RunDirInUse(String),
    #[error("start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("read {path}: {why}")]
    Stored { path: String, why: String },
    #[error("check the run: {0}")]
    Finish(String),
}

/// The checks a scenario asks for; `stats` and `unexpected` when it names none.
pub fn checks_for(s: &Scenario) -> Vec<(String, Box<dyn Check>)> {
    if s.check.is_empty() && s.resume.is_none() {
        return vec![
            ("stats".into(), Box::new(StatsCheck::default())),
            ("unexpected".into(), Box::new(UnexpectedCheck::default())),
        ];
    }
    s.check
        .iter()
        .map(|c| {
            let check: Box<dyn Check> = match c.kind {
                CheckKind::Stats => Box::new(StatsCheck::default()),
                CheckKind::Unexpected => Box::new(UnexpectedCheck::default()),
                CheckKind::Set => Box::new(SetCheck::new(f(&c.add, "add"), f(&c.read, "read"))),
                CheckKind::Linearizable => Box::new(LinearizableCheck {
                    timeout: Some(c.timeout.map_or(Duration::from_secs(60), |t| t.0)),
                    ..LinearizableCheck::new(c.model.as_ref().map_or("", |m| m.get_ref().as_str()))
                }),
                CheckKind::SetFull => Box::new(SetFullCheck::new(f(&c.add, "add"), f(&c.read, "read"))),
                CheckKind::TotalQueue => Box::new(TotalQueueCheck::new(
                    f(&c.enqueue, "enqueue"),
                    f(&c.dequeue, "dequeue"),
                    Some(f(&c.drain, "drain").to_string()),
                    match c.mode.as_ref().map(|m| m.get_ref().as_str()) {
                        Some("at-least-once") => Delivery::AtLeastOnce,
                        _ => Delivery::AtMostOnce,
                    },
                )),
                CheckKind::UniqueIds => Box::new(UniqueIdsCheck::new(f(&c.generate, "generate"))),
                CheckKind::Counter => Box::new(CounterCheck::new(f(&c.add, "add"), f(&c.read, "read"))),
                CheckKind::Bank => {
                    let mut bank = BankCheck::new(f(&c.read, "read"), c.total.as_ref().map_or(0, |t| *t.get_ref()));
                    bank.negative_allowed = c.negative_allowed.as_ref().is_some_and(|n| *n.get_ref());
                    Box::new(bank)
                }
                CheckKind::Monotonic => {
                    let mut check = MonotonicCheck::new(f(&c.read, "read"));
                    (check.key, check.value_pointer) = (pointer(&c.key), pointer(&c.value));
                    Box::new(check)
                }
                CheckKind::ReadYourWrites => {
                    let mut check = ReadYourWritesCheck::new(f(&c.write, "write"), f(&c.read, "read"));
                    (check.key, check.value_pointer) = (pointer(&c.key), pointer(&c.value));
                    Box::new(check)
                }
                CheckKind::LogSequence => {
                    let steps =
                        c.steps.as_ref().map(|s| s.get_ref().iter().map(log_match).collect()).unwrap_or_default();
                    Box::new(LogSequenceCheck { steps })
                }
                CheckKind::LogSpacing => Box::new(LogSpacingCheck {
                    matcher: c.entry.as_ref().map(|e| log_match(e.get_ref())).unwrap_or_default(),
                    min: c.min.map(|d| d.0),
                    max: c.max.map(|d| d.0),
                }),
                CheckKind::LogAbsent => Box::new(LogAbsentCheck {
                    matcher: c.entry.as_ref().map(|e| log_match(e.get_ref())).unwrap_or_default(),
                }),
                CheckKind::Resources => Box::new(shakedown_check::resources::ResourcesCheck {
                    service: c.service.as_ref().map(|s| s.get_ref().clone()),
                    max_rss_bytes: c.max_rss.as_ref().map(|b| b.get_ref().0),
                    max_cpu_ms: c.max_cpu.map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX)),
                }),
                _ => state_check(s, c),
            };
            (c.label().to_string(), check)
        })
        .chain((!s.step.is_empty()).then(|| ("steps".to_string(), Box::new(StepsCheck::default()) as Box<dyn Check>)))
        .chain(s.resume.as_ref().map(|r| ("resume".to_string(), Box::new(resume_check(r)) as Box<dyn Check>)))
        .collect()
}

/// The check every resume scenario gets: its cases against the golden run.
fn resume_check(r: &shakedown_spec::ResumeSpec) -> ResumeCheck {
    let corrupt = r.corrupt.first().map(|c| match c.expect {
        shakedown_spec::CorruptExpect::Error => Expect::Error,
        shakedown_spec::CorruptExpect::Recover => Expect::Recover,
    });
    ResumeCheck { progress: r.progress.as_ref().map(|p| p.get_ref().clone()), corrupt }
}

/// The results of `check` steps: each named check run on the history as it
/// stood when the step ran, named `NAME@K` for the K-th checkpoint.
pub(crate) fn checkpoints(s: &Scenario, history: &History, logs: &Logs) -> Vec<CheckResult> {
    let all = checks_for(s);
    let mut out = Vec::new();
    let marks = history.events.iter().filter_map(|e| match &e.kind {
        EventKind::Service(ev) if ev.service == SCRIPT && ev.event == "check" => Some((e.index, ev.detail.clone()?)),
        _ => None,
    });
    for (k, (index, name)) in marks.enumerate() {
        let Some((_, check)) = all.iter().find(|(n, _)| *n == name) else { continue };
        let prefix = History { header: history.header.clone(), events: history.events[..index as usize].to_vec() };
        let mut r = check.check(&CheckInput::new(&prefix).with_logs(logs));
        shakedown_check::linear::explain(&mut r, &prefix);
        r.name = format!("{name}@{}", k + 1);
        out.push(r);
    }
    out
}

/// A state check (`c.kind.reads_state()`), reading the snapshots taken for its label.
fn state_check(s: &Scenario, c: &CheckSpec) -> Box<dyn Check> {
    let label = c.label().to_string();
    let strings = |v: &Option<Spanned<Vec<String>>>| v.as_ref().map(|v| v.get_ref().clone()).unwrap_or_default();
    let entity = pointer(&c.entity);
    match c.kind {
        CheckKind::Converge => Box::new(ConvergeCheck {
            label,
            ignore: strings(&c.ignore),
            entity,
            shared_only: c.shared_only.as_ref().is_some_and(|b| *b.get_ref()),
        }),
        CheckKind::EventCounts => Box::new(EventCountsCheck { label }),
        CheckKind::Idempotent => Box::new(IdempotentCheck { label, ignore: strings(&c.ignore), entity }),
        CheckKind::Sequence => Box::new(SequenceCheck { label, field: pointer(&c.field).unwrap_or_default() }),
        CheckKind::CausalOrder => Box::new(CausalOrderCheck {
            label,
            entity: entity.unwrap_or_default(),
            op: pointer(&c.op).unwrap_or_default(),
            order: pointer(&c.order),
            creates: c.creates.as_ref().map_or_else(|| vec!["create".to_string()], |v| v.get_ref().clone()),
        }),
        CheckKind::OwnWrites => {
            Box::new(OwnWritesCheck { label, fs: pool_fs(s, c), entity, created: c.created.is_some() })
        }
        CheckKind::FieldMerge => Box::new(FieldMergeCheck {
            label,
            entity,
            edit_log: c.edit_log.is_some(),
            edits: c
                .edits
                .iter()
                .flat_map(|e| e.get_ref())
                .map(|e| FieldEdit {
                    actor: e.actor.clone(),
                    entity: e.entity.clone(),
                    field: e.field.clone(),
                    value: e.value.clone(),
                })
                .collect(),
        }),
        CheckKind::Sql => Box::new(SqlCheck { label, rows: c.rows.as_ref().map(|r| r.get_ref().clone()) }),
        other => unreachable!("{} is not a state check", other.as_str()),
    }
}

/// own-writes: the f names of the actions that capture into the check's pool.
fn pool_fs(s: &Scenario, c: &CheckSpec) -> Vec<String> {
    let pool = c.pool.as_ref().map(|p| p.get_ref().as_str());
    s.action.iter().filter(|a| a.capture.is_some() && a.capture.as_deref() == pool).map(|a| a.f.clone()).collect()
}

/// An f name a check is configured with, or its default.
fn f<'a>(name: &'a Option<Spanned<String>>, default: &'a str) -> &'a str {
    name.as_ref().map_or(default, |n| n.get_ref().as_str())
}

fn pointer(p: &Option<Spanned<String>>) -> Option<String> {
    p.as_ref().map(|p| p.get_ref().clone())
}

/// The documented exit code of a finished run. A run whose harness died is
/// a harness failure unless what it recorded already shows the system
/// wrong: an anomaly observed stays an anomaly.
pub fn exit_code(f: &Finished) -> crate::ExitCode {
    use crate::ExitCode;
    let verdict = match f.report.verdict {
        Verdict::Valid => ExitCode::Valid,
        Verdict::Invalid => ExitCode::Invalid,
        Verdict::Unknown => ExitCode::Unknown,
    };
    match &f.end {
        RunEnd::Interrupted => ExitCode::Interrupted,
        RunEnd::Failed(_) => ExitCode::Harness,
        RunEnd::Unsupported(_) => ExitCode::Unknown,
        RunEnd::Died(_) if verdict == ExitCode::Invalid => ExitCode::Invalid,
        RunEnd::Died(_) => ExitCode::Harness,
        RunEnd::Completed => verdict,
    }
}

/// Runs a validated scenario, checks it and writes the run directory.
pub async fn run(s: &Scenario, cfg: RunConfig) -> Result<Finished, Error> {
    s.validate()?;
    shakedown_history::redact::add_secrets(cfg.secrets.iter().cloned());
    let seed = cfg.seed.or(s.seed).unwrap_or_else(rand::random);
    let run_dir = cfg.out.clone().unwrap_or_else(|| rundir::default_run_dir(&s.name, seed));
    // A run must not start from an earlier run's service data or logs.
    if std::fs::read_dir(&run_dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::RunDirInUse(run_dir.display().to_string()));
    }
    shakedown_runner::files::create_dir_private(&run_dir)
        .map_err(|source| Error::RunDir { path: run_dir.display().to_string(), source })?;
    let run_dir = run_dir.canonicalize().unwrap_or(run_dir);
    let file_dir = cfg.scenario_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let base_dir = file_dir.join(s.base_dir.as_deref().unwrap_or(""));
    let base_dir = base_dir.canonicalize().unwrap_or(base_dir);
    rundir::write_resolved_scenario(&run_dir, cfg.scenario_text.as_deref(), seed, &base_dir)
        .map_err(|source| Error::RunDir { path: run_dir.display().to_string(), source })?;
    let (_keep_open, idle) = watch::channel(false);
    let opts = RunOptions {
        run_dir: run_dir.clone(),
        scenario_dir: base_dir,
        seed,
        client: cfg.client.clone(),
        cancel: cfg.cancel.clone().unwrap_or(idle),
        completed: cfg.completed.clone().unwrap_or_default(),
    };
    shakedown_runner::run(s, opts).await;
    // Checking is CPU work: off the async runtime, so a long search never
    // starves a neighbouring run's workload under `--jobs`.
    let (s, finish) = (s.clone(), crate::finish::FinishOptions { baseline: cfg.baseline.clone() });
    tokio::task::spawn_blocking(move || crate::finish::finish(&s, &run_dir, &finish))
        .await
        .map_err(|e| Error::Finish(e.to_string()))?
}

/// [`run`] on a fresh multi-threaded runtime, for tests and synchronous callers.
pub fn run_blocking(s: &Scenario, cfg: RunConfig) -> Result<Finished, Error> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(Error::Runtime)?;
    rt.block_on(run(s, cfg))
}
