//! The lock service: a primary and a backup on one data dir, fencing tokens, and the client's failover at each phase.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shakedown_testbed::lock::client::{self, Updated};
use shakedown_testbed::lock::{self, ClientBug, ClientConfig, ClientError, Config, Hold, Phase};
use shakedown_testbed::Logger;

use crate::support::{self, run, temp_dir, Server};

async fn start(dir: &Path, name: &str) -> Server {
    let config = Config::new(dir).with_name(name);
    support::start(move |listener, log, shutdown| lock::serve(listener, config.with_log(log), shutdown)).await
}

async fn call_json(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let (code, text) = server.call(method, path, &body.to_string()).await;
    (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text:?}")))
}

async fn acquire(server: &Server, key: &str, owner: &str, ttl_ms: u64) -> (u16, Value) {
    call_json(server, "POST", "/v1/acquire", json!({"key": key, "owner": owner, "ttl_ms": ttl_ms})).await
}

async fn state(server: &Server, key: &str) -> Value {
    let (code, body) = call_json(server, "GET", &format!("/v1/state?key={key}"), json!(null)).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Writes `content` as the key's first state, through `server`.
async fn seed(server: &Server, key: &str, content: &str) {
    let (code, lease) = acquire(server, key, "seeder", 5000).await;
    assert_eq!(code, 200, "{lease}");
    let write = json!({"key": key, "token": lease["token"], "version": 0, "content": content});
    assert_eq!(call_json(server, "POST", "/v1/write", write).await.0, 200);
    let release = json!({"key": key, "token": lease["token"]});
    assert_eq!(call_json(server, "POST", "/v1/release", release).await.0, 200);
}

fn url(server: &Server) -> String {
    format!("http://{}", server.addr)
}

/// The client's log lines, parsed.
fn client_events(log: &Logger) -> Vec<Value> {
    log.lines().iter().map(|line| serde_json::from_str::<Value>(line).expect("JSON log line")).collect()
}

async fn wait_logged(log: &Logger, msg: &str) {
    let started = Instant::now();
    while !client_events(log).iter().any(|event| event["msg"] == msg) {
        assert!(started.elapsed() < Duration::from_secs(5), "no {msg}: {:?}", log.lines());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs an update that holds at `phase`, stops the primary there, releases
/// the hold; returns the outcome, the client's log and the backup's view.
async fn fail_over_at(phase: Phase, bug: Option<ClientBug>) -> (Result<Updated, ClientError>, Vec<Value>, Value) {
    let (dir, hold_dir) = (temp_dir(), temp_dir());
    let primary = start(dir.path(), "primary").await;
    let backup = start(dir.path(), "backup").await;
    seed(&backup, "k", "seed").await;
    let hold_file = hold_dir.path().join("go");
    let log = Logger::memory();
    let mut config = ClientConfig::new(vec![url(&primary), url(&backup)]).with_log(log.clone());
    config.owner = "worker".to_string();
    config.hold = Some(Hold { phase, file: hold_file.clone() });
    config.hold_timeout = Duration::from_secs(5);
    if let Some(bug) = bug {
        config = config.with_bug(bug);
    }
    let client = tokio::task::spawn_blocking(move || client::update(&config, "k", "+x"));
    wait_logged(&log, "client.hold").await;
    let primary_log = primary.stop().await;
    assert!(primary_log.lines().iter().any(|line| line.contains(r#""msg":"draining""#)));
    std::fs::write(&hold_file, "").expect("create the hold file");
    let outcome = client.await.expect("client thread");
    let final_state = state(&backup, "k").await;
    backup.stop().await;
    (outcome, client_events(&log), final_state)
}

/// Index of the first event with `msg` on `endpoint` at or after `from`.
fn position(events: &[Value], from: usize, msg: &str, endpoint: &str) -> Option<usize> {
    events.iter().skip(from).position(|e| e["msg"] == msg && e["endpoint"] == endpoint).map(|at| at + from)
}

#[test]
fn the_client_fails_over_at_every_phase_and_lands_once() {
    for phase in Phase::ALL {
        run(async move {
            let (outcome, events, final_state) = fail_over_at(phase, None).await;
            let updated = outcome.unwrap_or_else(|e| panic!("{phase:?}: {e}: {events:#?}"));
            assert_eq!((updated.content.as_str(), updated.version), ("seed+x", 2), "{phase:?}");
            assert_eq!(updated.endpoint, events[0]["endpoints"][1], "{phase:?}");
            assert_eq!((final_state["content"].clone(), final_state["version"].clone()), (json!("seed+x"), json!(2)));
            assert!(final_state["lease"].is_null(), "{phase:?}: released: {final_state}");
            let (primary, backup) = (events[0]["endpoints"][0].as_str().unwrap(), updated.endpoint.as_str());
            let error = position(&events, 0, "client.http.error", primary).expect("an error on the primary");
            let success = position(&events, error, "client.http.success", backup);
            assert!(success.is_some(), "{phase:?}: no success on the backup after the error: {events:#?}");
            let phases: Vec<&Value> =
                events.iter().filter(|e| e["msg"] == "client.phase").map(|e| &e["phase"]).collect();
            assert_eq!(phases, [&json!("handler-start"), &json!("before-save"), &json!("after-save")]);
        });
    }
}

#[test]
fn without_failover_the_update_fails_at_every_phase() {
    for phase in Phase::ALL {
        run(async move {
            let (outcome, events, final_state) = fail_over_at(phase, Some(ClientBug::NoFailover)).await;
            let err = outcome.expect_err("the no-failover client must fail");
            assert!(matches!(err, ClientError::Unreachable { .. }), "{phase:?}: {err}");
            let backup = events[0]["endpoints"][1].as_str().unwrap();
            assert!(position(&events, 0, "client.http.success", backup).is_none(), "{events:#?}");
            let expected = if phase == Phase::AfterSave { "seed+x" } else { "seed" };
            assert_eq!(final_state["content"], expected, "{phase:?}");
        });
    }
}

#[test]
fn two_servers_on_one_data_dir_agree() {
    run(async {
        let dir = temp_dir();
        let primary = start(dir.path(), "primary").await;
        let backup = start(dir.path(), "backup").await;
        let (code, lease) = acquire(&primary, "k", "a", 5000).await;
        assert_eq!((code, lease["token"].clone()), (200, json!(1)));
        let (code, held) = acquire(&backup, "k", "b", 5000).await;
        assert_eq!((code, held["error"].clone(), held["owner"].clone()), (409, json!("held"), json!("a")));
        let (code, again) = acquire(&backup, "k", "a", 5000).await;
        assert_eq!((code, again["token"].clone(), again["renewed"].clone()), (200, json!(1), json!(true)));
        let write = json!({"key": "k", "token": 1, "version": 0, "content": "via backup"});
        assert_eq!(call_json(&backup, "POST", "/v1/write", write).await, (200, json!({"key": "k", "version": 1})));
        assert_eq!(state(&primary, "k").await["content"], "via backup");
        // Concurrent updates through both servers serialize: each lands exactly once.
        let (p, b) = (url(&primary), url(&backup));
        let workers = (0..6).map(|i| {
            let endpoints = if i % 2 == 0 { vec![p.clone(), b.clone()] } else { vec![b.clone(), p.clone()] };
            tokio::task::spawn_blocking(move || update_until_free(endpoints, i))
        });
        let release = json!({"key": "k", "token": 1});
        assert_eq!(call_json(&primary, "POST", "/v1/release", release).await.0, 200);
        for worker in workers {
            worker.await.expect("worker thread");
        }
        let last = state(&backup, "k").await;
        assert_eq!(last["version"], 7, "{last}");
        let content = last["content"].as_str().unwrap();
        for i in 0..6 {
            assert_eq!(content.matches(&format!("[{i}]")).count(), 1, "{content}");
        }
        primary.stop().await;
        backup.stop().await;
    });
}

/// Retries an update while another owner holds the key.
fn update_until_free(endpoints: Vec<String>, worker: usize) {
    let mut config = ClientConfig::new(endpoints).with_log(Logger::memory());
    config.owner = format!("worker-{worker}");
    let started = Instant::now();
    loop {
        match client::update(&config, "k", &format!("[{worker}]")) {
            Ok(_) => return,
            Err(ClientError::Refused { status: 409, body, .. }) if body.contains("held") => {
                assert!(started.elapsed() < Duration::from_secs(10), "worker {worker} starved");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("worker {worker}: {e}"),
        }
    }
}

#[test]
fn stale_tokens_and_versions_are_rejected() {
    run(async {
        let dir = temp_dir();
        let server = start(dir.path(), "primary").await;
        let (_, first) = acquire(&server, "k", "a", 50).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        let (code, second) = acquire(&server, "k", "b", 5000).await;
        assert_eq!((code, second["token"].clone()), (200, json!(2)));
        let cases = [
            (
                "/v1/write",
                json!({"key": "k", "token": first["token"], "version": 0, "content": "old"}),
                409,
                "stale token",
            ),
            ("/v1/release", json!({"key": "k", "token": first["token"]}), 409, "stale token"),
            ("/v1/write", json!({"key": "k", "token": 2, "version": 5, "content": "x"}), 409, "stale version"),
            ("/v1/write", json!({"key": "k", "token": 2, "version": 0, "content": "new"}), 200, ""),
            ("/v1/write", json!({"key": "k", "token": 2, "version": 0, "content": "again"}), 409, "stale version"),
            ("/v1/write", json!({"key": "bad key", "token": 2, "version": 1, "content": "x"}), 400, "bad key"),
            ("/v1/acquire", json!({"key": "k", "owner": "", "ttl_ms": 10}), 400, "empty owner"),
            ("/v1/acquire", json!({"key": "k"}), 400, "owner"),
            ("/v1/release", json!({"key": "k", "token": 2}), 200, ""),
            ("/v1/release", json!({"key": "k", "token": 2}), 409, "stale token"),
        ];
        for (path, body, code, error) in cases {
            let (got, reply) = call_json(&server, "POST", path, body.clone()).await;
            assert_eq!(got, code, "{path} {body}: {reply}");
            assert!(reply["error"].as_str().unwrap_or_default().contains(error), "{path} {body}: {reply}");
        }
        assert_eq!(state(&server, "k").await["content"], "new");
        let log = server.stop().await;
        let requests = log.lines().iter().filter(|line| line.contains(r#""msg":"request""#)).count();
        assert!(requests >= 12, "one log line per request: {:?}", log.lines());
    });
}

#[test]
fn a_draining_server_refuses_new_leases_but_lets_holders_finish() {
    run(async {
        let dir = temp_dir();
        let mut config = Config::new(dir.path()).with_name("primary");
        config.drain = Duration::from_secs(5);
        let server =
            support::start(move |listener, log, shutdown| lock::serve(listener, config.with_log(log), shutdown)).await;
        let (_, lease) = acquire(&server, "k", "a", 5000).await;
        let addr = server.addr;
        let stopping = tokio::spawn(server.stop());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let acquire_body = json!({"key": "other", "owner": "b", "ttl_ms": 100}).to_string();
        let (code, _) = support::request(addr, "POST", "/v1/acquire", &acquire_body).await;
        assert_eq!(code, 503);
        let release = json!({"key": "k", "token": lease["token"]}).to_string();
        assert_eq!(support::request(addr, "POST", "/v1/release", &release).await.0, 200);
        let started = Instant::now();
        let log = stopping.await.expect("stop task");
        assert!(started.elapsed() < Duration::from_secs(3), "the drain ended when the lease was released");
        assert!(log.lines().iter().any(|line| line.contains(r#""msg":"drained","server":"primary","leases_left":0"#)));
    });
}
