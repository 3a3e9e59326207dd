//! The queue's storage: the [`Store`] trait the HTTP layer talks to, the job
//! state machine, and [`FileStore`], the engine backed by a [`Journal`].
//!
//! Invariant (of every engine): ids are handed out in increasing order, each
//! job is in exactly one state, and a claim or completion names a job that
//! was enqueued before it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::journal::{self, Durability, Journal, JournalError, Recovery};

/// Name of the [`FileStore`]'s log file inside the data directory.
pub const LOG_FILE: &str = "queue.log";

/// A job's id, assigned by the server in enqueue order starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A job as `POST /claim` hands it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClaimedJob {
    pub id: JobId,
    pub payload: String,
}

/// The state a job is in, as `GET /jobs?state=` names it. A claim whose lease
/// ran out counts as pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Claimed,
    Done,
}

/// What completing a job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    Done,
    Unknown,
    NotClaimed,
}

/// Why an engine could not record a change.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// A queue storage engine. Every method is atomic on its own; methods that
/// write may block on disk I/O, so call them from a blocking thread.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Appends a job and returns its id.
    fn enqueue(&self, payload: String) -> Result<JobId, StoreError>;

    /// Claims the oldest claimable job until `now` plus the lease, if any.
    fn claim(&self, now: Instant) -> Result<Option<ClaimedJob>, StoreError>;

    /// The job [`Store::claim`] would hand out at `now`, without claiming it.
    fn peek_claimable(&self, now: Instant) -> Option<ClaimedJob>;

    /// Marks job `id` claimed without checking its state (the `double-claim` bug's second step).
    fn claim_unchecked(&self, id: JobId, now: Instant) -> Result<(), StoreError>;

    /// Marks a claimed job done.
    fn complete(&self, id: JobId) -> Result<Completion, StoreError>;

    /// The payloads of the jobs in `state` at `now`, in id order.
    fn payloads(&self, state: JobState, now: Instant) -> Vec<String>;

    /// Makes buffered changes durable; returns how many were written.
    fn flush(&self) -> Result<usize, StoreError>;
}

/// One log entry: a change that has already been decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    Enqueue { id: JobId, payload: String },
    Claim { id: JobId },
    Complete { id: JobId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Claimed { until: Instant },
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Job {
    payload: String,
    status: Status,
}

/// Jobs in memory, with the claim lease they are handed out under.
#[derive(Clone, Debug)]
pub struct State {
    jobs: BTreeMap<JobId, Job>,
    lease: Duration,
}

impl State {
    pub fn new(lease: Duration) -> State {
        State { jobs: BTreeMap::new(), lease }
    }

    /// The id the next enqueued job gets.
    pub fn next_id(&self) -> JobId {
        JobId(self.jobs.last_key_value().map_or(1, |(id, _)| id.0 + 1))
    }

    /// Applies `entry` as of `now`. Entries naming an unknown job are
    /// skipped: the engines never write them, so only a hand-edited log has them.
    pub fn apply(&mut self, entry: Entry, now: Instant) {
        match entry {
            Entry::Enqueue { id, payload } => {
                assert!(id >= self.next_id(), "job ids must increase: {id}");
                let status = Status::Pending;
                self.jobs.insert(id, Job { payload, status });
            }
            Entry::Claim { id } => {
                let until = now + self.lease;
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.status = Status::Claimed { until };
                }
            }
            Entry::Complete { id } => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.status = Status::Done;
                }
            }
        }
    }

    /// The oldest job that is pending or whose claim lease ran out by `now`.
    pub fn claimable(&self, now: Instant) -> Option<ClaimedJob> {
        let (id, job) = self.jobs.iter().find(|(_, job)| state_of(job.status, now) == JobState::Pending)?;
        let payload = job.payload.clone();
        Some(ClaimedJob { id: *id, payload })
    }

    /// What completing `id` would do.
    pub fn completion(&self, id: JobId) -> Completion {
        match self.jobs.get(&id).map(|job| job.status) {
            None => Completion::Unknown,
            Some(Status::Claimed { .. }) => Completion::Done,
            Some(Status::Pending | Status::Done) => Completion::NotClaimed,
        }
    }

    pub fn payloads(&self, state: JobState, now: Instant) -> Vec<String> {
        let jobs = self.jobs.values();
        let matching = jobs.filter(|job| state_of(job.status, now) == state);
        matching.map(|job| job.payload.clone()).collect()
    }
}

fn state_of(status: Status, now: Instant) -> JobState {
    match status {
        Status::Pending => JobState::Pending,
        Status::Claimed { until } if until <= now => JobState::Pending,
        Status::Claimed { .. } => JobState::Claimed,
        Status::Done => JobState::Done,
    }
}

/// The file-backed engine: every change is recorded in `DIR/queue.log` before
/// it is applied, synced first unless opened [`Durability::Buffered`].
#[derive(Debug)]
pub struct FileStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    journal: Journal,
    state: State,
}

impl Inner {
    fn record(&mut self, entry: Entry, now: Instant) -> Result<(), StoreError> {
        self.journal.record(&entry)?;
        self.state.apply(entry, now);
        Ok(())
    }
}

impl FileStore {
    /// Creates `dir` if needed and replays its log; replayed claims get a fresh lease.
    pub fn open(dir: &Path, durability: Durability, lease: Duration) -> Result<(FileStore, Recovery), JournalError> {
        let (journal, entries, recovery) = journal::open::<Entry>(dir, LOG_FILE, durability)?;
        let mut state = State::new(lease);
        let now = Instant::now();
        entries.into_iter().for_each(|e| state.apply(e, now));
        let inner = Mutex::new(Inner { journal, state });
        Ok((FileStore { inner }, recovery))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("queue store lock poisoned")
    }
}

impl Store for FileStore {
    fn enqueue(&self, payload: String) -> Result<JobId, StoreError> {
        let mut inner = self.lock();
        let id = inner.state.next_id();
        inner.record(Entry::Enqueue { id, payload }, Instant::now())?;
        Ok(id)
    }

    fn claim(&self, now: Instant) -> Result<Option<ClaimedJob>, StoreError> {
        let mut inner = self.lock();
        let Some(job) = inner.state.claimable(now) else {
            return Ok(None);
        };
        inner.record(Entry::Claim { id: job.id }, now)?;
        Ok(Some(job))
    }

    fn peek_claimable(&self, now: Instant) -> Option<ClaimedJob> {
        self.lock().state.claimable(now)
    }

    fn claim_unchecked(&self, id: JobId, now: Instant) -> Result<(), StoreError> {
        self.lock().record(Entry::Claim { id }, now)
    }

    fn complete(&self, id: JobId) -> Result<Completion, StoreError> {
        let mut inner = self.lock();
        let completion = inner.state.completion(id);
        if completion == Completion::Done {
            inner.record(Entry::Complete { id }, Instant::now())?;
        }
        Ok(completion)
    }

    fn payloads(&self, state: JobState, now: Instant) -> Vec<String> {
        self.lock().state.payloads(state, now)
    }

    fn flush(&self) -> Result<usize, StoreError> {
        Ok(self.lock().journal.flush(Duration::ZERO)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enqueue(id: u64, payload: &str) -> Entry {
        Entry::Enqueue { id: JobId(id), payload: payload.into() }
    }

    #[test]
    fn jobs_move_pending_claimed_done_and_leases_expire() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(5));
        assert_eq!(state.next_id(), JobId(1));
        state.apply(enqueue(1, "a"), t0);
        state.apply(enqueue(2, "b"), t0);
        assert_eq!(state.next_id(), JobId(3));
        assert_eq!(state.completion(JobId(1)), Completion::NotClaimed);
        assert_eq!(state.completion(JobId(9)), Completion::Unknown);
        state.apply(Entry::Claim { id: JobId(1) }, t0);
        assert_eq!(state.claimable(t0).map(|j| j.id), Some(JobId(2)));
        assert_eq!(state.payloads(JobState::Claimed, t0), ["a"]);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(state.payloads(JobState::Pending, later), ["a", "b"]);
        assert_eq!(state.completion(JobId(1)), Completion::Done);
        state.apply(Entry::Complete { id: JobId(1) }, t0);
        assert_eq!(state.payloads(JobState::Done, later), ["a"]);
        assert_eq!(state.completion(JobId(1)), Completion::NotClaimed);
    }

    #[test]
    fn file_store_replays_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Duration::from_secs(5);
        let (store, _) = FileStore::open(dir.path(), Durability::SyncEachWrite, lease).unwrap();
        assert_eq!(store.enqueue("a".into()).unwrap(), JobId(1));
        assert_eq!(store.enqueue("b".into()).unwrap(), JobId(2));
        let job = store.claim(Instant::now()).unwrap().unwrap();
        assert_eq!(store.complete(job.id).unwrap(), Completion::Done);
        let (reopened, recovery) = FileStore::open(dir.path(), Durability::SyncEachWrite, lease).unwrap();
        assert_eq!(recovery.n_entries, 4);
        let now = Instant::now();
        assert_eq!(reopened.payloads(JobState::Done, now), ["a"]);
        assert_eq!(reopened.payloads(JobState::Pending, now), ["b"]);
        assert_eq!(reopened.enqueue("c".into()).unwrap(), JobId(3));
    }
}
