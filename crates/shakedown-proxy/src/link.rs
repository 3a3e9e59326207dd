//! A `Link`: one loopback listener forwarding every connection to one
//! upstream, through the link's ordered toxics. Toxic edits reach live
//! connections through a watch channel; `down` (enabled = false) refuses new
//! connections and cuts live ones.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::accept::{accept_loop, Command, Port};
use crate::pipe::{ToxicEntry, ToxicSet};
use crate::toxic::Toxic;
use crate::ProxyError;

/// How long `stop` and `set_enabled` wait for the link's task.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// A boxed future that connects to the upstream.
pub type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// Opens the upstream side of each connection. The runner passes one that
/// creates the socket inside a network namespace; the default is a plain
/// `TcpStream::connect`.
pub trait Connector: Send + Sync + 'static {
    fn connect(&self, addr: SocketAddr) -> ConnectFuture;
}

/// `TcpStream::connect` in the proxy's own network namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainConnector;

impl Connector for PlainConnector {
    fn connect(&self, addr: SocketAddr) -> ConnectFuture {
        Box::pin(TcpStream::connect(addr))
    }
}

impl<F> Connector for F
where
    F: Fn(SocketAddr) -> ConnectFuture + Send + Sync + 'static,
{
    fn connect(&self, addr: SocketAddr) -> ConnectFuture {
        self(addr)
    }
}

/// Where a link listens: an address to bind (loopback only), or a listener
/// the caller bound already (so its port is reserved before the link starts;
/// the caller answers for its address, e.g. one inside a network namespace).
#[derive(Debug)]
pub enum Listen {
    Addr(SocketAddr),
    Bound(std::net::TcpListener),
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Listen {
        Listen::Addr(addr)
    }
}

impl From<std::net::TcpListener> for Listen {
    fn from(listener: std::net::TcpListener) -> Listen {
        Listen::Bound(listener)
    }
}

/// Everything a link starts from; `LinkConfig::new` fills in the defaults.
pub struct LinkConfig {
    pub name: String,
    pub listen: Listen,
    pub upstream: SocketAddr,
    /// A disabled link starts down: it refuses connections until enabled.
    pub enabled: bool,
    /// Drives every toxicity roll and jitter of the link's connections.
    pub seed: u64,
    pub connector: Arc<dyn Connector>,
    /// How long an upstream connect may take before the client is closed.
    pub connect_timeout: Duration,
    /// How long a peer may accept no bytes before its connection is closed.
    pub write_stall_timeout: Duration,
}

impl LinkConfig {
    /// An enabled link with seed 0, plain connects, a 5 s connect timeout and
    /// a 120 s write stall timeout.
    pub fn new(name: impl Into<String>, listen: impl Into<Listen>, upstream: SocketAddr) -> LinkConfig {
        LinkConfig {
            name: name.into(),
            listen: listen.into(),
            upstream,
            enabled: true,
            seed: 0,
            connector: Arc::new(PlainConnector),
            connect_timeout: Duration::from_secs(5),
            write_stall_timeout: Duration::from_secs(120),
        }
    }
}

/// What the link's task and its connections share.
pub(crate) struct LinkShared {
    pub name: String,
    pub listen_addr: SocketAddr,
    pub upstream: Mutex<SocketAddr>,
    pub toxics: watch::Sender<ToxicSet>,
    /// Bumped to cut every live connection (down, stop).
    pub cut: watch::Sender<u64>,
    pub connector: Arc<dyn Connector>,
    pub connect_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub enabled: AtomicBool,
    pub live: AtomicUsize,
    rng: Mutex<StdRng>,
    next_uid: AtomicU64,
}

impl LinkShared {
    /// A fresh seed for one connection, drawn from the link's seeded RNG.
    pub fn connection_seed(&self) -> u64 {
        self.rng.lock().expect("the rng lock is never poisoned").next_u64()
    }

    pub fn upstream(&self) -> SocketAddr {
        *self.upstream.lock().expect("the upstream lock is never poisoned")
    }

    pub fn cut_all(&self) {
        self.cut.send_modify(|epoch| *epoch += 1);
    }
}

/// A running link. Dropping it stops it too, without waiting.
pub struct Link {
    shared: Arc<LinkShared>,
    commands: mpsc::Sender<Command>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Link {
    /// Binds (or adopts) the listener and starts accepting. Needs a tokio
    /// runtime. The first link of a process raises its open-file limit (see
    /// [`crate::raise_nofile_limit`]).
    pub fn start(config: LinkConfig) -> Result<Link, ProxyError> {
        crate::limits::ensure_nofile_limit();
        let (port, listen_addr) = Port::open(config.listen, config.enabled)?;
        let shared = Arc::new(LinkShared {
            name: config.name,
            listen_addr,
            upstream: Mutex::new(config.upstream),
            toxics: watch::channel(ToxicSet::default()).0,
            cut: watch::channel(0).0,
            connector: config.connector,
            connect_timeout: config.connect_timeout,
            write_stall_timeout: config.write_stall_timeout,
            enabled: AtomicBool::new(config.enabled),
            live: AtomicUsize::new(0),
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            next_uid: AtomicU64::new(1),
        });
        let (commands, receiver) = mpsc::channel(8);
        let task = tokio::spawn(accept_loop(shared.clone(), port, receiver));
        tracing::debug!(link = %shared.name, listen = %listen_addr, "link started");
        Ok(Link { shared, commands, task: Mutex::new(Some(task)) })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address clients connect to (with the real port when bound to port 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream()
    }

    /// Points new connections at another upstream; live ones stay where they are.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().expect("the upstream lock is never poisoned") = upstream;
    }

    pub fn enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::SeqCst)
    }

    /// `false` takes the link down: before this returns, new connections are
    /// refused and live ones are told to close (they do so at once). `true`
    /// listens again on the same port.
    pub async fn set_enabled(&self, enabled: bool) -> Result<(), ProxyError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ProxyError::Listen {
            addr: self.listen_addr(),
            source: io::Error::new(io::ErrorKind::NotConnected, "the link is stopped"),
        };
        self.commands.send(Command::SetEnabled(enabled, reply)).await.map_err(|_| stopped())?;
        match tokio::time::timeout(CONTROL_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            _ => Err(stopped()),
        }
    }

    /// Connections currently open through the link.
    pub fn connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// The toxics in the order they act.
    pub fn toxics(&self) -> Vec<Toxic> {
        self.shared.toxics.borrow().iter().map(|e| e.toxic.clone()).collect()
    }

    pub fn toxic(&self, name: &str) -> Option<Toxic> {
        self.shared.toxics.borrow().iter().find(|e| e.toxic.name == name).map(|e| e.toxic.clone())
    }

    /// Adds a toxic after the others; live connections take it at once.
    pub fn add_toxic(&self, toxic: Toxic) -> Result<(), ProxyError> {
        self.edit(|list| {
            if list.iter().any(|t| t.name == toxic.name) {
                return Err(ProxyError::ToxicExists(toxic.name.clone()));
            }
            list.push(toxic.clone());
            Ok(())
        })
    }

    /// Adds a toxic that is removed again when the guard drops.
    pub fn add_toxic_guarded(self: &Arc<Self>, toxic: Toxic) -> Result<ToxicGuard, ProxyError> {
        let name = toxic.name.clone();
        self.add_toxic(toxic)?;
        Ok(ToxicGuard { link: self.clone(), name })
    }

    /// Replaces the toxic of the same name in place; its state starts afresh.
    pub fn update_toxic(&self, toxic: Toxic) -> Result<(), ProxyError> {
        self.edit(|list| {
            let slot = list.iter_mut().find(|t| t.name == toxic.name);
            *slot.ok_or_else(|| ProxyError::ToxicNotFound(toxic.name.clone()))? = toxic.clone();
            Ok(())
        })
    }

    pub fn remove_toxic(&self, name: &str) -> Result<(), ProxyError> {
        self.edit(|list| {
            let index = list.iter().position(|t| t.name == name);
            list.remove(index.ok_or_else(|| ProxyError::ToxicNotFound(name.to_string()))?);
            Ok(())
        })
    }

    pub fn remove_all_toxics(&self) {
        self.edit(|list| {
            list.clear();
            Ok(())
        })
        .expect("clearing cannot fail");
    }

    /// Applies an edit to the toxic list and publishes it if it succeeds.
    /// Unchanged toxics keep their ids, so connections keep their state.
    fn edit(&self, change: impl FnOnce(&mut Vec<Toxic>) -> Result<(), ProxyError>) -> Result<(), ProxyError> {
        let mut result = Ok(());
        self.shared.toxics.send_if_modified(|set| {
            let mut list: Vec<Toxic> = set.iter().map(|e| e.toxic.clone()).collect();
            result = change(&mut list);
            if result.is_err() {
                return false;
            }
            let entries = list.into_iter().map(|toxic| {
                let same = set.iter().find(|e| e.toxic == toxic);
                same.cloned().unwrap_or_else(|| {
                    Arc::new(ToxicEntry { uid: self.shared.next_uid.fetch_add(1, Ordering::SeqCst), toxic })
                })
            });
            *set = Arc::new(entries.collect());
            true
        });
        result
    }

    /// Closes the listener and every connection, and waits (bounded) for them.
    pub async fn stop(&self) {
        let _ = self.commands.try_send(Command::Stop);
        let task = self.task.lock().expect("the task lock is never poisoned").take();
        if let Some(mut task) = task {
            if tokio::time::timeout(CONTROL_TIMEOUT, &mut task).await.is_err() {
                tracing::warn!(link = %self.shared.name, "link did not stop in time; aborting it");
                task.abort();
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The task also ends when the command channel closes; this makes it prompt.
        let _ = self.commands.try_send(Command::Stop);
    }
}

/// Removes its toxic from the link when dropped.
pub struct ToxicGuard {
    link: Arc<Link>,
    name: String,
}

impl Drop for ToxicGuard {
    fn drop(&mut self) {
        // Already removed (e.g. by a reset) is fine: the toxic is gone either way.
        let _ = self.link.remove_toxic(&self.name);
    }
}
