//! Workload engine throughput: operations recorded per second against an
//! in-process no-op client, so the engine's own cost (drawing actions, filling
//! templates, recording invocations and completions, streaming every event to
//! `history.jsonl` on disk) is all that is measured, with 1 worker and with 8
//! side by side.
//!
//! Run with `cargo bench -p shakedown-runner --bench workload`. The bars are
//! 100,000 ops/s with one worker and 1,000,000 with eight; criterion prints
//! the median throughput of each.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shakedown_history::Header;
use shakedown_runner::context::{ActorCtx, Context};
use shakedown_runner::recorder::Recorder;
use shakedown_runner::workload::{Limits, Workload};
use shakedown_runner::{Client, Operation, Outcome};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

const OPS: u64 = 200_000;

struct Noop;

#[async_trait::async_trait]
impl Client for Noop {
    async fn call(&self, _op: Operation<'_>) -> Outcome {
        Outcome::ok(None)
    }
}

fn actions() -> Vec<shakedown_spec::ActionSpec> {
    let text = r#"
name = "bench"
[client]
kind = "exec"
[[action]]
f = "write"
value = "{int 0..1000}"
command = ["unused", "{value}"]
[[action]]
f = "read"
weight = 2
command = ["unused"]
"#;
    shakedown_spec::parse(text, "bench.toml").expect("valid bench scenario").action
}

fn run_once(rt: &tokio::runtime::Runtime, clients: usize) -> u64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let actors = (0..3).map(|i| ActorCtx { name: format!("a{i}"), home: "/tmp".into(), env: vec![] }).collect();
    let ctx = Arc::new(Context::new("/tmp".into(), "/tmp".into(), 7, Default::default(), actors));
    let path = dir.path().join("history.jsonl");
    let recorder = Arc::new(Recorder::create(&path, Header::new("bench", 7), Default::default()).expect("history"));
    let workload = Arc::new(Workload::new(ctx, recorder.clone(), Arc::new(Noop), actions(), Duration::from_secs(5)));
    let limits = Limits { clients, ops: Some(OPS), duration: None, rate: None };
    rt.block_on(workload.run(limits, Arc::new(AtomicBool::new(false))));
    let recorded = recorder.finish("completed", None);
    assert_eq!(recorded.events, 2 * OPS + 1, "every op is invoked and completed, then the end");
    recorded.events
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("workload");
    group.throughput(Throughput::Elements(OPS));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    for clients in [1, 8] {
        group.bench_function(format!("noop_client_{clients}_workers"), |b| b.iter(|| run_once(&rt, clients)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
