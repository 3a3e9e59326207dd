//! The replica: a store fed only by replication frames, which keeps the write
//! with the highest sequence number per key and acks every frame it read.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::frame::{FrameError, FrameReader, Write};
use crate::log::Logger;

/// Most replication streams read at once; more wait in the accept queue.
const MAX_STREAMS: usize = 64;
/// A stream with nothing to read for this long is closed; the primary redials.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit on writing one batch of acks back.
const ACK_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const READ_BYTES: usize = 16 * 1024;

/// The replica's store: per key the value and the sequence number it came with.
#[derive(Debug, Default)]
pub(crate) struct Replica {
    values: Mutex<HashMap<String, (String, u64)>>,
}

impl Replica {
    /// Applies `write` unless the key already holds a later one (a resend, or
    /// a frame from an older connection arriving late).
    pub(crate) fn apply(&self, write: Write) {
        let mut values = self.values.lock().expect("repl replica lock poisoned");
        let newer = values.get(&write.key).is_none_or(|&(_, seq)| write.seq > seq);
        if newer {
            values.insert(write.key, (write.value, write.seq));
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let values = self.values.lock().expect("repl replica lock poisoned");
        values.get(key).map(|(value, _)| value.clone())
    }
}

/// Why the replica dropped one replication stream.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("read a replication stream: {0}")]
    Read(io::Error),
    #[error("read a replication stream: idle for {0:?}")]
    Idle(Duration),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("write acks: {0}")]
    Ack(io::Error),
    #[error("write acks: timed out after {0:?}")]
    AckTimeout(Duration),
}

/// Accepts replication streams on `listener` and applies them; never returns.
pub(crate) async fn serve_replica(listener: TcpListener, replica: Arc<Replica>, log: Logger) -> Infallible {
    let slots = Arc::new(Semaphore::new(MAX_STREAMS));
    loop {
        let slot = Arc::clone(&slots).acquire_owned().await.expect("the replica never closes its semaphore");
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (replica, log) = (Arc::clone(&replica), log.clone());
                tokio::spawn(async move {
                    if let Err(e) = apply_stream(stream, &replica).await {
                        let fields = [("peer", peer.to_string().into()), ("error", e.to_string().into())];
                        log.warn("replication stream failed", &fields);
                    }
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                log.warn("replica accept failed", &[("error", e.to_string().into())]);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Applies frames from one stream and acks each, until the primary closes it.
async fn apply_stream(mut stream: TcpStream, replica: &Replica) -> Result<(), StreamError> {
    let _ = stream.set_nodelay(true);
    let mut frames = FrameReader::default();
    let mut buf = vec![0u8; READ_BYTES];
    let mut acks = Vec::new();
    loop {
        let read = tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await;
        let n = read.map_err(|_| StreamError::Idle(IDLE_TIMEOUT))?.map_err(StreamError::Read)?;
        if n == 0 {
            return Ok(());
        }
        frames.extend(&buf[..n]);
        acks.clear();
        while let Some(write) = frames.next_frame()? {
            acks.extend_from_slice(&write.seq.to_be_bytes());
            replica.apply(write);
        }
        let sent = tokio::time::timeout(ACK_WRITE_TIMEOUT, stream.write_all(&acks)).await;
        sent.map_err(|_| StreamError::AckTimeout(ACK_WRITE_TIMEOUT))?.map_err(StreamError::Ack)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_writes_win_whatever_the_arrival_order() {
        let replica = Replica::default();
        let write = |seq, value: &str| Write { seq, key: "k".into(), value: value.into() };
        assert_eq!(replica.get("k"), None);
        replica.apply(write(2, "two"));
        replica.apply(write(1, "one"));
        assert_eq!(replica.get("k").as_deref(), Some("two"));
        replica.apply(write(3, "three"));
        replica.apply(write(3, "three again"));
        assert_eq!(replica.get("k").as_deref(), Some("three"));
    }
}
