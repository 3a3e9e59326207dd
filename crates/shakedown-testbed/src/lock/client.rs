//! The lock client: an acquire-for-update callback over an ordered endpoint list that fails over on connection errors.
//!
//! `update` acquires the key's lease, reads its state, writes the state with
//! text appended and releases, logging a `client.phase` line at
//! `handler-start`, `before-save` and `after-save` (optionally holding there
//! until a file exists, so a scenario can stop the primary at that exact
//! point). Every HTTP answer or failure is logged as `client.http.success`
//! or `client.http.error`. On a connection error, a broken exchange or a 503
//! the client moves to the next endpoint, re-acquires the lease there as the
//! same owner and goes on, so the update lands exactly once.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::wire::{Endpoint, Reply, WireError};
use super::ClientBug;
use crate::log::Logger;

/// A point in the callback where the client logs and may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Just after the lease was acquired, before reading the state.
    HandlerStart,
    /// After reading the state, before writing it.
    BeforeSave,
    /// After writing the state, before releasing the lease.
    AfterSave,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::HandlerStart, Phase::BeforeSave, Phase::AfterSave];

    /// The name used in logs and with `--hold-at`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::HandlerStart => "handler-start",
            Phase::BeforeSave => "before-save",
            Phase::AfterSave => "after-save",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;

    fn from_str(name: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|phase| phase.name() == name)
            .ok_or_else(|| format!("unknown phase {name:?} (valid: handler-start, before-save, after-save)"))
    }
}

/// Wait at `phase` until `file` exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub phase: Phase,
    pub file: PathBuf,
}

/// How the client runs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Base URLs (`http://HOST:PORT`), tried in this order unless `shuffle`.
    pub endpoints: Vec<String>,
    pub shuffle: bool,
    /// Who holds the lease; the same owner may re-acquire it on another server.
    pub owner: String,
    /// How long the lease lasts.
    pub ttl: Duration,
    /// Deadline for connecting and for each read or write of one request.
    pub request_timeout: Duration,
    pub hold: Option<Hold>,
    /// How long a hold waits for its file before the update fails.
    pub hold_timeout: Duration,
    pub bugs: BTreeSet<ClientBug>,
    pub log: Logger,
}

impl ClientConfig {
    /// The correct client: endpoints in order, owner `client-PID`, 30 s lease,
    /// 2 s request timeout, 10 s hold timeout, logging to stdout.
    pub fn new(endpoints: Vec<String>) -> ClientConfig {
        ClientConfig {
            endpoints,
            shuffle: false,
            owner: format!("client-{}", std::process::id()),
            ttl: Duration::from_secs(30),
            request_timeout: Duration::from_secs(2),
            hold: None,
            hold_timeout: Duration::from_secs(10),
            bugs: BTreeSet::new(),
            log: Logger::Stdout,
        }
    }

    /// Turns on `bug`.
    pub fn with_bug(mut self, bug: ClientBug) -> ClientConfig {
        self.bugs.insert(bug);
        self
    }

    /// Sends the log lines to `log`.
    pub fn with_log(mut self, log: Logger) -> ClientConfig {
        self.log = log;
        self
    }
}

/// Why an update did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("use the endpoints: {0}")]
    BadEndpoint(#[from] WireError),
    #[error("use the endpoints: none given")]
    NoEndpoints,
    #[error("use key {0:?}: keys are 1 to 200 of letters, digits and . _ - / :")]
    BadKey(String),
    #[error("{op} on any endpoint: the last one ({endpoint}) failed with: {error}")]
    Unreachable { op: String, endpoint: String, error: String },
    #[error("{op} on {endpoint}: refused with {status}: {body}")]
    Refused { op: String, endpoint: String, status: u16, body: String },
    #[error("{op} on {endpoint}: unexpected reply {body:?}")]
    BadReply { op: String, endpoint: String, body: String },
    #[error("hold at {phase}: {file} did not appear within {waited_ms} ms")]
    HoldTimeout { phase: &'static str, file: PathBuf, waited_ms: u128 },
}

/// The state an update left, printed by the CLI on success.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Updated {
    pub key: String,
    pub content: String,
    pub version: u64,
    pub token: u64,
    /// The endpoint the update finished on.
    pub endpoint: String,
}

/// Runs the acquire-for-update callback on `key`, appending `append` to its content.
pub fn update(config: &ClientConfig, key: &str, append: &str) -> Result<Updated, ClientError> {
    let mut endpoints = config.endpoints.iter().map(|url| Endpoint::parse(url)).collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(ClientError::NoEndpoints);
    }
    if !super::store::valid_key(key) {
        return Err(ClientError::BadKey(key.to_string()));
    }
    if config.shuffle {
        shuffle(&mut endpoints, seed_from_clock());
    }
    let order: Vec<Value> = endpoints.iter().map(|e| e.url.as_str().into()).collect();
    config.log.info("client.endpoints", &[("endpoints", order.into()), ("owner", config.owner.as_str().into())]);
    let mut session = Session { config, endpoints, current: 0, key: key.to_string(), token: None };
    session.acquire()?;
    session.phase(Phase::HandlerStart)?;
    let state = session.call("read", "GET", &format!("/v1/state?key={key}"), None)?;
    let (content, version) = (text_field(&state, "content"), u64_field(&state, "version"));
    let (Some(content), Some(version)) = (content, version) else {
        return Err(session.bad_reply("read", &state));
    };
    session.phase(Phase::BeforeSave)?;
    let new_content = format!("{content}{append}");
    let new_version = session.save(version, &new_content)?;
    session.phase(Phase::AfterSave)?;
    let token = session.token.unwrap_or_default();
    session.call("release", "POST", "/v1/release", Some(json!({"key": key, "token": token})))?;
    let endpoint = session.endpoint().url.clone();
    Ok(Updated { key: key.to_string(), content: new_content, version: new_version, token, endpoint })
}

/// One callback's progress: which endpoint it is on and the lease it holds.
struct Session<'a> {
    config: &'a ClientConfig,
    endpoints: Vec<Endpoint>,
    current: usize,
    key: String,
    token: Option<u64>,
}

impl Session<'_> {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoints[self.current]
    }

    fn acquire(&mut self) -> Result<(), ClientError> {
        let ttl_ms = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        let body = json!({"key": self.key, "owner": self.config.owner, "ttl_ms": ttl_ms});
        let reply = self.call("acquire", "POST", "/v1/acquire", Some(body))?;
        let token = u64_field(&reply, "token").ok_or_else(|| self.bad_reply("acquire", &reply))?;
        self.token = Some(token);
        Ok(())
    }

    /// Writes the new content at `version`. A 409 "stale version" after a
    /// failover may mean the first attempt landed before its answer was lost,
    /// so the state is read back: if it holds exactly this write, it counts.
    fn save(&mut self, version: u64, content: &str) -> Result<u64, ClientError> {
        let token = self.token.unwrap_or_default();
        let body = json!({"key": self.key, "token": token, "version": version, "content": content});
        match self.call("write", "POST", "/v1/write", Some(body)) {
            Ok(reply) => u64_field(&reply, "version").ok_or_else(|| self.bad_reply("write", &reply)),
            Err(ClientError::Refused { status: 409, body, .. }) if body.contains("stale version") => {
                let path = format!("/v1/state?key={}", self.key);
                let state = self.call("read", "GET", &path, None)?;
                let landed =
                    text_field(&state, "content") == Some(content) && u64_field(&state, "version") == Some(version + 1);
                if landed {
                    return Ok(version + 1);
                }
                let endpoint = self.endpoint().url.clone();
                Err(ClientError::Refused { op: "write".to_string(), endpoint, status: 409, body })
            }
            Err(e) => Err(e),
        }
    }

    /// Sends one request, failing over to the next endpoint (and re-acquiring
    /// the lease there) while the current one is unreachable or draining.
    fn call(&mut self, op: &str, method: &str, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        let body_text = body.map(|b| b.to_string());
        loop {
            let endpoint = self.endpoint().clone();
            let outcome = endpoint.call(method, path, body_text.as_deref(), self.config.request_timeout);
            let error = match outcome {
                Ok(Reply { status: 200, body }) => {
                    self.log_success(&endpoint, op);
                    return serde_json::from_str(&body).map_err(|_| ClientError::BadReply {
                        op: op.to_string(),
                        endpoint: endpoint.url.clone(),
                        body,
                    });
                }
                Ok(Reply { status: 503, body }) => format!("503: {body}"),
                Ok(Reply { status, body }) => {
                    self.log_error(&endpoint, op, &format!("{status}: {body}"), Some(status));
                    return Err(ClientError::Refused { op: op.to_string(), endpoint: endpoint.url, status, body });
                }
                Err(e) if e.is_transport() => e.to_string(),
                Err(e) => return Err(e.into()),
            };
            self.log_error(&endpoint, op, &error, None);
            self.fail_over(op, &endpoint, error)?;
        }
    }

    /// Moves to the next endpoint and, mid-callback, re-acquires the lease there.
    fn fail_over(&mut self, op: &str, from: &Endpoint, error: String) -> Result<(), ClientError> {
        let unreachable = || ClientError::Unreachable { op: op.to_string(), endpoint: from.url.clone(), error };
        if self.config.bugs.contains(&ClientBug::NoFailover) || self.current + 1 >= self.endpoints.len() {
            return Err(unreachable());
        }
        self.current += 1;
        let to = self.endpoint().url.clone();
        self.config
            .log
            .warn("client.failover", &[("from", from.url.as_str().into()), ("to", to.into()), ("op", op.into())]);
        if op != "acquire" && self.token.is_some() {
            self.acquire()?;
        }
        Ok(())
    }

    /// Logs reaching `phase` and, if told to hold there, waits for the hold file.
    fn phase(&self, phase: Phase) -> Result<(), ClientError> {
        let endpoint = self.endpoint().url.as_str();
        self.config.log.info("client.phase", &[("phase", phase.name().into()), ("endpoint", endpoint.into())]);
        let Some(hold) = self.config.hold.as_ref().filter(|hold| hold.phase == phase) else {
            return Ok(());
        };
        let file = hold.file.display().to_string();
        self.config.log.info("client.hold", &[("phase", phase.name().into()), ("file", file.clone().into())]);
        let started = Instant::now();
        while !hold.file.exists() {
            if started.elapsed() >= self.config.hold_timeout {
                let waited_ms = started.elapsed().as_millis();
                return Err(ClientError::HoldTimeout { phase: phase.name(), file: hold.file.clone(), waited_ms });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.config.log.info("client.resume", &[("phase", phase.name().into()), ("file", file.into())]);
        Ok(())
    }

    fn log_success(&self, endpoint: &Endpoint, op: &str) {
        self.config.log.info("client.http.success", &[("endpoint", endpoint.url.as_str().into()), ("op", op.into())]);
    }

    fn log_error(&self, endpoint: &Endpoint, op: &str, error: &str, status: Option<u16>) {
        let mut fields = vec![("endpoint", endpoint.url.as_str().into()), ("op", op.into()), ("error", error.into())];
        if let Some(status) = status {
            fields.push(("status", status.into()));
        }
        self.config.log.error("client.http.error", &fields);
    }

    fn bad_reply(&self, op: &str, reply: &Value) -> ClientError {
        ClientError::BadReply { op: op.to_string(), endpoint: self.endpoint().url.clone(), body: reply.to_string() }
    }
}

fn u64_field(value: &Value, name: &str) -> Option<u64> {
    value.get(name).and_then(Value::as_u64)
}

fn text_field<'v>(value: &'v Value, name: &str) -> Option<&'v str> {
    value.get(name).and_then(Value::as_str)
}

fn seed_from_clock() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) ^ (u64::from(std::process::id()) << 32) | 1
}

/// Fisher-Yates with xorshift64: `--shuffle` needs no more than an unpredictable order.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let j = usize::try_from(seed % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_round_trip() {
        for phase in Phase::ALL {
            assert_eq!(phase.name().parse::<Phase>(), Ok(phase));
        }
        assert!("nope".parse::<Phase>().unwrap_err().contains("before-save"));
    }

    #[test]
    fn shuffle_permutes() {
        for seed in 1..50 {
            let mut items = [1, 2, 3, 4];
            shuffle(&mut items, seed);
            items.sort_unstable();
            assert_eq!(items, [1, 2, 3, 4]);
        }
        let orders: BTreeSet<Vec<i32>> = (1..50)
            .map(|seed| {
                let mut items = vec![1, 2, 3];
                shuffle(&mut items, seed);
                items
            })
            .collect();
        assert!(orders.len() > 1, "{orders:?}");
    }

    #[test]
    fn no_endpoints_and_bad_urls_fail_before_any_request() {
        let log = Logger::memory();
        let config = ClientConfig::new(vec![]).with_log(log.clone());
        assert!(matches!(update(&config, "k", "x"), Err(ClientError::NoEndpoints)));
        let config = ClientConfig::new(vec!["ftp://x:1".to_string()]).with_log(log.clone());
        assert!(matches!(update(&config, "k", "x"), Err(ClientError::BadEndpoint(_))));
        assert!(log.lines().is_empty());
    }
}
