//! The primary's end of the replication link: one connection to the peer at a
//! time (or one per batch), every unacked write (re)sent in order on it, acks
//! read back, and a reconnect after any error or stall.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::frame::{encode, AckReader};
use super::primary::Primary;
use crate::log::Logger;

/// Limit on connecting to the peer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How the primary reaches its replica.
#[derive(Clone, Debug)]
pub(crate) struct LinkConfig {
    pub peer: SocketAddr,
    /// Open a connection per batch of writes and close it once they are acked.
    pub dial_per_write: bool,
    pub reconnect_backoff: Duration,
    /// Writes outstanding and no ack for this long: the link is dead, reconnect.
    pub stall_timeout: Duration,
}

/// Why a replication connection ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connect to the replica at {peer}: {source}")]
    Connect { peer: SocketAddr, source: io::Error },
    #[error("connect to the replica at {0}: timed out")]
    ConnectTimeout(SocketAddr),
    #[error("send writes to the replica: {0}")]
    Send(io::Error),
    #[error("read acks from the replica: {0}")]
    Receive(io::Error),
    #[error("read acks from the replica: the connection was closed")]
    Closed,
    #[error("read acks from the replica: none for {0:?} with writes outstanding")]
    Stalled(Duration),
    #[error("read acks from the replica: ack of write {0}, which was never made")]
    UnknownAck(u64),
}

/// Replicates the primary's writes forever, reconnecting whenever a
/// connection fails: after [`LinkConfig::reconnect_backoff`], doubled (up to
/// ten times) while connections keep failing without delivering an ack. Logs
/// `replication connected` and `replication link lost` once per change.
pub(crate) async fn replicate(primary: &Primary, config: &LinkConfig, log: &Logger) -> Infallible {
    let mut changes = primary.subscribe();
    let mut connected = false;
    let mut backoff = config.reconnect_backoff;
    loop {
        if config.dial_per_write {
            wait_for_writes(primary, &mut changes).await;
        }
        let acked_any = AtomicBool::new(false);
        let result = match connect(config.peer).await {
            Ok(stream) => {
                if !connected {
                    log.info("replication connected", &[("peer", config.peer.to_string().into())]);
                    connected = true;
                }
                session(stream, primary, config, &acked_any).await
            }
            Err(e) => Err(e),
        };
        if acked_any.load(Ordering::Relaxed) {
            backoff = config.reconnect_backoff;
        }
        if let Err(e) = result {
            if connected {
                let fields = [("error", e.to_string().into()), ("unacked", primary.n_unacked().into())];
                log.warn("replication link lost", &fields);
                connected = false;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(config.reconnect_backoff * 10);
        }
    }
}

async fn connect(peer: SocketAddr) -> Result<TcpStream, LinkError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(LinkError::Connect { peer, source }),
        Err(_) => Err(LinkError::ConnectTimeout(peer)),
    }
}

/// Returns once a write waits for the replica.
async fn wait_for_writes(primary: &Primary, changes: &mut watch::Receiver<u64>) {
    loop {
        changes.borrow_and_update();
        if primary.n_unacked() > 0 {
            return;
        }
        changed(changes).await;
    }
}

/// Sends and acks on one connection until it fails, or with
/// `dial_per_write` until every write is acked.
async fn session(
    stream: TcpStream,
    primary: &Primary,
    config: &LinkConfig,
    acked_any: &AtomicBool,
) -> Result<(), LinkError> {
    // Frames are small and each one waits for its ack: send them at once.
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    tokio::select! {
        result = send_loop(writer, primary, config.dial_per_write) => result,
        result = ack_loop(reader, primary, config.stall_timeout, acked_any) => result,
    }
}

/// Sends every unacked write in order, then each new one as it is queued.
async fn send_loop(mut writer: OwnedWriteHalf, primary: &Primary, until_drained: bool) -> Result<(), LinkError> {
    let mut changes = primary.subscribe();
    // A new connection starts from the oldest unacked write: a resend.
    let mut last_sent = 0;
    let mut bytes = Vec::new();
    loop {
        changes.borrow_and_update();
        let batch = primary.unsent(last_sent);
        let Some(last) = batch.last() else {
            if until_drained && primary.n_unacked() == 0 {
                return Ok(());
            }
            changed(&mut changes).await;
            continue;
        };
        last_sent = last.seq;
        bytes.clear();
        batch.iter().for_each(|write| encode(write, &mut bytes));
        writer.write_all(&bytes).await.map_err(LinkError::Send)?;
    }
}

/// Reads acks and applies them; fails when writes are outstanding and no ack
/// came for `stall_timeout`, since a black-holed link never errs by itself.
async fn ack_loop(
    mut reader: OwnedReadHalf,
    primary: &Primary,
    stall_timeout: Duration,
    acked_any: &AtomicBool,
) -> Result<(), LinkError> {
    let mut acks = AckReader::default();
    let mut buf = [0u8; 512];
    let mut last_progress = Instant::now();
    loop {
        match tokio::time::timeout(stall_timeout / 4, reader.read(&mut buf)).await {
            Ok(Ok(0)) => return Err(LinkError::Closed),
            Ok(Ok(n)) => {
                for seq in acks.feed(&buf[..n]) {
                    if !primary.ack(seq) {
                        return Err(LinkError::UnknownAck(seq));
                    }
                    acked_any.store(true, Ordering::Relaxed);
                }
                last_progress = Instant::now();
            }
            Ok(Err(e)) => return Err(LinkError::Receive(e)),
            Err(_) => {}
        }
        if primary.n_unacked() == 0 {
            // An idle link is not a stalled one.
            last_progress = Instant::now();
        } else if last_progress.elapsed() > stall_timeout {
            return Err(LinkError::Stalled(stall_timeout));
        }
    }
}

/// Waits for the next change; the primary owns the sender, so it never closes.
async fn changed(changes: &mut watch::Receiver<u64>) {
    if changes.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}
