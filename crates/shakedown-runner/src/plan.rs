//! Resolution: turns a validated scenario into concrete directories, ports,
//! processes and clients for one run.

use crate::client::{
    driver::DriverClient,
    exec::ExecClient,
    http::{HttpClient, Retry},
    Client,
};
use crate::context::{ActorCtx, Context, RenderError, Scope, ServiceCtx};
use crate::logs::LogSink;
use crate::recorder::Recorder;
use crate::supervisor::{Probe, ProcSpec, Service};
use nix::sys::signal::Signal;
use shakedown_spec::{BuildSpec, ClientKind, Scenario, ServiceSpec, Template};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("create {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("allocate a loopback port: {0}")]
    Port(std::io::Error),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{0}")]
    Client(String),
}

/// Creates `path` and its missing parents, owner-only.
pub fn mkdir(path: &Path) -> Result<(), PlanError> {
    crate::files::create_dir_private(path).map_err(|source| PlanError::Io { path: path.display().to_string(), source })
}

/// Every port of a run: each service's named ports, then each link's.
pub struct Ports {
    pub services: BTreeMap<String, BTreeMap<String, u16>>,
    pub links: BTreeMap<String, u16>,
}

/// Allocates every named port of every service, and every link's port, on
/// loopback, all distinct.
pub fn allocate_ports(s: &Scenario) -> Result<Ports, PlanError> {
    let mut held = Vec::new();
    let mut fresh = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(PlanError::Port)?;
        let port = l.local_addr().map_err(PlanError::Port)?.port();
        // Held until all are allocated so no two ports collide.
        held.push(l);
        Ok::<u16, PlanError>(port)
    };
    let mut services = BTreeMap::new();
    for (name, svc) in &s.service {
        let mut ports = BTreeMap::new();
        for p in std::iter::once("port").chain(svc.ports.iter().map(String::as_str)) {
            ports.insert(p.to_string(), fresh()?);
        }
        services.insert(name.clone(), ports);
    }
    let links = s.link.keys().map(|name| Ok((name.clone(), fresh()?))).collect::<Result<_, PlanError>>()?;
    Ok(Ports { services, links })
}

/// Builds the run's context: service dirs, ports and addresses (`hosts`, for
/// services in network namespaces; 127.0.0.1 otherwise), link ports, actor
/// homes and env.
pub fn context(
    s: &Scenario,
    run_dir: &Path,
    scenario_dir: &Path,
    seed: u64,
    hosts: &BTreeMap<String, String>,
) -> Result<Context, PlanError> {
    let ports = allocate_ports(s)?;
    let mut services = BTreeMap::new();
    for (name, ports) in ports.services {
        let dir = run_dir.join("services").join(&name);
        mkdir(&dir)?;
        let host = hosts.get(&name).cloned().unwrap_or_else(|| "127.0.0.1".to_string());
        let stop = s.service.get(&name).map(|svc| svc.stop.clone()).unwrap_or_default();
        let (stop_drain, stop_shutdown) = (stop.drain(), stop.shutdown());
        services.insert(name, ServiceCtx { ports, dir, host, stop_drain, stop_shutdown });
    }
    let mut ctx = Context::new(run_dir.to_path_buf(), scenario_dir.to_path_buf(), seed, services, Vec::new());
    ctx.links = ports.links;
    ctx.matrix = s.cell.clone();
    ctx.versions = versions(&ctx, s)?;
    ctx.datasets = s
        .dataset
        .iter()
        .map(|(name, d)| {
            let file = match d.kind {
                shakedown_spec::DatasetKind::Sqlite => format!("{name}.sqlite"),
                shakedown_spec::DatasetKind::Tree => name.clone(),
            };
            (name.clone(), run_dir.join("datasets").join(file))
        })
        .collect();
    let names: Vec<String> = if s.actor.is_empty() { vec!["client".into()] } else { s.actor.keys().cloned().collect() };
    let mut actors = Vec::new();
    for name in names {
        let home = run_dir.join("actors").join(&name).join("home");
        mkdir(&home)?;
        let mut actor = ActorCtx { name: name.clone(), home, env: Vec::new() };
        let env_spec = s.actor.get(&name).map(|a| a.env.clone()).unwrap_or_default();
        actor.env = render_env(&ctx, &env_spec, &mut Scope { actor: Some(&actor), ..Scope::default() })?;
        actors.push(actor);
    }
    ctx.actors = actors;
    Ok(ctx)
}

/// Every `[version.*]` table with its binaries rendered.
pub fn versions(ctx: &Context, s: &Scenario) -> Result<BTreeMap<String, BTreeMap<String, String>>, PlanError> {
    let mut out = BTreeMap::new();
    for (version, bins) in &s.version {
        let rendered = render_env(ctx, bins, &mut Scope::default())?;
        out.insert(version.clone(), rendered.into_iter().collect());
    }
    Ok(out)
}

fn render_env(
    ctx: &Context,
    env: &BTreeMap<String, Template>,
    scope: &mut Scope<'_, '_>,
) -> Result<Vec<(String, String)>, RenderError> {
    env.iter().map(|(k, v)| Ok((k.clone(), ctx.render(v, scope)?))).collect()
}

/// PATH with shakedown's own directory appended, so bundled binaries such as
/// `shakedown-testbed` are found beside `shakedown`.
pub fn search_path() -> String {
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        if !path.is_empty() {
            path.push(':');
        }
        path.push_str(&dir.display().to_string());
    }
    path
}

/// A program path relative to the scenario file when it names a directory.
pub fn resolve_program(argv: &mut [String], scenario_dir: &Path) {
    if let Some(p) = argv.first_mut() {
        if p.contains('/') && !Path::new(p.as_str()).is_absolute() {
            *p = scenario_dir.join(&*p).display().to_string();
        }
    }
}

pub fn proc_spec(
    ctx: &Context,
    argv: &[Template],
    env: Vec<(String, String)>,
    cwd: PathBuf,
    scope: &mut Scope<'_, '_>,
) -> Result<ProcSpec, PlanError> {
    let mut argv = ctx.render_all(argv, scope)?;
    resolve_program(&mut argv, &ctx.scenario_dir);
    let mut full_env = vec![
        ("PATH".to_string(), search_path()),
        ("SHAKEDOWN_SEED".to_string(), ctx.seed.to_string()),
        (crate::supervisor::RUN_DIR_VAR.to_string(), ctx.run_dir.display().to_string()),
    ];
    full_env.extend(env);
    Ok(ProcSpec { argv, env: full_env, cwd, namespaces: Vec::new() })
}

/// A build command: its dir is relative to the scenario's base directory.
pub fn build(ctx: &Context, b: &BuildSpec) -> Result<ProcSpec, PlanError> {
    let mut scope = Scope::default();
    let env = render_env(ctx, &b.env, &mut scope)?;
    let cwd = match &b.dir {
        Some(d) => ctx.scenario_dir.join(ctx.render(d, &mut scope)?),
        None => ctx.scenario_dir.clone(),
    };
    proc_spec(ctx, &b.command, env, cwd, &mut scope)
}

/// What the fault environment adds to a service: the namespaces its
/// processes enter, and variables (libfaketime's) on top of its own env.
#[derive(Default)]
pub struct ServiceExtras {
    pub namespaces: Vec<crate::supervisor::Namespace>,
    pub env: Vec<(String, String)>,
}

pub fn service(
    ctx: &Context,
    name: &str,
    spec: &ServiceSpec,
    logs_dir: &Path,
    start: Instant,
    recorder: Arc<Recorder>,
    extras: ServiceExtras,
) -> Result<Service, PlanError> {
    let mut scope = Scope { service: Some(name), ..Scope::default() };
    let process = service_process(ctx, name, spec, &extras, None)?;

    let ready = spec.ready.clone().unwrap_or_default();
    let probe = if let Some(t) = &ready.tcp {
        let addr = ctx.render(t, &mut scope)?;
        // A bare port is the service's own address: loopback, or in its
        // network namespace the address it has there (the probe connects
        // from inside that namespace, never to shakedown's forwarder).
        let host = ctx.services.get(name).map(|svc| svc.host.as_str()).unwrap_or("127.0.0.1");
        Probe::Tcp(if addr.contains(':') { addr } else { format!("{host}:{addr}") })
    } else if let Some(u) = &ready.http {
        Probe::Http { url: ctx.render(u, &mut scope)?, status: ready.status }
    } else if let Some(re) = &ready.log {
        Probe::Log(re.clone())
    } else if let Some(cmd) = &ready.exec {
        // The probe runs like the service: same env, directory and namespaces.
        let mut argv = ctx.render_all(cmd, &mut scope)?;
        resolve_program(&mut argv, &ctx.scenario_dir);
        Probe::Exec(ProcSpec { argv, ..process.clone() })
    } else {
        Probe::None
    };
    let signal = spec
        .stop
        .signal
        .as_ref()
        .and_then(|s| shakedown_spec::signal_number(s.get_ref()))
        .and_then(|n| Signal::try_from(n).ok())
        .unwrap_or(Signal::SIGTERM);
    let log_path = logs_dir.join(format!("{name}.log"));
    let log = LogSink::create(name, &log_path, start)
        .map_err(|source| PlanError::Io { path: log_path.display().to_string(), source })?;
    Ok(Service::new(
        name.to_string(),
        process,
        probe,
        ready.timeout.map_or(DEFAULT_READY_TIMEOUT, |d| d.0),
        ready.interval.map_or(Duration::from_millis(50), |d| d.0),
        signal,
        spec.stop.grace(),
        Arc::new(log),
        recorder,
    ))
}

/// A service's process: its command, env and directory rendered (with the
/// binaries of `version` instead of the cell's, for an upgrade).
pub fn service_process(
    ctx: &Context,
    name: &str,
    spec: &ServiceSpec,
    extras: &ServiceExtras,
    version: Option<&str>,
) -> Result<ProcSpec, PlanError> {
    let mut scope = Scope { service: Some(name), version, ..Scope::default() };
    let mut env = render_env(ctx, &spec.env, &mut scope)?;
    env.extend(extras.env.iter().cloned());
    let cwd = match &spec.dir {
        Some(d) => ctx.scenario_dir.join(ctx.render(d, &mut scope)?),
        None => ctx.services[name].dir.clone(),
    };
    let mut process = proc_spec(ctx, &spec.command, env, cwd, &mut scope)?;
    process.namespaces = extras.namespaces.clone();
    Ok(process)
}

/// The env an actor's commands and driver run with.
pub fn actor_env(ctx: &Context, s: &Scenario, actor: &ActorCtx) -> Result<Vec<(String, String)>, PlanError> {
    let client_env = s.client.as_ref().map(|c| c.env.clone()).unwrap_or_default();
    let mut env = render_env(ctx, &client_env, &mut Scope { actor: Some(actor), ..Scope::default() })?;
    env.extend(actor.env.iter().cloned());
    env.push(("PATH".into(), search_path()));
    env.push(("SHAKEDOWN_SEED".into(), ctx.seed.to_string()));
    env.push(("HOME".into(), actor.home.display().to_string()));
    env.push(("SHAKEDOWN_ACTOR".into(), actor.name.clone()));
    env.push((crate::supervisor::RUN_DIR_VAR.into(), ctx.run_dir.display().to_string()));
    Ok(env)
}

/// The scenario's client, built for every actor.
pub fn client(
    ctx: &Context,
    s: &Scenario,
    logs_dir: &Path,
    start: Instant,
) -> Result<Option<Arc<dyn Client>>, PlanError> {
    let Some(spec) = &s.client else { return Ok(None) };
    let timeout = spec.timeout.map_or(DEFAULT_OP_TIMEOUT, |d| d.0);
    let client: Arc<dyn Client> = match spec.kind {
        ClientKind::Http => {
            let base = spec.base.as_ref().expect("validated: http client has a base");
            let bases = ctx
                .actors
                .iter()
                .map(|a| ctx.render(base.get_ref(), &mut Scope { actor: Some(a), ..Scope::default() }))
                .collect::<Result<_, _>>()?;
            let retry = spec.retry.as_ref().map_or_else(Retry::none, Retry::from_spec);
            Arc::new(HttpClient::new(bases, s.action.clone(), timeout, retry).map_err(PlanError::Client)?)
        }
        ClientKind::Exec => {
            let envs = ctx.actors.iter().map(|a| actor_env(ctx, s, a)).collect::<Result<_, _>>()?;
            Arc::new(ExecClient::new(s.action.clone(), envs, timeout, ctx.scenario_dir.clone()))
        }
        ClientKind::Driver => {
            let cmd = spec.command.as_ref().expect("validated: driver client has a command");
            let mut per_actor = Vec::new();
            for a in &ctx.actors {
                let env = actor_env(ctx, s, a)?;
                let ps = proc_spec(
                    ctx,
                    cmd.get_ref(),
                    env,
                    a.home.clone(),
                    &mut Scope { actor: Some(a), ..Scope::default() },
                )?;
                let path = logs_dir.join(format!("driver-{}.log", a.name));
                let log = LogSink::create(&format!("driver-{}", a.name), &path, start)
                    .map_err(|source| PlanError::Io { path: path.display().to_string(), source })?;
                per_actor.push((ps, Arc::new(log)));
            }
            let timeouts = s.action.iter().map(|a| a.timeout.map_or(timeout, |d| d.0)).collect();
            Arc::new(DriverClient::new(per_actor, timeouts))
        }
    };
    Ok(Some(client))
}
