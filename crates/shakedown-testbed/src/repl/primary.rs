//! The primary: the store writes are applied to, and the queue of writes the
//! replica has not acknowledged yet, kept in sequence order for (re)sending.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::{oneshot, watch};

use super::frame::Write;

/// Most writes waiting for the replica's ack; past it writes are refused.
pub(crate) const MAX_UNACKED: usize = 10_000;
/// Most frames sent in one batch.
const MAX_BATCH: usize = 256;

/// What a write or cas did on the primary.
#[derive(Debug)]
pub(crate) enum Applied {
    /// Applied and queued for the replica; resolves once the replica acked it.
    Queued { value: String, acked: oneshot::Receiver<()> },
    /// A cas on a key that has no value.
    NotFound,
    /// A cas whose `from` is not the current value.
    Mismatch,
    /// [`MAX_UNACKED`] writes already wait for the replica: nothing applied.
    Backlogged,
}

/// A write waiting for the replica's ack.
#[derive(Debug)]
struct Pending {
    write: Write,
    acked: Option<oneshot::Sender<()>>,
}

#[derive(Debug, Default)]
struct State {
    values: BTreeMap<String, String>,
    last_seq: u64,
    unacked: VecDeque<Pending>,
}

/// The primary store and its replication queue.
#[derive(Debug)]
pub(crate) struct Primary {
    state: Mutex<State>,
    /// Bumped on every queued write and every ack, so senders and waiters wake.
    changes: watch::Sender<u64>,
}

impl Primary {
    pub(crate) fn new() -> Primary {
        Primary { state: Mutex::default(), changes: watch::Sender::new(0) }
    }

    /// Sets `key` to `value` and queues the write for the replica.
    pub(crate) fn put(&self, key: String, value: String) -> Applied {
        let mut state = self.lock();
        self.apply(&mut state, key, value)
    }

    /// Sets `key` to `to` if it holds `from`, atomically with the check.
    pub(crate) fn cas(&self, key: String, from: &str, to: String) -> Applied {
        let mut state = self.lock();
        match state.values.get(&key) {
            None => Applied::NotFound,
            Some(current) if current != from => Applied::Mismatch,
            Some(_) => self.apply(&mut state, key, to),
        }
    }

    fn apply(&self, state: &mut State, key: String, value: String) -> Applied {
        if state.unacked.len() >= MAX_UNACKED {
            return Applied::Backlogged;
        }
        state.last_seq += 1;
        state.values.insert(key.clone(), value.clone());
        let (tx, rx) = oneshot::channel();
        let write = Write { seq: state.last_seq, key, value: value.clone() };
        state.unacked.push_back(Pending { write, acked: Some(tx) });
        self.changes.send_modify(|n| *n += 1);
        Applied::Queued { value, acked: rx }
    }

    /// The replica has applied every write up to `seq`: drop them from the
    /// queue and wake their writers. Acks of writes already dropped are ignored;
    /// an ack of a write never made is refused (false): the peer is not our replica.
    pub(crate) fn ack(&self, seq: u64) -> bool {
        let mut state = self.lock();
        if seq > state.last_seq {
            return false;
        }
        while state.unacked.front().is_some_and(|p| p.write.seq <= seq) {
            let mut pending = state.unacked.pop_front().expect("front exists");
            if let Some(acked) = pending.acked.take() {
                // The writer may have stopped waiting (ack timeout): fine.
                let _ = acked.send(());
            }
        }
        drop(state);
        self.changes.send_modify(|n| *n += 1);
        true
    }

    /// Up to a batch of unacked writes with a sequence number above `after`, in order.
    pub(crate) fn unsent(&self, after: u64) -> Vec<Write> {
        let state = self.lock();
        let unsent = state.unacked.iter().skip_while(|p| p.write.seq <= after);
        unsent.take(MAX_BATCH).map(|p| p.write.clone()).collect()
    }

    /// How many writes wait for the replica.
    pub(crate) fn n_unacked(&self) -> usize {
        self.lock().unacked.len()
    }

    /// A receiver that sees every change to the queue.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("repl primary lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(applied: Applied) -> oneshot::Receiver<()> {
        match applied {
            Applied::Queued { acked, .. } => acked,
            other => panic!("not queued: {other:?}"),
        }
    }

    #[test]
    fn writes_queue_in_order_until_acked() {
        let primary = Primary::new();
        let mut first = queued(primary.put("a".into(), "1".into()));
        let mut second = queued(primary.cas("a".into(), "1", "2".into()));
        assert!(matches!(primary.cas("a".into(), "1", "3".into()), Applied::Mismatch));
        assert!(matches!(primary.cas("b".into(), "1", "3".into()), Applied::NotFound));
        let seqs = |writes: Vec<Write>| writes.iter().map(|w| w.seq).collect::<Vec<_>>();
        assert_eq!(seqs(primary.unsent(0)), [1, 2]);
        assert_eq!(seqs(primary.unsent(1)), [2]);
        assert!(primary.ack(1));
        assert_eq!(first.try_recv(), Ok(()));
        assert!(second.try_recv().is_err());
        assert_eq!(primary.n_unacked(), 1);
        assert!(primary.ack(1));
        assert!(!primary.ack(3), "write 3 was never made");
        assert!(primary.ack(2));
        assert_eq!(second.try_recv(), Ok(()));
        assert_eq!(primary.n_unacked(), 0);
    }

    #[test]
    fn a_full_queue_refuses_writes_without_applying_them() {
        let primary = Primary::new();
        for i in 0..MAX_UNACKED {
            queued(primary.put("k".into(), i.to_string()));
        }
        assert!(matches!(primary.put("k".into(), "x".into()), Applied::Backlogged));
        assert!(matches!(primary.cas("k".into(), &(MAX_UNACKED - 1).to_string(), "x".into()), Applied::Backlogged));
        assert_eq!(primary.unsent(0).len(), MAX_BATCH);
    }
}
