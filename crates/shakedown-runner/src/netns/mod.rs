//! The Linux namespace tier: a run's private network of namespaces, and
//! partitions between them by firewall rules.
//!
//! A [`Network`] is a "switch" namespace holding a bridge, one namespace per
//! node with a veth into the bridge and an address (`10.89.0.1/24`, `.2`, ...),
//! and a clients' namespace (`10.89.0.250`) from which the harness dials the
//! nodes. Nothing is added to the host's namespace, so parallel runs can all
//! use the same subnet.
//!
//! Leak-proof by construction: no namespace is named (`ip netns add` would
//! leave bind mounts under /var/run/netns). Each is held only by an fd of
//! this process, so when the `Network` drops or shakedown dies, even by
//! SIGKILL, the kernel destroys the namespaces with their veths, bridge and
//! rules, as soon as the services inside are dead too (they die with
//! shakedown through process groups and PDEATHSIG).
//!
//! A partition is a [`Grudge`]: each node's namespace gets an nftables table
//! (`inet shakedown`, or iptables rules where `nft` is missing) dropping
//! the packets from the nodes it holds a grudge against. The clients'
//! namespace is never cut off: clients always reach their node, as in Jepsen.

mod firewall;
mod grudge;
pub(crate) mod sys;

pub use firewall::Firewall;
pub use grudge::{Grudge, GrudgeError};
pub use sys::{enter_netns, CommandError};

use crate::supervisor::Namespace;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use shakedown_spec::PartitionMode;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sys::{fd_path, in_netns, new_netns, run_in};
use tokio::net::TcpStream;

/// The run's subnet: the first three octets of every address, and its prefix length.
pub const SUBNET: [u8; 3] = [10, 89, 0];
pub const PREFIX_LEN: u8 = 24;
/// The last octet of the clients' address.
pub const CLIENTS_HOST: u8 = 250;
/// Nodes take `.1` up to `.249`.
pub const MAX_NODES: usize = CLIENTS_HOST as usize - 1;
/// How long [`Network::connect_from_clients`] waits for a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BRIDGE: &str = "br0";
/// The name of the veth end inside a node's (or the clients') namespace.
const NODE_LINK: &str = "eth0";

/// Why a network could not be set up or partitioned.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "create a network namespace: {0} (creating one needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN; \
         this tier does not use unprivileged user namespaces)"
    )]
    Namespace(io::Error),
    #[error("set up the network of {place}: {source}")]
    Setup { place: String, source: CommandError },
    #[error("create a network of {0} nodes: at most {MAX_NODES} fit in its /24")]
    TooManyNodes(usize),
    #[error("create a network: node `{0}` is named twice")]
    DuplicateNode(String),
    #[error("install firewall rules: {0}")]
    NoFirewall(String),
    #[error("partition: no node `{0}` in the network")]
    UnknownNode(String),
    #[error("partition: {0}")]
    Grudge(#[from] GrudgeError),
    #[error("install the drop rules of node `{node}`: {source}")]
    Rules { node: String, source: CommandError },
}

/// Where in the network a socket or a thread lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At<'a> {
    /// The clients' namespace (`10.89.0.250`).
    Clients,
    /// A node's namespace.
    Node(&'a str),
}

#[derive(Debug)]
struct Node {
    ns: Arc<OwnedFd>,
    addr: Ipv4Addr,
}

/// One run's network: see the module docs.
#[derive(Debug)]
pub struct Network {
    /// Holds the bridge; kept open only so the bridge lives as long as the network.
    switch: OwnedFd,
    clients: Arc<OwnedFd>,
    nodes: BTreeMap<String, Node>,
    firewall: Firewall,
    /// The grudge in effect; the lock also keeps two partitions from interleaving.
    current: Mutex<Grudge>,
}

impl Network {
    /// Creates the switch, one namespace per node (addresses `.1`, `.2`, ...
    /// in the order given) and the clients' namespace, all wired to the bridge.
    pub fn create(nodes: &[&str]) -> Result<Network, NetError> {
        Network::create_with(nodes, None)
    }

    /// As [`Network::create`], with the firewall tool chosen by the caller
    /// (`None`: nftables where it works, else iptables).
    pub fn create_with(nodes: &[&str], firewall: Option<Firewall>) -> Result<Network, NetError> {
        check_names(nodes)?;
        let switch = new_netns().map_err(NetError::Namespace)?;
        let bridge = format!("link set lo up\nlink add name {BRIDGE} type bridge\nlink set {BRIDGE} up\n");
        ip_batch(&switch, &bridge, "the switch")?;
        let mut named = BTreeMap::new();
        for (i, name) in nodes.iter().enumerate() {
            let host = u8::try_from(i + 1).expect("check_names bounds the node count");
            let ns = wire(&switch, host, &format!("node `{name}`"))?;
            named.insert(name.to_string(), Node { ns, addr: address(host) });
        }
        let clients = wire(&switch, CLIENTS_HOST, "the clients")?;
        let firewall = match firewall {
            None => Firewall::detect(&clients).map_err(NetError::NoFirewall)?,
            Some(tool) => {
                tool.apply(&clients, &[])
                    .map_err(|e| NetError::NoFirewall(format!("{}: failed to {e}", tool.name())))?;
                tool
            }
        };
        let net = Network { switch, clients, nodes: named, firewall, current: Mutex::new(Grudge::none()) };
        tracing::debug!(nodes = ?net.nodes.keys().collect::<Vec<_>>(), firewall = firewall.name(), "network created");
        Ok(net)
    }

    /// A node's address on the bridge.
    pub fn address(&self, node: &str) -> Option<Ipv4Addr> {
        self.nodes.get(node).map(|n| n.addr)
    }

    /// The clients' address on the bridge.
    pub fn clients_address(&self) -> Ipv4Addr {
        address(CLIENTS_HOST)
    }

    /// The nodes and their addresses, by name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, Ipv4Addr)> {
        self.nodes.iter().map(|(name, n)| (name.as_str(), n.addr))
    }

    /// Whether `ip` is the address of a node or of the clients in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip == IpAddr::V4(self.clients_address()) || self.nodes.values().any(|n| IpAddr::V4(n.addr) == ip)
    }

    /// The fd holding a node's namespace, for a service's `pre_exec` ([`enter_netns`]).
    pub fn ns_fd(&self, node: &str) -> Option<Arc<OwnedFd>> {
        self.nodes.get(node).map(|n| n.ns.clone())
    }

    /// A node's namespace in the form the supervisor's `ProcSpec` takes.
    pub fn namespace(&self, node: &str) -> Option<Namespace> {
        self.ns_fd(node).map(|fd| Namespace { fd, nstype: libc::CLONE_NEWNET })
    }

    /// The tool that installs partitions here.
    pub fn firewall(&self) -> Firewall {
        self.firewall
    }

    /// The inodes of every namespace the network holds (`net:[inode]`), so a
    /// test can check none outlives it.
    pub fn ns_inodes(&self) -> io::Result<Vec<u64>> {
        let all = std::iter::once(&self.switch).chain(std::iter::once(&*self.clients));
        all.chain(self.nodes.values().map(|n| &*n.ns)).map(sys::ns_inode).collect()
    }

    /// Runs `f` on a short-lived thread inside `at`'s namespace; sockets it
    /// creates stay in that namespace. Blocks for a thread spawn and `f`.
    pub fn run_at<T: Send>(&self, at: At<'_>, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        in_netns(self.ns_of(at)?, f)
    }

    /// A TCP listener bound to `addr` inside `at`'s namespace.
    pub fn bind_in(&self, at: At<'_>, addr: SocketAddr) -> io::Result<std::net::TcpListener> {
        self.run_at(at, || std::net::TcpListener::bind(addr))?
    }

    /// Connects to `addr` from `at`'s namespace, giving up after `timeout`.
    pub async fn connect(&self, at: At<'_>, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        connect_in(self.ns_of(at)?, addr, timeout).await
    }

    /// Connects to `addr` from the clients' namespace (within [`CONNECT_TIMEOUT`]).
    pub async fn connect_from_clients(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        connect_in(&self.clients, addr, CONNECT_TIMEOUT).await
    }

    /// Connects to `addr` from a node's namespace (within [`CONNECT_TIMEOUT`]).
    pub async fn connect_from(&self, node: &str, addr: SocketAddr) -> io::Result<TcpStream> {
        self.connect(At::Node(node), addr, CONNECT_TIMEOUT).await
    }

    /// The upstream connector for proxy links and loopback forwarders: dials
    /// from the clients' namespace, so clients on the host reach the nodes.
    pub fn client_connector(&self) -> Arc<dyn shakedown_proxy::Connector> {
        let clients = self.clients.clone();
        Arc::new(move |addr: SocketAddr| -> shakedown_proxy::ConnectFuture {
            let clients = clients.clone();
            Box::pin(async move { connect_in(&clients, addr, CONNECT_TIMEOUT).await })
        })
    }

    /// Replaces the rules in effect with `grudge`'s. Idempotent; every node
    /// named must be in the network.
    pub fn partition(&self, grudge: &Grudge) -> Result<(), NetError> {
        if let Some(unknown) = grudge.nodes().into_iter().find(|n| !self.nodes.contains_key(*n)) {
            return Err(NetError::UnknownNode(unknown.to_string()));
        }
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        for (name, node) in &self.nodes {
            let dropped: Vec<Ipv4Addr> = grudge.dropped_by(name).map(|other| self.nodes[other].addr).collect();
            self.firewall.apply(&node.ns, &dropped).map_err(|source| NetError::Rules { node: name.clone(), source })?;
        }
        *current = grudge.clone();
        tracing::debug!(%grudge, "partition in effect");
        Ok(())
    }

    /// Draws a grudge over `nodes` by `mode` from `seed` and puts it in
    /// effect; returns it (its `Display` is the history's detail).
    pub fn split(&self, mode: PartitionMode, nodes: &[String], seed: u64) -> Result<Grudge, NetError> {
        let grudge = Grudge::for_mode(mode, nodes, &mut ChaCha8Rng::seed_from_u64(seed))?;
        self.partition(&grudge)?;
        Ok(grudge)
    }

    /// Removes every partition rule. Idempotent.
    pub fn heal(&self) -> Result<(), NetError> {
        self.partition(&Grudge::none())
    }

    /// The grudge in effect (empty when healed).
    pub fn grudge(&self) -> Grudge {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn ns_of(&self, at: At<'_>) -> io::Result<&OwnedFd> {
        match at {
            At::Clients => Ok(&self.clients),
            At::Node(name) => self
                .nodes
                .get(name)
                .map(|n| &*n.ns)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no node `{name}` in the network"))),
        }
    }
}

/// Creates the socket inside `ns` (on a short-lived thread), then connects
/// from here: a socket keeps the namespace it was created in.
async fn connect_in(ns: &OwnedFd, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = in_netns(ns, || match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    })??;
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(result) => result,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out after {timeout:?}")))
        }
    }
}

/// Checks the node count and that no name repeats.
fn check_names(nodes: &[&str]) -> Result<(), NetError> {
    if nodes.len() > MAX_NODES {
        return Err(NetError::TooManyNodes(nodes.len()));
    }
    let mut seen = BTreeSet::new();
    match nodes.iter().find(|n| !seen.insert(**n)) {
        Some(twice) => Err(NetError::DuplicateNode(twice.to_string())),
        None => Ok(()),
    }
}

fn address(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], host)
}

/// A new namespace with loopback up and a veth `eth0` at host number `host`,
/// whose other end is a port of the switch's bridge.
fn wire(switch: &OwnedFd, host: u8, place: &str) -> Result<Arc<OwnedFd>, NetError> {
    let ns = new_netns().map_err(NetError::Namespace)?;
    ip_batch(&ns, &veth_script(host, switch), place)?;
    ip_batch(switch, &format!("link set v{host} master {BRIDGE}\nlink set v{host} up\n"), "the switch")?;
    Ok(Arc::new(ns))
}

/// Runs `ip -batch -` with `script` inside `ns`; `place` names `ns` in errors.
fn ip_batch(ns: &OwnedFd, script: &str, place: &str) -> Result<(), NetError> {
    run_in(ns, "ip", &["-batch", "-"], Some(script))
        .map(drop)
        .map_err(|source| NetError::Setup { place: place.to_string(), source })
}

/// Run inside a new node namespace: loopback up, and a veth whose other end
/// (`v<host>`) goes straight into the switch, named by its fd's /proc path.
fn veth_script(host: u8, switch: &OwnedFd) -> String {
    let addr = address(host);
    let switch = fd_path(switch);
    format!(
        "link set lo up\n\
         link add name {NODE_LINK} type veth peer name v{host} netns {switch}\n\
         addr add {addr}/{PREFIX_LEN} dev {NODE_LINK}\n\
         link set {NODE_LINK} up\n"
    )
}

/// Whether this machine can run the namespace tier: it creates a throwaway
/// two-node network and installs and removes a partition. `Err` says why not.
pub fn probe() -> Result<(), String> {
    let net = Network::create(&["probe-a", "probe-b"]).map_err(|e| format!("failed to {e}"))?;
    let grudge = Grudge::one_way_between("probe-a", "probe-b");
    net.partition(&grudge).map_err(|e| format!("failed to {e}"))?;
    net.heal().map_err(|e| format!("failed to {e}"))?;
    Ok(())
}
