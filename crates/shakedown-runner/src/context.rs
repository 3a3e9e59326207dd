//! What templates are filled from: the run's directories, ports, actors, and
//! for operations the value, target and the worker's seeded RNG.

use crate::pools::Pools;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use shakedown_spec::{Template, ValueTemplate, Var};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone)]
pub struct ServiceCtx {
    pub ports: BTreeMap<String, u16>,
    pub dir: PathBuf,
    /// Its address: 127.0.0.1, or its own network namespace's.
    pub host: String,
    /// Its stop profile, for `{stop.drain}` and `{stop.shutdown}`.
    pub stop_drain: std::time::Duration,
    pub stop_shutdown: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct ActorCtx {
    pub name: String,
    pub home: PathBuf,
    /// The actor's own env, rendered.
    pub env: Vec<(String, String)>,
}

/// Resolved facts of one run, shared by everything that renders templates.
#[derive(Debug)]
pub struct Context {
    pub run_dir: PathBuf,
    pub scenario_dir: PathBuf,
    pub seed: u64,
    pub services: BTreeMap<String, ServiceCtx>,
    pub actors: Vec<ActorCtx>,
    /// Proxy links by name, with their loopback ports.
    pub links: BTreeMap<String, u16>,
    /// The matrix cell this run covers.
    pub matrix: BTreeMap<String, String>,
    /// Every `[version.*]` table, rendered: version -> name -> binary.
    pub versions: BTreeMap<String, BTreeMap<String, String>>,
    /// Generated datasets by name: a file (sqlite) or a directory (tree).
    pub datasets: BTreeMap<String, PathBuf>,
    seq: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("fill template {template:?}: {message}")]
pub struct RenderError {
    pub template: String,
    pub message: String,
}

/// Per-operation placeholders.
pub struct OpScope<'a> {
    pub value: Option<&'a Value>,
    pub target: Option<&'a Value>,
    pub rng: &'a mut ChaCha8Rng,
    pub pools: &'a Pools,
}

/// Where a template is being rendered.
#[derive(Default)]
pub struct Scope<'a, 'b> {
    pub service: Option<&'a str>,
    pub actor: Option<&'a ActorCtx>,
    pub op: Option<&'a mut OpScope<'b>>,
    /// The version `{bin.NAME}` comes from, instead of the cell's (upgrades).
    pub version: Option<&'a str>,
    /// `{case.dir}`: the resume case being run.
    pub case_dir: Option<&'a std::path::Path>,
}

/// A JSON value as template text: strings bare, everything else as JSON.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Context {
    pub fn new(
        run_dir: PathBuf,
        scenario_dir: PathBuf,
        seed: u64,
        services: BTreeMap<String, ServiceCtx>,
        actors: Vec<ActorCtx>,
    ) -> Context {
        Context {
            run_dir,
            scenario_dir,
            seed,
            services,
            actors,
            links: BTreeMap::new(),
            matrix: BTreeMap::new(),
            versions: BTreeMap::new(),
            datasets: BTreeMap::new(),
            seq: AtomicU64::new(0),
        }
    }

    pub fn render(&self, t: &Template, scope: &mut Scope<'_, '_>) -> Result<String, RenderError> {
        t.render(|var| self.lookup(var, scope))
            .map_err(|message| RenderError { template: t.source().to_string(), message })
    }

    pub fn render_all<'t>(
        &self,
        ts: impl IntoIterator<Item = &'t Template>,
        scope: &mut Scope<'_, '_>,
    ) -> Result<Vec<String>, RenderError> {
        ts.into_iter().map(|t| self.render(t, scope)).collect()
    }

    pub fn render_value(&self, v: &ValueTemplate, scope: &mut Scope<'_, '_>) -> Result<Value, RenderError> {
        v.render(&mut |var| self.lookup(var, scope))
            .map_err(|message| RenderError { template: format!("{v:?}"), message })
    }

    fn lookup(&self, var: &Var, scope: &mut Scope<'_, '_>) -> Result<String, String> {
        let unavailable = || format!("placeholder {var:?} is not available here");
        Ok(match var {
            Var::Port(name) => {
                let svc = scope.service.and_then(|s| self.services.get(s)).ok_or_else(unavailable)?;
                port_of(svc, name.as_deref())?.to_string()
            }
            Var::Dir => {
                let svc = scope.service.and_then(|s| self.services.get(s)).ok_or_else(unavailable)?;
                svc.dir.display().to_string()
            }
            Var::ServicePort { service, port } => {
                let svc = self.services.get(service).ok_or_else(|| format!("no service `{service}`"))?;
                port_of(svc, port.as_deref())?.to_string()
            }
            Var::Host => scope.service.and_then(|s| self.services.get(s)).ok_or_else(unavailable)?.host.clone(),
            Var::ServiceHost(service) => {
                self.services.get(service).ok_or_else(|| format!("no service `{service}`"))?.host.clone()
            }
            Var::Matrix(key) => {
                self.matrix.get(key).ok_or_else(|| format!("no matrix dimension `{key}` in this run's cell"))?.clone()
            }
            Var::LinkPort(link) => self.links.get(link).ok_or_else(|| format!("no link `{link}`"))?.to_string(),
            Var::ServiceDir(service) => {
                self.services.get(service).ok_or_else(|| format!("no service `{service}`"))?.dir.display().to_string()
            }
            Var::RunDir => self.run_dir.display().to_string(),
            Var::ScenarioDir => self.scenario_dir.display().to_string(),
            Var::Seed => self.seed.to_string(),
            Var::ActorName => scope.actor.ok_or_else(unavailable)?.name.clone(),
            Var::ActorHome => scope.actor.ok_or_else(unavailable)?.home.display().to_string(),
            Var::Env(name) => std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))?,
            Var::Bin(name) => {
                let version =
                    scope.version.or(self.matrix.get("version").map(String::as_str)).ok_or_else(unavailable)?;
                let bins = self.versions.get(version).ok_or_else(|| format!("no version `{version}`"))?;
                bins.get(name).ok_or_else(|| format!("version `{version}` names no binary `{name}`"))?.clone()
            }
            Var::CaseDir => scope.case_dir.ok_or_else(unavailable)?.display().to_string(),
            Var::CaseName => {
                let dir = scope.case_dir.ok_or_else(unavailable)?;
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).ok_or_else(unavailable)?
            }
            Var::Dataset(name) => {
                self.datasets.get(name).ok_or_else(|| format!("no dataset `{name}`"))?.display().to_string()
            }
            Var::StopDrain | Var::StopShutdown => {
                let svc = scope.service.and_then(|s| self.services.get(s)).ok_or_else(unavailable)?;
                let d = if matches!(var, Var::StopDrain) { svc.stop_drain } else { svc.stop_shutdown };
                humantime::format_duration(d).to_string()
            }
            Var::Seq => self.seq.fetch_add(1, Ordering::Relaxed).to_string(),
            Var::Value => value_text(scope.op.as_ref().and_then(|o| o.value).ok_or_else(unavailable)?),
            Var::ValuePath(path) => {
                let value = scope.op.as_ref().and_then(|o| o.value).ok_or_else(unavailable)?;
                value_text(
                    value_at(value, path)
                        .ok_or_else(|| format!("the value {value} has nothing at `{}`", path.join(".")))?,
                )
            }
            Var::Target => value_text(scope.op.as_ref().and_then(|o| o.target).ok_or_else(unavailable)?),
            Var::Int { lo, hi_exclusive } => {
                let op = scope.op.as_mut().ok_or_else(unavailable)?;
                op.rng.gen_range(*lo..*hi_exclusive).to_string()
            }
            Var::Pick(pool) => {
                let op = scope.op.as_mut().ok_or_else(unavailable)?;
                let picked = op.pools.pick(pool, op.rng).ok_or_else(|| format!("pool `{pool}` is empty"))?;
                value_text(&picked)
            }
        })
    }
}

/// Follows `path` into `v`: numbers index arrays, other segments name object keys.
fn value_at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        Value::Object(map) => map.get(seg),
        _ => None,
    })
}

fn port_of(svc: &ServiceCtx, name: Option<&str>) -> Result<u16, String> {
    let name = name.unwrap_or("port");
    svc.ports.get(name).copied().ok_or_else(|| format!("no port `{name}`"))
}
