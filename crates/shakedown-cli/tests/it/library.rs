//! shakedown as a library from `cargo test`: scenarios built in code, run
//! against real processes or an in-process client, verdicts asserted.

use shakedown::{Action, Client, Operation, Outcome, RunConfig, ScenarioBuilder, Verdict};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

const TESTBED: &str = env!("CARGO_BIN_EXE_shakedown-testbed");

fn kv_scenario(name: &str, bug: Option<&str>) -> ScenarioBuilder {
    let mut command = vec![TESTBED, "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"];
    if let Some(bug) = bug {
        command.extend(["--bug", bug]);
    }
    ScenarioBuilder::new(name)
        .service("kv", command)
        .ready_log("kv", "listening")
        .http_client("http://127.0.0.1:{service.kv.port}")
        .clients(4)
        .duration("3s")
        .action(Action::new("add").value("{seq}").request("POST", "/set/s/{value}"))
        .action(Action::new("read").weight(0).request("GET", "/set/s").result("body:json"))
        .finally("read")
        .fault_every("kill", "kv", "1s")
        .check("set")
}

fn run(builder: &ScenarioBuilder, client: Option<Arc<dyn Client>>) -> shakedown::Finished {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = builder.build().expect("the builder writes valid scenarios");
    let cfg = RunConfig {
        seed: Some(9),
        out: Some(tmp.path().join("run")),
        scenario_text: Some(builder.to_toml()),
        client,
        ..RunConfig::default()
    };
    let finished = shakedown::run_blocking(&scenario, cfg).unwrap();
    assert!(finished.run_dir.join("report.json").is_file());
    finished
}

#[test]
fn a_scenario_built_in_code_passes_on_the_correct_testbed() {
    let finished = run(&kv_scenario("lib-correct", None), None);
    assert_eq!(finished.report.verdict, Verdict::Valid, "{:#?}", finished.report.checks);
    assert_eq!(shakedown::exit_code(&finished), shakedown::ExitCode::Valid);
}

#[test]
fn a_scenario_built_in_code_catches_the_lost_write() {
    let finished = run(&kv_scenario("lib-lost-write", Some("lost-write")), None);
    assert_eq!(finished.report.verdict, Verdict::Invalid);
    let set = finished.report.checks.iter().find(|c| c.kind == "set").unwrap();
    assert!(!set.details["lost"].as_array().unwrap().is_empty());
}

#[test]
fn builder_errors_are_spec_errors() {
    let err = kv_scenario("bad", None).fault_every("kill", "db", "1s").build().unwrap_err();
    assert!(err.to_string().contains("fault target `db` is not a defined service"), "{err}");
}

/// An in-memory set behind the `Client` trait; `forget_every` drops every Nth add
/// after acknowledging it.
struct MemorySet {
    items: Mutex<BTreeSet<i64>>,
    adds: Mutex<u64>,
    forget_every: Option<u64>,
}

#[async_trait::async_trait]
impl Client for MemorySet {
    async fn call(&self, op: Operation<'_>) -> Outcome {
        match op.f {
            "add" => {
                let n = {
                    let mut adds = self.adds.lock().unwrap();
                    *adds += 1;
                    *adds
                };
                if self.forget_every.is_none_or(|k| n % k != 0) {
                    self.items.lock().unwrap().insert(op.value.as_i64().unwrap());
                }
                Outcome::ok(None)
            }
            "read" => Outcome::ok(Some(serde_json::json!(self.items.lock().unwrap().iter().collect::<Vec<_>>()))),
            other => Outcome::fail(format!("unknown f {other}")),
        }
    }
}

fn in_process(forget_every: Option<u64>) -> shakedown::Finished {
    let builder = ScenarioBuilder::new("in-process")
        .exec_client()
        .clients(3)
        .ops(500)
        .action(Action::new("add").value("{seq}").command(["unused"]))
        .action(Action::new("read").weight(0).command(["unused"]))
        .finally("read")
        .check("set");
    let client = Arc::new(MemorySet { items: Mutex::default(), adds: Mutex::default(), forget_every });
    run(&builder, Some(client))
}

#[test]
fn an_in_process_client_replaces_the_scenario_client() {
    assert_eq!(in_process(None).report.verdict, Verdict::Valid);
    let lossy = in_process(Some(50));
    assert_eq!(lossy.report.verdict, Verdict::Invalid);
    let set = lossy.report.checks.iter().find(|c| c.kind == "set").unwrap();
    assert_eq!(set.details["lost"].as_array().unwrap().len(), 10, "{}", set.summary);
}
