//! Test fixture: a small run with a service, two faults and three checks.

use crate::{Report, RunMeta};
use serde_json::json;
use shakedown_check::{run_checks, Check, CheckInput, SetCheck, StatsCheck, UnexpectedCheck};
use shakedown_history::{
    EventKind, FaultEvent, FaultPhase, Header, History, HistoryBuilder, OpType, ProcessId, ServiceEvent, Skip,
};

/// A run of scenario "kv-set" (seed 42). With `lose_an_add` the final read
/// misses add 2, so the set check is invalid; otherwise every check is valid.
pub(crate) fn history(lose_an_add: bool) -> History {
    let mut b = HistoryBuilder::new(Header::new("kv-set", 42));
    b.push(1, service("started", true, None));
    b.invoke(10, ProcessId(0), "alice", "add", json!(1));
    b.complete(20, ProcessId(0), OpType::Ok, json!(null), None);
    b.invoke(30, ProcessId(1), "bob", "add", json!(2));
    b.complete(40, ProcessId(1), OpType::Ok, json!(null), None);
    b.push(50, fault(1, FaultPhase::Start, "kill", Some("SIGKILL")));
    b.push(55, service("exited", false, Some("signal 9")));
    b.push(60, fault(1, FaultPhase::End, "kill", None));
    b.push(65, fault(2, FaultPhase::Start, "pause", None));
    b.invoke(70, ProcessId(0), "alice", "read", json!(null));
    let read = if lose_an_add { json!([1]) } else { json!([1, 2]) };
    b.complete(80, ProcessId(0), OpType::Ok, read, None);
    let skip = Skip { process: ProcessId(1), actor: "bob".into(), f: "delete".into(), reason: "no target".into() };
    b.push(90, EventKind::Skip(skip));
    b.finish()
}

fn service(event: &str, expected: bool, detail: Option<&str>) -> EventKind {
    EventKind::Service(ServiceEvent {
        service: "kv".into(),
        event: event.into(),
        expected,
        detail: detail.map(String::from),
    })
}

fn fault(id: u64, phase: FaultPhase, kind: &str, detail: Option<&str>) -> EventKind {
    EventKind::Fault(FaultEvent {
        fault_id: id,
        phase,
        fault: kind.into(),
        target: "kv".into(),
        detail: detail.map(String::from),
    })
}

pub(crate) fn meta() -> RunMeta {
    RunMeta {
        started_at: "2026-01-02T03:04:05Z".into(),
        duration_ms: 3_250,
        run_dir: ".shakedown/runs/r1".into(),
        services: vec![(
            "kv".into(),
            "logs/kv.log".into(),
            vec!["listening on :7000".into(), "panicked at src/store.rs:10".into()],
        )],
        ..RunMeta::new("kv-set", 42)
    }
}

pub(crate) fn report(lose_an_add: bool) -> Report {
    let h = history(lose_an_add);
    let checks: Vec<(String, Box<dyn Check>)> = vec![
        ("stats".into(), Box::new(StatsCheck::default())),
        ("set".into(), Box::new(SetCheck::default())),
        ("unexpected".into(), Box::new(UnexpectedCheck::default())),
    ];
    let results = run_checks(&checks, &CheckInput::new(&h));
    Report::build(meta(), &h, results)
}
