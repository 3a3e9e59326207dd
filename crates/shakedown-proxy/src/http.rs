//! The HTTP fault layer: an HTTP/1.1 reverse proxy in front of one upstream that
//! answers with injected statuses, delays requests, or aborts connections before
//! or after forwarding, as its ordered [`HttpRule`]s and a seeded RNG decide.
//!
//! ```
//! use shakedown_proxy::http::{HttpFault, HttpFaultLayer, HttpRule};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let upstream = "127.0.0.1:9".parse()?;
//!     let handle = HttpFaultLayer::new(upstream, 42).bind("127.0.0.1:0".parse()?).await?;
//!     let throttle = HttpFault::Status { status: 429, retry_after: Some(1), body: None };
//!     handle.set_rules(vec![HttpRule::new(throttle).with_probability(0.5)])?;
//!     println!("clients connect to {}", handle.listen_addr());
//!     handle.stop().await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod forward;
mod rules;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use rules::{AbortWhen, HttpFault, HttpRule};

use crate::{Connector, PlainConnector};

/// Default limit on connecting to the upstream.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit on waiting for the upstream's response headers.
pub const RESPONSE_HEADERS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a request's headers.
const REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Most client connections served at once; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 1024;

/// Errors of the HTTP fault layer. Messages read after "failed to".
#[derive(Debug, thiserror::Error)]
pub enum HttpFaultError {
    #[error("listen on {0}: the HTTP fault layer listens on loopback only (127.0.0.0/8 or ::1)")]
    NotLoopback(SocketAddr),
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("read http rule: {0}")]
    InvalidRule(String),
}

/// How many requests each fault hit, and how many went through untouched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpFaultCounts {
    pub status: u64,
    pub delay: u64,
    pub abort_before: u64,
    pub abort_after: u64,
    /// Requests sent to the upstream, delayed, aborted after, or untouched.
    pub forwarded: u64,
    /// Requests answered 502/504 because the upstream could not be reached in time.
    pub upstream_errors: u64,
}

/// Counters shared by every connection task.
#[derive(Debug, Default)]
struct Counters {
    status: AtomicU64,
    delay: AtomicU64,
    abort_before: AtomicU64,
    abort_after: AtomicU64,
    forwarded: AtomicU64,
    upstream_errors: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HttpFaultCounts {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        HttpFaultCounts {
            status: get(&self.status),
            delay: get(&self.delay),
            abort_before: get(&self.abort_before),
            abort_after: get(&self.abort_after),
            forwarded: get(&self.forwarded),
            upstream_errors: get(&self.upstream_errors),
        }
    }
}

/// What the accept loop and every connection share.
struct Shared {
    upstream: SocketAddr,
    connector: Arc<dyn Connector>,
    connect_timeout: Duration,
    response_headers_timeout: Duration,
    rules: Mutex<Arc<Vec<HttpRule>>>,
    rng: Mutex<StdRng>,
    counters: Counters,
}

/// An HTTP fault layer to start: the upstream, the seed and how to connect.
pub struct HttpFaultLayer {
    upstream: SocketAddr,
    seed: u64,
    connector: Arc<dyn Connector>,
    connect_timeout: Duration,
    response_headers_timeout: Duration,
}

impl HttpFaultLayer {
    /// A layer forwarding to `upstream` with no rules, drawing from `seed`.
    pub fn new(upstream: SocketAddr, seed: u64) -> HttpFaultLayer {
        HttpFaultLayer {
            upstream,
            seed,
            connector: Arc::new(PlainConnector),
            connect_timeout: CONNECT_TIMEOUT,
            response_headers_timeout: RESPONSE_HEADERS_TIMEOUT,
        }
    }

    /// Starts a layer with the defaults on `listener`; see [`HttpFaultLayer::serve`].
    pub fn start(
        listener: std::net::TcpListener,
        upstream: SocketAddr,
        seed: u64,
    ) -> Result<HttpFaultHandle, HttpFaultError> {
        HttpFaultLayer::new(upstream, seed).serve(listener)
    }

    /// Connects to the upstream with `connector` (the same one the TCP links
    /// take, e.g. one that connects inside a network namespace) instead of a
    /// plain connect.
    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> HttpFaultLayer {
        self.connector = connector;
        self
    }

    /// Limits connecting to the upstream (answered 502 past it) and waiting for
    /// its response headers (answered 504 past it).
    pub fn with_timeouts(mut self, connect: Duration, response_headers: Duration) -> HttpFaultLayer {
        self.connect_timeout = connect;
        self.response_headers_timeout = response_headers;
        self
    }

    /// Binds `addr`, which must be loopback, and serves on it.
    pub async fn bind(self, addr: SocketAddr) -> Result<HttpFaultHandle, HttpFaultError> {
        if !addr.ip().is_loopback() {
            return Err(HttpFaultError::NotLoopback(addr));
        }
        let listener = TcpListener::bind(addr).await.map_err(|source| HttpFaultError::Listen { addr, source })?;
        self.serve_tokio(listener)
    }

    /// Serves on an already bound `listener`; must be called inside a tokio runtime.
    pub fn serve(self, listener: std::net::TcpListener) -> Result<HttpFaultHandle, HttpFaultError> {
        let addr = listener.local_addr().map_err(|source| listen_error(source, None))?;
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
            .map_err(|source| listen_error(source, Some(addr)))?;
        self.serve_tokio(listener)
    }

    fn serve_tokio(self, listener: TcpListener) -> Result<HttpFaultHandle, HttpFaultError> {
        crate::limits::ensure_nofile_limit();
        let listen_addr = listener.local_addr().map_err(|source| listen_error(source, None))?;
        let shared = Arc::new(Shared {
            upstream: self.upstream,
            connector: self.connector,
            connect_timeout: self.connect_timeout,
            response_headers_timeout: self.response_headers_timeout,
            rules: Mutex::new(Arc::new(Vec::new())),
            rng: Mutex::new(StdRng::seed_from_u64(self.seed)),
            counters: Counters::default(),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop_rx));
        tracing::debug!(%listen_addr, upstream = %shared.upstream, "http fault layer listening");
        Ok(HttpFaultHandle { listen_addr, shared, stop: Some(stop_tx), task })
    }
}

fn listen_error(source: io::Error, addr: Option<SocketAddr>) -> HttpFaultError {
    let addr = addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    HttpFaultError::Listen { addr, source }
}

/// A running HTTP fault layer. Dropping it stops it too, without waiting.
pub struct HttpFaultHandle {
    listen_addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl HttpFaultHandle {
    /// Where clients connect.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Replaces the rules; requests already past the rule walk keep their plan.
    pub fn set_rules(&self, rules: Vec<HttpRule>) -> Result<(), HttpFaultError> {
        rules.iter().try_for_each(HttpRule::validate)?;
        *self.shared.rules.lock().expect("http rules lock poisoned") = Arc::new(rules);
        Ok(())
    }

    /// Removes every rule: requests pass untouched.
    pub fn clear(&self) {
        *self.shared.rules.lock().expect("http rules lock poisoned") = Arc::new(Vec::new());
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<HttpRule> {
        self.shared.rules.lock().expect("http rules lock poisoned").as_ref().clone()
    }

    /// How many requests each fault has hit so far.
    pub fn counts(&self) -> HttpFaultCounts {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, closes every client connection and waits for that.
    pub async fn stop(mut self) -> HttpFaultCounts {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.counts()
    }
}

impl Drop for HttpFaultHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts clients until stopped; dropping the set of connection tasks on the
/// way out aborts them, which closes their sockets.
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set stays bounded by the live ones.
        while connections.try_join_next().is_some() {}
        if connections.len() >= MAX_CONNECTIONS {
            tokio::select! {
                _ = &mut stop => break,
                _ = connections.join_next() => continue,
            }
        }
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(forward::serve_connection(stream, peer, Arc::clone(&shared)));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "http fault layer accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    connections.shutdown().await;
}
