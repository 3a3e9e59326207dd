//! The named links behind the control API, in name order: create, populate,
//! update, remove and reset them as toxiproxy does.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::link::{Connector, Link, LinkConfig, PlainConnector};
use crate::ProxyError;

/// A proxy as toxiproxy's `POST /proxies` and `/populate` take it.
/// Absent fields take toxiproxy's defaults (enabled) or ours (listen on a
/// free loopback port); unknown fields are ignored, as toxiproxy does.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ProxySpec {
    #[serde(default)]
    pub name: String,
    /// A loopback `ip:port` or `localhost:port`; port 0 picks a free port.
    #[serde(default = "any_loopback_port")]
    pub listen: String,
    /// `host:port`, resolved when the proxy is created or updated.
    #[serde(default)]
    pub upstream: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn any_loopback_port() -> String {
    "127.0.0.1:0".to_string()
}

fn yes() -> bool {
    true
}

/// A partial proxy update (toxiproxy's `POST /proxies/{name}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProxyPatch {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub enabled: Option<bool>,
}

/// A proxy as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyInfo {
    pub name: String,
    pub listen: String,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Value>,
}

struct Entry {
    link: Arc<Link>,
    /// The upstream as given, so the API shows what it was told.
    upstream: String,
}

impl Entry {
    fn info(&self) -> ProxyInfo {
        ProxyInfo {
            name: self.link.name().to_string(),
            listen: self.link.listen_addr().to_string(),
            upstream: self.upstream.clone(),
            enabled: self.link.enabled(),
            toxics: self.link.toxics().iter().map(|t| t.to_json()).collect(),
        }
    }
}

/// Every link the API manages.
pub struct Registry {
    links: Mutex<BTreeMap<String, Entry>>,
    connector: Arc<dyn Connector>,
    seed: u64,
}

impl Registry {
    /// Links connect upstream with plain connects; `seed` drives their toxicity rolls.
    pub fn new(seed: u64) -> Registry {
        Registry::with_connector(Arc::new(PlainConnector), seed)
    }

    pub fn with_connector(connector: Arc<dyn Connector>, seed: u64) -> Registry {
        crate::limits::ensure_nofile_limit();
        Registry { links: Mutex::new(BTreeMap::new()), connector, seed }
    }

    /// The link of a proxy, for direct use beside the API.
    pub async fn link(&self, name: &str) -> Result<Arc<Link>, ProxyError> {
        let links = self.links.lock().await;
        links.get(name).map(|e| e.link.clone()).ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))
    }

    pub async fn list(&self) -> BTreeMap<String, ProxyInfo> {
        self.links.lock().await.iter().map(|(name, entry)| (name.clone(), entry.info())).collect()
    }

    pub async fn get(&self, name: &str) -> Result<ProxyInfo, ProxyError> {
        let links = self.links.lock().await;
        links.get(name).map(Entry::info).ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))
    }

    pub async fn create(&self, spec: ProxySpec) -> Result<ProxyInfo, ProxyError> {
        let mut links = self.links.lock().await;
        if links.contains_key(&spec.name) {
            return Err(ProxyError::ProxyExists(spec.name));
        }
        let entry = self.start(&spec).await?;
        let info = entry.info();
        links.insert(spec.name, entry);
        Ok(info)
    }

    /// Creates each proxy, replacing one of the same name whose listen,
    /// upstream or enabled differ; all are checked before any is touched.
    pub async fn populate(&self, specs: Vec<ProxySpec>) -> Result<Vec<ProxyInfo>, ProxyError> {
        for spec in &specs {
            check_name(&spec.name)?;
            parse_listen(&spec.listen)?;
        }
        let mut links = self.links.lock().await;
        let mut infos = Vec::with_capacity(specs.len());
        for spec in specs {
            if let Some(old) = links.get(&spec.name) {
                let same_listen = parse_listen(&spec.listen)? == old.link.listen_addr();
                if same_listen && old.upstream == spec.upstream {
                    // Only enabled may differ: flip it in place and keep the toxics.
                    old.link.set_enabled(spec.enabled).await?;
                    infos.push(old.info());
                    continue;
                }
                let old = links.remove(&spec.name).expect("present: just looked it up");
                old.link.stop().await;
            }
            let entry = self.start(&spec).await?;
            infos.push(entry.info());
            links.insert(spec.name, entry);
        }
        Ok(infos)
    }

    /// Changes a proxy's upstream and enabled in place; a new listen address
    /// restarts it there, keeping its toxics.
    pub async fn update(&self, name: &str, patch: ProxyPatch) -> Result<ProxyInfo, ProxyError> {
        let mut links = self.links.lock().await;
        let entry = links.get_mut(name).ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))?;
        if let Some(upstream) = patch.upstream {
            entry.link.set_upstream(resolve(&upstream).await?);
            entry.upstream = upstream;
        }
        let moved = match &patch.listen {
            Some(listen) => parse_listen(listen)? != entry.link.listen_addr(),
            None => false,
        };
        if moved {
            let enabled = patch.enabled.unwrap_or(entry.link.enabled());
            let spec = ProxySpec {
                name: name.to_string(),
                listen: patch.listen.clone().unwrap_or_default(),
                upstream: entry.upstream.clone(),
                enabled,
            };
            let fresh = self.start(&spec).await?;
            for toxic in entry.link.toxics() {
                fresh.link.add_toxic(toxic)?;
            }
            entry.link.stop().await;
            *entry = fresh;
        } else if let Some(enabled) = patch.enabled {
            entry.link.set_enabled(enabled).await?;
        }
        Ok(entry.info())
    }

    pub async fn remove(&self, name: &str) -> Result<(), ProxyError> {
        let entry = self.links.lock().await.remove(name).ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))?;
        entry.link.stop().await;
        Ok(())
    }

    /// Enables every proxy and removes every toxic.
    pub async fn reset(&self) -> Result<(), ProxyError> {
        let links = self.links.lock().await;
        for entry in links.values() {
            entry.link.remove_all_toxics();
            entry.link.set_enabled(true).await?;
        }
        Ok(())
    }

    /// Stops every link and forgets it.
    pub async fn shutdown(&self) {
        let links = std::mem::take(&mut *self.links.lock().await);
        for entry in links.into_values() {
            entry.link.stop().await;
        }
    }

    async fn start(&self, spec: &ProxySpec) -> Result<Entry, ProxyError> {
        check_name(&spec.name)?;
        let listen = parse_listen(&spec.listen)?;
        let upstream = resolve(&spec.upstream).await?;
        let mut config = LinkConfig::new(spec.name.clone(), listen, upstream);
        config.enabled = spec.enabled;
        config.seed = self.seed ^ fnv1a(spec.name.as_bytes());
        config.connector = self.connector.clone();
        Ok(Entry { link: Arc::new(Link::start(config)?), upstream: spec.upstream.clone() })
    }
}

fn check_name(name: &str) -> Result<(), ProxyError> {
    let ok =
        !name.is_empty() && name.len() <= 256 && !name.contains(['/', '?', '#']) && !name.chars().any(char::is_control);
    if !ok {
        return Err(ProxyError::InvalidProxy(format!(
            "proxy name {name:?} must be 1 to 256 bytes without '/', '?', '#' or control characters"
        )));
    }
    Ok(())
}

/// A listen address: an IP literal with a port, or `localhost:port`. Only
/// loopback passes, so the proxy never opens a port beyond this machine.
fn parse_listen(listen: &str) -> Result<SocketAddr, ProxyError> {
    let addr = match listen.strip_prefix("localhost:") {
        Some(port) => port.parse().map(|port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).ok(),
        None => listen.parse().ok(),
    };
    let addr =
        addr.ok_or_else(|| ProxyError::InvalidProxy(format!("listen {listen:?} must be ip:port or localhost:port")))?;
    if !addr.ip().is_loopback() {
        return Err(ProxyError::NotLoopback(addr));
    }
    Ok(addr)
}

async fn resolve(upstream: &str) -> Result<SocketAddr, ProxyError> {
    let fail = |reason: String| ProxyError::Resolve { addr: upstream.to_string(), reason };
    if upstream.is_empty() {
        return Err(fail("missing required field: upstream".into()));
    }
    let lookup = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::lookup_host(upstream)).await;
    let mut addrs = lookup.map_err(|_| fail("lookup timed out".into()))?.map_err(|e| fail(e.to_string()))?;
    addrs.next().ok_or_else(|| fail("no address found".into()))
}

/// FNV-1a, to give each link its own seed derived from the registry's.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_must_be_loopback() {
        assert_eq!(parse_listen("localhost:80").unwrap(), "127.0.0.1:80".parse().unwrap());
        assert_eq!(parse_listen("127.0.0.9:0").unwrap(), "127.0.0.9:0".parse().unwrap());
        assert!(parse_listen("[::1]:5").is_ok());
        assert!(matches!(parse_listen("0.0.0.0:80"), Err(ProxyError::NotLoopback(_))));
        assert!(matches!(parse_listen("10.1.2.3:80"), Err(ProxyError::NotLoopback(_))));
        assert!(matches!(parse_listen(":80"), Err(ProxyError::InvalidProxy(_))));
        assert!(matches!(parse_listen("example.com:80"), Err(ProxyError::InvalidProxy(_))));
    }

    #[test]
    fn names_are_path_safe() {
        assert!(check_name("redis-1").is_ok());
        for bad in ["", "a/b", "a?b", "a\nb"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
