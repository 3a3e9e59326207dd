//! The bank service: transfers conserve the total and never overdraw, and
//! with `non-atomic-transfer` reads see money in flight.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use shakedown_testbed::bank::{self, Bug, Config};

use crate::support::{self, futures_join_all, ok, request, run, status, temp_dir, Server};

const ACCOUNTS: usize = 5;
const INITIAL: i64 = 100;
const TOTAL: i64 = ACCOUNTS as i64 * INITIAL;

async fn start(config: Config) -> Server {
    support::start(move |listener, log, shutdown| bank::serve(listener, config.with_log(log), shutdown)).await
}

fn body(from: i64, to: i64, amount: i64) -> String {
    format!(r#"{{"from": {from}, "to": {to}, "amount": {amount}}}"#)
}

async fn balances(addr: SocketAddr) -> BTreeMap<String, i64> {
    let (code, text) = request(addr, "GET", "/accounts", "").await;
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).expect("accounts JSON")
}

/// Runs `workers` clients doing `per_worker` transfers each (a fixed spread of
/// accounts and amounts, many of them larger than a balance) while one client
/// reads `/accounts` until they finish. Returns every read and the transfer statuses.
async fn transfers_and_reads(
    server: &Server,
    workers: usize,
    per_worker: usize,
) -> (Vec<BTreeMap<String, i64>>, Vec<u16>) {
    let addr = server.addr;
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut reads = Vec::new();
        loop {
            reads.push(balances(addr).await);
            if done_rx.try_recv().is_ok() {
                return reads;
            }
        }
    });
    let clients = (0..workers).map(|w| async move {
        let mut codes = Vec::new();
        for i in 0..per_worker {
            let from = ((w + i) % ACCOUNTS) as i64;
            let to = ((w + i + 1 + i % (ACCOUNTS - 1)) % ACCOUNTS) as i64;
            let to = if to == from { (to + 1) % ACCOUNTS as i64 } else { to };
            let amount = 1 + ((w * 37 + i * 13) % 90) as i64;
            codes.push(request(addr, "POST", "/transfer", &body(from, to, amount)).await.0);
        }
        codes
    });
    let codes = futures_join_all(clients).await.concat();
    let _ = done_tx.send(());
    let reads = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
        .await
        .expect("reader timed out")
        .expect("reader panicked");
    (reads, codes)
}

fn total(accounts: &BTreeMap<String, i64>) -> i64 {
    accounts.values().sum()
}

#[test]
fn transfers_move_money_and_reject_bad_input() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path()).with_accounts(3, 10)).await;
        let cases =
            [(body(0, 1, 4), ok("ok")), (body(0, 2, 7), status(409, "insufficient funds")), (body(1, 2, 14), ok("ok"))];
        for (request, expected) in cases {
            assert_eq!(server.call("POST", "/transfer", &request).await, expected, "{request}");
        }
        let bad =
            [body(0, 3, 1), body(-1, 1, 1), body(1, 1, 1), body(0, 1, 0), body(0, 1, -5), "{}".into(), "x".into()];
        for request in bad {
            assert_eq!(server.call("POST", "/transfer", &request).await.0, 400, "{request}");
        }
        assert_eq!(server.call("GET", "/accounts", "").await, ok(r#"{"0":6,"1":0,"2":24}"#));
        server.kill().await;
        let server = start(Config::new(dir.path()).with_accounts(3, 10)).await;
        assert!(server.logged("recovered"));
        assert_eq!(server.call("GET", "/accounts", "").await, ok(r#"{"0":6,"1":0,"2":24}"#));
        server.stop().await;
    });
}

#[test]
fn concurrent_transfers_conserve_the_total_and_never_overdraw() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path())).await;
        let (reads, codes) = transfers_and_reads(&server, 8, 25).await;
        assert!(codes.iter().all(|&c| c == 200 || c == 409), "{codes:?}");
        assert!(codes.contains(&200), "{codes:?}");
        assert!(!reads.is_empty());
        for read in &reads {
            assert_eq!(read.len(), ACCOUNTS, "{read:?}");
            assert_eq!(total(read), TOTAL, "{read:?}");
            assert!(read.values().all(|&b| b >= 0), "{read:?}");
        }
        let before = balances(server.addr).await;
        server.stop().await;
        let server = start(Config::new(dir.path())).await;
        assert_eq!(balances(server.addr).await, before);
        server.stop().await;
    });
}

#[test]
fn non_atomic_transfer_shows_money_in_flight() {
    run(async {
        let dir = temp_dir();
        let server = start(Config::new(dir.path()).with_bug(Bug::NonAtomicTransfer)).await;
        let mut reads = Vec::new();
        for _ in 0..10 {
            let (round, codes) = transfers_and_reads(&server, 8, 10).await;
            assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
            reads.extend(round);
            if reads.iter().any(|read| total(read) != TOTAL) {
                break;
            }
        }
        assert!(reads.iter().any(|read| total(read) != TOTAL), "every read conserved the total: {reads:?}");
        // Once nothing is in flight, the money is all back.
        assert_eq!(total(&balances(server.addr).await), TOTAL);
        server.stop().await;
    });
}
