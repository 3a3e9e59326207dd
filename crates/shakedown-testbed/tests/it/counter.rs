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

/// Reads `/counter` `n` times in a row.
async fn reads(server: &Server, n: usize) -> Vec<i64> {
    let mut totals = Vec::new();
    for _ in 0..n {
        let (code, body) = server.call("GET", "/counter", "").await;
        assert_eq!(code, 200, "{body}");
        totals.push(body.parse().expect("integer total"));
    }
    totals
}

fn decreases(totals: &[i64]) -> bool {
    totals.windows(2).any(|pair| pair[1] < pair[0])
}

#[test]
fn stale_replica_read_lets_reads_go_backwards() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path()).with_bug(Bug::StaleReplicaRead)).await;
        assert_eq!(add(&server, None, "").await, ok("1"));
        // Let the replica catch up once, so it lags only what follows.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let mut seen = Vec::new();
        // Each round moves the live total past the replica, then reads: a
        // live read followed by a replica read goes backwards.
        for _ in 0..20 {
            for _ in 0..5 {
                assert_eq!(add(&server, None, "").await.0, 200);
            }
            seen.extend(reads(&server, 20).await);
            if decreases(&seen) {
                break;
            }
        }
        assert!(decreases(&seen), "no read went backwards: {seen:?}");
        server.stop().await;
    });
}

#[test]
fn reads_never_go_backwards_in_the_correct_build() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        assert_eq!(add(&server, None, "").await, ok("1"));
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let mut seen = Vec::new();
        for round in 0..10 {
            for _ in 0..5 {
                assert_eq!(add(&server, None, "").await.0, 200);
            }
            let totals = reads(&server, 20).await;
            assert!(totals.iter().all(|&t| t == 6 + 5 * round), "{totals:?}");
            seen.extend(totals);
        }
        assert!(!decreases(&seen), "{seen:?}");
        server.stop().await;
    });
}
