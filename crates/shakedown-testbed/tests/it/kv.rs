//! The kv service: a real server in-process on 127.0.0.1:0, driven over HTTP.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use shakedown_testbed::kv::{self, Bug, Config, KvError};
use shakedown_testbed::Logger;
use tokio::net::TcpListener;

use crate::support::{self, futures_join_all, ok, request, run, status, temp_dir, Server};

/// Starts the kv service in-process with `config`.
async fn start(config: Config) -> Server {
    support::start(move |listener, log, shutdown| kv::serve(listener, config.with_log(log), shutdown)).await
}

#[test]
fn kv_put_get_delete_cas() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let cases = [
            ("GET", "/health", "", ok("ok")),
            ("GET", "/kv/k", "", status(404, "not found")),
            ("DELETE", "/kv/k", "", status(404, "not found")),
            ("POST", "/kv/k/cas", r#"{"from":"a","to":"b"}"#, status(404, "not found")),
            ("PUT", "/kv/k", "a", ok("a")),
            ("GET", "/kv/k", "", ok("a")),
            ("POST", "/kv/k/cas", r#"{"from":"x","to":"b"}"#, status(409, "mismatch")),
            ("GET", "/kv/k", "", ok("a")),
            ("POST", "/kv/k/cas", r#"{"from":"a","to":"b"}"#, ok("b")),
            ("GET", "/kv/k", "", ok("b")),
            ("PUT", "/kv/k", "", ok("")),
            ("GET", "/kv/k", "", ok("")),
            ("DELETE", "/kv/k", "", ok("")),
            ("GET", "/kv/k", "", status(404, "not found")),
            ("PUT", "/kv/n", "1", ok("1")),
            ("POST", "/kv/n/cas", r#"{"from":1,"to":2}"#, ok("2")),
            ("PUT", "/kv/with%20space", "x y", ok("x y")),
            ("GET", "/kv/with%20space", "", ok("x y")),
        ];
        for (method, path, body, expected) in cases {
            assert_eq!(server.call(method, path, body).await, expected, "{method} {path} {body}");
        }
        let (code, _) = server.call("POST", "/kv/n/cas", "not json").await;
        assert_eq!(code, 400);
        server.stop().await;
    });
}

#[test]
fn set_add_and_read_sorted_with_numbers() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        assert_eq!(server.call("GET", "/set/s", "").await, ok("[]"));
        for element in ["10", "b", "2", "-1", "a", "2"] {
            let path = format!("/set/s/{element}");
            assert_eq!(server.call("POST", &path, "").await, ok(element));
        }
        assert_eq!(server.call("GET", "/set/s", "").await, ok(r#"[-1,2,10,"a","b"]"#));
        assert_eq!(server.call("GET", "/set/other", "").await, ok("[]"));
        server.stop().await;
    });
}

/// Writes a little of everything; returns the reads expected afterwards.
async fn write_sample(server: &Server) -> Vec<(&'static str, (u16, String))> {
    server.call("PUT", "/kv/a", "1").await;
    server.call("PUT", "/kv/b", "2").await;
    server.call("POST", "/kv/a/cas", r#"{"from":"1","to":"3"}"#).await;
    server.call("DELETE", "/kv/b", "").await;
    server.call("POST", "/set/s/7", "").await;
    server.call("POST", "/set/s/x", "").await;
    vec![("/kv/a", ok("3")), ("/kv/b", status(404, "not found")), ("/set/s", ok(r#"[7,"x"]"#))]
}

async fn assert_reads(server: &Server, expected: &[(&str, (u16, String))]) {
    for (path, want) in expected {
        assert_eq!(&server.call("GET", path, "").await, want, "GET {path}");
    }
}

#[test]
fn state_survives_a_graceful_restart() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let expected = write_sample(&server).await;
        server.stop().await;
        let server = start(Config::new(dir.path())).await;
        assert_reads(&server, &expected).await;
        let log = server.log.lines();
        assert!(log.iter().any(|l| l.contains(r#""msg":"recovered","entries":6"#)), "{log:?}");
        server.stop().await;
    });
}

#[test]
fn acknowledged_writes_survive_a_kill() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let expected = write_sample(&server).await;
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        assert_reads(&server, &expected).await;
        server.stop().await;
    });
}

#[test]
fn concurrent_writes_all_survive_a_restart() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let addr = server.addr;
        let adds = (0..40).map(|n| async move { request(addr, "POST", &format!("/set/s/{n}"), "").await });
        let replies = futures_join_all(adds).await;
        assert!(replies.iter().all(|(code, _)| *code == 200), "{replies:?}");
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        let all: Vec<String> = (0..40).map(|n| n.to_string()).collect();
        assert_eq!(server.call("GET", "/set/s", "").await, ok(&format!("[{}]", all.join(","))));
        server.stop().await;
    });
}

#[test]
fn torn_last_line_is_ignored_with_a_warning() {
    run(async {
        let dir = temp_dir();
        let log_text = "{\"op\":\"put\",\"key\":\"a\",\"value\":\"1\"}\n{\"op\":\"put\",\"key\":\"b\",\"va";
        std::fs::write(dir.path().join(kv::LOG_FILE), log_text).expect("write log");
        let server = start(Config::new(dir.path())).await;
        assert!(server.logged("ignored torn last log line"), "{:?}", server.log.lines());
        assert_eq!(server.call("GET", "/kv/a", "").await, ok("1"));
        assert_eq!(server.call("GET", "/kv/b", "").await, status(404, "not found"));
        assert_eq!(server.call("PUT", "/kv/c", "3").await, ok("3"));
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        assert!(!server.logged("ignored torn last log line"));
        assert_reads(&server, &[("/kv/a", ok("1")), ("/kv/c", ok("3"))]).await;
        server.stop().await;
    });
}

fn lost_write(dir: &Path, delay: Duration) -> Config {
    let mut config = Config::new(dir).with_bug(Bug::LostWrite);
    config.lost_write_delay = delay;
    config
}

#[test]
fn lost_write_loses_acknowledged_writes_on_kill() {
    run(async {
        let dir = temp_dir();
        let server = start(lost_write(dir.path(), Duration::from_secs(2))).await;
        write_sample(&server).await;
        assert_eq!(server.call("GET", "/kv/a", "").await, ok("3"));
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        let gone = [("/kv/a", status(404, "not found")), ("/set/s", ok("[]"))];
        assert_reads(&server, &gone).await;
        server.stop().await;
    });
}

#[test]
fn lost_write_flushes_on_graceful_shutdown() {
    run(async {
        let dir = temp_dir();
        let server = start(lost_write(dir.path(), Duration::from_secs(60))).await;
        let expected = write_sample(&server).await;
        let log = server.stop().await;
        assert!(log.lines().iter().any(|l| l.contains(r#""msg":"stopped","flushed":6"#)));
        let server = start(Config::new(dir.path())).await;
        assert_reads(&server, &expected).await;
        server.stop().await;
    });
}

#[test]
fn lost_write_flushes_writes_once_they_are_old_enough() {
    run(async {
        let dir = temp_dir();
        let server = start(lost_write(dir.path(), Duration::from_millis(100))).await;
        let expected = write_sample(&server).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        assert_reads(&server, &expected).await;
        server.stop().await;
    });
}

fn stale_read(dir: &Path, period: Duration) -> Config {
    let mut config = Config::new(dir).with_bug(Bug::StaleRead);
    config.stale_read_period = period;
    config
}

#[test]
fn stale_read_misses_a_write_until_the_snapshot_refreshes() {
    run(async {
        let dir = temp_dir();
        let server = start(stale_read(dir.path(), Duration::from_secs(60))).await;
        assert_eq!(server.call("PUT", "/kv/k", "1").await, ok("1"));
        assert_eq!(server.call("GET", "/kv/k", "").await, status(404, "not found"));
        assert_eq!(server.call("POST", "/set/s/1", "").await, ok("1"));
        assert_eq!(server.call("GET", "/set/s", "").await, ok("[]"));
        // Mutations still see the live state: cas from the acknowledged value works.
        let cas = server.call("POST", "/kv/k/cas", r#"{"from":"1","to":"2"}"#).await;
        assert_eq!(cas, ok("2"));
        server.stop().await;
    });
}

#[test]
fn stale_read_catches_up_after_a_refresh() {
    run(async {
        let dir = temp_dir();
        let server = start(stale_read(dir.path(), Duration::from_millis(50))).await;
        assert_eq!(server.call("PUT", "/kv/k", "1").await, ok("1"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.call("GET", "/kv/k", "").await, ok("1"));
        server.stop().await;
    });
}

#[test]
fn logs_are_json_lines_with_listening_and_recovered() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path()).with_bug(Bug::StaleRead)).await;
        let addr = server.addr.to_string();
        let lines = server.stop().await.lines();
        let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
        let msgs: Vec<&str> = parsed.iter().map(|v| v["msg"].as_str().expect("msg")).collect();
        assert_eq!(msgs, ["recovered", "listening", "stopped"]);
        assert_eq!(parsed[0]["entries"], 0);
        assert_eq!(parsed[1]["addr"], addr.as_str());
        assert_eq!(parsed[1]["bugs"], serde_json::json!(["stale-read"]));
        assert!(parsed.iter().all(|v| v["ts"].is_string() && v["level"] == "info"));
    });
}

#[test]
fn a_data_dir_that_is_a_file_is_an_error() {
    run(async {
        let dir = temp_dir();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").expect("write file");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let config = Config::new(&file).with_log(Logger::memory());
        let err = kv::serve(listener, config, async {}).await.unwrap_err();
        assert!(err.to_string().starts_with("create data dir"), "{err}");
    });
}

#[test]
fn run_reports_a_taken_address() {
    run(async {
        let dir = temp_dir();
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("local addr");
        let config = Config::new(dir.path()).with_log(Logger::memory());
        let err = kv::run(addr, config).await.unwrap_err();
        assert!(matches!(err, KvError::Bind { .. }), "{err}");
    });
}

fn racy_cas(dir: &Path, delay: Duration) -> Config {
    let mut config = Config::new(dir).with_bug(Bug::RacyCas);
    config.racy_cas_delay = delay;
    config
}

/// Sends two cas from "0" (to "1" and to "2") at once; returns both replies.
async fn two_cas_from_the_same_value(server: &Server) -> Vec<(u16, String)> {
    assert_eq!(server.call("PUT", "/kv/k", "0").await, ok("0"));
    let addr = server.addr;
    let cas = (1..=2).map(|to| async move {
        let body = format!(r#"{{"from":"0","to":"{to}"}}"#);
        request(addr, "POST", "/kv/k/cas", &body).await
    });
    futures_join_all(cas).await
}

#[test]
fn concurrent_cas_from_the_same_value_lets_only_one_win() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let mut codes: Vec<u16> =
            two_cas_from_the_same_value(&server).await.into_iter().map(|(code, _)| code).collect();
        codes.sort_unstable();
        assert_eq!(codes, [200, 409]);
        server.stop().await;
    });
}

#[test]
fn racy_cas_lets_two_cas_from_the_same_value_both_win() {
    run(async {
        let dir = temp_dir();
        // A long pause makes the overlap certain rather than likely.
        let server = start(racy_cas(dir.path(), Duration::from_millis(200))).await;
        let replies = two_cas_from_the_same_value(&server).await;
        assert_eq!(replies, [ok("1"), ok("2")]);
        let (code, last) = server.call("GET", "/kv/k", "").await;
        assert!(code == 200 && (last == "1" || last == "2"), "{last}");
        // A cas that does not match is still refused.
        let stale = server.call("POST", "/kv/k/cas", r#"{"from":"0","to":"3"}"#).await;
        assert_eq!(stale, status(409, "mismatch"));
        assert_eq!(server.call("POST", "/kv/none/cas", r#"{"from":"0","to":"3"}"#).await, status(404, "not found"));
        server.stop().await;
    });
}
