//! Faults as scenario files write them: process faults, proxy toxics, HTTP
//! faults, partitions, clock and disk faults; and the links, network and disks
//! they act on.

use crate::limits::MAX_CLOCK_OFFSET;
use crate::template::Template;
use crate::values::{Dur, Names};
use serde::{Deserialize, Deserializer};
use std::fmt;
use toml::Spanned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL, then restart.
    Kill,
    /// SIGTERM with the stop profile's grace, then restart.
    Terminate,
    /// SIGINT, then restart.
    Interrupt,
    /// SIGSTOP for `for`, then SIGCONT.
    Pause,
    /// Stop with the stop profile, then start again.
    Restart,
    /// Adds `toxic` to proxy links for `for`.
    Toxic,
    /// A proxy link refuses connections and cuts live ones for `for`.
    Down,
    /// An HTTP link answers with `http`'s fault for `for`.
    Http,
    /// Drops packets between namespaced services, by `mode`, for `for`.
    Partition,
    /// Shifts a service's clock by `offset` and runs it at `rate`, for `for`.
    Clock,
    /// Fills a service's `disk` tmpfs, leaving `leave` bytes, for `for`.
    DiskFull,
    /// Swaps each target service, in order, to the binaries of version `to`
    /// (`{bin.NAME}`) and restarts it, waiting `for` between nodes.
    Upgrade,
}

/// What a fault kind acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    Service,
    Link,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Terminate => "terminate",
            FaultKind::Interrupt => "interrupt",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart",
            FaultKind::Toxic => "toxic",
            FaultKind::Down => "down",
            FaultKind::Http => "http",
            FaultKind::Partition => "partition",
            FaultKind::Clock => "clock",
            FaultKind::DiskFull => "disk-full",
            FaultKind::Upgrade => "upgrade",
        }
    }

    pub fn target(self) -> FaultTarget {
        match self {
            FaultKind::Toxic | FaultKind::Down | FaultKind::Http => FaultTarget::Link,
            _ => FaultTarget::Service,
        }
    }

    /// The keys of `[[fault]]` this kind reads, besides `kind`, `target` and the schedule.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            FaultKind::Toxic => &["toxic", "stream", "toxicity"],
            FaultKind::Http => &["http"],
            FaultKind::Partition => &["mode", "cut"],
            FaultKind::Clock => &["offset", "rate"],
            FaultKind::DiskFull => &["leave"],
            FaultKind::Upgrade => &["to"],
            _ => &[],
        }
    }
}

/// A fault on a fixed timeline (`at`) or drawn from the seed (`every`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// A name `fault` and `heal` steps refer to; a named fault with no
    /// schedule is injected only by steps.
    pub name: Option<Spanned<String>>,
    /// Fire once, when this trigger holds (a log line, N operations, a phase).
    pub when: Option<Spanned<crate::step::TriggerSpec>>,
    /// Matrix guards: the fault is injected only in matching cells.
    pub only: Option<crate::matrix::Guard>,
    pub except: Option<crate::matrix::Guard>,
    /// The services (or links, for toxic, down and http) to draw from; a
    /// partition's nodes.
    pub target: Spanned<Names>,
    /// Fire once at these offsets from the start of the workload.
    pub at: Option<Spanned<Vec<Dur>>>,
    /// Fire repeatedly, with intervals drawn from the seed in [every/2, 3*every/2].
    pub every: Option<Spanned<Dur>>,
    /// How long the fault lasts: downtime before restart, pause length, how
    /// long a toxic, partition, clock shift or full disk stays.
    #[serde(rename = "for")]
    pub duration: Option<Dur>,
    /// toxic: the toxic to add.
    pub toxic: Option<Spanned<ToxicSpec>>,
    /// toxic: which way the toxic acts (default both).
    pub stream: Option<Stream>,
    /// toxic: the probability that a connection is affected (default 1).
    pub toxicity: Option<Spanned<f64>>,
    /// http: the fault the HTTP layer injects.
    pub http: Option<Spanned<HttpFaultSpec>>,
    /// partition: how nodes are split (default halves).
    pub mode: Option<PartitionMode>,
    /// partition: these nodes are cut off from the rest of `target`, both
    /// ways, instead of a split drawn by `mode`; for scripts that need to know
    /// which side a client is on.
    pub cut: Option<Spanned<Names>>,
    /// clock: the shift, e.g. "-5s" or "+2m".
    pub offset: Option<SignedDur>,
    /// clock: how fast the clock runs (default 1).
    pub rate: Option<Spanned<f64>>,
    /// disk-full: bytes left free (default 0).
    pub leave: Option<ByteSize>,
    /// upgrade: the `[version.NAME]` the targets move to.
    pub to: Option<Spanned<String>>,
}

impl FaultSpec {
    /// Keys that are set, for checking they fit the kind.
    pub fn set_keys(&self) -> Vec<&'static str> {
        let set = [
            ("toxic", self.toxic.is_some()),
            ("stream", self.stream.is_some()),
            ("toxicity", self.toxicity.is_some()),
            ("http", self.http.is_some()),
            ("mode", self.mode.is_some()),
            ("cut", self.cut.is_some()),
            ("offset", self.offset.is_some()),
            ("rate", self.rate.is_some()),
            ("leave", self.leave.is_some()),
            ("to", self.to.is_some()),
        ];
        set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
    }
}

/// Which way through a proxy link a toxic acts: `upstream` is client to
/// service, `downstream` service to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Upstream,
    Downstream,
    #[default]
    Both,
}

/// A toxic, toxiproxy's names and attributes plus `slow-connect`. Sizes in
/// bytes, bandwidth in KB/s.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ToxicSpec {
    /// Delays every chunk by `latency` ± `jitter`.
    Latency { latency: Dur, jitter: Option<Dur> },
    /// Limits throughput to `rate` KB/s.
    Bandwidth { rate: u64 },
    /// Delays closing a connection by `delay`.
    #[serde(alias = "slow_close")]
    SlowClose { delay: Dur },
    /// Stops all data, closing after `timeout` (absent: holds until removed).
    Timeout { timeout: Option<Dur> },
    /// Resets the connection (RST) after `timeout`.
    #[serde(alias = "reset_peer")]
    ResetPeer { timeout: Option<Dur> },
    /// Cuts data into chunks of `average-size` ± `size-variation` bytes, `delay` apart.
    Slicer {
        #[serde(rename = "average-size", alias = "average_size")]
        average_size: u64,
        #[serde(rename = "size-variation", alias = "size_variation")]
        size_variation: Option<u64>,
        delay: Option<Dur>,
    },
    /// Closes a connection after `bytes` bytes.
    #[serde(alias = "limit_data")]
    LimitData { bytes: u64 },
    /// Waits `delay` before connecting to the upstream.
    #[serde(alias = "slow_connect")]
    SlowConnect { delay: Dur },
}

impl ToxicSpec {
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicSpec::Latency { .. } => "latency",
            ToxicSpec::Bandwidth { .. } => "bandwidth",
            ToxicSpec::SlowClose { .. } => "slow_close",
            ToxicSpec::Timeout { .. } => "timeout",
            ToxicSpec::ResetPeer { .. } => "reset_peer",
            ToxicSpec::Slicer { .. } => "slicer",
            ToxicSpec::LimitData { .. } => "limit_data",
            ToxicSpec::SlowConnect { .. } => "slow_connect",
        }
    }
}

/// An HTTP fault: exactly one of `status`, `delay`, `abort`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpFaultSpec {
    /// Answer with this status without forwarding (429, 503, ...).
    pub status: Option<u16>,
    /// With `status`: a `Retry-After` header, in seconds.
    pub retry_after: Option<u32>,
    /// Wait this long before forwarding.
    pub delay: Option<Dur>,
    /// Close the connection without an answer: `before` forwarding, or
    /// `after` the service has handled the request.
    pub abort: Option<AbortWhen>,
    /// The probability a request is hit (default 1).
    pub probability: Option<f64>,
    /// Only requests with this method.
    pub method: Option<String>,
    /// Only requests whose path starts with this.
    pub path_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AbortWhen {
    Before,
    After,
}

/// How a partition splits its nodes; which nodes is drawn from the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionMode {
    /// One node cut off from the others.
    Isolate,
    /// Two halves that cannot reach each other.
    #[default]
    Halves,
    /// Two halves, and one node in both.
    Bridge,
    /// Each node sees a majority, and no two see the same one.
    MajoritiesRing,
    /// One node's packets to another are dropped; the reverse direction flows.
    OneWay,
}

impl PartitionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionMode::Isolate => "isolate",
            PartitionMode::Halves => "halves",
            PartitionMode::Bridge => "bridge",
            PartitionMode::MajoritiesRing => "majorities-ring",
            PartitionMode::OneWay => "one-way",
        }
    }
}

/// A proxy link: a loopback port (`{link.NAME.port}`) forwarding to `upstream`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// `host:port` the link forwards to, e.g. "127.0.0.1:{service.db.port}".
    pub upstream: Spanned<Template>,
    /// `tcp` (default) for toxics and down, `http` for HTTP faults.
    #[serde(default)]
    pub kind: LinkKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    #[default]
    Tcp,
    Http,
}

/// `[network]`: the Linux namespace tier.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Each service in its own network namespace, with its own address
    /// (`{host}`, `{service.NAME.host}`) on a bridge the run creates.
    #[serde(default)]
    pub namespaces: bool,
}

/// A service's size-limited tmpfs, mounted at `path` in its own mount namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    pub path: Template,
    pub size: ByteSize,
}

/// A signed duration: `"-5s"`, `"+2m"`, `"500ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignedDur {
    pub negative: bool,
    pub magnitude: std::time::Duration,
}

impl SignedDur {
    pub fn as_millis(self) -> i64 {
        let ms = i64::try_from(self.magnitude.as_millis()).unwrap_or(i64::MAX);
        if self.negative {
            -ms
        } else {
            ms
        }
    }
}

impl fmt::Display for SignedDur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.negative { "-" } else { "+" };
        write!(f, "{sign}{}", humantime::format_duration(self.magnitude))
    }
}

impl<'de> Deserialize<'de> for SignedDur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SignedDur, D::Error> {
        let text = String::deserialize(d)?;
        let trimmed = text.trim();
        let (negative, rest) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
        };
        let magnitude = humantime::parse_duration(rest.trim()).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid offset {text:?} ({e}); expected a signed duration like \"-5s\" or \"+2m\""
            ))
        })?;
        if magnitude > MAX_CLOCK_OFFSET {
            return Err(serde::de::Error::custom(format!(
                "offset {text:?} is above the maximum of {} either way",
                crate::limits::describe(MAX_CLOCK_OFFSET)
            )));
        }
        Ok(SignedDur { negative, magnitude })
    }
}

/// A size in bytes: `4096`, `"512KiB"`, `"8MiB"`, `"1GiB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let bad = || format!("invalid size {text:?}; expected bytes like 4096, \"512KiB\", \"8MiB\" or \"1GB\"");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" | "K" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" | "M" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" | "G" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("4096"), Ok(ByteSize(4096)));
        assert_eq!(ByteSize::parse("8MiB"), Ok(ByteSize(8 << 20)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert!(ByteSize::parse("8 furlongs").is_err());
        assert!(ByteSize::parse("99999999999999GiB").is_err());
        assert!(ByteSize::parse("").is_err());
    }

    #[test]
    fn signed_durations_keep_their_sign() {
        let parse = |s: &str| SignedDur::deserialize(toml::Value::String(s.into()));
        assert_eq!(parse("-5s").unwrap().as_millis(), -5000);
        assert_eq!(parse("+2m").unwrap().as_millis(), 120_000);
        assert_eq!(parse("250ms").unwrap().as_millis(), 250);
        assert!(parse("-").is_err());
    }
}
