//! The queue service: enqueue, claim with a lease, complete, drain; and its two bugs.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use shakedown_testbed::queue::{self, Bug, Config};

use crate::support::{self, futures_join_all, ok, request, run, status, temp_dir, Server};

async fn start(config: Config) -> Server {
    support::start(move |listener, log, shutdown| queue::serve(listener, config.with_log(log), shutdown)).await
}

fn json_body(reply: (u16, String)) -> (u16, Value) {
    let body = serde_json::from_str(&reply.1).expect("JSON body");
    (reply.0, body)
}

async fn jobs(server: &Server, state: &str) -> Value {
    let (code, body) = json_body(server.call("GET", &format!("/jobs?state={state}"), "").await);
    assert_eq!(code, 200, "{body}");
    body
}

async fn enqueue(server: &Server, payloads: &[&str]) {
    for payload in payloads {
        let (code, _) = server.call("POST", "/jobs", payload).await;
        assert_eq!(code, 200, "enqueue {payload}");
    }
}

#[test]
fn queue_enqueue_claim_complete_and_drain() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        assert_eq!(server.call("POST", "/claim", "").await, status(204, ""));
        assert_eq!(server.call("POST", "/jobs", "a").await, ok("1"));
        assert_eq!(server.call("POST", "/jobs", "b c").await, ok("2"));
        let claimed = json_body(server.call("POST", "/claim", "").await);
        assert_eq!(claimed, (200, json!({"id": 1, "payload": "a"})));
        assert_eq!(jobs(&server, "pending").await, json!(["b c"]));
        assert_eq!(jobs(&server, "claimed").await, json!(["a"]));
        let cases = [
            ("/jobs/2/complete", status(409, "not claimed")),
            ("/jobs/9/complete", status(404, "not found")),
            ("/jobs/1/complete", ok("1")),
            ("/jobs/1/complete", status(409, "not claimed")),
        ];
        for (path, expected) in cases {
            assert_eq!(server.call("POST", path, "").await, expected, "{path}");
        }
        let claimed = json_body(server.call("POST", "/claim", "").await);
        assert_eq!(claimed, (200, json!({"id": 2, "payload": "b c"})));
        assert_eq!(server.call("POST", "/claim", "").await, status(204, ""));
        assert_eq!(jobs(&server, "done").await, json!(["a"]));
        assert_eq!(jobs(&server, "pending").await, json!([]));
        let (code, _) = server.call("GET", "/jobs?state=nope", "").await;
        assert_eq!(code, 400);
        server.stop().await;
    });
}

#[test]
fn an_expired_claim_is_claimable_again() {
    run(async {
        let dir = temp_dir();
        let mut config = Config::new(dir.path());
        config.claim_lease = Duration::from_millis(100);
        let server = start(config).await;
        enqueue(&server, &["a"]).await;
        let first = server.call("POST", "/claim", "").await;
        assert_eq!(server.call("POST", "/claim", "").await, status(204, ""));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(jobs(&server, "pending").await, json!(["a"]));
        assert_eq!(server.call("POST", "/claim", "").await, first);
        assert_eq!(server.call("POST", "/jobs/1/complete", "").await, ok("1"));
        server.stop().await;
    });
}

#[test]
fn queue_state_survives_a_kill() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        enqueue(&server, &["a", "b", "c"]).await;
        server.call("POST", "/claim", "").await;
        server.call("POST", "/claim", "").await;
        assert_eq!(server.call("POST", "/jobs/1/complete", "").await, ok("1"));
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        assert!(server.log.lines().iter().any(|l| l.contains(r#""msg":"recovered","entries":6"#)));
        assert_eq!(jobs(&server, "done").await, json!(["a"]));
        assert_eq!(jobs(&server, "claimed").await, json!(["b"]));
        assert_eq!(jobs(&server, "pending").await, json!(["c"]));
        assert_eq!(server.call("POST", "/jobs", "d").await, ok("4"));
        server.stop().await;
    });
}

fn lost_on_kill(dir: &Path, period: Duration) -> Config {
    let mut config = Config::new(dir).with_bug(Bug::LostOnKill);
    config.flush_period = period;
    config
}

#[test]
fn lost_on_kill_loses_acknowledged_jobs_on_kill() {
    run(async {
        let dir = temp_dir();
        let server = start(lost_on_kill(dir.path(), Duration::from_secs(60))).await;
        enqueue(&server, &["a", "b"]).await;
        assert_eq!(jobs(&server, "pending").await, json!(["a", "b"]));
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        assert_eq!(jobs(&server, "pending").await, json!([]));
        assert_eq!(server.call("POST", "/jobs", "c").await, ok("1"));
        server.stop().await;
    });
}

#[test]
fn lost_on_kill_flushes_on_graceful_shutdown_and_periodically() {
    run(async {
        let dir = temp_dir();
        let server = start(lost_on_kill(dir.path(), Duration::from_secs(60))).await;
        enqueue(&server, &["a", "b"]).await;
        let log = server.stop().await;
        let stopped = r#""msg":"stopped","flushed":2"#;
        assert!(log.lines().iter().any(|l| l.contains(stopped)), "{:?}", log.lines());
        let server = start(lost_on_kill(dir.path(), Duration::from_millis(50))).await;
        enqueue(&server, &["c"]).await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        assert_eq!(jobs(&server, "pending").await, json!(["a", "b", "c"]));
        server.stop().await;
    });
}

/// Enqueues one job and sends two claims at once; returns both replies.
async fn two_concurrent_claims(server: &Server) -> Vec<(u16, String)> {
    enqueue(server, &["only"]).await;
    let addr = server.addr;
    let claims = (0..2).map(|_| async move { request(addr, "POST", "/claim", "").await });
    futures_join_all(claims).await
}

#[test]
fn concurrent_claimers_get_different_jobs() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let mut codes: Vec<u16> = two_concurrent_claims(&server).await.into_iter().map(|(code, _)| code).collect();
        codes.sort_unstable();
        assert_eq!(codes, [200, 204]);
        server.stop().await;
    });
}

#[test]
fn double_claim_gives_one_job_to_two_claimers() {
    run(async {
        let dir = temp_dir();
        let mut config = Config::new(dir.path()).with_bug(Bug::DoubleClaim);
        // A long pause makes the overlap certain rather than likely.
        config.double_claim_delay = Duration::from_millis(200);
        let server = start(config).await;
        let replies = two_concurrent_claims(&server).await;
        let job = r#"{"id":1,"payload":"only"}"#;
        assert_eq!(replies, [ok(job), ok(job)]);
        assert_eq!(server.call("POST", "/claim", "").await, status(204, ""));
        server.stop().await;
    });
}

#[test]
fn queue_logs_recovered_listening_stopped() {
    run(async {
        let dir = temp_dir();
        let config = Config::new(dir.path()).with_bug(Bug::DoubleClaim);
        let server = start(config.with_bug(Bug::LostOnKill)).await;
        let lines = server.stop().await.lines();
        let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        let msgs: Vec<&str> = parsed.iter().map(|v| v["msg"].as_str().unwrap()).collect();
        assert_eq!(msgs, ["recovered", "listening", "stopped"]);
        assert_eq!(parsed[1]["bugs"], json!(["double-claim", "lost-on-kill"]));
    });
}
