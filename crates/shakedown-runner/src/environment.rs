//! The run's fault environment: proxy links, HTTP fault layers, the network
//! namespaces and their loopback forwarders, size-limited disks and faked
//! clocks. Set up before the services start, used by the nemesis, torn down
//! on every exit path (and, being made of fds and tasks of this process,
//! gone with it even when it is killed).

use crate::clock::Clock;
use crate::context::{Context, Scope};
use crate::disk::DiskLimit;
use crate::supervisor::Namespace;
use shakedown_proxy::http::{HttpFaultHandle, HttpFaultLayer};
use shakedown_proxy::{Connector, Link, LinkConfig};
use shakedown_spec::{FaultKind, LinkKind, Scenario};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

/// Why the environment could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// This machine lacks a fault tier the scenario needs; the run is unknown.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else: a harness failure.
    #[error("{0}")]
    Failed(String),
}

/// What the faults need of the run's network namespaces (the Linux tier).
pub trait Network: Send + Sync {
    /// The address of a service's namespace.
    fn address(&self, service: &str) -> Option<std::net::IpAddr>;
    /// Whether `ip` is an address inside the run's namespaces.
    fn contains(&self, ip: std::net::IpAddr) -> bool;
    /// Dials from the clients' namespace, which reaches every service.
    fn client_connector(&self) -> Arc<dyn Connector>;
    /// The namespace a service's processes enter.
    fn namespace(&self, service: &str) -> Option<Namespace>;
    /// Replaces the partition in effect with one of `mode` over `nodes`,
    /// drawn from `seed`, or, when `cut` names nodes, with those cut off from
    /// the rest; returns a description of who is cut from whom.
    fn partition(
        &self,
        mode: shakedown_spec::PartitionMode,
        cut: &[String],
        nodes: &[String],
        seed: u64,
    ) -> Result<String, String>;
    /// Removes every partition rule.
    fn heal(&self) -> Result<(), String>;
}

/// A proxy link of the scenario.
pub enum LinkHandle {
    Tcp(Arc<Link>),
    Http(HttpFaultHandle),
}

/// Everything the faults act on besides the service processes.
#[derive(Default)]
pub struct Environment {
    pub network: Option<Arc<dyn Network>>,
    pub links: BTreeMap<String, LinkHandle>,
    /// Loopback forwarders into namespaced services, one per service port.
    forwarders: Vec<Arc<Link>>,
    pub disks: BTreeMap<String, DiskLimit>,
    pub clocks: BTreeMap<String, Clock>,
}

/// Creates the network namespaces when the scenario asks for them (before
/// templates are filled: services' addresses come from it).
pub fn network(s: &Scenario) -> Result<Option<Arc<dyn Network>>, SetupError> {
    if !s.network.namespaces {
        return Ok(None);
    }
    crate::netns::probe().map_err(|why| SetupError::Unsupported(format!("network namespaces: {why}")))?;
    let names: Vec<&str> = s.service.keys().map(String::as_str).collect();
    match crate::netns::Network::create(&names) {
        Ok(net) => Ok(Some(Arc::new(net))),
        Err(e) => Err(SetupError::Failed(format!("create the run's network namespaces: {e}"))),
    }
}

impl Environment {
    /// Sets up disks, clocks, links and forwarders for the scenario.
    pub async fn setup(
        s: &Scenario,
        ctx: &Context,
        network: Option<Arc<dyn Network>>,
    ) -> Result<Environment, SetupError> {
        let mut env = Environment { network, ..Environment::default() };
        env.disks(s, ctx)?;
        env.clocks(s, ctx)?;
        env.links(s, ctx)?;
        env.forwarders(ctx)?;
        Ok(env)
    }

    fn disks(&mut self, s: &Scenario, ctx: &Context) -> Result<(), SetupError> {
        for (name, spec) in s.service.iter().filter_map(|(n, svc)| svc.disk.as_ref().map(|d| (n, d))) {
            let path = ctx
                .render(&spec.path, &mut Scope { service: Some(name), ..Scope::default() })
                .map_err(|e| SetupError::Failed(e.to_string()))?;
            crate::disk::probe().map_err(|why| SetupError::Unsupported(format!("disk of service `{name}`: {why}")))?;
            let base = crate::containment::run_mount_namespace(&ctx.run_dir.display().to_string());
            let disk = DiskLimit::create(std::path::Path::new(&path), spec.size.0, base)
                .map_err(|e| SetupError::Failed(format!("disk of service `{name}`: {e}")))?;
            self.disks.insert(name.clone(), disk);
        }
        Ok(())
    }

    fn clocks(&mut self, s: &Scenario, ctx: &Context) -> Result<(), SetupError> {
        let targets: BTreeSet<&str> =
            s.fault.iter().filter(|f| f.kind == FaultKind::Clock).flat_map(|f| f.target.get_ref().iter()).collect();
        for name in targets {
            let dir = ctx.run_dir.join("clocks").join(name);
            let shm_ns = crate::containment::run_mount_namespace(&ctx.run_dir.display().to_string());
            let clock = Clock::in_namespace(&dir, shm_ns).map_err(|e| match e {
                crate::clock::ClockError::NoLibrary(why) => {
                    SetupError::Unsupported(format!("clock of service `{name}`: libfaketime: {why}"))
                }
                other => SetupError::Failed(format!("clock of service `{name}`: {other}")),
            })?;
            self.clocks.insert(name.to_string(), clock);
        }
        Ok(())
    }

    fn links(&mut self, s: &Scenario, ctx: &Context) -> Result<(), SetupError> {
        for (i, (name, spec)) in s.link.iter().enumerate() {
            let upstream_text = ctx
                .render(spec.upstream.get_ref(), &mut Scope::default())
                .map_err(|e| SetupError::Failed(e.to_string()))?;
            let upstream: SocketAddr = upstream_text.parse().map_err(|e| {
                SetupError::Failed(format!(
                    "link `{name}`: upstream {upstream_text:?} is not an IP address and port: {e}"
                ))
            })?;
            let listen: SocketAddr = ([127, 0, 0, 1], ctx.links[name]).into();
            let listener = std::net::TcpListener::bind(listen)
                .map_err(|e| SetupError::Failed(format!("link `{name}`: listen on {listen}: {e}")))?;
            let seed = ctx.seed ^ (0x6c69_6e6b << 16) ^ i as u64;
            let connector = self.connector_for(upstream);
            let handle = match spec.kind {
                LinkKind::Tcp => {
                    let mut config = LinkConfig::new(name.clone(), listener, upstream);
                    config.seed = seed;
                    config.connector = connector;
                    LinkHandle::Tcp(Arc::new(
                        Link::start(config).map_err(|e| SetupError::Failed(format!("link `{name}`: {e}")))?,
                    ))
                }
                LinkKind::Http => {
                    let layer = HttpFaultLayer::new(upstream, seed).with_connector(connector);
                    LinkHandle::Http(
                        layer.serve(listener).map_err(|e| SetupError::Failed(format!("link `{name}`: {e}")))?,
                    )
                }
            };
            self.links.insert(name.clone(), handle);
        }
        Ok(())
    }

    /// Upstreams inside the run's namespaces are dialled from the clients'
    /// namespace; everything else from shakedown's own.
    fn connector_for(&self, upstream: SocketAddr) -> Arc<dyn Connector> {
        match &self.network {
            Some(net) if net.contains(upstream.ip()) => net.client_connector(),
            _ => Arc::new(shakedown_proxy::PlainConnector),
        }
    }

    /// For each port of each namespaced service, a loopback link at the same
    /// port number, so clients reach `127.0.0.1:{service.NAME.port}`.
    fn forwarders(&mut self, ctx: &Context) -> Result<(), SetupError> {
        let Some(net) = self.network.clone() else { return Ok(()) };
        for (name, svc) in &ctx.services {
            let host: std::net::IpAddr = svc
                .host
                .parse()
                .map_err(|e| SetupError::Failed(format!("service `{name}` address {}: {e}", svc.host)))?;
            for (port_name, port) in &svc.ports {
                let listen: SocketAddr = ([127, 0, 0, 1], *port).into();
                let mut config = LinkConfig::new(format!("{name}.{port_name}"), listen, SocketAddr::new(host, *port));
                config.connector = net.client_connector();
                let link = Link::start(config)
                    .map_err(|e| SetupError::Failed(format!("forward 127.0.0.1:{port} to service `{name}`: {e}")))?;
                self.forwarders.push(Arc::new(link));
            }
        }
        Ok(())
    }

    /// The namespaces a service's processes enter.
    pub fn namespaces(&self, service: &str) -> Vec<Namespace> {
        let mut out = Vec::new();
        if let Some(net) = &self.network {
            out.extend(net.namespace(service));
        }
        out.extend(self.disks.get(service).map(DiskLimit::namespace));
        out
    }

    /// Extra environment for a service (libfaketime's, when a clock fault targets it).
    pub fn service_env(&self, service: &str) -> Vec<(String, String)> {
        self.clocks.get(service).map(Clock::env).unwrap_or_default()
    }

    /// Undoes every fault still in effect: toxics, down links, HTTP rules,
    /// partitions, full disks, shifted clocks. Returns what could not be undone.
    pub async fn heal(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, link) in &self.links {
            match link {
                LinkHandle::Tcp(link) => {
                    link.remove_all_toxics();
                    if let Err(e) = link.set_enabled(true).await {
                        problems.push(format!("link `{name}`: {e}"));
                    }
                }
                LinkHandle::Http(layer) => layer.clear(),
            }
        }
        if let Some(net) = &self.network {
            if let Err(e) = net.heal() {
                problems.push(format!("heal the partition: {e}"));
            }
        }
        for (name, disk) in &self.disks {
            if let Err(e) = disk.free() {
                problems.push(format!("free the disk of `{name}`: {e}"));
            }
        }
        for (name, clock) in &self.clocks {
            if let Err(e) = clock.reset() {
                problems.push(format!("reset the clock of `{name}`: {e}"));
            }
        }
        problems
    }

    /// Stops the TCP links and forwarders, and copies each disk's contents to
    /// its path on the host (where the tmpfs was mounted only for the
    /// service), so the run directory keeps the service's data. HTTP layers
    /// stop, and namespaces, mounts and clocks go, when the environment is
    /// dropped. Returns what could not be copied.
    pub async fn stop(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, disk) in &self.disks {
            if let Err(e) = disk.copy_out(disk.path()) {
                problems.push(format!("copy the disk of `{name}` to the run directory: {e}"));
            }
        }
        for link in self.links.values() {
            if let LinkHandle::Tcp(link) = link {
                link.stop().await;
            }
        }
        for link in &self.forwarders {
            link.stop().await;
        }
        problems
    }
}

/// The Linux tier's namespaces, as the faults use them.
impl Network for crate::netns::Network {
    fn address(&self, service: &str) -> Option<std::net::IpAddr> {
        crate::netns::Network::address(self, service).map(std::net::IpAddr::V4)
    }

    fn contains(&self, ip: std::net::IpAddr) -> bool {
        crate::netns::Network::contains(self, ip)
    }

    fn client_connector(&self) -> Arc<dyn Connector> {
        crate::netns::Network::client_connector(self)
    }

    fn namespace(&self, service: &str) -> Option<Namespace> {
        crate::netns::Network::namespace(self, service)
    }

    fn partition(
        &self,
        mode: shakedown_spec::PartitionMode,
        cut: &[String],
        nodes: &[String],
        seed: u64,
    ) -> Result<String, String> {
        if !cut.is_empty() {
            let grudge = crate::netns::Grudge::cut_off(nodes, cut);
            crate::netns::Network::partition(self, &grudge).map_err(|e| e.to_string())?;
            return Ok(grudge.to_string());
        }
        // `split` draws the grudge and puts it in effect.
        let grudge = self.split(mode, nodes, seed).map_err(|e| e.to_string())?;
        Ok(grudge.to_string())
    }

    fn heal(&self) -> Result<(), String> {
        crate::netns::Network::heal(self).map_err(|e| e.to_string())
    }
}
