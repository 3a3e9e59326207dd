//! The queue's storage contract: the [`Store`] trait every engine implements and the values it trades in.
//!
//! Invariant (of every engine): ids are handed out in increasing order, each
//! job is in exactly one state, a claim, completion or cancel names a job
//! that was enqueued before it, and at most one live (pending or claimed) job
//! holds a given unique key.

use std::fmt;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::journal::JournalError;

/// A job's id, assigned by the server in enqueue order starting at 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A job as `POST /claim` and the cancel routes hand it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub payload: String,
}

/// What `POST /jobs` asks for: a payload and, optionally, a unique key no
/// other live job may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub payload: String,
    pub key: Option<String>,
}

impl NewJob {
    /// A job without a unique key.
    pub fn plain(payload: impl Into<String>) -> NewJob {
        NewJob { payload: payload.into(), key: None }
    }

    /// A job holding `key` while it is live.
    pub fn keyed(payload: impl Into<String>, key: impl Into<String>) -> NewJob {
        NewJob { payload: payload.into(), key: Some(key.into()) }
    }
}

/// What enqueueing did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enqueued {
    Added(JobId),
    /// Refused: this live job already holds the key.
    Duplicate(JobId),
}

/// The state a job is in, as `GET /jobs?state=` names it. A claim whose lease
/// ran out counts as pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Claimed,
    Done,
    Cancelled,
}

impl JobState {
    pub fn name(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Claimed => "claimed",
            JobState::Done => "done",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// What completing a job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    Done,
    Unknown,
    NotClaimed,
}

/// What cancelling a job did. Only a pending job can be cancelled: a claimed
/// one belongs to its worker until the lease runs out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancellation {
    Cancelled(Job),
    Unknown,
    NotPending(JobState),
}

/// The engine-specific admin counters of `GET /admin/stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub engine: &'static str,
    pub pending: u64,
    pub claimed: u64,
    pub done: u64,
    pub cancelled: u64,
}

/// Why an engine could not read or record a change.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("query sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("create data dir {path}: {source}")]
    CreateDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("open sqlite database {path}: {source}")]
    OpenSqlite { path: std::path::PathBuf, source: rusqlite::Error },
    #[error("read the sqlite job table: {0}")]
    BadRow(String),
    #[error("store a unique key: the old build's schema (v1) has no unique keys")]
    KeysNeedNewBuild,
}

/// A queue storage engine. Every method is atomic on its own; methods may
/// block on disk I/O, so call them from a blocking thread.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// The engine's name, as `--engine` takes it.
    fn engine(&self) -> &'static str;

    /// Appends a job, unless a live job holds its key.
    fn enqueue(&self, job: NewJob) -> Result<Enqueued, StoreError>;

    /// Claims the oldest claimable job until `now` plus the lease, if any.
    fn claim(&self, now: Instant) -> Result<Option<Job>, StoreError>;

    /// The job [`Store::claim`] would hand out at `now`, without claiming it.
    fn peek_claimable(&self, now: Instant) -> Result<Option<Job>, StoreError>;

    /// Marks job `id` claimed without checking its state (the `double-claim` bug's second step).
    fn claim_unchecked(&self, id: JobId, now: Instant) -> Result<(), StoreError>;

    /// Marks a claimed job done.
    fn complete(&self, id: JobId) -> Result<Completion, StoreError>;

    /// Cancels a pending job as of `now`.
    fn cancel(&self, id: JobId, now: Instant) -> Result<Cancellation, StoreError>;

    /// The live job holding `key`, if any.
    fn live_job_with_key(&self, key: &str) -> Result<Option<JobId>, StoreError>;

    /// The payloads of the jobs in `state` at `now`, in id order.
    fn payloads(&self, state: JobState, now: Instant) -> Result<Vec<String>, StoreError>;

    /// The admin counters, or `None` when the engine keeps none.
    fn stats(&self, now: Instant) -> Result<Option<Stats>, StoreError>;

    /// Makes buffered changes durable; returns how many were written.
    fn flush(&self) -> Result<usize, StoreError>;
}
