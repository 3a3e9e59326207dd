//! The counter service: an idempotency key applies once, twice with `double-apply`.

use shakedown_testbed::counter::{self, Bug, Config};

use crate::support::{self, ok, run, temp_dir, Server};

async fn start(config: Config) -> Server {
    support::start(move |listener, log, shutdown| counter::serve(listener, config.with_log(log), shutdown)).await
}

async fn add(server: &Server, key: Option<&str>, body: &str) -> (u16, String) {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    server.call_with("POST", "/counter/add", &headers, body).await
}

#[test]
fn a_retried_key_applies_once_even_after_a_kill() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        assert_eq!(server.call("GET", "/counter", "").await, ok("0"));
        let cases = [
            (Some("a"), "2", ok("2")),
            (Some("a"), "2", ok("2")),
            (None, "3", ok("5")),
            (None, "", ok("6")),
            (Some("b"), "", ok("7")),
            (Some("a"), "", ok("2")),
        ];
        for (key, body, expected) in cases {
            assert_eq!(add(&server, key, body).await, expected, "{key:?} {body}");
        }
        let (code, _) = add(&server, None, "x").await;
        assert_eq!(code, 400);
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        assert_eq!(server.call("GET", "/counter", "").await, ok("7"));
        assert_eq!(add(&server, Some("b"), "1").await, ok("7"));
        assert_eq!(server.call("GET", "/counter", "").await, ok("7"));
        server.stop().await;
    });
}

#[test]
fn double_apply_applies_a_retried_key_twice() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path()).with_bug(Bug::DoubleApply)).await;
        assert_eq!(add(&server, Some("a"), "2").await, ok("2"));
        assert_eq!(add(&server, Some("a"), "2").await, ok("4"));
        assert_eq!(server.call("GET", "/counter", "").await, ok("4"));
        server.stop().await;
    });
}
