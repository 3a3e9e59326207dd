//! The in-process engines: the job state machine ([`State`]) and [`LocalStore`],
//! which keeps it in memory (`--engine memory`) or also records every change in
//! `DIR/queue.log` and replays it on start (`--engine file`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::store::{Cancellation, Completion, Enqueued, Job, JobId, JobState, NewJob, Stats, Store, StoreError};
use crate::journal::{self, Durability, Journal, JournalError, Recovery};

/// Name of the file engine's log file inside the data directory.
pub const LOG_FILE: &str = "queue.log";

/// One log entry: a change that has already been decided. Entries written
/// before unique keys and cancels existed still parse (no `key`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    Enqueue {
        id: JobId,
        payload: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Claim {
        id: JobId,
    },
    Complete {
        id: JobId,
    },
    Cancel {
        id: JobId,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Claimed { until: Instant },
    Done,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    payload: String,
    key: Option<String>,
    status: Status,
}

/// Jobs in memory, with the claim lease they are handed out under.
#[derive(Clone, Debug)]
pub struct State {
    jobs: BTreeMap<JobId, Record>,
    /// The job holding each key, while that job is live (pending or claimed).
    live_keys: BTreeMap<String, JobId>,
    lease: Duration,
}

impl State {
    pub fn new(lease: Duration) -> State {
        State { jobs: BTreeMap::new(), live_keys: BTreeMap::new(), lease }
    }

    /// The id the next enqueued job gets.
    pub fn next_id(&self) -> JobId {
        JobId(self.jobs.last_key_value().map_or(1, |(id, _)| id.0 + 1))
    }

    /// Applies `entry` as of `now`. Entries naming an unknown job are
    /// skipped: the engines never write them, so only a hand-edited log has them.
    pub fn apply(&mut self, entry: Entry, now: Instant) {
        match entry {
            Entry::Enqueue { id, payload, key } => {
                assert!(id >= self.next_id(), "job ids must increase: {id}");
                if let Some(key) = &key {
                    let previous = self.live_keys.insert(key.clone(), id);
                    assert!(previous.is_none(), "key {key:?} held by two live jobs");
                }
                self.jobs.insert(id, Record { payload, key, status: Status::Pending });
            }
            Entry::Claim { id } => self.set_status(id, Status::Claimed { until: now + self.lease }),
            Entry::Complete { id } => self.set_status(id, Status::Done),
            Entry::Cancel { id } => self.set_status(id, Status::Cancelled),
        }
    }

    fn set_status(&mut self, id: JobId, status: Status) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.status = status;
        if matches!(status, Status::Done | Status::Cancelled) {
            if let Some(key) = &job.key {
                self.live_keys.remove(key);
            }
        }
    }

    /// The live job holding `key`.
    pub fn live_job_with_key(&self, key: &str) -> Option<JobId> {
        self.live_keys.get(key).copied()
    }

    /// The oldest job that is pending or whose claim lease ran out by `now`.
    pub fn claimable(&self, now: Instant) -> Option<Job> {
        let (id, job) = self.jobs.iter().find(|(_, job)| state_of(job.status, now) == JobState::Pending)?;
        Some(Job { id: *id, payload: job.payload.clone() })
    }

    /// What completing `id` would do.
    pub fn completion(&self, id: JobId) -> Completion {
        match self.jobs.get(&id).map(|job| job.status) {
            None => Completion::Unknown,
            Some(Status::Claimed { .. }) => Completion::Done,
            Some(Status::Pending | Status::Done | Status::Cancelled) => Completion::NotClaimed,
        }
    }

    /// What cancelling `id` at `now` would do.
    pub fn cancellation(&self, id: JobId, now: Instant) -> Cancellation {
        let Some(job) = self.jobs.get(&id) else {
            return Cancellation::Unknown;
        };
        match state_of(job.status, now) {
            JobState::Pending => Cancellation::Cancelled(Job { id, payload: job.payload.clone() }),
            other => Cancellation::NotPending(other),
        }
    }

    pub fn payloads(&self, state: JobState, now: Instant) -> Vec<String> {
        let jobs = self.jobs.values();
        let matching = jobs.filter(|job| state_of(job.status, now) == state);
        matching.map(|job| job.payload.clone()).collect()
    }

    /// How many jobs are in each state at `now`.
    pub fn counts(&self, now: Instant) -> [u64; 4] {
        let mut counts = [0; 4];
        for job in self.jobs.values() {
            counts[state_of(job.status, now) as usize] += 1;
        }
        counts
    }
}

fn state_of(status: Status, now: Instant) -> JobState {
    match status {
        Status::Pending => JobState::Pending,
        Status::Claimed { until } if until <= now => JobState::Pending,
        Status::Claimed { .. } => JobState::Claimed,
        Status::Done => JobState::Done,
        Status::Cancelled => JobState::Cancelled,
    }
}

/// The `memory` and `file` engines: a [`State`] behind a lock, with every
/// change recorded in a journal before it is applied when there is one
/// (synced first unless opened `Durability::Buffered`, the `lost-on-kill` bug).
#[derive(Debug)]
pub struct LocalStore {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    journal: Option<Journal>,
    state: State,
}

impl Inner {
    fn record(&mut self, entry: Entry, now: Instant) -> Result<(), StoreError> {
        if let Some(journal) = &mut self.journal {
            journal.record(&entry)?;
        }
        self.state.apply(entry, now);
        Ok(())
    }
}

impl LocalStore {
    /// The file engine: creates `dir` if needed and replays its log; replayed
    /// claims get a fresh lease.
    pub fn open(dir: &Path, durability: Durability, lease: Duration) -> Result<(LocalStore, Recovery), JournalError> {
        let (journal, entries, recovery) = journal::open::<Entry>(dir, LOG_FILE, durability)?;
        let mut state = State::new(lease);
        let now = Instant::now();
        entries.into_iter().for_each(|e| state.apply(e, now));
        let inner = Mutex::new(Inner { journal: Some(journal), state });
        Ok((LocalStore { inner }, recovery))
    }

    /// The memory engine: nothing on disk, so every restart starts empty.
    pub fn memory(lease: Duration) -> LocalStore {
        LocalStore { inner: Mutex::new(Inner { journal: None, state: State::new(lease) }) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("queue store lock poisoned")
    }
}

impl Store for LocalStore {
    fn engine(&self) -> &'static str {
        if self.lock().journal.is_some() {
            "file"
        } else {
            "memory"
        }
    }

    fn enqueue(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        let mut inner = self.lock();
        if let Some(holder) = job.key.as_deref().and_then(|key| inner.state.live_job_with_key(key)) {
            return Ok(Enqueued::Duplicate(holder));
        }
        let id = inner.state.next_id();
        inner.record(Entry::Enqueue { id, payload: job.payload, key: job.key }, Instant::now())?;
        Ok(Enqueued::Added(id))
    }

    fn claim(&self, now: Instant) -> Result<Option<Job>, StoreError> {
        let mut inner = self.lock();
        let Some(job) = inner.state.claimable(now) else {
            return Ok(None);
        };
        inner.record(Entry::Claim { id: job.id }, now)?;
        Ok(Some(job))
    }

    fn peek_claimable(&self, now: Instant) -> Result<Option<Job>, StoreError> {
        Ok(self.lock().state.claimable(now))
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

    fn cancel(&self, id: JobId, now: Instant) -> Result<Cancellation, StoreError> {
        let mut inner = self.lock();
        let cancellation = inner.state.cancellation(id, now);
        if matches!(cancellation, Cancellation::Cancelled(_)) {
            inner.record(Entry::Cancel { id }, now)?;
        }
        Ok(cancellation)
    }

    fn live_job_with_key(&self, key: &str) -> Result<Option<JobId>, StoreError> {
        Ok(self.lock().state.live_job_with_key(key))
    }

    fn payloads(&self, state: JobState, now: Instant) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().state.payloads(state, now))
    }

    /// The memory and file engines keep no admin counters: `/admin/stats` is 404.
    fn stats(&self, _now: Instant) -> Result<Option<Stats>, StoreError> {
        Ok(None)
    }

    fn flush(&self) -> Result<usize, StoreError> {
        match &mut self.lock().journal {
            Some(journal) => Ok(journal.flush(Duration::ZERO)?),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enqueue(id: u64, payload: &str, key: Option<&str>) -> Entry {
        Entry::Enqueue { id: JobId(id), payload: payload.into(), key: key.map(String::from) }
    }

    #[test]
    fn jobs_move_pending_claimed_done_and_leases_expire() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(5));
        assert_eq!(state.next_id(), JobId(1));
        state.apply(enqueue(1, "a", None), t0);
        state.apply(enqueue(2, "b", None), t0);
        assert_eq!(state.next_id(), JobId(3));
        assert_eq!(state.completion(JobId(1)), Completion::NotClaimed);
        assert_eq!(state.completion(JobId(9)), Completion::Unknown);
        state.apply(Entry::Claim { id: JobId(1) }, t0);
        assert_eq!(state.claimable(t0).map(|j| j.id), Some(JobId(2)));
        assert_eq!(state.payloads(JobState::Claimed, t0), ["a"]);
        assert_eq!(state.cancellation(JobId(1), t0), Cancellation::NotPending(JobState::Claimed));
        let later = t0 + Duration::from_secs(5);
        assert_eq!(state.payloads(JobState::Pending, later), ["a", "b"]);
        assert_eq!(state.completion(JobId(1)), Completion::Done);
        state.apply(Entry::Complete { id: JobId(1) }, t0);
        assert_eq!(state.payloads(JobState::Done, later), ["a"]);
        assert_eq!(state.completion(JobId(1)), Completion::NotClaimed);
        assert_eq!(state.counts(t0), [1, 0, 1, 0]);
    }

    #[test]
    fn keys_are_held_while_live_and_cancels_free_them() {
        let t0 = Instant::now();
        let mut state = State::new(Duration::from_secs(5));
        state.apply(enqueue(1, "a", Some("k")), t0);
        assert_eq!(state.live_job_with_key("k"), Some(JobId(1)));
        let cancelled = Cancellation::Cancelled(Job { id: JobId(1), payload: "a".into() });
        assert_eq!(state.cancellation(JobId(1), t0), cancelled);
        state.apply(Entry::Cancel { id: JobId(1) }, t0);
        assert_eq!(state.live_job_with_key("k"), None);
        assert_eq!(state.cancellation(JobId(1), t0), Cancellation::NotPending(JobState::Cancelled));
        assert_eq!(state.completion(JobId(1)), Completion::NotClaimed);
        state.apply(enqueue(2, "b", Some("k")), t0);
        assert_eq!(state.live_job_with_key("k"), Some(JobId(2)));
        assert_eq!(state.payloads(JobState::Cancelled, t0), ["a"]);
    }

    #[test]
    fn logs_written_before_keys_and_cancels_still_replay() {
        let old: Entry = serde_json::from_str(r#"{"op":"enqueue","id":1,"payload":"a"}"#).unwrap();
        assert_eq!(old, enqueue(1, "a", None));
        let line = serde_json::to_string(&enqueue(1, "a", None)).unwrap();
        assert!(!line.contains("key"), "{line}");
    }

    #[test]
    fn file_engine_replays_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Duration::from_secs(5);
        let (store, _) = LocalStore::open(dir.path(), Durability::SyncEachWrite, lease).unwrap();
        assert_eq!(store.enqueue(NewJob::plain("a")).unwrap(), Enqueued::Added(JobId(1)));
        assert_eq!(store.enqueue(NewJob::keyed("b", "k")).unwrap(), Enqueued::Added(JobId(2)));
        let job = store.claim(Instant::now()).unwrap().unwrap();
        assert_eq!(store.complete(job.id).unwrap(), Completion::Done);
        let (reopened, recovery) = LocalStore::open(dir.path(), Durability::SyncEachWrite, lease).unwrap();
        assert_eq!(recovery.n_entries, 4);
        let now = Instant::now();
        assert_eq!(reopened.payloads(JobState::Done, now).unwrap(), ["a"]);
        assert_eq!(reopened.payloads(JobState::Pending, now).unwrap(), ["b"]);
        assert_eq!(reopened.enqueue(NewJob::keyed("c", "k")).unwrap(), Enqueued::Duplicate(JobId(2)));
        assert_eq!(reopened.enqueue(NewJob::plain("c")).unwrap(), Enqueued::Added(JobId(3)));
    }
}
