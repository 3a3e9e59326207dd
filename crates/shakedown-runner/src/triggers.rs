//! Triggers: what steps and faults wait for — a log entry, a number of
//! completed operations, or a named phase — so failover and interruption
//! points follow the system's own progress instead of a timing guess.

use crate::logs::LogSink;
use shakedown_history::logs::{parse_line, LogFormat, LogMatch};
use shakedown_spec::{LogFormatName, LogMatchSpec, Scenario, TriggerSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a trigger waits when it does not say.
pub const DEFAULT_TRIGGER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often counters are looked at while waiting; log sinks also wake waiters.
const POLL: Duration = Duration::from_millis(10);

/// Every source a trigger can watch, shared by the script and the nemesis.
pub struct Triggers {
    logs: Mutex<BTreeMap<String, Source>>,
    completed: Arc<AtomicU64>,
    phases: watch::Sender<BTreeSet<String>>,
}

#[derive(Clone)]
struct Source {
    sink: Arc<LogSink>,
    format: LogFormat,
}

/// Where each log stood when a trigger was armed: only later lines count.
#[derive(Debug, Clone, Default)]
pub struct Armed {
    from: BTreeMap<String, u64>,
}

impl Triggers {
    pub fn new(completed: Arc<AtomicU64>) -> Triggers {
        Triggers { logs: Mutex::default(), completed, phases: watch::channel(BTreeSet::new()).0 }
    }

    /// Watches `sink` as the log source of its name.
    pub fn add_log(&self, sink: Arc<LogSink>, format: LogFormat) {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        logs.insert(sink.name.clone(), Source { sink, format });
    }

    /// Marks a phase as reached, waking whatever waits for it.
    pub fn reach_phase(&self, name: &str) {
        self.phases.send_modify(|p| {
            p.insert(name.to_string());
        });
    }

    /// Remembers where every log stands now.
    pub fn arm(&self) -> Armed {
        let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        Armed { from: logs.iter().map(|(name, s)| (name.clone(), s.sink.next_seq())).collect() }
    }

    /// Waits until every condition of `t` holds, or its timeout passes (an
    /// error saying which condition never held).
    pub async fn wait(&self, t: &TriggerSpec, armed: &Armed) -> Result<(), String> {
        let timeout = t.timeout.map_or(DEFAULT_TRIGGER_TIMEOUT, |d| d.0);
        match tokio::time::timeout(timeout, self.wait_all(t, armed)).await {
            Ok(()) => Ok(()),
            Err(_) => Err(format!("trigger {} did not fire within {timeout:?}", describe(t))),
        }
    }

    async fn wait_all(&self, t: &TriggerSpec, armed: &Armed) {
        if let Some(phase) = &t.phase {
            let mut rx = self.phases.subscribe();
            // The sender lives as long as `self`, so this only ends when the phase is reached.
            let _ = rx.wait_for(|p| p.contains(phase.get_ref())).await;
        }
        if let Some(n) = t.ops {
            while self.completed.load(Ordering::Relaxed) < n {
                tokio::time::sleep(POLL).await;
            }
        }
        if let Some(spec) = &t.log {
            self.wait_log(&log_match(spec), armed).await;
        }
    }

    async fn wait_log(&self, m: &LogMatch, armed: &Armed) {
        let mut seen: BTreeMap<String, u64> = armed.from.clone();
        loop {
            let sources: Vec<(String, Source)> = {
                let logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
                logs.iter()
                    .filter(|(name, _)| m.source.as_ref().is_none_or(|s| s == *name))
                    .map(|(n, s)| (n.clone(), s.clone()))
                    .collect()
            };
            for (name, source) in &sources {
                let from = seen.get(name).copied().unwrap_or(0);
                let lines = source.sink.lines_from(from);
                for line in &lines {
                    let entry = parse_line(&source.format, name, &line.text, line.elapsed_ms * 1_000_000, None);
                    if m.matches(&entry) {
                        return;
                    }
                }
                if let Some(last) = lines.last() {
                    seen.insert(name.clone(), last.seq + 1);
                }
            }
            // A new line wakes us at once; new sources and missed wakeups by the poll.
            match sources.first() {
                Some((_, s)) if sources.len() == 1 => {
                    let _ = tokio::time::timeout(POLL * 5, s.sink.notify.notified()).await;
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// A scenario's log match as the history's query type.
pub fn log_match(m: &LogMatchSpec) -> LogMatch {
    LogMatch {
        source: m.source.as_ref().map(|s| s.get_ref().clone()),
        level: m.level.clone(),
        message: m.matches.as_ref().map(|p| p.regex.clone()),
        fields: m.fields.clone(),
    }
}

/// How a source's lines are parsed: a service's `log_format`/`log_regex`;
/// anything else (actors, exec steps, drivers) as JSON lines, which leaves
/// other lines plain.
pub fn log_format(s: &Scenario, source: &str) -> LogFormat {
    match s.service.get(source) {
        Some(svc) => match (&svc.log_regex, svc.log_format) {
            (Some(re), _) => LogFormat::Regex(re.regex.clone()),
            (None, Some(LogFormatName::Json)) => LogFormat::Json,
            (None, Some(LogFormatName::Logfmt)) => LogFormat::Logfmt,
            _ => LogFormat::Plain,
        },
        None => LogFormat::Json,
    }
}

fn describe(t: &TriggerSpec) -> String {
    let mut parts = Vec::new();
    parts.extend(t.phase.as_ref().map(|p| format!("phase `{}`", p.get_ref())));
    parts.extend(t.ops.map(|n| format!("{n} operations")));
    parts.extend(t.log.as_ref().map(|l| format!("log entry {}", log_match(l).describe())));
    parts.join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn trigger(text: &str) -> TriggerSpec {
        toml::from_str(text).unwrap()
    }

    #[tokio::test]
    async fn a_log_trigger_fires_only_on_lines_after_it_was_armed() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(LogSink::create("svc", &dir.path().join("svc.log"), Instant::now()).unwrap());
        let t = Triggers::new(Arc::default());
        t.add_log(sink.clone(), LogFormat::Json);
        sink.push("out", r#"{"msg":"saved","n":"1"}"#);
        let armed = t.arm();
        let spec = trigger("timeout = \"300ms\"\nlog = { source = \"svc\", match = \"saved\" }");
        let err = t.wait(&spec, &armed).await.unwrap_err();
        assert!(err.contains("svc: /saved/") && err.contains("300ms"), "{err}");
        let waiter = {
            let (t, spec) = (Arc::new(t), spec.clone());
            let armed = armed.clone();
            let t2 = t.clone();
            (tokio::spawn(async move { t2.wait(&spec, &armed).await }), t)
        };
        sink.push("out", r#"{"msg":"other"}"#);
        sink.push("out", r#"{"msg":"saved","n":"2"}"#);
        assert_eq!(waiter.0.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn log_fields_and_sources_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(LogSink::create("a", &dir.path().join("a.log"), Instant::now()).unwrap());
        let b = Arc::new(LogSink::create("b", &dir.path().join("b.log"), Instant::now()).unwrap());
        let t = Triggers::new(Arc::default());
        t.add_log(a.clone(), LogFormat::Json);
        t.add_log(b.clone(), LogFormat::Json);
        let armed = t.arm();
        a.push("out", r#"{"msg":"client.phase","phase":"before-save"}"#);
        b.push("out", r#"{"msg":"client.phase","phase":"after-save"}"#);
        let spec = trigger(
            "timeout = \"200ms\"\nlog = { source = \"b\", match = \"client.phase\", fields = { phase = \"before-save\" } }",
        );
        assert!(t.wait(&spec, &armed).await.is_err());
        let spec = trigger("log = { source = \"a\", match = \"client.phase\", fields = { phase = \"before-save\" } }");
        assert_eq!(t.wait(&spec, &armed).await, Ok(()));
    }

    #[tokio::test]
    async fn ops_and_phases_wait_for_their_counts_and_names() {
        let completed = Arc::new(AtomicU64::new(3));
        let t = Arc::new(Triggers::new(completed.clone()));
        let armed = t.arm();
        assert!(t.wait(&trigger("ops = 5\ntimeout = \"100ms\""), &armed).await.is_err());
        completed.store(5, Ordering::Relaxed);
        assert_eq!(t.wait(&trigger("ops = 5"), &armed).await, Ok(()));
        let spec: TriggerSpec = trigger("phase = \"copy\"\ntimeout = \"2s\"");
        let (t2, armed2) = (t.clone(), armed.clone());
        let waiter = tokio::spawn(async move { t2.wait(&spec, &armed2).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        t.reach_phase("traversal");
        t.reach_phase("copy");
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
