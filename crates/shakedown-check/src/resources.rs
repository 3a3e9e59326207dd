//! `resources`: each service's peak resident memory and CPU time, sampled
//! from /proc during the run, within limits (`max_rss`, `max_cpu`).
//!
//! Reads the run's metrics (`service.<name>.peak_rss_bytes`,
//! `service.<name>.cpu_ms`). Invalid names every service over a limit, with
//! its peak and the limit; unknown when the service (or, without `service`,
//! every service) was never sampled.
//!
//! ```
//! use shakedown_check::resources::ResourcesCheck;
//! use shakedown_check::{Check, CheckInput, Verdict};
//! use shakedown_history::metrics::Metrics;
//! use shakedown_history::{Header, HistoryBuilder};
//!
//! let history = HistoryBuilder::new(Header::new("doc", 1)).finish();
//! let mut metrics = Metrics::default();
//! metrics.add_service("kv", 300 << 20, 50);
//! let check = ResourcesCheck { max_rss_bytes: Some(200 << 20), ..ResourcesCheck::default() };
//! let r = check.check(&CheckInput::new(&history).with_metrics(&metrics));
//! assert_eq!(r.verdict, Verdict::Invalid);
//! assert_eq!(r.summary, "kv peak RSS 300.0 MiB over the limit 200.0 MiB");
//! ```

use crate::{list_bounded, Check, CheckInput, CheckResult, Verdict};
use serde_json::json;
use shakedown_history::metrics::{Better, Metric, Metrics};

/// Limits on services' resource use; a limit left `None` is not checked.
#[derive(Debug, Clone, Default)]
pub struct ResourcesCheck {
    /// One service; every sampled service when `None`.
    pub service: Option<String>,
    pub max_rss_bytes: Option<u64>,
    pub max_cpu_ms: Option<u64>,
}

impl Check for ResourcesCheck {
    fn kind(&self) -> &'static str {
        "resources"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let empty = Metrics::default();
        let metrics = input.metrics.unwrap_or(&empty);
        let services = match &self.service {
            Some(s) => metrics.services().into_iter().filter(|n| n == s).collect(),
            None => metrics.services(),
        };
        let limits = json!({ "max_rss_bytes": self.max_rss_bytes, "max_cpu_ms": self.max_cpu_ms });
        if services.is_empty() {
            let whom = self.service.as_ref().map_or_else(|| "no service".to_string(), |s| format!("service {s}"));
            return CheckResult::new(
                self.kind(),
                Verdict::Unknown,
                format!("{whom} was sampled: no resource use to judge (did it run?)"),
                json!({ "limits": limits, "services": {} }),
            );
        }
        let mut over = Vec::new();
        let mut seen = serde_json::Map::new();
        for name in &services {
            let rss = metrics.get(&format!("service.{name}.peak_rss_bytes"));
            let cpu = metrics.get(&format!("service.{name}.cpu_ms"));
            seen.insert(
                name.clone(),
                json!({ "peak_rss_bytes": rss.map(|m| m.value), "cpu_ms": cpu.map(|m| m.value) }),
            );
            over.extend(exceeds(name, "peak RSS", "peak_rss_bytes", rss, self.max_rss_bytes, "bytes"));
            over.extend(exceeds(name, "CPU", "cpu_ms", cpu, self.max_cpu_ms, "ms"));
        }
        let details = |over: Vec<serde_json::Value>| json!({ "limits": limits, "services": seen, "over": over });
        if over.is_empty() {
            let summary = format!("{} within the limits ({})", services.join(", "), self.describe_limits());
            return CheckResult::new(self.kind(), Verdict::Valid, summary, details(Vec::new()));
        }
        let lines: Vec<String> = over.iter().map(|(line, _)| line.clone()).collect();
        let summary = list_bounded(&lines, 3);
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details(over.into_iter().map(|(_, v)| v).collect()))
    }
}

impl ResourcesCheck {
    fn describe_limits(&self) -> String {
        let rss =
            self.max_rss_bytes.map(|b| format!("max_rss {}", Metric::new(b as f64, "bytes", Better::Lower).display()));
        let cpu =
            self.max_cpu_ms.map(|ms| format!("max_cpu {}", Metric::new(ms as f64, "ms", Better::Lower).display()));
        let parts: Vec<String> = rss.into_iter().chain(cpu).collect();
        if parts.is_empty() {
            "none set".to_string()
        } else {
            parts.join(", ")
        }
    }
}

/// "kv peak RSS 12.0 MiB over the limit 8.0 MiB" and its details, when over.
fn exceeds(
    service: &str,
    what: &str,
    metric: &str,
    value: Option<&Metric>,
    limit: Option<u64>,
    unit: &str,
) -> Option<(String, serde_json::Value)> {
    let (value, limit) = (value?, limit?);
    if value.value <= limit as f64 {
        return None;
    }
    let shown_limit = Metric::new(limit as f64, unit, Better::Lower).display();
    let line = format!("{service} {what} {} over the limit {shown_limit}", value.display());
    Some((line, json!({ "service": service, "metric": metric, "value": value.value, "limit": limit })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    fn run(check: ResourcesCheck, metrics: Option<&Metrics>) -> CheckResult {
        let h = history(&[]);
        let input = CheckInput::new(&h);
        let input = match metrics {
            Some(m) => input.with_metrics(m),
            None => input,
        };
        check.check(&input)
    }

    fn metrics() -> Metrics {
        let mut m = Metrics::default();
        m.add_service("db", 50 << 20, 900);
        m.add_service("kv", 10 << 20, 100);
        m
    }

    fn limits(service: Option<&str>, rss_mib: Option<u64>, cpu_ms: Option<u64>) -> ResourcesCheck {
        ResourcesCheck {
            service: service.map(String::from),
            max_rss_bytes: rss_mib.map(|m| m << 20),
            max_cpu_ms: cpu_ms,
        }
    }

    #[test]
    fn verdicts_by_limit_and_service() {
        let m = metrics();
        let cases: &[(ResourcesCheck, Verdict, &str)] = &[
            (limits(None, Some(100), Some(1000)), Verdict::Valid, "db, kv within the limits (max_rss 100.0 MiB, max_cpu 1000.0 ms)"),
            (limits(None, Some(20), None), Verdict::Invalid, "db peak RSS 50.0 MiB over the limit 20.0 MiB"),
            (limits(Some("kv"), Some(20), Some(500)), Verdict::Valid, "kv within the limits (max_rss 20.0 MiB, max_cpu 500.0 ms)"),
            (limits(Some("db"), None, Some(500)), Verdict::Invalid, "db CPU 900.0 ms over the limit 500.0 ms"),
            (
                limits(None, Some(1), Some(1)),
                Verdict::Invalid,
                "db peak RSS 50.0 MiB over the limit 1.0 MiB, db CPU 900.0 ms over the limit 1.0 ms, kv peak RSS 10.0 MiB over the limit 1.0 MiB ... and 1 more",
            ),
            (limits(Some("nope"), Some(1), None), Verdict::Unknown, "service nope was sampled: no resource use to judge (did it run?)"),
        ];
        for (check, verdict, summary) in cases {
            let r = run(check.clone(), Some(&m));
            assert_eq!((r.verdict, r.summary.as_str()), (*verdict, *summary), "{check:?}");
        }
    }

    #[test]
    fn details_name_the_service_peak_and_limit() {
        let r = run(limits(Some("db"), Some(20), None), Some(&metrics()));
        assert_eq!(
            r.details["over"],
            json!([{ "service": "db", "metric": "peak_rss_bytes", "value": (50u64 << 20) as f64, "limit": 20u64 << 20 }])
        );
        assert_eq!(r.details["services"]["db"]["cpu_ms"], json!(900.0));
    }

    #[test]
    fn nothing_sampled_is_unknown() {
        for m in [None, Some(&Metrics::default())] {
            let r = run(limits(None, Some(1), None), m);
            assert_eq!(r.verdict, Verdict::Unknown, "{m:?}");
            assert!(r.summary.starts_with("no service was sampled"), "{}", r.summary);
        }
    }
}
