//! The queue's engines: one contract test body run per engine (file, memory,
//! sqlite), sqlite shared by two servers, the `broken-stats-query` bug, and the
//! old build against a database the new build migrated.

use std::path::Path;
use std::time::Duration;

use crate::support::{futures_join_all, ok, request, run, status, temp_dir, Server};
use serde_json::{json, Value};
use shakedown_testbed::queue::{self, Bug, Build, Config, Engine};

const ENGINES: [Engine; 3] = [Engine::File, Engine::Memory, Engine::Sqlite];

async fn start(config: Config) -> Server {
    crate::support::start(move |listener, log, shutdown| queue::serve(listener, config.with_log(log), shutdown)).await
}

fn on(engine: Engine, dir: &Path) -> Config {
    Config::new(dir).with_engine(engine)
}

fn json_body(reply: (u16, String)) -> (u16, Value) {
    let body = serde_json::from_str(&reply.1).unwrap_or_else(|e| panic!("JSON body {:?}: {e}", reply.1));
    (reply.0, body)
}

async fn jobs(server: &Server, state: &str) -> Value {
    let (code, body) = json_body(server.call("GET", &format!("/jobs?state={state}"), "").await);
    assert_eq!(code, 200, "{body}");
    body
}

/// The engine-invariant contract: the same calls give the same replies on every engine.
async fn contract(engine: Engine) {
    let dir = temp_dir();
    let server = start(on(engine, dir.path())).await;
    let call = |method: &'static str, path: &'static str, body: &'static str| server.call(method, path, body);
    assert_eq!(call("POST", "/claim", "").await, status(204, ""), "{engine}");
    assert_eq!(call("POST", "/jobs", "a").await, ok("1"));
    assert_eq!(call("POST", "/jobs?key=k", "b").await, ok("2"));
    assert_eq!(call("POST", "/jobs?key=k", "c").await, status(409, "duplicate key: held by live job 2"));
    assert_eq!(json_body(call("POST", "/claim", "").await), (200, json!({"id": 1, "payload": "a"})));
    let steps = [
        ("/jobs/1/cancel", status(409, "not pending: claimed")),
        ("/jobs/1/complete", ok("1")),
        ("/jobs/1/complete", status(409, "not claimed")),
        ("/keys/k/cancel", ok(r#"{"id":2,"payload":"b"}"#)),
        ("/keys/k/cancel", status(404, "no live job with this key")),
        ("/jobs/2/complete", status(409, "not claimed")),
    ];
    for (path, expected) in steps {
        assert_eq!(call("POST", path, "").await, expected, "{engine} {path}");
    }
    assert_eq!(call("POST", "/jobs?key=k", "c").await, ok("3"), "{engine}: a finished job frees its key");
    assert_eq!(call("POST", "/jobs?key=m", "d").await, ok("4"));
    let steps = [
        ("/jobs/3/cancel", ok(r#"{"id":3,"payload":"c"}"#)),
        ("/jobs/3/cancel", status(409, "not pending: cancelled")),
        ("/jobs/9/cancel", status(404, "not found")),
        ("/keys/m/complete", status(409, "not claimed")),
        ("/claim", ok(r#"{"id":4,"payload":"d"}"#)),
        ("/keys/m/complete", ok("4")),
        ("/keys/m/complete", status(404, "no live job with this key")),
        ("/claim", status(204, "")),
    ];
    for (path, expected) in steps {
        assert_eq!(call("POST", path, "").await, expected, "{engine} {path}");
    }
    assert_eq!(jobs(&server, "done").await, json!(["a", "d"]), "{engine}");
    assert_eq!(jobs(&server, "cancelled").await, json!(["b", "c"]), "{engine}");
    assert_eq!(jobs(&server, "pending").await, json!([]));
    assert_eq!(call("GET", "/jobs?state=nope", "").await.0, 400);
    assert_stats(&server, engine, json!({"engine": "sqlite", "pending": 0, "claimed": 0, "done": 2, "cancelled": 2}))
        .await;
    server.stop().await;
}

/// sqlite answers `expected`; the other engines keep no admin stats.
async fn assert_stats(server: &Server, engine: Engine, expected: Value) {
    let reply = server.call("GET", "/admin/stats", "").await;
    match engine {
        Engine::Sqlite => assert_eq!(json_body(reply), (200, expected)),
        other => assert_eq!(reply, status(404, &format!("the {other} engine keeps no admin stats"))),
    }
}

#[test]
fn every_engine_keeps_the_contract() {
    for engine in ENGINES {
        run(contract(engine));
    }
}

#[test]
fn every_engine_expires_claims_and_counts_them_pending() {
    for engine in ENGINES {
        run(async move {
            let dir = temp_dir();
            let mut config = on(engine, dir.path());
            config.claim_lease = Duration::from_millis(100);
            let server = start(config).await;
            assert_eq!(server.call("POST", "/jobs", "a").await, ok("1"));
            let first = server.call("POST", "/claim", "").await;
            assert_eq!(server.call("POST", "/claim", "").await, status(204, ""), "{engine}");
            assert_stats(
                &server,
                engine,
                json!({"engine": "sqlite", "pending": 0, "claimed": 1, "done": 0, "cancelled": 0}),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(jobs(&server, "pending").await, json!(["a"]), "{engine}");
            assert_stats(
                &server,
                engine,
                json!({"engine": "sqlite", "pending": 1, "claimed": 0, "done": 0, "cancelled": 0}),
            )
            .await;
            assert_eq!(server.call("POST", "/claim", "").await, first, "{engine}");
            server.stop().await;
        });
    }
}

#[test]
fn file_and_sqlite_keep_jobs_across_a_kill_and_memory_does_not() {
    for engine in ENGINES {
        run(async move {
            let dir = temp_dir();
            let server = start(on(engine, dir.path())).await;
            for payload in ["a", "b"] {
                assert_eq!(
                    server.call("POST", "/jobs?key=k", payload).await.0,
                    [200, 409][usize::from(payload == "b")]
                );
            }
            assert_eq!(server.call("POST", "/jobs", "c").await.0, 200);
            server.kill().await;
            let server = start(on(engine, dir.path())).await;
            let expected = if engine == Engine::Memory { json!([]) } else { json!(["a", "c"]) };
            assert_eq!(jobs(&server, "pending").await, expected, "{engine}");
            let reply = server.call("POST", "/jobs?key=k", "d").await;
            let expected =
                if engine == Engine::Memory { ok("1") } else { status(409, "duplicate key: held by live job 1") };
            assert_eq!(reply, expected, "{engine}: the key is held across the restart");
            server.stop().await;
        });
    }
}

#[test]
fn broken_stats_query_gives_500_only_under_sqlite() {
    for engine in ENGINES {
        run(async move {
            let dir = temp_dir();
            let server = start(on(engine, dir.path()).with_bug(Bug::BrokenStatsQuery)).await;
            assert_eq!(server.call("POST", "/jobs", "a").await, ok("1"), "the rest of the contract still holds");
            let (code, body) = server.call("GET", "/admin/stats", "").await;
            match engine {
                Engine::Sqlite => {
                    assert_eq!(code, 500, "{body}");
                    assert!(body.contains("no such column: lease_expires_at"), "SQLite's error text: {body}");
                }
                other => assert_eq!((code, body), status(404, &format!("the {other} engine keeps no admin stats"))),
            }
            server.stop().await;
        });
    }
}

#[test]
fn double_claim_gives_one_job_to_two_claimers_on_every_engine() {
    for engine in ENGINES {
        run(async move {
            let dir = temp_dir();
            let mut config = on(engine, dir.path()).with_bug(Bug::DoubleClaim);
            config.double_claim_delay = Duration::from_millis(200);
            let server = start(config).await;
            assert_eq!(server.call("POST", "/jobs", "only").await, ok("1"));
            let addr = server.addr;
            let claims = (0..2).map(|_| async move { request(addr, "POST", "/claim", "").await });
            let job = r#"{"id":1,"payload":"only"}"#;
            assert_eq!(futures_join_all(claims).await, [ok(job), ok(job)], "{engine}");
            server.stop().await;
        });
    }
}

fn sqlite_lost_on_kill(dir: &Path, period: Duration) -> Config {
    let mut config = on(Engine::Sqlite, dir).with_bug(Bug::LostOnKill);
    config.flush_period = period;
    config
}

#[test]
fn sqlite_lost_on_kill_loses_acknowledged_jobs_and_a_stop_commits_them() {
    run(async {
        let dir = temp_dir();
        let server = start(sqlite_lost_on_kill(dir.path(), Duration::from_secs(60))).await;
        assert_eq!(server.call("POST", "/jobs", "a").await, ok("1"));
        assert_eq!(jobs(&server, "pending").await, json!(["a"]));
        server.kill().await;
        let server = start(on(Engine::Sqlite, dir.path())).await;
        assert_eq!(jobs(&server, "pending").await, json!([]), "the open transaction was rolled back");
        server.stop().await;
        let server = start(sqlite_lost_on_kill(dir.path(), Duration::from_secs(60))).await;
        assert_eq!(server.call("POST", "/jobs", "b").await.0, 200);
        let log = server.stop().await;
        assert!(log.lines().iter().any(|l| l.contains(r#""msg":"stopped","flushed":1"#)), "{:?}", log.lines());
        let server = start(on(Engine::Sqlite, dir.path())).await;
        assert_eq!(jobs(&server, "pending").await, json!(["b"]));
        server.stop().await;
    });
}

#[test]
fn two_servers_share_one_sqlite_file_and_never_hand_out_a_job_twice() {
    run(async {
        let dir = temp_dir();
        let (a, b) = (start(on(Engine::Sqlite, dir.path())).await, start(on(Engine::Sqlite, dir.path())).await);
        for n in 0..20 {
            let server = if n % 2 == 0 { &a } else { &b };
            assert_eq!(server.call("POST", "/jobs", &format!("j{n}")).await.0, 200);
        }
        assert_eq!(b.call("POST", "/jobs?key=k", "x").await.0, 200);
        assert_eq!(a.call("POST", "/jobs?key=k", "y").await, status(409, "duplicate key: held by live job 21"));
        let addrs = [a.addr, b.addr];
        let claims = (0..24).map(|i| async move { request(addrs[i % 2], "POST", "/claim", "").await });
        let replies = futures_join_all(claims).await;
        let mut ids: Vec<u64> = replies
            .iter()
            .filter(|(code, _)| *code == 200)
            .map(|reply| json_body(reply.clone()).1["id"].as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (1..=21).collect::<Vec<_>>(), "each job claimed once, by one of the two: {replies:?}");
        let expected = json!({"engine": "sqlite", "pending": 0, "claimed": 21, "done": 0, "cancelled": 0});
        assert_eq!(json_body(b.call("GET", "/admin/stats", "").await), (200, expected));
        a.stop().await;
        b.stop().await;
    });
}

fn sqlite(dir: &Path, build: Build) -> Config {
    on(Engine::Sqlite, dir).with_build(build)
}

fn opened_line(server: &Server) -> Value {
    let lines = server.log.lines();
    let line = lines.iter().find(|l| l.contains(r#""msg":"opened""#)).expect("an opened line");
    serde_json::from_str(line).unwrap()
}

#[test]
fn the_old_build_keeps_working_on_a_database_the_new_build_migrated() {
    run(async {
        let dir = temp_dir();
        let old = start(sqlite(dir.path(), Build::Old)).await;
        assert_eq!(
            (opened_line(&old)["schema_version"].clone(), opened_line(&old)["migrated"].clone()),
            (json!(1), json!(false))
        );
        assert_eq!(old.call("POST", "/jobs", "v1").await, ok("1"));
        assert_eq!(old.call("POST", "/jobs?key=k", "x").await, status(400, "unique keys need the new build"));
        assert_eq!(old.call("POST", "/keys/k/cancel", "").await, status(400, "unique keys need the new build"));
        let new = start(sqlite(dir.path(), Build::New)).await;
        let opened = opened_line(&new);
        assert_eq!((opened["schema_version"].clone(), opened["migrated"].clone()), (json!(2), json!(true)));
        assert_eq!(new.call("POST", "/jobs?key=k", "keyed").await, ok("2"));
        // The old build, still running across the migration, enqueues, claims and completes.
        assert_eq!(old.call("POST", "/jobs", "v1-again").await, ok("3"));
        assert_eq!(old.call("POST", "/claim", "").await, ok(r#"{"id":1,"payload":"v1"}"#));
        assert_eq!(old.call("POST", "/claim", "").await, ok(r#"{"id":2,"payload":"keyed"}"#));
        assert_eq!(old.call("POST", "/jobs/2/complete", "").await, ok("2"));
        assert_eq!(
            new.call("POST", "/jobs?key=k", "keyed-again").await,
            ok("4"),
            "the old build's completion freed the key"
        );
        assert_eq!(old.call("POST", "/jobs/3/cancel", "").await, ok(r#"{"id":3,"payload":"v1-again"}"#));
        assert_eq!(jobs(&old, "pending").await, json!(["keyed-again"]));
        old.stop().await;
        // A restarted old build opens the migrated file without touching its schema.
        let old = start(sqlite(dir.path(), Build::Old)).await;
        let opened = opened_line(&old);
        assert_eq!((opened["schema_version"].clone(), opened["migrated"].clone()), (json!(2), json!(false)));
        assert_eq!(old.call("POST", "/claim", "").await, ok(r#"{"id":4,"payload":"keyed-again"}"#));
        assert_eq!(old.call("POST", "/jobs/4/complete", "").await, ok("4"));
        let expected = json!({"engine": "sqlite", "pending": 0, "claimed": 1, "done": 2, "cancelled": 1});
        assert_eq!(json_body(new.call("GET", "/admin/stats", "").await), (200, expected));
        old.stop().await;
        new.stop().await;
    });
}

#[test]
fn the_old_build_refuses_unique_keys_on_every_engine() {
    for engine in ENGINES {
        run(async move {
            let dir = temp_dir();
            let server = start(on(engine, dir.path()).with_build(Build::Old)).await;
            assert_eq!(server.call("POST", "/jobs?key=k", "a").await, status(400, "unique keys need the new build"));
            assert_eq!(server.call("POST", "/keys/k/complete", "").await.0, 400);
            assert_eq!(server.call("POST", "/jobs", "a").await, ok("1"), "{engine}");
            server.stop().await;
        });
    }
}
