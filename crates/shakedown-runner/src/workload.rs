//! The workload engine: workers draw weighted actions from seeded RNGs, fill
//! their templates, call the client and record invocations and completions.

use crate::client::{Client, Operation, Rendered};
use crate::context::{Context, OpScope, Scope};
use crate::pools::Pools;
use crate::recorder::{Outcome, Recorder};
use rand::distributions::{Distribution, WeightedIndex};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use shakedown_history::{OpType, ProcessId};
use shakedown_spec::ActionSpec;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When the workload stops and how fast it goes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub clients: usize,
    pub ops: Option<u64>,
    pub duration: Option<Duration>,
    /// Operations per second across all workers.
    pub rate: Option<f64>,
}

/// Everything workers share.
pub struct Workload {
    pub ctx: Arc<Context>,
    pub recorder: Arc<Recorder>,
    pub client: Arc<dyn Client>,
    pub pools: Arc<Pools>,
    pub actions: Arc<Vec<ActionSpec>>,
    /// Extra time past the client's own timeout before the engine gives up on a call.
    pub call_deadline: Duration,
    next_process: AtomicU64,
}

/// Per-worker state: its process id, its actor and its RNG.
struct Worker {
    process: ProcessId,
    actor_index: usize,
    rng: ChaCha8Rng,
}

/// Mixes the run seed with a stream number, so each worker and each fault
/// schedule has its own independent, reproducible RNG.
pub fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

impl Workload {
    pub fn new(
        ctx: Arc<Context>,
        recorder: Arc<Recorder>,
        client: Arc<dyn Client>,
        actions: Vec<ActionSpec>,
        call_deadline: Duration,
    ) -> Workload {
        Workload {
            ctx,
            recorder,
            client,
            pools: Arc::default(),
            actions: Arc::new(actions),
            call_deadline,
            next_process: AtomicU64::new(0),
        }
    }

    fn fresh_process(&self) -> ProcessId {
        ProcessId(self.next_process.fetch_add(1, Ordering::Relaxed))
    }

    /// Runs workers until a limit is reached or `stop` is set.
    pub async fn run(self: &Arc<Self>, limits: Limits, stop: Arc<AtomicBool>) {
        let weights: Vec<u32> = self.actions.iter().map(|a| a.weight.unwrap_or(1)).collect();
        let Ok(dist) = WeightedIndex::new(&weights) else { return };
        let clients = limits.clients.max(1);
        let budget = Arc::new(AtomicU64::new(limits.ops.unwrap_or(u64::MAX)));
        let issued = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let deadline = limits.duration.map(|d| start + d);
        let mut tasks = Vec::with_capacity(clients);
        for w in 0..clients {
            let worker = Worker {
                process: self.fresh_process(),
                actor_index: w % self.ctx.actors.len().max(1),
                rng: stream_rng(self.ctx.seed, w as u64),
            };
            let (me, dist, budget, issued, stop) =
                (self.clone(), dist.clone(), budget.clone(), issued.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                me.worker_loop(worker, dist, Pace { budget, issued, start, deadline, rate: limits.rate }, stop).await;
            }));
        }
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!("workload worker failed: {e}");
            }
        }
    }

    async fn worker_loop(&self, mut w: Worker, dist: WeightedIndex<u32>, pace: Pace, stop: Arc<AtomicBool>) {
        loop {
            if stop.load(Ordering::Relaxed) || pace.deadline.is_some_and(|d| Instant::now() >= d) || !pace.claim() {
                return;
            }
            pace.wait_turn().await;
            let action_index = dist.sample(&mut w.rng);
            if !self.one_op(&mut w, action_index).await {
                // Nothing to target yet: let other workers fill the pool.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Runs the named actions once each, in order, as a fresh process.
    pub async fn run_finally(&self, labels: &[String]) {
        let mut w = Worker { process: self.fresh_process(), actor_index: 0, rng: stream_rng(self.ctx.seed, u64::MAX) };
        for label in labels {
            if let Some(i) = self.actions.iter().position(|a| a.label() == label) {
                self.one_op(&mut w, i).await;
            }
        }
    }

    /// Runs the action labelled `label` once as the actor at `actor_index`, as a
    /// fresh process whose RNG is stream `stream` of the seed.
    pub async fn run_one(&self, label: &str, actor_index: usize, stream: u64) {
        let Some(i) = self.actions.iter().position(|a| a.label() == label) else { return };
        let actor_index = actor_index.min(self.ctx.actors.len().saturating_sub(1));
        let mut w = Worker { process: self.fresh_process(), actor_index, rng: stream_rng(self.ctx.seed, stream) };
        self.one_op(&mut w, i).await;
    }

    /// One operation; false when it was skipped.
    async fn one_op(&self, w: &mut Worker, action_index: usize) -> bool {
        let action = &self.actions[action_index];
        let actor = &self.ctx.actors[w.actor_index];
        let target = match &action.target {
            None => None,
            Some(pool) => match self.pools.pick(pool.get_ref(), &mut w.rng) {
                Some(t) => Some(t),
                None => {
                    self.recorder.skip(
                        w.process,
                        &actor.name,
                        &action.f,
                        format!("pool `{}` is empty", pool.get_ref()),
                    );
                    return false;
                }
            },
        };
        let (value, rendered) = match self.render(action, actor, target.as_ref(), &mut w.rng) {
            Ok(r) => r,
            Err(e) => {
                self.recorder.skip(w.process, &actor.name, &action.f, e.to_string());
                return false;
            }
        };
        self.recorder.invoke(w.process, &actor.name, &action.f, &value);
        let op = Operation {
            actor,
            actor_index: w.actor_index,
            action_index,
            f: &action.f,
            value: &value,
            target: target.as_ref(),
            rendered: &rendered,
        };
        let outcome = match tokio::time::timeout(self.call_deadline, self.client.call(op)).await {
            Ok(o) => o,
            Err(_) => Outcome::info(format!("client did not return within {:?}", self.call_deadline)),
        };
        if outcome.op_type == OpType::Ok {
            self.after_ok(action, &value, target.as_ref(), outcome.value.as_ref());
        }
        let retired = outcome.op_type == OpType::Info;
        self.recorder.complete(w.process, &actor.name, &action.f, &value, outcome);
        if retired {
            // Jepsen semantics: the op may still take effect, so this process is done.
            w.process = self.fresh_process();
        }
        true
    }

    fn after_ok(&self, action: &ActionSpec, value: &Value, target: Option<&Value>, result: Option<&Value>) {
        if let Some(pool) = &action.capture {
            self.pools.add(pool, result.unwrap_or(value).clone());
        }
        if let (true, Some(pool), Some(t)) = (action.remove, &action.target, target) {
            self.pools.remove(pool.get_ref(), t);
        }
    }

    fn render(
        &self,
        action: &ActionSpec,
        actor: &crate::context::ActorCtx,
        target: Option<&Value>,
        rng: &mut ChaCha8Rng,
    ) -> Result<(Value, Rendered), crate::context::RenderError> {
        let ctx = &self.ctx;
        let mut op = OpScope { value: None, target, rng, pools: &self.pools };
        let value = match &action.value {
            None => Value::Null,
            Some(v) => {
                ctx.render_value(v.get_ref(), &mut Scope { actor: Some(actor), op: Some(&mut op), ..Scope::default() })?
            }
        };
        op.value = Some(&value);
        let mut scope = Scope { actor: Some(actor), op: Some(&mut op), ..Scope::default() };
        let mut r = Rendered::default();
        if let Some(req) = &action.request {
            let req = req.get_ref();
            r.path = Some(ctx.render(&req.path, &mut scope)?);
            for (k, v) in &req.headers {
                r.headers.push((k.clone(), ctx.render(v, &mut scope)?));
            }
            r.body = req.body.as_ref().map(|b| ctx.render(b, &mut scope)).transpose()?;
        }
        if let Some(cmd) = &action.command {
            r.argv = ctx.render_all(cmd.get_ref(), &mut scope)?;
        }
        r.stdin = action.stdin.as_ref().map(|s| ctx.render(s, &mut scope)).transpose()?;
        Ok((value, r))
    }
}

/// Shared limits: the op budget and the global rate.
struct Pace {
    budget: Arc<AtomicU64>,
    issued: Arc<AtomicU64>,
    start: Instant,
    deadline: Option<Instant>,
    rate: Option<f64>,
}

impl Pace {
    /// Takes one op from the budget; false when it is spent.
    fn claim(&self) -> bool {
        self.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    /// With a rate, waits until this op's slot on the global schedule.
    async fn wait_turn(&self) {
        let Some(rate) = self.rate else { return };
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let at = self.start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
    }
}
