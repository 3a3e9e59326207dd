//! The step script: a scenario's `[[step]]` sequence run in order — service
//! verbs, actions and commands as actors, waits on triggers, parallel
//! branches, repeats, faults injected and healed, phases and checkpoints.
//!
//! Every operation a step performs goes into the history like a workload
//! operation. A step that cannot go on (a command whose expectation fails, a
//! trigger that never fires, a service that does not come back) ends the
//! script and is recorded as a `step failed` event, which the `steps` check
//! turns into an invalid verdict.

use crate::client::exec::run_command;
use crate::context::{Context, Scope};
use crate::faults::Nemesis;
use crate::logs::LogSink;
use crate::plan::{actor_env, resolve_program};
use crate::pools::Pools;
use crate::recorder::Recorder;
use crate::supervisor::{ProcSpec, Service};
use crate::triggers::{log_format, Armed, Triggers};
use crate::workload::{stream_rng, Limits, Workload};
use nix::sys::signal::Signal;
use serde_json::json;
use shakedown_history::{OpType, ProcessId};
use shakedown_spec::{ActionSpec, Scenario, StepSpec, StepVerb, Template};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The service name step events are recorded under.
pub const SCRIPT: &str = "shakedown";
/// A command step's timeout when neither the step nor the client sets one.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fault step waits for its fault to start, and a heal for it to end.
const FAULT_WAIT: Duration = Duration::from_secs(120);
/// Step processes get ids far above the workload's, so they never collide.
const FIRST_STEP_PROCESS: u64 = 1 << 40;

type StepFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Everything a script needs from the run.
pub struct Script {
    pub s: Arc<Scenario>,
    pub ctx: Arc<Context>,
    pub services: BTreeMap<String, Arc<Service>>,
    pub nemesis: Arc<Nemesis>,
    pub workload: Option<Arc<Workload>>,
    pub recorder: Arc<Recorder>,
    pub triggers: Arc<Triggers>,
    pub logs_dir: PathBuf,
    pub start: Instant,
    /// The client's op timeout, the default for command steps.
    pub op_timeout: Option<Duration>,
    /// Workers of `workload` steps, as in the scenario.
    pub limits: Limits,
    held: Mutex<BTreeMap<String, Held>>,
    sinks: Mutex<BTreeMap<String, Arc<LogSink>>>,
    pools: Arc<Pools>,
    next_process: AtomicU64,
}

/// A fault a step injected, running until its `for` ends or a heal stops it.
struct Held {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Script {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        s: Arc<Scenario>,
        ctx: Arc<Context>,
        services: BTreeMap<String, Arc<Service>>,
        nemesis: Arc<Nemesis>,
        workload: Option<Arc<Workload>>,
        recorder: Arc<Recorder>,
        triggers: Arc<Triggers>,
        logs_dir: PathBuf,
    ) -> Script {
        let start = recorder.start();
        let pools = workload.as_ref().map_or_else(Arc::default, |w| w.pools.clone());
        let op_timeout = s.client.as_ref().and_then(|c| c.timeout).map(|d| d.0);
        Script {
            s,
            ctx,
            services,
            nemesis,
            workload,
            recorder,
            triggers,
            logs_dir,
            start,
            op_timeout,
            limits: Limits::default(),
            held: Mutex::default(),
            sinks: Mutex::default(),
            pools,
            next_process: AtomicU64::new(FIRST_STEP_PROCESS),
        }
    }

    /// Runs `steps` in order; the first failure ends the script and is recorded.
    pub async fn run(self: &Arc<Self>, steps: &[StepSpec]) -> Result<(), String> {
        let result = self.sequence(steps.to_vec(), None).await;
        if let Err(why) = &result {
            self.recorder.service(SCRIPT, "step failed", false, Some(why.clone()));
        }
        self.heal_held().await;
        result
    }

    /// Runs `steps` in order. `armed` is where the first step's triggers
    /// start looking (a parallel block's start, so a branch's first `wait`
    /// sees lines another branch printed before the wait began); later steps
    /// look from their own start.
    fn sequence(self: &Arc<Self>, steps: Vec<StepSpec>, armed: Option<Armed>) -> StepFuture {
        let me = self.clone();
        Box::pin(async move {
            let mut armed = armed;
            for step in steps {
                me.step(step, armed.take()).await?;
            }
            Ok(())
        })
    }

    fn step(self: &Arc<Self>, step: StepSpec, armed: Option<Armed>) -> StepFuture {
        let me = self.clone();
        Box::pin(async move {
            let label = step.label();
            if let Some(when) = &step.when {
                let armed = armed.clone().unwrap_or_else(|| me.triggers.arm());
                me.triggers.wait(when.get_ref(), &armed).await.map_err(|e| format!("step `{label}`: {e}"))?;
            }
            let run = me.verb(&step, armed);
            match step.timeout.filter(|_| step.exec.is_none()) {
                Some(limit) => tokio::time::timeout(limit.0, run)
                    .await
                    .unwrap_or_else(|_| Err(format!("did not finish within {:?}", limit.0))),
                None => run.await,
            }
            .map_err(|e| if e.starts_with("step `") { e } else { format!("step `{label}`: {e}") })
        })
    }

    async fn verb(self: &Arc<Self>, step: &StepSpec, armed: Option<Armed>) -> Result<(), String> {
        let Some(verb) = step.verb() else { return Ok(()) };
        match verb {
            StepVerb::Start(n) => self.start_service(n).await,
            StepVerb::Stop(n) => {
                let svc = self.service(n)?;
                self.nemesis.hold_down(n, true);
                svc.stop().await;
                Ok(())
            }
            StepVerb::Kill(n) => {
                let svc = self.service(n)?;
                self.nemesis.hold_down(n, true);
                svc.stop_with(Signal::SIGKILL, Duration::ZERO).await;
                Ok(())
            }
            StepVerb::Restart(n) => {
                self.service(n)?.stop().await;
                self.start_service(n).await
            }
            StepVerb::Pause(n) => self.service(n)?.pause().then_some(()).ok_or_else(|| format!("{n} is not running")),
            StepVerb::Resume(n) => self.service(n)?.resume().then_some(()).ok_or_else(|| format!("{n} is not running")),
            StepVerb::Action(label) => self.action(step, label).await,
            StepVerb::Exec(argv) => self.exec(step, argv).await,
            StepVerb::Wait(t) => self.triggers.wait(t, &armed.unwrap_or_else(|| self.triggers.arm())).await,
            StepVerb::Parallel(branches) => self.parallel(branches.to_vec()).await,
            StepVerb::Repeat(n, steps) => {
                for _ in 0..n {
                    self.sequence(steps.to_vec(), None).await?;
                }
                Ok(())
            }
            StepVerb::Sequence(steps) => self.sequence(steps.to_vec(), armed).await,
            StepVerb::Fault(name) => self.inject(name).await,
            StepVerb::Heal(name) => self.heal(name).await,
            StepVerb::Check(name) => {
                self.recorder.service(SCRIPT, "check", true, Some(name.to_string()));
                Ok(())
            }
            StepVerb::Sleep(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            StepVerb::Workload(d) => self.workload(d).await,
            StepVerb::Phase(name) => {
                self.recorder.service(SCRIPT, "phase", true, Some(name.to_string()));
                self.triggers.reach_phase(name);
                Ok(())
            }
        }
    }

    fn service(&self, name: &str) -> Result<&Arc<Service>, String> {
        self.services.get(name).ok_or_else(|| format!("no service `{name}`"))
    }

    async fn start_service(&self, name: &str) -> Result<(), String> {
        let svc = self.service(name)?;
        self.nemesis.hold_down(name, false);
        if svc.is_running() {
            return Ok(());
        }
        svc.start().await.map_err(|e| e.to_string())
    }

    fn actor(&self, step: &StepSpec) -> usize {
        let name = step.actor.as_ref().map(|a| a.get_ref().as_str());
        name.and_then(|n| self.ctx.actors.iter().position(|a| a.name == n)).unwrap_or(0)
    }

    /// Runs all branches at once (each on its own task); the first error, if
    /// any, once all have ended.
    async fn parallel(self: &Arc<Self>, branches: Vec<StepSpec>) -> Result<(), String> {
        // Every branch's triggers look from the block's start.
        let armed = self.triggers.arm();
        let tasks: Vec<_> = branches.into_iter().map(|b| tokio::spawn(self.step(b, Some(armed.clone())))).collect();
        let mut first_error = None;
        for t in tasks {
            let r = t.await.unwrap_or_else(|e| Err(format!("a parallel branch failed: {e}")));
            if let (Err(e), None) = (r, &first_error) {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn action(&self, step: &StepSpec, label: &str) -> Result<(), String> {
        let w = self.workload.as_ref().ok_or("there is no `[client]` to run actions with")?;
        let stream = self.next_process.fetch_add(1, Ordering::Relaxed);
        w.run_one(label, self.actor(step), stream).await;
        Ok(())
    }

    async fn workload(&self, d: Duration) -> Result<(), String> {
        let w = self.workload.as_ref().ok_or("there is no `[client]` to run the workload with")?;
        let limits = Limits { duration: Some(d), ops: None, ..self.limits };
        w.run(limits, Arc::new(AtomicBool::new(false))).await;
        Ok(())
    }

    /// A command as an actor: its output streamed to the actor's log (or
    /// `log`), its outcome recorded as an operation, judged by `expect`.
    async fn exec(&self, step: &StepSpec, argv: &[Template]) -> Result<(), String> {
        let actor = &self.ctx.actors[self.actor(step)];
        let mut scope = Scope { actor: Some(actor), ..Scope::default() };
        let mut argv = self.ctx.render_all(argv, &mut scope).map_err(|e| e.to_string())?;
        let stdin =
            step.stdin.as_ref().map(|t| self.ctx.render(t, &mut scope)).transpose().map_err(|e| e.to_string())?;
        resolve_program(&mut argv, &self.ctx.scenario_dir);
        let env = actor_env(&self.ctx, &self.s, actor).map_err(|e| e.to_string())?;
        let sink = self.sink(step.log.as_deref().unwrap_or(&actor.name))?;
        let spec = ProcSpec { argv, env, cwd: actor.home.clone(), namespaces: Vec::new() };
        let f = step.f.clone().unwrap_or_else(|| "exec".into());
        let process = ProcessId(self.next_process.fetch_add(1, Ordering::Relaxed));
        let value = json!(spec.argv.join(" "));
        self.recorder.invoke(process, &actor.name, &f, &value);
        let timeout = step.timeout.map(|d| d.0).or(self.op_timeout).unwrap_or(DEFAULT_EXEC_TIMEOUT);
        let outcome = run_command(&spec, stdin, timeout, &exec_action(step, &f), Some(sink)).await;
        let ok = outcome.op_type == OpType::Ok;
        if let (true, Some(pool)) = (ok, &step.capture) {
            self.pools.add(pool, outcome.value.clone().unwrap_or_else(|| value.clone()));
        }
        let error = outcome.error.clone().unwrap_or_default();
        self.recorder.complete(process, &actor.name, &f, &value, outcome);
        if ok {
            Ok(())
        } else {
            Err(format!("`{}` as {}: {error}", spec.argv.join(" "), actor.name))
        }
    }

    /// The log sink of a command step's source, created on first use and
    /// watched by triggers.
    fn sink(&self, name: &str) -> Result<Arc<LogSink>, String> {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = sinks.get(name) {
            return Ok(s.clone());
        }
        let path = self.logs_dir.join(format!("{name}.log"));
        let sink =
            Arc::new(LogSink::create(name, &path, self.start).map_err(|e| format!("create {}: {e}", path.display()))?);
        self.triggers.add_log(sink.clone(), log_format(&self.s, name));
        sinks.insert(name.to_string(), sink.clone());
        Ok(sink)
    }

    /// Starts a named fault on its own task and returns once its window opened
    /// (or the fault was skipped).
    async fn inject(&self, name: &str) -> Result<(), String> {
        let (index, spec) = self
            .s
            .fault
            .iter()
            .enumerate()
            .find(|(_, f)| f.name.as_ref().is_some_and(|n| n.get_ref() == name))
            .ok_or_else(|| format!("no fault named `{name}`"))?;
        let (stop, mut rx) = watch::channel(false);
        let before = self.recorder.faults_started();
        let (nemesis, spec) = (self.nemesis.clone(), spec.clone());
        let mut rng = stream_rng(self.ctx.seed, (1 << 33) + index as u64);
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        let task = tokio::spawn(async move {
            nemesis.fire(index, &spec, &mut rng, &mut rx).await;
            finished.store(true, Ordering::SeqCst);
        });
        let waited = tokio::time::timeout(FAULT_WAIT, async {
            while self.recorder.faults_started() == before && !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), Held { stop, task });
        waited.map_err(|_| format!("fault `{name}` did not start within {FAULT_WAIT:?}"))
    }

    async fn heal(&self, name: &str) -> Result<(), String> {
        if name == "all" {
            self.heal_held().await;
            let problems = self.nemesis.heal().await;
            return if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) };
        }
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        match held {
            Some(h) => end_held(name, h).await,
            // Already over (its `for` ended), or never injected: nothing to undo.
            None => Ok(()),
        }
    }

    async fn heal_held(&self) {
        let held: Vec<(String, Held)> =
            std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner())).into_iter().collect();
        for (name, h) in held {
            if let Err(e) = end_held(&name, h).await {
                self.recorder.service(SCRIPT, "heal failed", false, Some(e));
            }
        }
    }
}

async fn end_held(name: &str, h: Held) -> Result<(), String> {
    let _ = h.stop.send(true);
    match tokio::time::timeout(FAULT_WAIT, h.task).await {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("fault `{name}` did not heal within {FAULT_WAIT:?}")),
    }
}

/// A command step as an action, so replies are judged like exec actions'.
fn exec_action(step: &StepSpec, f: &str) -> ActionSpec {
    ActionSpec { f: f.to_string(), ok: step.expect.clone(), result: step.result.clone(), ..ActionSpec::default() }
}
