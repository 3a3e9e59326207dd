//! The fault proxy: TCP links that pass bytes through a chain of toxics
//! (latency, bandwidth, slow connect, timeout, reset, slicer, data limit, down),
//! an HTTP fault layer (injected statuses, delays, aborts), and a
//! toxiproxy-compatible HTTP control API.
//!
//! ```
//! use std::io::{Read, Write};
//! use shakedown_proxy::{Link, LinkConfig, Stream, Toxic, ToxicKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Runtime::new()?;
//! // An upstream that answers "pong" to anyone.
//! let upstream = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let upstream_addr = upstream.local_addr()?;
//! std::thread::spawn(move || {
//!     for mut conn in upstream.incoming().flatten() {
//!         let _ = conn.write_all(b"pong");
//!     }
//! });
//! let config = LinkConfig::new("demo", "127.0.0.1:0".parse::<std::net::SocketAddr>()?, upstream_addr);
//! let link = runtime.block_on(async { Link::start(config) })?;
//! let slow = ToxicKind::Latency { latency_ms: 50, jitter_ms: 0 };
//! link.add_toxic(Toxic::new("slow", slow, Stream::Downstream))?;
//!
//! let started = std::time::Instant::now();
//! let mut answer = [0u8; 4];
//! std::net::TcpStream::connect(link.listen_addr())?.read_exact(&mut answer)?;
//! assert_eq!(&answer, b"pong");
//! assert!(started.elapsed() >= std::time::Duration::from_millis(50));
//!
//! runtime.block_on(async {
//!     link.set_enabled(false).await?; // down: refuse and cut connections
//!     link.set_enabled(true).await?;
//!     link.stop().await;
//!     Ok::<_, shakedown_proxy::ProxyError>(())
//! })?;
//! # Ok(())
//! # }
//! ```

mod accept;
mod api;
mod error;
pub mod http;
mod limits;
mod link;
mod memory;
mod pipe;
mod registry;
mod rule;
mod splice;
mod toxic;

pub use api::{router, serve_api, serve_api_with, ApiError, ApiLimits};
pub use error::ProxyError;
pub use limits::raise_nofile_limit;
pub use link::{ConnectFuture, Connector, Link, LinkConfig, Listen, PlainConnector, ToxicGuard};
pub use registry::{ProxyInfo, ProxyPatch, ProxySpec, Registry};
pub use toxic::{Stream, Toxic, ToxicJson, ToxicKind};
