//! One run of a scenario, start to finish: build, start services, drive the
//! workload while the nemesis injects faults, heal, final reads, stop.
//!
//! Whatever happens (a failed build, a service that never becomes ready, an
//! interrupt) every process group this run started is gone when `run` returns.

use crate::build::{run_build, BuildError};
use crate::client::Client;
use crate::containment::{Choice, RunContainment};
use crate::context::Context;
use crate::environment::{self, Environment, SetupError};
use crate::faults::Nemesis;
use crate::logs::LogSink;
use crate::plan::{self, mkdir, PlanError};
use crate::recorder::Recorder;
use crate::resume::ResumeRun;
use crate::steps::Script;
use crate::supervisor::{kill_run_groups, Service};
use crate::triggers::{log_format, Triggers};
use crate::workload::{Limits, Workload};
use shakedown_history::Header;
use shakedown_spec::Scenario;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Default workload length when the scenario sets neither `duration` nor `ops`.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

pub struct RunOptions {
    pub run_dir: PathBuf,
    pub scenario_dir: PathBuf,
    pub seed: u64,
    /// Replaces the scenario's `[client]`, e.g. an in-process client in tests.
    pub client: Option<Arc<dyn Client>>,
    /// Turns true when the run must stop at once (SIGINT).
    pub cancel: watch::Receiver<bool>,
    /// Completed operations, for progress displays.
    pub completed: Arc<AtomicU64>,
}

/// How the run ended, which decides the exit code.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum RunEnd {
    Completed,
    Interrupted,
    /// The harness or environment failed (build, readiness, setup); not a finding.
    Failed(String),
    /// The scenario needs a fault tier this machine lacks (namespaces,
    /// libfaketime, tmpfs mounts): nothing ran, and every verdict is unknown.
    Unsupported(String),
    /// The harness stopped before the run finished (it was killed): only
    /// known when a run directory is read back, from its history's missing end.
    Died(String),
}

impl RunEnd {
    /// The `status` word, as the history's end event and `run.json` write it.
    pub fn status(&self) -> &'static str {
        match self {
            RunEnd::Completed => "completed",
            RunEnd::Interrupted => "interrupted",
            RunEnd::Failed(_) => "failed",
            RunEnd::Unsupported(_) => "unsupported",
            RunEnd::Died(_) => "died",
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            RunEnd::Completed | RunEnd::Interrupted => None,
            RunEnd::Failed(d) | RunEnd::Unsupported(d) | RunEnd::Died(d) => Some(d),
        }
    }
}

/// A process whose output the run captured.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceOutput {
    pub name: String,
    /// Relative to the run directory.
    pub log: String,
}

/// What a run leaves besides its history and logs: `run.json` in the run
/// directory, written when the run ends (a run whose harness died has none).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub end: RunEnd,
    pub services: Vec<ServiceOutput>,
    /// Problems that did not stop the run (a failed heal, say).
    pub errors: Vec<String>,
    pub elapsed_ms: u64,
    /// Each service's peak RSS and CPU time from /proc samples (services
    /// never seen running have none) and a resume scenario's job metrics;
    /// throughput and latency come from the history.
    pub metrics: shakedown_history::metrics::Metrics,
}

/// The file name of a run's [`RunRecord`].
pub const RUN_RECORD: &str = "run.json";
/// The file name of a run's state snapshots.
pub const STATES: &str = "states.json";
/// The file name of a run's history.
pub const HISTORY: &str = "history.jsonl";

#[derive(Debug, Clone)]
pub struct RunOutput {
    pub record: RunRecord,
    /// Where the history was streamed (`history.jsonl` in the run directory).
    pub history: PathBuf,
    /// The state checks' snapshots (final, and before/after idempotency rounds),
    /// also written to `states.json`.
    pub states: Vec<shakedown_history::state::Snapshot>,
}

/// Kills the process groups of its run on drop, whatever path leaves `run`,
/// then ends its containment (everything else the run started, daemons
/// included); other runs in the same process keep theirs.
struct KillGuard(PathBuf, Option<RunContainment>);

impl KillGuard {
    /// Starts the run's containment (its cgroup or fallback, and its
    /// watchdog); the error says why the run cannot start.
    fn start(run_dir: PathBuf) -> (KillGuard, Option<String>) {
        match Choice::from_env().and_then(|choice| RunContainment::start(&run_dir, choice)) {
            Ok(c) => (KillGuard(run_dir, Some(c)), None),
            Err(e) => (KillGuard(run_dir, None), Some(format!("contain the run's processes: {e}"))),
        }
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        kill_run_groups(&self.0);
        if let Err(e) = self.1.take().map_or(Ok(()), RunContainment::end) {
            tracing::error!(run = %self.0.display(), "failed to end the run's processes: {e}");
        }
    }
}

struct Run<'a> {
    s: &'a Scenario,
    opts: RunOptions,
    recorder: Arc<Recorder>,
    logs: Vec<Arc<LogSink>>,
    errors: Vec<String>,
    start: Instant,
    states: Vec<shakedown_history::state::Snapshot>,
    /// What upgrade faults swap in, planned with the services.
    upgrades: BTreeMap<(String, String), crate::supervisor::ProcSpec>,
    /// Samples the services' process groups from when they are up until `finish`.
    sampler: Option<crate::metrics::Sampler>,
    /// A resume scenario's job metrics, added to the run's.
    job_metrics: shakedown_history::metrics::Metrics,
}

/// Runs the scenario, streaming its history into the run directory (which
/// must exist); never panics on a misbehaving system or environment.
pub async fn run(s: &Scenario, opts: RunOptions) -> RunOutput {
    let (_guard, contain_error) = KillGuard::start(opts.run_dir.clone());
    shakedown_history::redact::add_secrets(secret_values(s));
    let mut header = Header::new(&s.name, opts.seed);
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    header.meta.insert("started_at".into(), serde_json::Value::from(started_at));
    if !s.cell.is_empty() {
        let cell = s.cell.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone()))).collect();
        header.meta.insert("matrix".into(), serde_json::Value::Object(cell));
    }
    let history = opts.run_dir.join(HISTORY);
    let recorder = match Recorder::create(&history, header, opts.completed.clone()) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            let end = RunEnd::Failed(format!("create {}: {e}", history.display()));
            let record =
                RunRecord { end, services: Vec::new(), errors: Vec::new(), elapsed_ms: 0, metrics: Default::default() };
            return RunOutput { record, history, states: Vec::new() };
        }
    };
    let start = recorder.start();
    let mut r = Run {
        s,
        opts,
        recorder,
        logs: Vec::new(),
        errors: Vec::new(),
        start,
        states: Vec::new(),
        upgrades: BTreeMap::new(),
        sampler: None,
        job_metrics: Default::default(),
    };
    let end = match contain_error {
        Some(why) => RunEnd::Failed(why),
        None => r.drive().await,
    };
    r.finish(end)
}

/// The values of the variables the scenario marks secret (`env_secret`), as set now.
fn secret_values(s: &Scenario) -> Vec<String> {
    s.env_secret.iter().filter_map(|v| std::env::var(v.get_ref()).ok()).collect()
}

impl Run<'_> {
    /// Ends the run: every process gone, the history closed with its end
    /// event, `run.json` and `states.json` written.
    fn finish(mut self, mut end: RunEnd) -> RunOutput {
        if let Some(why) = crate::harness::take(&self.opts.run_dir.display().to_string()) {
            // A program the machine lacks: whatever else happened, that is how the run ended.
            if !matches!(end, RunEnd::Failed(_)) {
                end = RunEnd::Failed(why);
            }
        }
        let usage = self.sampler.take().map(crate::metrics::Sampler::stop).unwrap_or_default();
        kill_run_groups(&self.opts.run_dir);
        self.logs.iter().for_each(|l| l.close());
        let recorded = self.recorder.finish(end.status(), end.detail().map(str::to_string));
        if let Some(e) = recorded.error {
            // A history that could not be written cannot be judged.
            self.errors.push(e.clone());
            if end == RunEnd::Completed {
                end = RunEnd::Failed(e);
            }
        }
        let services = self
            .logs
            .iter()
            .map(|l| ServiceOutput { name: l.name.clone(), log: format!("logs/{}", file_name(&l.path)) })
            .collect();
        let mut metrics = shakedown_history::metrics::Metrics::default();
        for (name, u) in usage.iter().filter(|(_, u)| u.samples > 0) {
            metrics.add_service(name, u.rss_bytes, u.cpu_ms);
        }
        metrics.extend(std::mem::take(&mut self.job_metrics));
        let elapsed_ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let record = RunRecord { end, services, errors: self.errors, elapsed_ms, metrics };
        let mut out = RunOutput { record, history: recorded.path, states: self.states };
        if let Err(e) = write_record(&self.opts.run_dir, &out) {
            out.record.errors.push(e.clone());
            if out.record.end == RunEnd::Completed {
                out.record.end = RunEnd::Failed(e);
            }
        }
        out
    }

    /// Awaits `fut` unless the run is cancelled first, or stopped by a
    /// harness failure (which `finish` turns into the run's end).
    async fn or_cancel<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        let mut cancel = self.opts.cancel.clone();
        if *cancel.borrow() {
            return None;
        }
        let tag = self.opts.run_dir.display().to_string();
        tokio::select! {
            v = fut => Some(v),
            _ = cancel.wait_for(|c| *c) => None,
            _ = crate::harness::failed(&tag) => None,
        }
    }

    async fn drive(&mut self) -> RunEnd {
        let logs_dir = self.opts.run_dir.join("logs");
        if let Err(e) = mkdir(&logs_dir) {
            return RunEnd::Failed(e.to_string());
        }
        if let Some(end) = self.builds(&logs_dir).await {
            return end;
        }
        let network = match environment::network(self.s) {
            Ok(n) => n,
            Err(e) => return setup_end(e),
        };
        let hosts: BTreeMap<String, String> = match &network {
            Some(net) => {
                self.s.service.keys().filter_map(|name| Some((name.clone(), net.address(name)?.to_string()))).collect()
            }
            None => BTreeMap::new(),
        };
        let ctx = match plan::context(self.s, &self.opts.run_dir, &self.opts.scenario_dir, self.opts.seed, &hosts) {
            Ok(c) => Arc::new(c),
            Err(e) => return RunEnd::Failed(e.to_string()),
        };
        if let Err(e) = crate::dataset::generate_all(&ctx, self.s) {
            return RunEnd::Failed(e.to_string());
        }
        let env = match Environment::setup(self.s, &ctx, network).await {
            Ok(env) => Arc::new(env),
            Err(e) => return setup_end(e),
        };
        let services = match self.start_services(&ctx, &logs_dir, &env).await {
            Ok(s) => s,
            Err(end) => return end,
        };
        self.start_sampler(&services);
        self.recorder.flush();
        let end = self.workload_phase(ctx, &logs_dir, &services, env.clone()).await;
        self.recorder.flush();
        self.stop_services(&services).await;
        self.errors.extend(env.stop().await);
        end
    }

    async fn builds(&mut self, logs_dir: &std::path::Path) -> Option<RunEnd> {
        if self.s.build.is_empty() {
            return None;
        }
        let path = logs_dir.join("build.log");
        let log = match LogSink::create("build", &path, self.start) {
            Ok(l) => Arc::new(l),
            Err(e) => return Some(RunEnd::Failed(format!("create {}: {e}", path.display()))),
        };
        self.logs.push(log.clone());
        // Builds run before ports, service dirs and actors exist.
        let mut ctx = Context::new(
            self.opts.run_dir.clone(),
            self.opts.scenario_dir.clone(),
            self.opts.seed,
            BTreeMap::new(),
            Vec::new(),
        );
        ctx.matrix = self.s.cell.clone();
        match plan::versions(&ctx, self.s) {
            Ok(v) => ctx.versions = v,
            Err(e) => return Some(RunEnd::Failed(e.to_string())),
        }
        for b in &self.s.build {
            let spec = match plan::build(&ctx, b) {
                Ok(s) => s,
                Err(e) => return Some(RunEnd::Failed(e.to_string())),
            };
            let timeout = b.timeout.map_or(Duration::from_secs(600), |d| d.0);
            match self.or_cancel(run_build(&spec, timeout, &log)).await {
                None => return Some(RunEnd::Interrupted),
                Some(Err(BuildError::Failed { command, message, output })) => {
                    let shown = output.join("\n");
                    return Some(RunEnd::Failed(format!(
                        "build command `{command}` failed ({message}); its output:\n{shown}"
                    )));
                }
                Some(Ok(())) => {}
            }
        }
        None
    }

    async fn start_services(
        &mut self,
        ctx: &Arc<Context>,
        logs_dir: &std::path::Path,
        env: &Environment,
    ) -> Result<BTreeMap<String, Arc<Service>>, RunEnd> {
        let mut services = BTreeMap::new();
        for (name, spec) in &self.s.service {
            let extras = plan::ServiceExtras { namespaces: env.namespaces(name), env: env.service_env(name) };
            for to in self.upgrades_of(name) {
                let next = plan::service_process(ctx, name, spec, &extras, Some(&to))
                    .map_err(|e: PlanError| RunEnd::Failed(e.to_string()))?;
                self.upgrades.insert((name.clone(), to), next);
            }
            let svc = plan::service(ctx, name, spec, logs_dir, self.start, self.recorder.clone(), extras)
                .map_err(|e: PlanError| RunEnd::Failed(e.to_string()))?;
            let svc = Arc::new(svc);
            self.logs.push(svc.log.clone());
            services.insert(name.clone(), svc.clone());
            match self.or_cancel(svc.start()).await {
                None => return Err(RunEnd::Interrupted),
                Some(Err(e)) => {
                    self.stop_services(&services).await;
                    return Err(RunEnd::Failed(e.to_string()));
                }
                Some(Ok(())) => {}
            }
        }
        Ok(services)
    }

    /// Samples each service's current process group (a restart moves it) until `finish`.
    fn start_sampler(&mut self, services: &BTreeMap<String, Arc<Service>>) {
        let services = services.clone();
        let groups = Box::new(move || services.iter().filter_map(|(n, s)| Some((n.clone(), s.pgid()?))).collect());
        match crate::metrics::Sampler::start(groups, crate::metrics::SAMPLE_INTERVAL) {
            Ok(sampler) => self.sampler = Some(sampler),
            // Without samples the resources checks are unknown; the run itself goes on.
            Err(e) => tracing::warn!("failed to start the resource sampler: {e}"),
        }
    }

    /// The versions upgrade faults move `service` to.
    fn upgrades_of(&self, service: &str) -> Vec<String> {
        let upgrades = self.s.fault.iter().filter(|f| f.kind == shakedown_spec::FaultKind::Upgrade);
        let to_service = upgrades.filter(|f| f.target.get_ref().iter().any(|t| t == service));
        to_service.filter_map(|f| f.to.as_ref().map(|t| t.get_ref().clone())).collect()
    }

    async fn workload_phase(
        &mut self,
        ctx: Arc<Context>,
        logs_dir: &std::path::Path,
        services: &BTreeMap<String, Arc<Service>>,
        env: Arc<Environment>,
    ) -> RunEnd {
        let client = match self.opts.client.clone() {
            Some(c) => Some(c),
            None => match plan::client(&ctx, self.s, logs_dir, self.start) {
                Ok(c) => c,
                Err(e) => return RunEnd::Failed(e.to_string()),
            },
        };
        if let Some(c) = &client {
            match self.or_cancel(tokio::time::timeout(c.open_timeout(), c.open(&ctx.actors))).await {
                None => return RunEnd::Interrupted,
                Some(Err(_)) => {
                    return RunEnd::Failed(format!("the client did not open within {:?}", c.open_timeout()))
                }
                Some(Ok(Err(e))) => return RunEnd::Failed(format!("open the client: {e}")),
                Some(Ok(Ok(()))) => {}
            }
        }
        let end = self.workload_and_faults(ctx, client.clone(), services, env).await;
        if let Some(c) = client {
            c.close().await;
        }
        end
    }

    async fn workload_and_faults(
        &mut self,
        ctx: Arc<Context>,
        client: Option<Arc<dyn Client>>,
        services: &BTreeMap<String, Arc<Service>>,
        env: Arc<Environment>,
    ) -> RunEnd {
        let s = self.s;
        let limits = Limits {
            clients: s.clients.map_or(1, |c| c.get()),
            ops: s.ops.map(|o| o.get()),
            duration: s.duration.map(|d| d.0).or(if s.ops.is_some() { None } else { Some(DEFAULT_DURATION) }),
            rate: s.rate,
        };
        let op_timeout = s.client.as_ref().and_then(|c| c.timeout).map_or(plan::DEFAULT_OP_TIMEOUT, |d| d.0);
        let longest = s.action.iter().filter_map(|a| a.timeout).map(|d| d.0).max().unwrap_or_default().max(op_timeout);
        let workload = client.map(|c| {
            Arc::new(Workload::new(
                ctx.clone(),
                self.recorder.clone(),
                c,
                s.action.clone(),
                longest + Duration::from_secs(5),
            ))
        });
        let triggers = Arc::new(Triggers::new(self.opts.completed.clone()));
        for (name, svc) in services {
            triggers.add_log(svc.log.clone(), log_format(s, name));
        }
        let mut nemesis = Nemesis::new(services.clone(), env, self.recorder.clone(), self.opts.seed);
        nemesis.triggers = Some(triggers.clone());
        nemesis.upgrades = std::mem::take(&mut self.upgrades);
        let nemesis = Arc::new(nemesis);
        let stop_flag = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = watch::channel(false);
        let faults = s.fault.clone();
        let nem = nemesis.clone();
        let fault_task = tokio::spawn(async move { nem.run(&faults, stop_rx).await });
        let script = (!s.step.is_empty()).then(|| {
            let mut script = Script::new(
                Arc::new(s.clone()),
                ctx.clone(),
                services.clone(),
                nemesis.clone(),
                workload.clone(),
                self.recorder.clone(),
                triggers.clone(),
                self.opts.run_dir.join("logs"),
            );
            script.limits = limits;
            Arc::new(script)
        });
        let resume = s.resume.as_ref().map(|spec| ResumeRun {
            s,
            spec,
            ctx: ctx.clone(),
            recorder: self.recorder.clone(),
            logs_dir: self.opts.run_dir.join("logs"),
        });
        let (mut resumed, mut job_metrics) = (Vec::new(), shakedown_history::metrics::Metrics::default());
        let main = async {
            match (&script, &workload) {
                // A resume scenario's cases are the whole main phase.
                _ if resume.is_some() => (resumed, job_metrics) = resume.as_ref().expect("checked").run().await,
                // A failed step is recorded in the history; the checks judge it.
                (Some(script), _) => drop(script.run(&s.step).await),
                (None, Some(w)) if !s.action.is_empty() => w.run(limits, stop_flag.clone()).await,
                _ => tokio::time::sleep(limits.duration.unwrap_or_default()).await,
            }
        };
        let completed = self.or_cancel(main).await.is_some();
        self.recorder.flush();
        self.states.append(&mut resumed);
        self.job_metrics.extend(std::mem::take(&mut job_metrics));
        stop_flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = stop_tx.send(true);
        if !completed {
            return RunEnd::Interrupted;
        }
        // Faults in progress heal as soon as they see the stop; bounded all the same.
        if self.or_cancel(tokio::time::timeout(Duration::from_secs(120), fault_task)).await.is_none() {
            return RunEnd::Interrupted;
        }
        match self.or_cancel(nemesis.heal()).await {
            None => return RunEnd::Interrupted,
            Some(problems) => self.errors.extend(problems.into_iter().map(|p| format!("heal: {p}"))),
        }
        self.recorder.flush();
        if let Some(w) = &workload {
            let labels: Vec<String> = s.finally.iter().map(|f| f.get_ref().clone()).collect();
            if self.or_cancel(w.run_finally(&labels)).await.is_none() {
                return RunEnd::Interrupted;
            }
        }
        // State checks: final snapshots, then each idempotent check's rounds between a before and an after.
        use shakedown_spec::CheckKind::Idempotent;
        for c in s.check.iter().filter(|c| c.kind.reads_state()) {
            let states = async {
                if c.kind != Idempotent {
                    return crate::snapshot::take(&ctx, c, "final").await;
                }
                let mut states = crate::snapshot::take(&ctx, c, "before").await;
                // A round is every actor running the round's actions, as a sync round is.
                for round in 0..c.n_rounds() {
                    for (i, _) in ctx.actors.iter().enumerate().filter(|_| workload.is_some()) {
                        for label in c.round_labels() {
                            let stream = (3 << 32) + (u64::from(round) << 16) + i as u64;
                            workload.as_ref().expect("filtered").run_one(&label, i, stream).await;
                        }
                    }
                }
                states.extend(crate::snapshot::take(&ctx, c, "after").await);
                states
            };
            match self.or_cancel(states).await {
                None => return RunEnd::Interrupted,
                Some(states) => self.states.extend(states),
            }
        }
        RunEnd::Completed
    }

    /// Stops services one by one with their stop profiles (each bounded by its
    /// grace, then SIGKILL); a cancel skips straight to the kill guard.
    async fn stop_services(&self, services: &BTreeMap<String, Arc<Service>>) {
        for svc in services.values() {
            if self.or_cancel(svc.stop()).await.is_none() {
                return;
            }
        }
    }
}

/// How a failed environment setup ends the run: unknown when this machine
/// lacks the tier, a harness failure otherwise.
fn setup_end(e: SetupError) -> RunEnd {
    match e {
        SetupError::Unsupported(why) => RunEnd::Unsupported(why),
        SetupError::Failed(why) => RunEnd::Failed(why),
    }
}

/// Writes `run.json`, and `states.json` when there are snapshots.
fn write_record(run_dir: &std::path::Path, out: &RunOutput) -> Result<(), String> {
    let write = |name: &str, text: String| {
        let path = run_dir.join(name);
        crate::files::write_private(&path, text.as_bytes()).map_err(|e| format!("write {}: {e}", path.display()))
    };
    let record = serde_json::to_value(&out.record).map_err(|e| format!("serialize {RUN_RECORD}: {e}"))?;
    write(RUN_RECORD, masked_json(record))?;
    if !out.states.is_empty() {
        let states = serde_json::to_value(&out.states).map_err(|e| format!("serialize {STATES}: {e}"))?;
        write(STATES, masked_json(states))?;
    }
    Ok(())
}

/// Pretty JSON text of `value` with the process's secrets masked.
fn masked_json(mut value: serde_json::Value) -> String {
    shakedown_history::redact::current().redact_value(&mut value);
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}
