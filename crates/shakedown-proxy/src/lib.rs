//! The fault proxy: TCP links that pass bytes through a chain of toxics
//! (latency, bandwidth, slow connect, timeout, reset, slicer, data limit, down),
//! an HTTP fault layer (injected statuses, delays, aborts), and a
//! toxiproxy-compatible HTTP control API.
//!
//! ```no_run
//! use shakedown_proxy::{Link, LinkConfig, Stream, Toxic, ToxicKind};
//!
//! # async fn demo() -> Result<(), shakedown_proxy::ProxyError> {
//! let upstream = "127.0.0.1:6379".parse().unwrap();
//! let link = Link::start(LinkConfig::new("redis", "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(), upstream))?;
//! println!("connect to {}", link.listen_addr());
//! let slow = ToxicKind::Latency { latency_ms: 300, jitter_ms: 50 };
//! link.add_toxic(Toxic::new("slow", slow, Stream::Downstream))?;
//! link.set_enabled(false).await?; // down: refuse and cut connections
//! link.set_enabled(true).await?;
//! link.remove_toxic("slow")?;
//! link.stop().await;
//! # Ok(())
//! # }
//! ```

mod accept;
mod api;
mod error;
pub mod http;
mod link;
mod pipe;
mod registry;
mod rule;
mod splice;
mod toxic;

pub use api::{router, serve_api, ApiError};
pub use error::ProxyError;
pub use link::{ConnectFuture, Connector, Link, LinkConfig, Listen, PlainConnector, ToxicGuard};
pub use registry::{ProxyInfo, ProxyPatch, ProxySpec, Registry};
pub use toxic::{Stream, Toxic, ToxicJson, ToxicKind};
