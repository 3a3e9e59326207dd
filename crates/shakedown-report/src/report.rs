//! The report model: everything `report.json` holds about one run.

use crate::{write_file, OpCounts, ReportError};
use serde::{Deserialize, Serialize};
use shakedown_check::{CheckResult, Verdict};
use shakedown_history::metrics::Metrics;
use shakedown_history::{EventKind, History};
use std::collections::BTreeMap;
use std::path::Path;

/// The service event the runner records when a process ends.
const EXITED: &str = "exited";

/// One run, as `report.json` stores it and every renderer reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub shakedown_version: String,
    pub scenario: String,
    pub seed: u64,
    /// The matrix cell this run covered (`engine = "a"`); empty without a matrix.
    pub matrix: BTreeMap<String, String>,
    /// The worst check verdict; unknown when there is no check or the harness failed.
    pub verdict: Verdict,
    /// RFC 3339 UTC, as the caller gave it.
    pub started_at: String,
    pub duration_ms: u64,
    pub run_dir: String,
    pub ops: OpCounts,
    pub checks: Vec<CheckResult>,
    pub faults: Vec<FaultRecord>,
    /// Operations that completed ok while a fault window was open.
    #[serde(default)]
    pub ok_ops_during_faults: u64,
    pub services: Vec<ServiceRecord>,
    /// Harness errors (a service never became ready, a build failed); empty when none.
    pub errors: Vec<String>,
    /// How the run ended: completed, interrupted, failed, unsupported, or
    /// died (the harness was killed: the checks judged a prefix).
    #[serde(default)]
    pub end: String,
    /// Throughput, latency and services' resource use, by name (see
    /// [`shakedown_history::metrics`]); empty in reports written before metrics.
    #[serde(default)]
    pub metrics: Metrics,
}

/// One fault window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub id: u64,
    /// The fault verb: kill, pause, partition, ...
    pub kind: String,
    pub target: String,
    pub start_ns: u64,
    /// Absent when the fault was never healed before the run ended.
    pub end_ns: Option<u64>,
    pub detail: Option<String>,
}

/// One service: its log and its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    /// Path of its log relative to the run directory, e.g. "logs/kv.log".
    pub log: String,
    /// "exited" events shakedown did not cause: crashes.
    pub unexpected_exits: u64,
    pub events: Vec<ServiceEventRecord>,
    /// The last lines of its log, for the terminal and CI.
    pub log_tail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEventRecord {
    pub time_ns: u64,
    pub event: String,
    pub expected: bool,
    pub detail: Option<String>,
}

/// What the caller knows about a run that the history does not say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub scenario: String,
    pub seed: u64,
    pub matrix: BTreeMap<String, String>,
    pub started_at: String,
    pub duration_ms: u64,
    pub run_dir: String,
    /// (service name, log path relative to the run dir, last log lines).
    pub services: Vec<(String, String, Vec<String>)>,
    pub errors: Vec<String>,
    /// The run's metrics, as the runner measured them.
    pub metrics: Metrics,
    /// How the run ended (see [`Report::end`]).
    pub end: String,
}

impl RunMeta {
    /// Meta with the scenario and seed set and everything else empty.
    pub fn new(scenario: impl Into<String>, seed: u64) -> RunMeta {
        RunMeta { scenario: scenario.into(), seed, ..RunMeta::default() }
    }
}

impl Report {
    /// Gathers a run into a report. A harness error turns an otherwise valid
    /// run unknown: checks that passed on a run that went wrong prove little.
    pub fn build(meta: RunMeta, history: &History, checks: Vec<CheckResult>) -> Report {
        let mut verdict = Verdict::all(checks.iter().map(|c| c.verdict));
        if !meta.errors.is_empty() {
            verdict = verdict.combine(Verdict::Unknown);
        }
        Report {
            shakedown_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: meta.scenario,
            seed: meta.seed,
            matrix: meta.matrix,
            verdict,
            started_at: meta.started_at,
            duration_ms: meta.duration_ms,
            run_dir: meta.run_dir,
            ops: OpCounts::of(history),
            checks,
            faults: faults(history),
            ok_ops_during_faults: shakedown_check::vacuity::ok_ops_during_faults(history),
            services: services(meta.services, history),
            errors: meta.errors,
            metrics: meta.metrics,
            end: meta.end,
        }
    }

    /// The report as pretty JSON, with the process's secrets masked in its
    /// strings (as values: a secret that looks like a number leaves numbers alone).
    pub fn to_json_pretty(&self) -> String {
        let mut value = serde_json::to_value(self).expect("a report holds only strings, numbers and JSON values");
        shakedown_history::redact::current().redact_value(&mut value);
        serde_json::to_string_pretty(&value).expect("a JSON value serializes")
    }

    /// Writes `report.json`, ending in a newline.
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        write_file(path, &(self.to_json_pretty() + "\n"))
    }

    /// Reads a `report.json` back, e.g. to replay or compare runs.
    pub fn read_json(path: &Path) -> Result<Report, ReportError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ReportError::Read { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Parse { path: path.to_path_buf(), source })
    }

    /// The matrix cell as "engine=a, version=2"; empty without a matrix.
    pub fn matrix_cell(&self) -> String {
        self.matrix.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    }
}

fn faults(history: &History) -> Vec<FaultRecord> {
    history
        .fault_windows()
        .into_iter()
        .filter_map(|(start, end)| {
            let EventKind::Fault(fault) = &start.kind else { return None };
            let end_detail = end.and_then(|e| match &e.kind {
                EventKind::Fault(f) => f.detail.clone(),
                _ => None,
            });
            Some(FaultRecord {
                id: fault.fault_id,
                kind: fault.fault.clone(),
                target: fault.target.clone(),
                start_ns: start.time_ns,
                end_ns: end.map(|e| e.time_ns),
                detail: fault.detail.clone().or(end_detail),
            })
        })
        .collect()
}

/// Services in the caller's order, then any the history names that the caller
/// did not, by name, so a crash is never dropped from the report.
fn services(meta: Vec<(String, String, Vec<String>)>, history: &History) -> Vec<ServiceRecord> {
    let mut events: BTreeMap<&str, Vec<ServiceEventRecord>> = BTreeMap::new();
    for (e, s) in history.service_events() {
        events.entry(&s.service).or_default().push(ServiceEventRecord {
            time_ns: e.time_ns,
            event: s.event.clone(),
            expected: s.expected,
            detail: s.detail.clone(),
        });
    }
    let mut records: Vec<ServiceRecord> = meta
        .into_iter()
        .map(|(name, log, log_tail)| {
            let events = events.remove(name.as_str()).unwrap_or_default();
            service_record(name, log, events, log_tail)
        })
        .collect();
    for (name, events) in events {
        records.push(service_record(name.to_string(), String::new(), events, Vec::new()));
    }
    records
}

fn service_record(name: String, log: String, events: Vec<ServiceEventRecord>, log_tail: Vec<String>) -> ServiceRecord {
    let unexpected_exits = events.iter().filter(|e| e.event == EXITED && !e.expected).count() as u64;
    ServiceRecord { name, log, unexpected_exits, events, log_tail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use serde_json::json;
    use shakedown_history::{Header, HistoryBuilder, ServiceEvent};

    #[test]
    fn build_gathers_counts_faults_and_services() {
        let r = fixture::report(true);
        assert_eq!((r.scenario.as_str(), r.seed, r.verdict), ("kv-set", 42, Verdict::Invalid));
        assert_eq!(r.shakedown_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(r.ops.total, 4);
        assert_eq!(
            r.ops.by_result,
            [("fail", 0), ("info", 0), ("ok", 3), ("skip", 1)].map(|(k, n)| (k.to_string(), n)).into()
        );
        assert_eq!(r.ops.get("delete", "skip"), 1);
        let kill = FaultRecord {
            id: 1,
            kind: "kill".into(),
            target: "kv".into(),
            start_ns: 50,
            end_ns: Some(60),
            detail: Some("SIGKILL".into()),
        };
        let pause =
            FaultRecord { id: 2, kind: "pause".into(), target: "kv".into(), start_ns: 65, end_ns: None, detail: None };
        assert_eq!(r.faults, [kill, pause]);
        let [kv] = &r.services[..] else { panic!("one service: {:?}", r.services) };
        assert_eq!((kv.name.as_str(), kv.log.as_str(), kv.unexpected_exits), ("kv", "logs/kv.log", 1));
        let events: Vec<_> = kv.events.iter().map(|e| (e.time_ns, e.event.as_str(), e.expected)).collect();
        assert_eq!(events, [(1, "started", true), (55, "exited", false)]);
        assert_eq!(kv.log_tail.len(), 2);
        let names: Vec<_> = r.checks.iter().map(|c| (c.name.as_str(), c.verdict)).collect();
        assert_eq!(names, [("stats", Verdict::Valid), ("set", Verdict::Invalid), ("unexpected", Verdict::Valid)]);
    }

    #[test]
    fn services_the_history_alone_names_are_kept_and_only_crashes_are_exits() {
        let mut b = HistoryBuilder::new(Header::new("t", 1));
        let events = [(1, "zeta", "exited"), (2, "alpha", "exited"), (3, "db", "exited"), (4, "db", "restart failed")];
        for (t, name, event) in events {
            let event = ServiceEvent { service: name.into(), event: event.into(), expected: false, detail: None };
            b.push(t, EventKind::Service(event));
        }
        let meta = RunMeta { services: vec![("db".into(), "logs/db.log".into(), vec![])], ..RunMeta::new("t", 1) };
        let r = Report::build(meta, &b.finish(), vec![]);
        let names: Vec<_> = r.services.iter().map(|s| (s.name.as_str(), s.log.as_str(), s.unexpected_exits)).collect();
        assert_eq!(names, [("db", "logs/db.log", 1), ("alpha", "", 1), ("zeta", "", 1)]);
        assert_eq!(r.services[0].events.len(), 2, "an unexpected failed restart is kept but is not an exit");
    }

    #[test]
    fn verdict_is_the_worst_check_and_harness_errors_spoil_valid() {
        use Verdict::*;
        let cases: &[(&[Verdict], bool, Verdict)] = &[
            (&[], false, Unknown),
            (&[Valid, Valid], false, Valid),
            (&[Valid, Unknown], false, Unknown),
            (&[Valid, Invalid, Unknown], false, Invalid),
            (&[Valid], true, Unknown),
            (&[], true, Unknown),
            (&[Invalid], true, Invalid),
        ];
        let h = fixture::history(false);
        for (verdicts, errors, want) in cases {
            let checks = verdicts.iter().map(|v| CheckResult::new("set", *v, "s", json!({}))).collect();
            let errors = if *errors { vec!["service kv never became ready".to_string()] } else { vec![] };
            let r = Report::build(RunMeta { errors, ..fixture::meta() }, &h, checks);
            assert_eq!(r.verdict, *want, "{verdicts:?} errors={errors:?}", errors = r.errors);
        }
    }

    #[test]
    fn json_round_trips_through_a_file() {
        let r = fixture::report(true);
        let text = r.to_json_pretty();
        for key in [r#""verdict": "invalid""#, r#""seed": 42"#, r#""by_action""#, r#""lost": ["#, r#""end_ns": null"#] {
            assert!(text.contains(key), "report.json lacks {key}:\n{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        r.write_json(&path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
        assert_eq!(Report::read_json(&path).unwrap(), r);
    }

    #[test]
    fn metrics_round_trip_and_old_reports_without_them_still_read() {
        let mut metrics = Metrics::default();
        metrics.add_service("kv", 8 << 20, 120);
        let r =
            Report::build(RunMeta { metrics: metrics.clone(), ..fixture::meta() }, &fixture::history(false), vec![]);
        let text = r.to_json_pretty();
        assert!(text.contains(r#""service.kv.peak_rss_bytes": {"#), "{text}");
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap().metrics, metrics);
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        old.as_object_mut().unwrap().remove("metrics");
        assert!(serde_json::from_value::<Report>(old).unwrap().metrics.is_empty());
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let err = Report::read_json(&missing).unwrap_err().to_string();
        assert!(err.starts_with(&format!("read {}: ", missing.display())), "{err}");
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "{").unwrap();
        let err = Report::read_json(&garbage).unwrap_err().to_string();
        assert!(err.starts_with(&format!("parse report {}: ", garbage.display())), "{err}");
        let err = fixture::report(false).write_json(&dir.path().join("no/such/dir.json")).unwrap_err().to_string();
        assert!(err.starts_with("write "), "{err}");
    }
}
