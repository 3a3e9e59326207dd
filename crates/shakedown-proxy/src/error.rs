//! The proxy's error type: what can go wrong creating, changing or stopping links.

use std::io;
use std::net::SocketAddr;

/// Errors of links, the registry and the control API. Messages read after
/// "failed to".
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("find proxy {0:?}: proxy not found")]
    ProxyNotFound(String),
    #[error("create proxy {0:?}: proxy already exists")]
    ProxyExists(String),
    #[error("find toxic {0:?}: toxic not found")]
    ToxicNotFound(String),
    #[error("add toxic {0:?}: toxic already exists")]
    ToxicExists(String),
    #[error("read toxic: {0}")]
    InvalidToxic(String),
    #[error("read proxy: {0}")]
    InvalidProxy(String),
    #[error("listen on {0}: proxy listen addresses must be loopback (127.0.0.0/8 or ::1)")]
    NotLoopback(SocketAddr),
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("resolve upstream {addr:?}: {reason}")]
    Resolve { addr: String, reason: String },
}
