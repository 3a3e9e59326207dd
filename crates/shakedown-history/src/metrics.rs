//! A run's metrics as one flat, ordered map of named numbers, so tables,
//! limits and baselines treat them all alike.
//!
//! Throughput and latency come from the history ([`Metrics::of_history`]);
//! the runner adds each service's peak RSS and CPU time
//! ([`Metrics::add_service`]) from its /proc samples. Names:
//!
//! - `ops.per_s`: operations completed ok per second of workload time (from the
//!   first invocation to the last completion); higher is better.
//! - `ops.<f>.per_s`: the same for one action.
//! - `latency.<f>.p50_ms`, `latency.<f>.p99_ms`: ok operations' latency
//!   (invocation to completion), nearest-rank percentiles; lower is better.
//! - `service.<name>.peak_rss_bytes`, `service.<name>.cpu_ms`: lower is better.
//!
//! ```
//! use shakedown_history::metrics::Metrics;
//! use shakedown_history::{Header, HistoryBuilder, OpType, ProcessId};
//! use serde_json::json;
//!
//! let mut b = HistoryBuilder::new(Header::new("doc", 7));
//! b.invoke(0, ProcessId(0), "alice", "add", json!(1));
//! b.complete(500_000_000, ProcessId(0), OpType::Ok, json!(null), None);
//! let mut m = Metrics::of_history(&b.finish());
//! m.add_service("kv", 8 << 20, 120);
//! assert_eq!(m.value("ops.per_s"), Some(2.0));
//! assert_eq!(m.value("latency.add.p99_ms"), Some(500.0));
//! assert_eq!(m.get("service.kv.peak_rss_bytes").unwrap().display(), "8.0 MiB");
//! ```

use crate::{History, OpType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which direction of change is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

/// One measured number, its unit and which way is better.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub value: f64,
    /// "ops/s", "ms" or "bytes".
    pub unit: String,
    pub better: Better,
}

impl Metric {
    pub fn new(value: f64, unit: &str, better: Better) -> Metric {
        Metric { value, unit: unit.to_string(), better }
    }

    /// The value for people: "12.5 MiB", "3.2 ms", "850.0 ops/s".
    pub fn display(&self) -> String {
        match self.unit.as_str() {
            "bytes" => human_bytes(self.value),
            unit => format!("{:.1} {unit}", self.value),
        }
    }
}

/// Every metric of a run, by name, in name order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metrics(pub BTreeMap<String, Metric>);

/// The `ops/s` unit.
pub const PER_S: &str = "ops/s";

impl Metrics {
    /// Throughput and latency, overall and per action, from the history's
    /// paired operations. A history without operations has none.
    pub fn of_history(history: &History) -> Metrics {
        let mut m = Metrics::default();
        let ops = history.ops();
        let first_invoke = ops.iter().map(|o| o.invoke_time_ns).min();
        let last_done = ops.iter().filter_map(|o| o.completion.as_ref().map(|c| c.time_ns)).max();
        let (Some(first), Some(last)) = (first_invoke, last_done) else { return m };
        let window_s = last.saturating_sub(first) as f64 / 1e9;
        let mut by_f: BTreeMap<&str, (u64, Vec<u64>)> = BTreeMap::new();
        for op in &ops {
            let entry = by_f.entry(op.f.as_str()).or_default();
            let Some(c) = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok) else { continue };
            entry.0 += 1;
            entry.1.push(c.time_ns.saturating_sub(op.invoke_time_ns));
        }
        if window_s > 0.0 {
            let total_ok: u64 = by_f.values().map(|(n, _)| n).sum();
            m.insert("ops.per_s", total_ok as f64 / window_s, PER_S, Better::Higher);
            for (f, (n, _)) in &by_f {
                m.insert(&format!("ops.{f}.per_s"), *n as f64 / window_s, PER_S, Better::Higher);
            }
        }
        for (f, (_, latencies)) in &mut by_f {
            latencies.sort_unstable();
            for (p, name) in [(0.5, "p50_ms"), (0.99, "p99_ms")] {
                if let Some(ns) = percentile(latencies, p) {
                    m.insert(&format!("latency.{f}.{name}"), ns as f64 / 1e6, "ms", Better::Lower);
                }
            }
        }
        m
    }

    /// A service's peak resident memory and CPU time (user plus system).
    pub fn add_service(&mut self, service: &str, peak_rss_bytes: u64, cpu_ms: u64) {
        self.insert(&format!("service.{service}.peak_rss_bytes"), peak_rss_bytes as f64, "bytes", Better::Lower);
        self.insert(&format!("service.{service}.cpu_ms"), cpu_ms as f64, "ms", Better::Lower);
    }

    pub fn insert(&mut self, name: &str, value: f64, unit: &str, better: Better) {
        self.0.insert(name.to_string(), Metric::new(value, unit, better));
    }

    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.0.get(name)
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.get(name).map(|m| m.value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Metric)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds (or replaces) every metric of `other`.
    pub fn extend(&mut self, other: Metrics) {
        self.0.extend(other.0);
    }

    /// The services that have resource metrics, by name.
    pub fn services(&self) -> Vec<String> {
        let names = self.0.keys().filter_map(|k| k.strip_prefix("service.")?.strip_suffix(".peak_rss_bytes"));
        names.map(str::to_string).collect()
    }
}

/// "512.0 KiB", "12.5 MiB", "1.2 GiB".
fn human_bytes(bytes: f64) -> String {
    const KIB: f64 = 1024.0;
    match bytes {
        b if b < KIB * KIB => format!("{:.1} KiB", b / KIB),
        b if b < KIB * KIB * KIB => format!("{:.1} MiB", b / (KIB * KIB)),
        b => format!("{:.1} GiB", b / (KIB * KIB * KIB)),
    }
}

/// The nearest-rank percentile of sorted values; `None` when empty.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, HistoryBuilder, ProcessId};
    use serde_json::json;

    const MS: u64 = 1_000_000;

    /// Ops as (process, f, invoke ms, complete ms, type), in time order per process.
    fn history(ops: &[(u64, &str, u64, u64, OpType)]) -> History {
        let mut events: Vec<(u64, bool, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            events.push((op.2, true, i));
            events.push((op.3, false, i));
        }
        events.sort();
        let mut b = HistoryBuilder::new(Header::new("t", 1));
        for (t, invoke, i) in events {
            let (p, f, _, _, ty) = ops[i];
            if invoke {
                b.invoke(t * MS, ProcessId(p), "a", f, json!(null));
            } else {
                b.complete(t * MS, ProcessId(p), ty, json!(null), None);
            }
        }
        b.finish()
    }

    #[test]
    fn throughput_counts_ok_ops_over_the_workload_window() {
        let h = history(&[
            (0, "add", 0, 100, OpType::Ok),
            (0, "add", 100, 300, OpType::Ok),
            (1, "read", 50, 150, OpType::Ok),
            (1, "read", 150, 400, OpType::Fail),
            (2, "add", 200, 2000, OpType::Info),
        ]);
        let m = Metrics::of_history(&h);
        assert_eq!(m.value("ops.per_s"), Some(1.5), "3 ok ops in 2s");
        assert_eq!(m.value("ops.add.per_s"), Some(1.0));
        assert_eq!(m.value("ops.read.per_s"), Some(0.5));
        assert_eq!(m.get("ops.per_s").unwrap().better, Better::Higher);
        assert_eq!(m.value("latency.add.p50_ms"), Some(100.0));
        assert_eq!(m.value("latency.add.p99_ms"), Some(200.0));
        assert_eq!(m.value("latency.read.p99_ms"), Some(100.0), "failed ops have no latency");
        assert_eq!(m.get("latency.read.p99_ms").unwrap().better, Better::Lower);
    }

    #[test]
    fn an_empty_history_has_no_metrics_and_services_are_listed() {
        let mut m = Metrics::of_history(&history(&[]));
        assert!(m.is_empty());
        m.add_service("kv", 1 << 20, 30);
        m.add_service("db", 2 << 20, 40);
        assert_eq!(m.services(), ["db", "kv"]);
        assert_eq!(m.get("service.kv.cpu_ms").unwrap().display(), "30.0 ms");
        assert_eq!(m.len(), 4);
        let bytes = |b: f64| Metric::new(b, "bytes", Better::Lower).display();
        assert_eq!(
            (bytes(65536.0), bytes(1.5 * 1048576.0), bytes(3.0 * 1073741824.0)),
            ("64.0 KiB".into(), "1.5 MiB".into(), "3.0 GiB".into())
        );
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Some(50));
        assert_eq!(percentile(&v, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn metrics_serialize_as_a_flat_map() {
        let mut m = Metrics::default();
        m.insert("ops.per_s", 2.5, PER_S, Better::Higher);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(text, r#"{"ops.per_s":{"value":2.5,"unit":"ops/s","better":"higher"}}"#);
        assert_eq!(serde_json::from_str::<Metrics>(&text).unwrap(), m);
    }
}
