//! The ids service: ids stay unique across restarts, repeat with `repeat-after-restart`, and follow the wall clock with `clock-ids`.

use std::collections::BTreeSet;

use shakedown_testbed::ids::{self, Bug, Config};
use shakedown_testbed::{Logger, ServiceError};
use tokio::net::TcpListener;

use crate::support::{self, futures_join_all, request, run, temp_dir, Server};

async fn start(config: Config) -> Server {
    support::start(move |listener, log, shutdown| ids::serve(listener, config.with_log(log), shutdown)).await
}

async fn take(server: &Server, n: usize) -> Vec<u64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let (code, body) = server.call("POST", "/ids", "").await;
        assert_eq!(code, 200, "{body}");
        ids.push(body.parse().expect("integer id"));
    }
    ids
}

#[test]
fn ids_are_unique_across_kills_and_restarts() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let mut all = take(&server, 3).await;
        assert_eq!(all, [1, 2, 3]);
        server.kill().await;
        let server = start(Config::new(dir.path())).await;
        let after_kill = take(&server, 2).await;
        // The restart skips the rest of the reserved block.
        assert_eq!(after_kill, [101, 102]);
        all.extend(after_kill);
        server.stop().await;
        let server = start(Config::new(dir.path())).await;
        all.extend(take(&server, 2).await);
        server.stop().await;
        let unique: BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
    });
}

#[test]
fn concurrent_ids_are_unique() {
    run(async {
        let dir = temp_dir();
        let mut config = Config::new(dir.path());
        config.block_size = 7;
        let server = start(config).await;
        let addr = server.addr;
        let calls = (0..40).map(|_| async move { request(addr, "POST", "/ids", "").await });
        let replies = futures_join_all(calls).await;
        let ids: BTreeSet<String> = replies.into_iter().map(|(_, body)| body).collect();
        assert_eq!(ids.len(), 40);
        server.stop().await;
    });
}

#[test]
fn repeat_after_restart_hands_out_ids_again() {
    run(async {
        let dir = temp_dir();
        let buggy = || Config::new(dir.path()).with_bug(Bug::RepeatAfterRestart);
        let server = start(buggy()).await;
        assert_eq!(take(&server, 3).await, [1, 2, 3]);
        server.kill().await;
        let server = start(buggy()).await;
        assert_eq!(take(&server, 2).await, [1, 2]);
        server.stop().await;
    });
}

#[test]
fn clock_ids_follow_the_wall_clock_and_stay_unique_while_it_runs_forward() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path()).with_bug(Bug::ClockIds)).await;
        let now_ms = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let before_ms = now_ms();
        let ids = take(&server, 200).await;
        let after_ms = now_ms();
        assert!(ids.iter().all(|id| (before_ms..=after_ms).contains(&(id / 1000))), "{ids:?}");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "{ids:?}");
        assert!(!dir.path().join(ids::LOG_FILE).exists(), "clock ids keep no log");
        server.stop().await;
    });
}

#[test]
fn ids_run_reports_a_taken_address() {
    run(async {
        let dir = temp_dir();
        let taken = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = taken.local_addr().expect("local addr");
        let config = Config::new(dir.path()).with_log(Logger::memory());
        let err = ids::run(addr, config).await.unwrap_err();
        assert!(matches!(err, ServiceError::Bind { .. }), "{err}");
    });
}
