//! The migrate job's status-events table, `migrate_events`, in its own SQLite file for scenarios to query.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS migrate_events (
    seq INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    phase TEXT NOT NULL,
    batch INTEGER,
    item_count INTEGER,
    status TEXT NOT NULL
);
";

/// What an event row says happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// A phase or a batch began.
    Started,
    /// A phase or a batch finished.
    Done,
    /// A batch could not be copied; the job exits 1.
    Failed,
    /// A resume is redoing a batch an earlier run left in flight.
    Retry,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Retry => "retry",
        }
    }
}

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("record an event in {}: {source}", path.display())]
pub struct EventsError {
    path: PathBuf,
    source: rusqlite::Error,
}

/// The open events file.
pub struct Events {
    path: PathBuf,
    db: Connection,
}

impl Events {
    /// Opens (creating) the file, this table and `migrate_items`; `fresh`
    /// deletes the rows of earlier runs from both.
    pub fn open(path: &Path, fresh: bool) -> Result<Events, EventsError> {
        let error = |source| EventsError { path: path.to_path_buf(), source };
        let db = Connection::open(path).map_err(error)?;
        db.busy_timeout(std::time::Duration::from_secs(5)).map_err(error)?;
        // The events are a record for scenarios, not what a resume relies on:
        // they survive a killed process without an fsync per row.
        db.execute_batch("PRAGMA synchronous = OFF").map_err(error)?;
        db.execute_batch(SCHEMA).map_err(error)?;
        db.execute_batch(super::items::SCHEMA).map_err(error)?;
        if fresh {
            db.execute("DELETE FROM migrate_events", []).map_err(error)?;
            db.execute("DELETE FROM migrate_items", []).map_err(error)?;
        }
        Ok(Events { path: path.to_path_buf(), db })
    }

    /// The item status table in the same file.
    pub fn items(&self) -> super::items::Items<'_> {
        super::items::Items { path: &self.path, db: &self.db }
    }

    /// Appends one row; `batch` is None for a phase's own start and end.
    pub fn record(&self, phase: &str, batch: Option<u64>, item_count: u64, status: Status) -> Result<(), EventsError> {
        let ts_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let ts_ms = i64::try_from(ts_ms).unwrap_or(i64::MAX);
        let batch = batch.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let item_count = i64::try_from(item_count).unwrap_or(i64::MAX);
        self.db
            .execute(
                "INSERT INTO migrate_events (ts_ms, phase, batch, item_count, status) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ts_ms, phase, batch, item_count, status.name()],
            )
            .map_err(|source| EventsError { path: self.path.clone(), source })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_rows_and_clears_them_on_a_fresh_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.sqlite");
        let rows = |path: &Path| -> Vec<(i64, String, Option<i64>, i64, String)> {
            let db = Connection::open(path).unwrap();
            let mut stmt =
                db.prepare("SELECT seq, phase, batch, item_count, status FROM migrate_events ORDER BY seq").unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let events = Events::open(&path, true).unwrap();
        events.record("copy", None, 3, Status::Started).unwrap();
        events.record("copy", Some(0), 2, Status::Retry).unwrap();
        drop(events);
        let kept = Events::open(&path, false).unwrap();
        kept.record("copy", Some(0), 2, Status::Done).unwrap();
        let got = rows(&path);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], (1, "copy".to_string(), None, 3, "started".to_string()));
        assert_eq!(got[2], (3, "copy".to_string(), Some(0), 2, "done".to_string()));
        drop(kept);
        Events::open(&path, true).unwrap();
        assert!(rows(&path).is_empty());
    }
}
