//! The migrate job's item status table, `migrate_items`: one row per source item, which an operator marks for retry and the sweep copies again.
//!
//! It lives in the events file beside `migrate_events` (see [`super::events`]),
//! so a scenario reads both with one `sqlite` state. An item is named by its
//! key: `<table>:<rowid>` for SQLite sources, the relative path for trees.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use super::state::{Batch, FileRange, RowRange};
use super::tree::is_safe_relative;
use super::Kind;

/// Created with the events table; emptied with it by a run without `--resume`.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS migrate_items (
    item TEXT PRIMARY KEY,
    batch INTEGER,
    status TEXT,
    attempts INTEGER,
    error TEXT
);
";

/// What an item row says about the item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemStatus {
    /// Copied by the batch that holds it.
    Copied,
    /// Not copied; `error` says why. Left alone until an operator marks it `retry`.
    Failed,
    /// Marked by an operator; the next `--sweep` copies it.
    Retry,
    /// Copied by a sweep.
    Swept,
}

impl ItemStatus {
    pub fn name(self) -> &'static str {
        match self {
            ItemStatus::Copied => "copied",
            ItemStatus::Failed => "failed",
            ItemStatus::Retry => "retry",
            ItemStatus::Swept => "swept",
        }
    }
}

/// How one item of a batch fared: copied, or failed with a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemOutcome {
    pub item: String,
    pub error: Option<String>,
}

impl ItemOutcome {
    pub fn copied(item: String) -> ItemOutcome {
        ItemOutcome { item, error: None }
    }

    pub fn failed(item: String, error: String) -> ItemOutcome {
        ItemOutcome { item, error: Some(error) }
    }

    fn status(&self) -> ItemStatus {
        if self.error.is_some() {
            ItemStatus::Failed
        } else {
            ItemStatus::Copied
        }
    }
}

/// Why the item table could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{what} in {}: {source}", path.display())]
pub struct ItemsError {
    what: &'static str,
    path: PathBuf,
    source: rusqlite::Error,
}

/// The item table of an open events file.
pub struct Items<'a> {
    pub(super) path: &'a Path,
    pub(super) db: &'a Connection,
}

/// Sets a new row's attempts to 1 and adds one to an existing row's.
const UPSERT: &str = "INSERT INTO migrate_items (item, batch, status, attempts, error) VALUES (?1, ?2, ?3, 1, ?4)
     ON CONFLICT (item) DO UPDATE SET batch = excluded.batch, status = excluded.status,
     attempts = attempts + 1, error = excluded.error";

impl Items<'_> {
    fn error(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> ItemsError {
        let path = self.path.to_path_buf();
        move |source| ItemsError { what, path, source }
    }

    /// Records every item of batch `batch` in one transaction.
    pub fn record_batch(&self, batch: u64, outcomes: &[ItemOutcome]) -> Result<(), ItemsError> {
        let what = "record item statuses";
        let batch = i64::try_from(batch).unwrap_or(i64::MAX);
        let tx = self.db.unchecked_transaction().map_err(self.error(what))?;
        {
            let mut upsert = tx.prepare_cached(UPSERT).map_err(self.error(what))?;
            for outcome in outcomes {
                let row = params![outcome.item, batch, outcome.status().name(), outcome.error];
                upsert.execute(row).map_err(self.error(what))?;
            }
        }
        tx.commit().map_err(self.error(what))
    }

    /// Sets one existing item's status and error, counting an attempt.
    pub fn settle(&self, item: &str, status: ItemStatus, error: Option<&str>) -> Result<(), ItemsError> {
        let sql =
            "UPDATE migrate_items SET status = ?2, error = ?3, attempts = coalesce(attempts, 0) + 1 WHERE item = ?1";
        self.db.execute(sql, params![item, status.name(), error]).map_err(self.error("update an item's status"))?;
        Ok(())
    }

    /// Items with `status`.
    pub fn count(&self, status: ItemStatus) -> Result<u64, ItemsError> {
        let what = "count items";
        let sql = "SELECT count(*) FROM migrate_items WHERE status = ?1";
        let n: i64 = self.db.query_row(sql, [status.name()], |row| row.get(0)).map_err(self.error(what))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The items marked `retry`, in plan order for `kind` (SQLite: table, then
    /// rowid; trees: path), those whose name does not parse last, by name.
    pub fn to_retry(&self, kind: Kind) -> Result<Vec<String>, ItemsError> {
        let what = "read the items marked for retry";
        let mut stmt = self
            .db
            .prepare("SELECT item FROM migrate_items WHERE status = 'retry' ORDER BY item")
            .map_err(self.error(what))?;
        let names = stmt.query_map([], |row| row.get::<_, String>(0)).map_err(self.error(what))?;
        let mut items: Vec<String> = names.collect::<Result<_, _>>().map_err(self.error(what))?;
        items.sort_by_cached_key(|item| match item_batch(kind, item) {
            Ok(Batch::Rows(range)) => (0, range.table, range.first, String::new()),
            Ok(Batch::Files(range)) => (0, String::new(), 0, range.first),
            Err(_) => (1, String::new(), 0, item.clone()),
        });
        Ok(items)
    }
}

/// The name of row `rowid` of `table`.
pub fn row_item(table: &str, rowid: i64) -> String {
    format!("{table}:{rowid}")
}

/// A batch of just `item`, to copy it again; an error says why the name is not an item of `kind`.
pub fn item_batch(kind: Kind, item: &str) -> Result<Batch, String> {
    match kind {
        Kind::Sqlite => {
            let parsed = item.rsplit_once(':').and_then(|(table, rowid)| Some((table, rowid.parse::<i64>().ok()?)));
            match parsed {
                Some((table, rowid)) if !table.is_empty() => {
                    Ok(Batch::Rows(RowRange { table: table.to_string(), first: rowid, last: rowid, count: 1 }))
                }
                _ => Err(format!("{item:?} is not an item of an SQLite source (<table>:<rowid>)")),
            }
        }
        Kind::Tree if is_safe_relative(item) => {
            Ok(Batch::Files(FileRange { first: item.to_string(), last: item.to_string(), count: 1 }))
        }
        Kind::Tree => Err(format!("{item:?} is not a plain relative path")),
    }
}

/// Whether the item with this id (a rowid, or a file's 1-based position in
/// sorted order) fails on purpose under `--fail-every N`; 0 never fails.
pub fn fails(id: i64, fail_every: u64) -> bool {
    fail_every > 0 && i128::from(id).rem_euclid(i128::from(fail_every)) == 0
}

/// The error text of an item failed on purpose.
pub fn injected_error(id: i64, fail_every: u64) -> String {
    format!("injected failure: id {id} is divisible by --fail-every {fail_every}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_names_parse_back_into_single_item_batches() {
        let rows =
            |table: &str, rowid| Batch::Rows(RowRange { table: table.into(), first: rowid, last: rowid, count: 1 });
        assert_eq!(item_batch(Kind::Sqlite, &row_item("items", 42)), Ok(rows("items", 42)));
        assert_eq!(item_batch(Kind::Sqlite, "a:b:-3"), Ok(rows("a:b", -3)));
        for bad in ["items", "items:x", ":4", ""] {
            assert!(item_batch(Kind::Sqlite, bad).is_err(), "{bad}");
        }
        let file = Batch::Files(FileRange { first: "d/f.bin".into(), last: "d/f.bin".into(), count: 1 });
        assert_eq!(item_batch(Kind::Tree, "d/f.bin"), Ok(file));
        for bad in ["", "/etc/passwd", "../x", "a/../b"] {
            assert!(item_batch(Kind::Tree, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fail_every_picks_multiples_and_zero_picks_none() {
        let picked: Vec<i64> = (-7..=21).filter(|&id| fails(id, 7)).collect();
        assert_eq!(picked, [-7, 0, 7, 14, 21]);
        assert!(!(1..100).any(|id| fails(id, 0)));
        assert!(fails(i64::MIN, 2) && !fails(i64::MAX, 2));
    }

    #[test]
    fn records_upserts_counts_and_lists_retries_in_plan_order() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(SCHEMA).unwrap();
        let items = Items { path: Path::new("mem"), db: &db };
        let outcomes = ["t:10", "t:2", "t:9", "a:100", "junk"]
            .map(|item| ItemOutcome::failed(item.into(), "x".into()))
            .into_iter()
            .chain([ItemOutcome::copied("t:1".into())])
            .collect::<Vec<_>>();
        items.record_batch(0, &outcomes).unwrap();
        items.record_batch(3, &outcomes[..1]).unwrap();
        assert_eq!((items.count(ItemStatus::Failed).unwrap(), items.count(ItemStatus::Copied).unwrap()), (5, 1));
        db.execute("UPDATE migrate_items SET status = 'retry' WHERE status = 'failed'", []).unwrap();
        assert_eq!(items.to_retry(Kind::Sqlite).unwrap(), ["a:100", "t:2", "t:9", "t:10", "junk"]);
        items.settle("t:10", ItemStatus::Swept, None).unwrap();
        let row: (i64, String, i64, Option<String>) = db
            .query_row("SELECT batch, status, attempts, error FROM migrate_items WHERE item = 't:10'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(row, (3, "swept".to_string(), 3, None));
        assert_eq!(items.to_retry(Kind::Sqlite).unwrap().len(), 4);
    }
}
