//! A link's task: owns the listening port, accepts connections, and runs each
//! one (slow connect, upstream connect, two pipes) until it ends.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::link::{LinkShared, Listen};
use crate::memory;
use crate::pipe::{Pipe, ToxicSet};
use crate::rule::End;
use crate::toxic::{Stream, ToxicKind};
use crate::ProxyError;

/// How long a stopping link waits for its connections to close.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// The pause after a failed accept (say, out of descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
const BACKLOG: i32 = 1024;

pub(crate) enum Command {
    SetEnabled(bool, oneshot::Sender<Result<(), ProxyError>>),
    Stop,
}

/// The link's port: listening, or down. Down keeps the port bound without
/// listening, so connects are refused and no one else can take the port.
pub(crate) enum Port {
    Listening(TcpListener),
    Down { held: Option<Socket> },
}

impl Port {
    pub fn open(listen: Listen, enabled: bool) -> Result<(Port, SocketAddr), ProxyError> {
        let std_listener = match listen {
            Listen::Addr(addr) => {
                if !addr.ip().is_loopback() {
                    return Err(ProxyError::NotLoopback(addr));
                }
                let socket = bind(addr).map_err(|source| ProxyError::Listen { addr, source })?;
                socket.listen(BACKLOG).map_err(|source| ProxyError::Listen { addr, source })?;
                std::net::TcpListener::from(socket)
            }
            Listen::Bound(listener) => listener,
        };
        let addr = std_listener.local_addr().map_err(|source| ProxyError::Listen { addr: unspecified(), source })?;
        std_listener.set_nonblocking(true).map_err(|source| ProxyError::Listen { addr, source })?;
        let listener = TcpListener::from_std(std_listener).map_err(|source| ProxyError::Listen { addr, source })?;
        let mut port = Port::Listening(listener);
        if !enabled {
            port.set_enabled(addr, false)?;
        }
        Ok((port, addr))
    }

    fn set_enabled(&mut self, addr: SocketAddr, enabled: bool) -> Result<(), ProxyError> {
        match (std::mem::replace(self, Port::Down { held: None }), enabled) {
            (Port::Listening(listener), true) => *self = Port::Listening(listener),
            (Port::Listening(listener), false) => {
                drop(listener);
                // Rebinding right away holds the port; if that fails, the
                // link is still down and enabling binds afresh.
                let held =
                    bind(addr).inspect_err(|err| tracing::warn!(%addr, error = %err, "failed to hold port")).ok();
                *self = Port::Down { held };
            }
            (Port::Down { held, .. }, true) => {
                let socket = match held {
                    Some(socket) => socket,
                    None => bind(addr).map_err(|source| ProxyError::Listen { addr, source })?,
                };
                socket.listen(BACKLOG).map_err(|source| ProxyError::Listen { addr, source })?;
                let listener =
                    TcpListener::from_std(socket.into()).map_err(|source| ProxyError::Listen { addr, source })?;
                *self = Port::Listening(listener);
            }
            (down @ Port::Down { .. }, false) => *self = down,
        }
        Ok(())
    }

    /// The next connection; pending forever while down.
    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        match self {
            Port::Listening(listener) => listener.accept().await,
            Port::Down { .. } => std::future::pending().await,
        }
    }
}

/// A non-blocking socket bound (not listening) to `addr`, with SO_REUSEADDR
/// so a port just released by a listener can be bound again at once.
fn bind(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Stands in for the address of a listener that cannot say its own.
fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// Accepts and serves connections until stopped or the `Link` is dropped.
pub(crate) async fn accept_loop(shared: Arc<LinkShared>, mut port: Port, mut commands: mpsc::Receiver<Command>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::SetEnabled(enabled, reply)) => {
                    let result = port.set_enabled(shared.listen_addr, enabled);
                    if result.is_ok() {
                        shared.enabled.store(enabled, Ordering::SeqCst);
                    }
                    if !enabled {
                        shared.cut_all();
                    }
                    let _ = reply.send(result);
                }
                Some(Command::Stop) | None => break,
            },
            accepted = port.accept() => match accepted {
                Ok((client, _)) => {
                    let live = Live::count(&shared);
                    let conn = Conn { shared: shared.clone(), cut: shared.cut.subscribe(), state: ConnState::Connecting, _live: live };
                    conns.spawn(conn.serve(client, shared.connection_seed()));
                }
                Err(err) => {
                    tracing::warn!(link = %shared.name, error = %err, "failed to accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(port);
    shared.cut_all();
    let drained = tokio::time::timeout(STOP_GRACE, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        conns.abort_all();
    }
}

/// Where a connection is; transitions are asserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    Connecting,
    Open,
    Closed,
}

struct Conn {
    shared: Arc<LinkShared>,
    cut: watch::Receiver<u64>,
    state: ConnState,
    _live: Live,
}

/// Counts a connection as live, in its link and in the process, until
/// dropped, even when its task is aborted.
struct Live(Arc<LinkShared>, memory::Tracked);

impl Live {
    fn count(shared: &Arc<LinkShared>) -> Live {
        shared.live.fetch_add(1, Ordering::SeqCst);
        Live(shared.clone(), memory::Tracked::new())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let before = self.0.live.fetch_sub(1, Ordering::SeqCst);
        assert!(before > 0, "every live connection was counted when accepted");
    }
}

impl Conn {
    fn transition(&mut self, to: ConnState) {
        use ConnState::*;
        let ok = matches!((self.state, to), (Connecting, Open | Closed) | (Open, Closed));
        assert!(ok, "connection: bad transition {:?} -> {to:?}", self.state);
        self.state = to;
    }

    async fn serve(mut self, client: TcpStream, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        match self.connect(&mut rng).await {
            Some(server) => self.forward(client, server, &mut rng).await,
            // Dropping the client closes it promptly: the upstream is not there.
            None => self.transition(ConnState::Closed),
        }
    }

    /// Waits out slow_connect toxics, then connects upstream; `None` when
    /// the connect fails, times out, or the link cuts the connection first.
    async fn connect(&mut self, rng: &mut StdRng) -> Option<TcpStream> {
        let delay = slow_connect_delay(&self.shared.toxics.borrow(), rng);
        let upstream = self.shared.upstream();
        let shared = &self.shared;
        let connect = async {
            tokio::time::sleep(delay).await;
            tokio::time::timeout(shared.connect_timeout, shared.connector.connect(upstream)).await
        };
        let result = tokio::select! {
            _ = self.cut.changed() => return None,
            result = connect => result,
        };
        match result {
            Ok(Ok(server)) => Some(server),
            Ok(Err(err)) => {
                tracing::debug!(link = %self.shared.name, %upstream, error = %err, "failed to connect upstream");
                None
            }
            Err(_) => {
                tracing::debug!(link = %self.shared.name, %upstream, "upstream connect timed out");
                None
            }
        }
    }

    /// Runs both directions until both are done, then closes (or resets) the sockets.
    async fn forward(&mut self, client: TcpStream, server: TcpStream, rng: &mut StdRng) {
        self.transition(ConnState::Open);
        // Latency-sensitive traffic is what a fault proxy carries; never batch it.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client, server) = (Arc::new(client), Arc::new(server));
        let end = Arc::new(watch::channel(None).0);
        let pipe = |stream, src: &Arc<TcpStream>, dst: &Arc<TcpStream>, seed| {
            let toxics = self.shared.toxics.subscribe();
            let rng = StdRng::seed_from_u64(seed);
            Pipe::new(stream, src.clone(), dst.clone(), toxics, end.clone(), rng, self.shared.write_stall_timeout)
        };
        let mut up = tokio::spawn(pipe(Stream::Upstream, &client, &server, rng.gen()).run());
        let mut down = tokio::spawn(pipe(Stream::Downstream, &server, &client, rng.gen()).run());
        let (mut up_done, mut down_done) = (false, false);
        while !(up_done && down_done) {
            tokio::select! {
                _ = &mut up, if !up_done => up_done = true,
                _ = &mut down, if !down_done => down_done = true,
                _ = self.cut.changed() => {
                    end.send_if_modified(|e| e.replace(End::Close).is_none());
                }
            }
        }
        if *end.borrow() == Some(End::Reset) {
            // SO_LINGER 0 turns the close into an RST.
            let _ = SockRef::from(&*client).set_linger(Some(Duration::ZERO));
            let _ = SockRef::from(&*server).set_linger(Some(Duration::ZERO));
        }
        assert!(Arc::strong_count(&client) == 1, "both pipes have let go of the client socket");
        self.transition(ConnState::Closed);
    }
}

/// The summed delay of the slow_connect toxics that hit this connection.
fn slow_connect_delay(toxics: &ToxicSet, rng: &mut StdRng) -> Duration {
    let delays = toxics.iter().filter_map(|entry| match entry.toxic.kind {
        ToxicKind::SlowConnect { delay_ms } => Some((delay_ms, entry.toxic.toxicity)),
        _ => None,
    });
    let hit = delays.filter(|(_, toxicity)| *toxicity >= 1.0 || rng.gen::<f64>() < *toxicity);
    Duration::from_millis(hit.map(|(ms, _)| ms).sum())
}
