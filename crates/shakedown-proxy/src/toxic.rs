//! Toxics as configured: name, type with attributes, stream and toxicity, in
//! toxiproxy 2.x's JSON shape.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ProxyError;

/// The largest duration attribute accepted, so deadlines never overflow: one day.
const MAX_MS: u64 = 24 * 60 * 60 * 1000;

/// Which way a toxic acts: `Upstream` on client-to-server bytes,
/// `Downstream` on server-to-client bytes (toxiproxy's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Upstream,
    #[default]
    Downstream,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// A toxic's type and attributes; toxiproxy's names and units plus `slow_connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToxicKind {
    /// Delays each chunk by `latency_ms` plus a uniform ±`jitter_ms`.
    Latency { latency_ms: u64, jitter_ms: u64 },
    /// Limits throughput to `rate_kbs` KB/s (0: no limit).
    Bandwidth { rate_kbs: u64 },
    /// Delays closing the other side by `delay_ms` once this side has closed.
    SlowClose { delay_ms: u64 },
    /// Forwards nothing and closes after `timeout_ms`; 0 holds until removed.
    Timeout { timeout_ms: u64 },
    /// Resets both sockets (RST, SO_LINGER 0) `timeout_ms` after it applies.
    ResetPeer { timeout_ms: u64 },
    /// Cuts chunks into pieces of `average_size` ± `size_variation` bytes, `delay_us` apart.
    Slicer { average_size: u64, size_variation: u64, delay_us: u64 },
    /// Closes the connection once `bytes` bytes have passed.
    LimitData { bytes: u64 },
    /// Waits `delay_ms` before connecting upstream (the stream does not matter).
    SlowConnect { delay_ms: u64 },
}

/// One toxic on a link.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    pub name: String,
    pub kind: ToxicKind,
    pub stream: Stream,
    /// Probability in 0..=1 that the toxic applies to a connection.
    pub toxicity: f64,
}

/// A toxic in toxiproxy's JSON shape; every field optional so that defaults
/// and partial updates read the same way.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ToxicJson {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub stream: Option<String>,
    pub toxicity: Option<f64>,
    pub attributes: Option<Map<String, Value>>,
}

impl Toxic {
    /// A toxic with toxicity 1.
    pub fn new(name: impl Into<String>, kind: ToxicKind, stream: Stream) -> Toxic {
        Toxic { name: name.into(), kind, stream, toxicity: 1.0 }
    }

    pub fn type_name(&self) -> &'static str {
        self.kind.type_name()
    }

    /// Reads a toxic as toxiproxy's `POST /proxies/{name}/toxics` does: the
    /// stream defaults to downstream, the name to `<type>_<stream>`, toxicity to 1.
    pub fn from_json(json: ToxicJson) -> Result<Toxic, ProxyError> {
        let type_name = json.kind.ok_or_else(|| invalid("missing required field: type".into()))?;
        let stream = parse_stream(json.stream.as_deref())?;
        let attributes = json.attributes.unwrap_or_default();
        let kind = ToxicKind::parse(&type_name, &attributes)?;
        let name = json.name.filter(|n| !n.is_empty()).unwrap_or_else(|| format!("{type_name}_{}", stream.as_str()));
        let toxic = Toxic { name, kind, stream, toxicity: json.toxicity.unwrap_or(1.0) };
        toxic.validate()?;
        Ok(toxic)
    }

    /// Applies a partial update (toxicity, stream, attributes) the way
    /// toxiproxy's `POST /proxies/{name}/toxics/{toxic}` does; name and type stay.
    pub fn updated(&self, patch: ToxicJson) -> Result<Toxic, ProxyError> {
        if patch.kind.as_deref().is_some_and(|t| t != self.type_name()) {
            return Err(invalid(format!("change the type of toxic {:?}: remove and add it instead", self.name)));
        }
        let mut attributes = self.kind.attributes();
        attributes.extend(patch.attributes.unwrap_or_default());
        let stream = match patch.stream.as_deref() {
            Some(s) => parse_stream(Some(s))?,
            None => self.stream,
        };
        let kind = ToxicKind::parse(self.type_name(), &attributes)?;
        let toxic = Toxic { name: self.name.clone(), kind, stream, toxicity: patch.toxicity.unwrap_or(self.toxicity) };
        toxic.validate()?;
        Ok(toxic)
    }

    /// The toxic in toxiproxy's JSON shape.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "type": self.type_name(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
            "attributes": Value::Object(self.kind.attributes()),
        })
    }

    fn validate(&self) -> Result<(), ProxyError> {
        if !(0.0..=1.0).contains(&self.toxicity) {
            return Err(invalid(format!("toxicity must be between 0 and 1, got {}", self.toxicity)));
        }
        if self.name.len() > 256 {
            return Err(invalid("toxic names must be at most 256 bytes".into()));
        }
        Ok(())
    }
}

impl ToxicKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::SlowClose { .. } => "slow_close",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
            ToxicKind::SlowConnect { .. } => "slow_connect",
        }
    }

    /// The attribute names of a type, in toxiproxy's JSON spelling.
    fn attribute_names(type_name: &str) -> Option<&'static [&'static str]> {
        Some(match type_name {
            "latency" => &["latency", "jitter"],
            "bandwidth" => &["rate"],
            "slow_close" | "slow_connect" => &["delay"],
            "timeout" | "reset_peer" => &["timeout"],
            "slicer" => &["average_size", "size_variation", "delay"],
            "limit_data" => &["bytes"],
            _ => return None,
        })
    }

    /// Reads a type's attributes; absent ones are 0, unknown ones an error.
    fn parse(type_name: &str, attributes: &Map<String, Value>) -> Result<ToxicKind, ProxyError> {
        let names =
            Self::attribute_names(type_name).ok_or_else(|| invalid(format!("invalid toxic type: {type_name:?}")))?;
        if let Some(unknown) = attributes.keys().find(|k| !names.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown attribute {unknown:?} for toxic type {type_name}, expected {names:?}"
            )));
        }
        let get = |key: &str| attribute(attributes, key);
        let ms = |key: &str| get(key).and_then(|v| at_most(key, v, MAX_MS));
        Ok(match type_name {
            "latency" => ToxicKind::Latency { latency_ms: ms("latency")?, jitter_ms: ms("jitter")? },
            "bandwidth" => ToxicKind::Bandwidth { rate_kbs: get("rate")? },
            "slow_close" => ToxicKind::SlowClose { delay_ms: ms("delay")? },
            "slow_connect" => ToxicKind::SlowConnect { delay_ms: ms("delay")? },
            "timeout" => ToxicKind::Timeout { timeout_ms: ms("timeout")? },
            "reset_peer" => ToxicKind::ResetPeer { timeout_ms: ms("timeout")? },
            "limit_data" => ToxicKind::LimitData { bytes: get("bytes")? },
            _ => parse_slicer(&get)?,
        })
    }

    /// The attributes in toxiproxy's JSON spelling.
    pub fn attributes(&self) -> Map<String, Value> {
        let pairs: Vec<(&str, u64)> = match *self {
            ToxicKind::Latency { latency_ms, jitter_ms } => vec![("latency", latency_ms), ("jitter", jitter_ms)],
            ToxicKind::Bandwidth { rate_kbs } => vec![("rate", rate_kbs)],
            ToxicKind::SlowClose { delay_ms } | ToxicKind::SlowConnect { delay_ms } => vec![("delay", delay_ms)],
            ToxicKind::Timeout { timeout_ms } | ToxicKind::ResetPeer { timeout_ms } => vec![("timeout", timeout_ms)],
            ToxicKind::Slicer { average_size, size_variation, delay_us } => {
                vec![("average_size", average_size), ("size_variation", size_variation), ("delay", delay_us)]
            }
            ToxicKind::LimitData { bytes } => vec![("bytes", bytes)],
        };
        pairs.into_iter().map(|(k, v)| (k.to_string(), Value::from(v))).collect()
    }
}

fn parse_slicer(get: &dyn Fn(&str) -> Result<u64, ProxyError>) -> Result<ToxicKind, ProxyError> {
    let average_size = get("average_size")?;
    if average_size == 0 {
        return Err(invalid("slicer average_size must be at least 1".into()));
    }
    let size_variation = get("size_variation")?;
    if size_variation >= average_size {
        return Err(invalid("slicer size_variation must be below average_size".into()));
    }
    let delay_us = at_most("delay", get("delay")?, MAX_MS * 1000)?;
    Ok(ToxicKind::Slicer { average_size, size_variation, delay_us })
}

/// A non-negative integer attribute; absent is 0. Whole floats (`300.0`) pass,
/// since some clients serialize every number as a float.
fn attribute(attributes: &Map<String, Value>, key: &str) -> Result<u64, ProxyError> {
    let Some(value) = attributes.get(key) else { return Ok(0) };
    if let Some(n) = value.as_u64() {
        return Ok(n);
    }
    match value.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        _ => Err(invalid(format!("attribute {key:?} must be a non-negative integer, got {value}"))),
    }
}

fn at_most(key: &str, value: u64, max: u64) -> Result<u64, ProxyError> {
    if value > max {
        return Err(invalid(format!("attribute {key:?} must be at most {max}, got {value}")));
    }
    Ok(value)
}

fn parse_stream(stream: Option<&str>) -> Result<Stream, ProxyError> {
    match stream {
        None | Some("") | Some("downstream") => Ok(Stream::Downstream),
        Some("upstream") => Ok(Stream::Upstream),
        Some(other) => Err(invalid(format!("stream was invalid ({other:?}), can be either upstream or downstream"))),
    }
}

fn invalid(reason: String) -> ProxyError {
    ProxyError::InvalidToxic(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Toxic, ProxyError> {
        Toxic::from_json(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn defaults_follow_toxiproxy() {
        let t = parse(r#"{"type":"latency","attributes":{"latency":300}}"#).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(t.kind, ToxicKind::Latency { latency_ms: 300, jitter_ms: 0 });
    }

    #[test]
    fn json_round_trips() {
        let t = parse(
            r#"{"name":"s","type":"slicer","stream":"upstream","toxicity":0.5,
            "attributes":{"average_size":10,"size_variation":3,"delay":7}}"#,
        )
        .unwrap();
        let again = Toxic::from_json(serde_json::from_value(t.to_json()).unwrap()).unwrap();
        assert_eq!(t, again);
    }

    #[test]
    fn rejects_bad_toxics() {
        for (json, needle) in [
            (r#"{"attributes":{}}"#, "missing required field: type"),
            (r#"{"type":"nope"}"#, "invalid toxic type"),
            (r#"{"type":"latency","stream":"sideways"}"#, "stream was invalid"),
            (r#"{"type":"latency","toxicity":1.5}"#, "toxicity must be between 0 and 1"),
            (r#"{"type":"latency","attributes":{"latncy":3}}"#, "unknown attribute"),
            (r#"{"type":"latency","attributes":{"latency":-3}}"#, "non-negative integer"),
            (r#"{"type":"latency","attributes":{"latency":"3"}}"#, "non-negative integer"),
            (r#"{"type":"latency","attributes":{"latency":1e300}}"#, "non-negative integer"),
            (r#"{"type":"timeout","attributes":{"timeout":99999999999}}"#, "at most"),
            (r#"{"type":"slicer","attributes":{"average_size":0}}"#, "average_size must be at least 1"),
            (r#"{"type":"slicer","attributes":{"average_size":4,"size_variation":4}}"#, "below average_size"),
        ] {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn update_merges_attributes() {
        let t = parse(r#"{"type":"latency","attributes":{"latency":300,"jitter":20}}"#).unwrap();
        let patch = serde_json::from_str(r#"{"attributes":{"latency":5},"toxicity":0.25}"#).unwrap();
        let u = t.updated(patch).unwrap();
        assert_eq!(u.kind, ToxicKind::Latency { latency_ms: 5, jitter_ms: 20 });
        assert_eq!(u.toxicity, 0.25);
        let retype = serde_json::from_str(r#"{"type":"bandwidth"}"#).unwrap();
        assert!(t.updated(retype).is_err());
    }
}
