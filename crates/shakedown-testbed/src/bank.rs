//! `bank`: an HTTP bank of accounts `0..N` moving money between them, persisted to `DIR/bank.log`.
//!
//! Every account starts with [`Config::initial`], so the total is always
//! `N * initial`. The correct build checks the funds, records the transfer and
//! `sync_data`s it, and applies it, all under one lock: balances never go
//! negative and every read of `GET /accounts` sees the total conserved.
//! [`Bug::NonAtomicTransfer`] skips the funds check and applies a transfer in
//! two steps, debit then (after [`Config::transfer_delay`], lock released)
//! credit, so reads see money missing in flight and balances can go negative.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State as Shared;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::net::TcpListener;

use crate::journal::{self, Durability, Journal, JournalError, Recovery};
use crate::log::Logger;
use crate::service::{self, bug_switches, ServiceError};

/// Name of the log file inside the data directory.
pub const LOG_FILE: &str = "bank.log";

bug_switches! {
    /// A deliberate defect the service can be started with.
    pub enum Bug {
        /// Skip the funds check and apply a transfer as a debit, a pause of
        /// [`Config::transfer_delay`] without the lock, then a credit: reads
        /// see money missing in flight and balances can go negative.
        NonAtomicTransfer = "non-atomic-transfer",
    }
}

crate::service::config_builders!(Config, Bug);

/// Everything [`serve`] needs besides the socket.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding [`LOG_FILE`]; created if missing.
    pub data_dir: PathBuf,
    pub bugs: BTreeSet<Bug>,
    /// How many accounts there are, numbered from 0.
    pub accounts: usize,
    /// The balance every account starts with.
    pub initial: i64,
    /// With [`Bug::NonAtomicTransfer`]: the pause between the debit and the credit.
    pub transfer_delay: Duration,
    pub log: Logger,
}

impl Config {
    /// The correct build, logging to stdout, with 5 accounts of 100 each (and
    /// a 5 ms non-atomic-transfer pause).
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            bugs: BTreeSet::new(),
            accounts: 5,
            initial: 100,
            transfer_delay: Duration::from_millis(5),
            log: Logger::Stdout,
        }
    }

    /// Sets the number of accounts and their starting balance.
    pub fn with_accounts(mut self, accounts: usize, initial: i64) -> Config {
        self.accounts = accounts;
        self.initial = initial;
        self
    }
}

/// One log entry and one request body: move `amount` from `from` to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Transfer {
    from: usize,
    to: usize,
    amount: i64,
}

/// Why a transfer was not applied.
#[derive(Debug, thiserror::Error)]
enum TransferError {
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("transfer {amount} to account {to}: its balance would overflow")]
    Overflow { to: usize, amount: i64 },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The balances and the log that makes them durable.
#[derive(Debug)]
struct Bank {
    balances: Vec<i64>,
    journal: Journal,
}

impl Bank {
    /// Starts every account at `initial` and replays the transfers in `dir`'s
    /// log; entries naming accounts past `accounts` (a log from a bigger bank) are skipped.
    fn open(dir: &Path, accounts: usize, initial: i64) -> Result<(Bank, Recovery), JournalError> {
        let (journal, transfers, recovery) = journal::open::<Transfer>(dir, LOG_FILE, Durability::SyncEachWrite)?;
        let mut bank = Bank { balances: vec![initial; accounts], journal };
        for t in transfers.into_iter().filter(|t| t.from < accounts && t.to < accounts) {
            bank.debit(t);
            bank.credit(t);
        }
        Ok((bank, recovery))
    }

    /// The correct transfer: checks funds and overflow, records, then applies.
    fn transfer(&mut self, t: Transfer) -> Result<(), TransferError> {
        if self.balances[t.from] < t.amount {
            return Err(TransferError::InsufficientFunds);
        }
        self.balances[t.to].checked_add(t.amount).ok_or(TransferError::Overflow { to: t.to, amount: t.amount })?;
        self.journal.record(&t)?;
        self.debit(t);
        self.credit(t);
        Ok(())
    }

    /// The first half of a non-atomic transfer: records the whole transfer
    /// (replay applies it whole) but only debits `from`, without checking funds.
    fn record_and_debit(&mut self, t: Transfer) -> Result<(), TransferError> {
        self.journal.record(&t)?;
        self.debit(t);
        Ok(())
    }

    fn debit(&mut self, t: Transfer) {
        self.balances[t.from] = self.balances[t.from].saturating_sub(t.amount);
    }

    fn credit(&mut self, t: Transfer) {
        self.balances[t.to] = self.balances[t.to].saturating_add(t.amount);
    }

    /// All balances as a JSON object keyed by account number.
    fn snapshot(&self) -> Value {
        let accounts: Map<String, Value> =
            self.balances.iter().enumerate().map(|(i, &b)| (i.to_string(), b.into())).collect();
        Value::Object(accounts)
    }
}

/// What the handlers share.
#[derive(Clone, Debug)]
struct App {
    bank: Arc<Mutex<Bank>>,
    n_accounts: usize,
    /// With [`Bug::NonAtomicTransfer`], the pause between debit and credit.
    non_atomic_delay: Option<Duration>,
}

/// Binds `addr`, serves until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(addr: SocketAddr, config: Config) -> Result<(), ServiceError> {
    let (listener, shutdown) = service::bind(addr, &config.log).await?;
    serve(listener, config, shutdown).await
}

/// Replays the log in `config.data_dir`, logs `listening`, and serves on
/// `listener` until `shutdown` completes, then drains (up to 5 s).
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), ServiceError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let log = config.log.clone();
    let (dir, accounts, initial) = (config.data_dir.clone(), config.accounts, config.initial);
    let (bank, recovery) = tokio::task::spawn_blocking(move || Bank::open(&dir, accounts, initial)).await??;
    service::log_recovery(&log, &recovery, &config.data_dir);
    let app = App {
        bank: Arc::new(Mutex::new(bank)),
        n_accounts: config.accounts,
        non_atomic_delay: config.has(Bug::NonAtomicTransfer).then_some(config.transfer_delay),
    };
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/accounts", get(read_accounts))
        .route("/transfer", post(transfer))
        .with_state(app);
    let bugs = config.bugs.iter().copied();
    service::serve_http(listener, router, &log, bugs, shutdown, std::future::pending()).await?;
    log.info("stopped", &[]);
    Ok(())
}

async fn read_accounts(Shared(app): Shared<App>) -> Response {
    let accounts = app.bank.lock().expect("bank lock poisoned").snapshot();
    ([(header::CONTENT_TYPE, "application/json")], accounts.to_string()).into_response()
}

async fn transfer(Shared(app): Shared<App>, body: String) -> Response {
    let t = match parse_transfer(&body, app.n_accounts) {
        Ok(t) => t,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    // On a blocking thread, because the transfer is fsync'd.
    let bank = Arc::clone(&app.bank);
    let result = match app.non_atomic_delay {
        None => tokio::task::spawn_blocking(move || bank.lock().expect("bank lock poisoned").transfer(t)).await,
        Some(delay) => non_atomic_transfer(bank, t, delay).await,
    };
    match result {
        Ok(Ok(())) => (StatusCode::OK, "ok").into_response(),
        Ok(Err(TransferError::InsufficientFunds)) => (StatusCode::CONFLICT, "insufficient funds").into_response(),
        Ok(Err(e @ TransferError::Overflow { .. })) => (StatusCode::BAD_REQUEST, format!("cannot {e}")).into_response(),
        Ok(Err(e)) => internal_error(&format!("storage error: failed to {e}")),
        Err(e) => internal_error(&format!("storage task failed: {e}")),
    }
}

/// The `non-atomic-transfer` bug: debit, release the lock, pause, credit.
async fn non_atomic_transfer(
    bank: Arc<Mutex<Bank>>,
    t: Transfer,
    delay: Duration,
) -> Result<Result<(), TransferError>, tokio::task::JoinError> {
    let debit_bank = Arc::clone(&bank);
    let debited =
        tokio::task::spawn_blocking(move || debit_bank.lock().expect("bank lock poisoned").record_and_debit(t)).await;
    if !matches!(debited, Ok(Ok(()))) {
        return debited;
    }
    tokio::time::sleep(delay).await;
    bank.lock().expect("bank lock poisoned").credit(t);
    Ok(Ok(()))
}

/// Reads `{"from": A, "to": B, "amount": X}`, checking the accounts exist,
/// differ, and the amount is positive.
fn parse_transfer(body: &str, n_accounts: usize) -> Result<Transfer, String> {
    let t: Transfer = serde_json::from_str(body).map_err(|e| format!("bad transfer {body:?}: {e}"))?;
    if let Some(account) = [t.from, t.to].into_iter().find(|&a| a >= n_accounts) {
        return Err(format!("unknown account {account} (accounts are 0..{n_accounts})"));
    }
    if t.from == t.to {
        return Err(format!("bad transfer: from and to are both account {}", t.from));
    }
    if t.amount <= 0 {
        return Err(format!("bad transfer: amount {} is not positive", t.amount));
    }
    Ok(t)
}

fn internal_error(why: &str) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, why.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_check_funds_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bank, _) = Bank::open(dir.path(), 3, 10).unwrap();
        bank.transfer(Transfer { from: 0, to: 1, amount: 7 }).unwrap();
        assert!(matches!(bank.transfer(Transfer { from: 0, to: 2, amount: 4 }), Err(TransferError::InsufficientFunds)));
        bank.transfer(Transfer { from: 1, to: 2, amount: 17 }).unwrap();
        assert_eq!(bank.balances, [3, 0, 27]);
        drop(bank);
        let (bank, recovery) = Bank::open(dir.path(), 3, 10).unwrap();
        assert_eq!(recovery.n_entries, 2);
        assert_eq!(bank.balances, [3, 0, 27]);
        assert_eq!(bank.snapshot().to_string(), r#"{"0":3,"1":0,"2":27}"#);
    }

    #[test]
    fn parses_transfers() {
        assert_eq!(parse_transfer(r#"{"from":0,"to":4,"amount":3}"#, 5), Ok(Transfer { from: 0, to: 4, amount: 3 }));
        let bad = [
            r#"{"from":0,"to":5,"amount":3}"#,
            r#"{"from":1,"to":1,"amount":3}"#,
            r#"{"from":0,"to":1,"amount":0}"#,
            r#"{"from":0,"to":1,"amount":-2}"#,
            r#"{"from":-1,"to":1,"amount":2}"#,
            r#"{"from":0,"to":1}"#,
            "nope",
        ];
        for body in bad {
            assert!(parse_transfer(body, 5).is_err(), "{body}");
        }
    }

    #[test]
    fn bug_names_round_trip() {
        for &bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>().unwrap(), bug);
        }
        let err = "non-atomic".parse::<Bug>().unwrap_err().to_string();
        assert!(err.contains("(valid: non-atomic-transfer)"), "{err}");
    }
}
