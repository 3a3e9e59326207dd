//! Process faults on a fixed timeline or drawn from the seed, and the heal
//! phase that undoes them all.

mod env;

use crate::environment::Environment;
use crate::recorder::Recorder;
use crate::supervisor::Service;
use crate::triggers::Triggers;
use crate::workload::stream_rng;
use nix::sys::signal::Signal;
use rand::Rng;
use shakedown_spec::{FaultKind, FaultSpec, FaultTarget};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a pause lasts when the fault does not say.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

pub struct Nemesis {
    pub services: BTreeMap<String, Arc<Service>>,
    pub env: Arc<Environment>,
    pub recorder: Arc<Recorder>,
    pub seed: u64,
    /// Faults on one target never overlap: each holds its target's lock
    /// (services by name, links as `link:NAME`, partitions as `network`).
    locks: BTreeMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Where `when` triggers are watched; faults with `when` never fire without it.
    pub triggers: Option<Arc<Triggers>>,
    /// What each upgrade fault swaps in: (service, version) -> its process.
    pub upgrades: BTreeMap<(String, String), crate::supervisor::ProcSpec>,
    /// Services a step stopped on purpose: heal leaves them down.
    held_down: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Nemesis {
    pub fn new(
        services: BTreeMap<String, Arc<Service>>,
        env: Arc<Environment>,
        recorder: Arc<Recorder>,
        seed: u64,
    ) -> Nemesis {
        let mut locks: BTreeMap<String, Arc<tokio::sync::Mutex<()>>> =
            services.keys().map(|k| (k.clone(), Arc::default())).collect();
        locks.extend(env.links.keys().map(|k| (format!("link:{k}"), Arc::default())));
        locks.insert("network".into(), Arc::default());
        Nemesis {
            services,
            env,
            recorder,
            seed,
            locks,
            triggers: None,
            upgrades: BTreeMap::new(),
            held_down: Default::default(),
        }
    }

    /// Runs every fault schedule until `stop` turns true; each fault in progress
    /// is healed before this returns.
    pub async fn run(self: &Arc<Self>, faults: &[FaultSpec], stop: watch::Receiver<bool>) {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (i, spec) in faults.iter().enumerate() {
            let (me, spec, stop) = (self.clone(), spec.clone(), stop.clone());
            tasks.push(tokio::spawn(async move { me.schedule(i, spec, start, stop).await }));
        }
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!("fault schedule failed: {e}");
            }
        }
    }

    async fn schedule(&self, index: usize, spec: FaultSpec, start: Instant, mut stop: watch::Receiver<bool>) {
        // Stream numbers above the workers' keep fault draws independent of the workload's.
        let mut rng = stream_rng(self.seed, (1 << 32) + index as u64);
        if let Some(when) = &spec.when {
            self.when_triggered(index, &spec, when.get_ref(), &mut rng, &mut stop).await;
            return;
        }
        if spec.at.is_none() && spec.every.is_none() {
            // A named fault without a schedule: only `fault` steps inject it.
            return;
        }
        let mut at_list: Vec<Duration> =
            spec.at.as_ref().map(|a| a.get_ref().iter().map(|d| d.0).collect()).unwrap_or_default();
        at_list.sort();
        let mut next_at = at_list.into_iter();
        let mut last = start;
        loop {
            let when = match &spec.every {
                Some(every) => {
                    let every = every.get_ref().0;
                    last + every.mul_f64(rng.gen_range(0.5..1.5))
                }
                None => match next_at.next() {
                    Some(at) => start + at,
                    None => return,
                },
            };
            if sleep_or_stop(when.saturating_duration_since(Instant::now()), &mut stop).await {
                return;
            }
            self.fire(index, &spec, &mut rng, &mut stop).await;
            last = Instant::now();
        }
    }

    /// Waits for the fault's trigger, then fires it once; a trigger that
    /// never comes is recorded as a skipped fault.
    async fn when_triggered(
        &self,
        index: usize,
        spec: &FaultSpec,
        when: &shakedown_spec::TriggerSpec,
        rng: &mut rand_chacha::ChaCha8Rng,
        stop: &mut watch::Receiver<bool>,
    ) {
        let Some(triggers) = &self.triggers else { return };
        let armed = triggers.arm();
        let fired = tokio::select! {
            r = triggers.wait(when, &armed) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match fired {
            Ok(()) => self.fire(index, spec, rng, stop).await,
            Err(why) => {
                let target = spec.target.get_ref().0.join(",");
                self.recorder.service(&target, "fault skipped", false, Some(format!("{}: {why}", spec.kind.as_str())));
            }
        }
    }

    /// Fires one fault once: a target drawn from the seed (or the nodes of a
    /// partition), held for its `for` (or until `stop`), then healed.
    pub async fn fire(
        &self,
        index: usize,
        spec: &FaultSpec,
        rng: &mut rand_chacha::ChaCha8Rng,
        stop: &mut watch::Receiver<bool>,
    ) {
        let targets: &[String] = &spec.target.get_ref().0;
        if spec.kind == FaultKind::Upgrade {
            self.upgrade(spec, targets, stop).await;
            return;
        }
        if spec.kind == FaultKind::Partition {
            self.partition(spec, targets, rng, stop).await;
            return;
        }
        let target = &targets[rng.gen_range(0..targets.len())];
        if spec.kind.target() == FaultTarget::Link {
            self.link_fault(spec, target, index, stop).await;
        } else if matches!(spec.kind, FaultKind::Clock | FaultKind::DiskFull) {
            self.service_env_fault(spec, target, stop).await;
        } else {
            self.apply(spec.kind, target, spec.duration.map(|d| d.0), stop).await;
        }
    }

    /// A rolling upgrade: each target in order is stopped with its stop
    /// profile, given the binaries of version `to`, and started; `for` apart.
    async fn upgrade(&self, spec: &FaultSpec, targets: &[String], stop: &mut watch::Receiver<bool>) {
        let to = spec.to.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default();
        for (i, target) in targets.iter().enumerate() {
            if i > 0 && sleep_or_stop(spec.duration.map_or(Duration::ZERO, |d| d.0), stop).await {
                return;
            }
            let (Some(svc), Some(lock), Some(next)) =
                (self.services.get(target), self.locks.get(target), self.upgrades.get(&(target.clone(), to.clone())))
            else {
                continue;
            };
            let _held = lock.lock().await;
            let from = svc.proc_spec().argv.first().cloned().unwrap_or_default();
            let detail = format!("to {to}: {from} -> {}", next.argv.first().cloned().unwrap_or_default());
            let id = self.recorder.fault_start("upgrade", target, Some(detail));
            svc.stop().await;
            svc.set_proc_spec(next.clone());
            let problem = svc.start().await.err().map(|e| e.to_string());
            if let Some(p) = &problem {
                self.recorder.service(target, "restart failed", false, Some(p.clone()));
            }
            self.recorder.fault_end(id, "upgrade", target, problem);
        }
    }

    /// Applies one fault to one service and heals it, recording the window.
    pub async fn apply(
        &self,
        kind: FaultKind,
        target: &str,
        lasting: Option<Duration>,
        stop: &mut watch::Receiver<bool>,
    ) {
        let (Some(svc), Some(lock)) = (self.services.get(target), self.locks.get(target)) else { return };
        let _held = lock.lock().await;
        if !svc.is_running() {
            self.recorder.service(target, "fault skipped", true, Some(format!("{} while not running", kind.as_str())));
            return;
        }
        let id = self.recorder.fault_start(kind.as_str(), target, None);
        let detail = match kind {
            FaultKind::Pause => {
                svc.pause();
                sleep_or_stop(lasting.unwrap_or(DEFAULT_PAUSE), stop).await;
                svc.resume();
                None
            }
            FaultKind::Kill | FaultKind::Terminate | FaultKind::Interrupt | FaultKind::Restart => {
                let (signal, grace) = match kind {
                    FaultKind::Kill => (Signal::SIGKILL, Duration::ZERO),
                    FaultKind::Terminate => (Signal::SIGTERM, svc.grace),
                    FaultKind::Interrupt => (Signal::SIGINT, svc.grace),
                    _ => (svc.stop_signal, svc.grace),
                };
                svc.stop_with(signal, grace).await;
                if let Some(down) = lasting {
                    sleep_or_stop(down, stop).await;
                }
                svc.start().await.err().map(|e| e.to_string())
            }
            other => unreachable!("{} is not a process fault", other.as_str()),
        };
        if let Some(d) = &detail {
            self.recorder.service(target, "restart failed", false, Some(d.clone()));
        }
        self.recorder.fault_end(id, kind.as_str(), target, detail);
    }

    /// Marks a service as stopped by a step (`down`), so heal leaves it down,
    /// or as started again.
    pub fn hold_down(&self, service: &str, down: bool) {
        let mut held = self.held_down.lock().unwrap_or_else(|p| p.into_inner());
        if down {
            held.insert(service.to_string());
        } else {
            held.remove(service);
        }
    }

    /// Resumes paused services and starts stopped ones (except those a step
    /// stopped), so final reads see a whole system; undoes every environment
    /// fault still in effect.
    pub async fn heal(&self) -> Vec<String> {
        let mut problems = self.env.heal().await;
        let held_down = self.held_down.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, svc) in self.services.iter().filter(|(n, _)| !held_down.contains(*n)) {
            if svc.is_paused() {
                svc.resume();
            }
            if !svc.is_running() {
                self.recorder.service(name, "restarted to heal", true, None);
                if let Err(e) = svc.start().await {
                    problems.push(e.to_string());
                }
            }
        }
        problems
    }
}

/// Sleeps for `d`, returning early (true) when `stop` turns true.
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => None,
        r = stop.wait_for(|s| *s) => Some(r.is_ok()),
    };
    stopped.unwrap_or_else(|| *stop.borrow())
}
