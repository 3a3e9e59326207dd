//! The `sqlite` engine: jobs in `DIR/queue.sqlite` (WAL, busy timeout), so several
//! queue processes can share one database; schema v1 and the v2 migration.
//!
//! Schema v1 is the `jobs` table (`id`, `payload`, `state`, `claimed_until_ms`).
//! The new build migrates to v2 on open: a `unique_key` column, a unique index
//! on it over live jobs (pending or claimed), and a `schema_version` table. The
//! old build never migrates and touches only v1 columns, so it keeps working on
//! a database the new build has migrated (the rolling-upgrade window); it
//! cannot take unique keys. Leases are wall-clock milliseconds, because they
//! are shared between processes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::store::{Cancellation, Completion, Enqueued, Job, JobId, JobState, NewJob, Stats, Store, StoreError};
use super::Build;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "queue.sqlite";

/// The schema version the new build migrates to.
pub const SCHEMA_VERSION: i64 = 2;

/// How long a statement waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const CREATE_V1: &str = "CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    claimed_until_ms INTEGER
)";

const MIGRATE_V2: &str = "ALTER TABLE jobs ADD COLUMN unique_key TEXT;
CREATE UNIQUE INDEX jobs_live_unique_key ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('pending', 'claimed');
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (2);";

/// A job that can be claimed at `?1` (ms): pending, or claimed with a lease that ran out.
const CLAIMABLE: &str = "(state = 'pending' OR (state = 'claimed' AND claimed_until_ms <= ?1))";

const STATS: &str = "SELECT
    COALESCE(SUM(state = 'pending' OR (state = 'claimed' AND claimed_until_ms <= ?1)), 0),
    COALESCE(SUM(state = 'claimed' AND claimed_until_ms > ?1), 0),
    COALESCE(SUM(state = 'done'), 0),
    COALESCE(SUM(state = 'cancelled'), 0)
    FROM jobs";

/// The `broken-stats-query` bug: the lease column under a name it never had.
const BROKEN_STATS: &str = "SELECT
    COALESCE(SUM(state = 'pending' OR (state = 'claimed' AND lease_expires_at <= ?1)), 0),
    COALESCE(SUM(state = 'claimed' AND lease_expires_at > ?1), 0),
    COALESCE(SUM(state = 'done'), 0),
    COALESCE(SUM(state = 'cancelled'), 0)
    FROM jobs";

/// How the sqlite engine is opened.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub build: Build,
    pub lease: Duration,
    /// The `lost-on-kill` bug: changes go into one open transaction that only
    /// [`Store::flush`] commits, so a SIGKILL rolls back acknowledged ones.
    pub buffered: bool,
    /// The `broken-stats-query` bug.
    pub broken_stats: bool,
}

/// What opening the database found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The schema version after opening: 1 or [`SCHEMA_VERSION`].
    pub schema_version: i64,
    pub migrated: bool,
}

/// The sqlite engine; one connection per process, shared by the handlers under a lock.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    options: SqliteOptions,
    /// Changes made inside the open transaction of the `lost-on-kill` bug.
    n_buffered: AtomicUsize,
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/queue.sqlite`; the new build migrates it to v2.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<(SqliteStore, Opened), StoreError> {
        let path = dir.join(DB_FILE);
        let open_err = |source| StoreError::OpenSqlite { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let mut conn = Connection::open(&path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        let opened = prepare_schema(&mut conn, options.build).map_err(open_err)?;
        let store = SqliteStore { conn: Mutex::new(conn), options, n_buffered: AtomicUsize::new(0) };
        Ok((store, opened))
    }

    /// The database file of `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(DB_FILE)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().expect("sqlite connection lock poisoned")
    }

    /// Runs `f` as one write: its own immediate transaction in the correct
    /// build, or inside the long open one with `lost-on-kill`.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut conn = self.lock();
        if self.options.buffered {
            if conn.is_autocommit() {
                conn.execute_batch("BEGIN IMMEDIATE")?;
            }
            let value = f(&conn)?;
            self.n_buffered.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        f(&self.lock())
    }

    fn lease_end_ms(&self, now: Instant) -> i64 {
        wall_ms(now) + self.options.lease.as_millis() as i64
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode}")));
    }
    // FULL syncs the WAL on every commit: a committed job survives a kill and a power cut.
    conn.execute_batch("PRAGMA synchronous = FULL")
}

/// Creates the v1 table if missing; the new build then migrates to v2, once,
/// under the write lock so two new processes starting together agree.
fn prepare_schema(conn: &mut Connection, build: Build) -> rusqlite::Result<Opened> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(CREATE_V1)?;
    let has_version_table: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
        [],
        |row| row.get(0),
    )?;
    let version = if has_version_table {
        tx.query_row("SELECT MAX(version) FROM schema_version", [], |row| row.get::<_, Option<i64>>(0))?.unwrap_or(1)
    } else {
        1
    };
    let migrate = build == Build::New && version < SCHEMA_VERSION;
    if migrate {
        tx.execute_batch(MIGRATE_V2)?;
    }
    tx.commit()?;
    Ok(Opened { schema_version: if migrate { SCHEMA_VERSION } else { version }, migrated: migrate })
}

/// `now` as Unix milliseconds: the clock every process sharing the file agrees on.
fn wall_ms(now: Instant) -> i64 {
    let wall = SystemTime::now() - Instant::now().saturating_duration_since(now);
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn job_id(raw: i64) -> Result<JobId, StoreError> {
    u64::try_from(raw).map(JobId).map_err(|_| StoreError::BadRow(format!("negative job id {raw}")))
}

fn state_named(name: &str) -> Result<JobState, StoreError> {
    match name {
        "pending" => Ok(JobState::Pending),
        "claimed" => Ok(JobState::Claimed),
        "done" => Ok(JobState::Done),
        "cancelled" => Ok(JobState::Cancelled),
        other => Err(StoreError::BadRow(format!("unknown job state {other:?}"))),
    }
}

fn claimable(conn: &Connection, now_ms: i64) -> Result<Option<Job>, StoreError> {
    let sql = format!("SELECT id, payload FROM jobs WHERE {CLAIMABLE} ORDER BY id LIMIT 1");
    let row = conn.query_row(&sql, [now_ms], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))).optional()?;
    row.map(|(id, payload)| Ok(Job { id: job_id(id)?, payload })).transpose()
}

fn mark_claimed(conn: &Connection, id: JobId, until_ms: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE jobs SET state = 'claimed', claimed_until_ms = ?2 WHERE id = ?1",
        params![id.0 as i64, until_ms],
    )?;
    Ok(())
}

/// The job's state at `now_ms` (an expired claim is pending) and payload.
fn job_state(conn: &Connection, id: JobId, now_ms: i64) -> Result<Option<(JobState, String)>, StoreError> {
    let sql = "SELECT state, claimed_until_ms, payload FROM jobs WHERE id = ?1";
    let row = conn
        .query_row(sql, [id.0 as i64], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?, row.get::<_, String>(2)?))
        })
        .optional()?;
    let Some((state, until_ms, payload)) = row else {
        return Ok(None);
    };
    let state = match state_named(&state)? {
        JobState::Claimed if until_ms.is_none_or(|until| until <= now_ms) => JobState::Pending,
        other => other,
    };
    Ok(Some((state, payload)))
}

fn insert_keyed(conn: &Connection, payload: &str, key: &str) -> Result<Enqueued, StoreError> {
    let inserted = conn.execute("INSERT INTO jobs (payload, unique_key) VALUES (?1, ?2)", params![payload, key]);
    match inserted {
        Ok(_) => Ok(Enqueued::Added(job_id(conn.last_insert_rowid())?)),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            let holder = live_with_key(conn, key)?;
            let holder = holder.ok_or_else(|| StoreError::BadRow(format!("key {key:?} refused but held by no job")))?;
            Ok(Enqueued::Duplicate(holder))
        }
        Err(e) => Err(e.into()),
    }
}

fn live_with_key(conn: &Connection, key: &str) -> Result<Option<JobId>, StoreError> {
    let sql = "SELECT id FROM jobs WHERE unique_key = ?1 AND state IN ('pending', 'claimed')";
    let id: Option<i64> = conn.query_row(sql, [key], |row| row.get(0)).optional()?;
    id.map(job_id).transpose()
}

impl Store for SqliteStore {
    fn engine(&self) -> &'static str {
        "sqlite"
    }

    fn enqueue(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        self.write(|conn| match (&job.key, self.options.build) {
            (Some(key), Build::New) => insert_keyed(conn, &job.payload, key),
            (Some(_), Build::Old) => Err(StoreError::KeysNeedNewBuild),
            (None, _) => {
                conn.execute("INSERT INTO jobs (payload) VALUES (?1)", [&job.payload])?;
                Ok(Enqueued::Added(job_id(conn.last_insert_rowid())?))
            }
        })
    }

    fn claim(&self, now: Instant) -> Result<Option<Job>, StoreError> {
        let (now_ms, until_ms) = (wall_ms(now), self.lease_end_ms(now));
        self.write(|conn| {
            let job = claimable(conn, now_ms)?;
            if let Some(job) = &job {
                mark_claimed(conn, job.id, until_ms)?;
            }
            Ok(job)
        })
    }

    fn peek_claimable(&self, now: Instant) -> Result<Option<Job>, StoreError> {
        self.read(|conn| claimable(conn, wall_ms(now)))
    }

    fn claim_unchecked(&self, id: JobId, now: Instant) -> Result<(), StoreError> {
        let until_ms = self.lease_end_ms(now);
        self.write(|conn| mark_claimed(conn, id, until_ms))
    }

    fn complete(&self, id: JobId) -> Result<Completion, StoreError> {
        let now_ms = wall_ms(Instant::now());
        self.write(|conn| match job_state(conn, id, now_ms)? {
            None => Ok(Completion::Unknown),
            Some((JobState::Claimed, _)) => {
                conn.execute("UPDATE jobs SET state = 'done' WHERE id = ?1", [id.0 as i64])?;
                Ok(Completion::Done)
            }
            Some(_) => Ok(Completion::NotClaimed),
        })
    }

    fn cancel(&self, id: JobId, now: Instant) -> Result<Cancellation, StoreError> {
        let now_ms = wall_ms(now);
        self.write(|conn| match job_state(conn, id, now_ms)? {
            None => Ok(Cancellation::Unknown),
            Some((JobState::Pending, payload)) => {
                conn.execute("UPDATE jobs SET state = 'cancelled' WHERE id = ?1", [id.0 as i64])?;
                Ok(Cancellation::Cancelled(Job { id, payload }))
            }
            Some((state, _)) => Ok(Cancellation::NotPending(state)),
        })
    }

    fn live_job_with_key(&self, key: &str) -> Result<Option<JobId>, StoreError> {
        match self.options.build {
            Build::New => self.read(|conn| live_with_key(conn, key)),
            Build::Old => Ok(None),
        }
    }

    fn payloads(&self, state: JobState, now: Instant) -> Result<Vec<String>, StoreError> {
        // Pending and claimed depend on the lease, so only their filters take the time (?1).
        let (filter, at_time) = match state {
            JobState::Pending => (CLAIMABLE, true),
            JobState::Claimed => ("(state = 'claimed' AND claimed_until_ms > ?1)", true),
            JobState::Done => ("state = 'done'", false),
            JobState::Cancelled => ("state = 'cancelled'", false),
        };
        let sql = format!("SELECT payload FROM jobs WHERE {filter} ORDER BY id");
        let now_ms = at_time.then(|| wall_ms(now));
        self.read(|conn| {
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(now_ms), |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    fn stats(&self, now: Instant) -> Result<Option<Stats>, StoreError> {
        let sql = if self.options.broken_stats { BROKEN_STATS } else { STATS };
        let counts = self.read(|conn| {
            let counts = conn.query_row(sql, [wall_ms(now)], |row| {
                Ok([row.get::<_, i64>(0)?, row.get(1)?, row.get(2)?, row.get(3)?])
            })?;
            Ok(counts.map(|n| n.max(0) as u64))
        })?;
        let [pending, claimed, done, cancelled] = counts;
        Ok(Some(Stats { engine: "sqlite", pending, claimed, done, cancelled }))
    }

    fn flush(&self) -> Result<usize, StoreError> {
        let conn = self.lock();
        if conn.is_autocommit() {
            return Ok(0);
        }
        conn.execute_batch("COMMIT")?;
        Ok(self.n_buffered.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(build: Build) -> SqliteOptions {
        SqliteOptions { build, lease: Duration::from_secs(5), buffered: false, broken_stats: false }
    }

    #[test]
    fn the_new_build_migrates_once_and_keeps_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (old, opened) = SqliteStore::open(dir.path(), options(Build::Old)).unwrap();
        assert_eq!(opened, Opened { schema_version: 1, migrated: false });
        assert_eq!(old.enqueue(NewJob::plain("a")).unwrap(), Enqueued::Added(JobId(1)));
        assert!(matches!(old.enqueue(NewJob::keyed("b", "k")), Err(StoreError::KeysNeedNewBuild)));
        let (new, opened) = SqliteStore::open(dir.path(), options(Build::New)).unwrap();
        assert_eq!(opened, Opened { schema_version: 2, migrated: true });
        let (_, opened) = SqliteStore::open(dir.path(), options(Build::New)).unwrap();
        assert_eq!(opened, Opened { schema_version: 2, migrated: false }, "a second open does not migrate again");
        let (_, opened) = SqliteStore::open(dir.path(), options(Build::Old)).unwrap();
        assert_eq!(opened, Opened { schema_version: 2, migrated: false });
        assert_eq!(new.payloads(JobState::Pending, Instant::now()).unwrap(), ["a"]);
        assert_eq!(new.enqueue(NewJob::keyed("b", "k")).unwrap(), Enqueued::Added(JobId(2)));
        assert_eq!(new.enqueue(NewJob::keyed("c", "k")).unwrap(), Enqueued::Duplicate(JobId(2)));
        assert_eq!(old.live_job_with_key("k").unwrap(), None, "the old build never reads the v2 column");
    }

    #[test]
    fn a_broken_stats_query_is_an_error_naming_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let broken = SqliteOptions { broken_stats: true, ..options(Build::New) };
        let (store, _) = SqliteStore::open(dir.path(), broken).unwrap();
        let err = store.stats(Instant::now()).unwrap_err().to_string();
        assert!(err.starts_with("query sqlite: no such column: lease_expires_at"), "{err}");
        let (store, _) = SqliteStore::open(dir.path(), options(Build::New)).unwrap();
        let stats = store.stats(Instant::now()).unwrap().unwrap();
        assert_eq!(stats, Stats { engine: "sqlite", pending: 0, claimed: 0, done: 0, cancelled: 0 });
    }
}
