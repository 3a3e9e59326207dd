//! The SQLite side of `migrate`: plan key ranges per table, create the destination's schema, copy a range in one transaction.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OpenFlags};

use super::items::{fails, injected_error, row_item, ItemOutcome};
use super::state::{Batch, RowRange};
use super::CopyError;

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn sql_error(what: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> CopyError {
    let what = what.into();
    move |source| CopyError::Sqlite { what, source }
}

/// `name` as a quoted SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn open_source(path: &Path) -> Result<Connection, CopyError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = Connection::open_with_flags(path, flags).map_err(sql_error(format!("open {}", path.display())))?;
    db.busy_timeout(BUSY_TIMEOUT).map_err(sql_error("set the busy timeout"))?;
    Ok(db)
}

/// The user tables of `db`, by name.
fn tables(db: &Connection) -> Result<Vec<String>, CopyError> {
    let what = "list the source's tables";
    let mut stmt = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .map_err(sql_error(what))?;
    let names = stmt.query_map([], |row| row.get(0)).map_err(sql_error(what))?;
    names.collect::<Result<_, _>>().map_err(sql_error(what))
}

/// Every table's rows in rowid order, cut into ranges of at most `batch_size`
/// rows; None when `stopped` says so between batches.
pub fn plan(source: &Path, batch_size: u64, stopped: &dyn Fn() -> bool) -> Result<Option<Vec<Batch>>, CopyError> {
    assert!(batch_size > 0, "batch size 0");
    let db = open_source(source)?;
    let mut batches = Vec::new();
    for table in tables(&db)? {
        let what = format!("read the keys of table {table}");
        let sql = format!("SELECT rowid FROM {} ORDER BY rowid", quote(&table));
        let mut stmt = db.prepare(&sql).map_err(|e| match e {
            e if e.to_string().contains("rowid") => {
                CopyError::Unsupported(format!("table {table} has no rowid (WITHOUT ROWID tables are not supported)"))
            }
            e => CopyError::Sqlite { what: what.clone(), source: e },
        })?;
        let mut rows = stmt.query([]).map_err(sql_error(what.clone()))?;
        let mut open: Option<RowRange> = None;
        while let Some(row) = rows.next().map_err(sql_error(what.clone()))? {
            let key: i64 = row.get(0).map_err(sql_error(what.clone()))?;
            match open.as_mut() {
                Some(range) => {
                    range.last = key;
                    range.count += 1;
                }
                None => open = Some(RowRange { table: table.clone(), first: key, last: key, count: 1 }),
            }
            if open.as_ref().is_some_and(|range| range.count == batch_size) {
                batches.extend(open.take().map(Batch::Rows));
                if stopped() {
                    return Ok(None);
                }
            }
        }
        batches.extend(open.take().map(Batch::Rows));
    }
    Ok((!stopped()).then_some(batches))
}

/// The open source and destination databases, and each table's columns.
pub struct Copier {
    source: Connection,
    dest: Connection,
    columns: BTreeMap<String, Vec<String>>,
}

impl Copier {
    /// Opens both databases and creates in the destination every table and
    /// index of the source it does not have yet.
    pub fn open(source: &Path, dest: &Path) -> Result<Copier, CopyError> {
        let source = open_source(source)?;
        let mut db = Connection::open(dest).map_err(sql_error(format!("open {}", dest.display())))?;
        db.busy_timeout(BUSY_TIMEOUT).map_err(sql_error("set the busy timeout"))?;
        create_schema(&source, &mut db)?;
        Ok(Copier { source, dest: db, columns: BTreeMap::new() })
    }

    /// Copies the rows of `range` with INSERT OR REPLACE by rowid in one
    /// transaction, except the rows `--fail-every fail_every` picks (by
    /// rowid), which it leaves out and reports failed; a source that no
    /// longer holds exactly `count` rows there is an error.
    pub fn copy(&mut self, range: &RowRange, fail_every: u64) -> Result<Vec<ItemOutcome>, CopyError> {
        let columns = match self.columns.get(&range.table) {
            Some(columns) => columns.clone(),
            None => {
                let columns = table_columns(&self.source, &range.table)?;
                self.columns.insert(range.table.clone(), columns.clone());
                columns
            }
        };
        let list = columns.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
        let table = quote(&range.table);
        let what = format!("copy rows {}..={} of table {}", range.first, range.last, range.table);
        let select = format!("SELECT rowid, {list} FROM {table} WHERE rowid BETWEEN ?1 AND ?2 ORDER BY rowid");
        let marks = (1..=columns.len() + 1).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let insert = format!("INSERT OR REPLACE INTO {table} (rowid, {list}) VALUES ({marks})");
        let tx = self.dest.transaction().map_err(sql_error(what.clone()))?;
        let mut read = self.source.prepare_cached(&select).map_err(sql_error(what.clone()))?;
        let mut write = tx.prepare(&insert).map_err(sql_error(what.clone()))?;
        let mut rows = read.query(params![range.first, range.last]).map_err(sql_error(what.clone()))?;
        let mut outcomes = Vec::new();
        while let Some(row) = rows.next().map_err(sql_error(what.clone()))? {
            let rowid: i64 = row.get(0).map_err(sql_error(what.clone()))?;
            let item = row_item(&range.table, rowid);
            if fails(rowid, fail_every) {
                outcomes.push(ItemOutcome::failed(item, injected_error(rowid, fail_every)));
                continue;
            }
            let values = (0..=columns.len()).map(|i| row.get::<_, SqlValue>(i)).collect::<Result<Vec<_>, _>>();
            write
                .execute(params_from_iter(values.map_err(sql_error(what.clone()))?))
                .map_err(sql_error(what.clone()))?;
            outcomes.push(ItemOutcome::copied(item));
        }
        drop(write);
        let n_rows = outcomes.len() as u64;
        if n_rows != range.count {
            // Dropping the transaction rolls the batch back.
            return Err(CopyError::SourceChanged(format!("{what}: planned {} rows, found {n_rows}", range.count)));
        }
        tx.commit().map_err(sql_error(what))?;
        Ok(outcomes)
    }
}

/// The columns an INSERT can set (generated columns are left out).
fn table_columns(db: &Connection, table: &str) -> Result<Vec<String>, CopyError> {
    let what = format!("read the columns of table {table}");
    let mut stmt = db.prepare(&format!("PRAGMA table_info({})", quote(table))).map_err(sql_error(what.clone()))?;
    let names = stmt.query_map([], |row| row.get::<_, String>(1)).map_err(sql_error(what.clone()))?;
    names.collect::<Result<_, _>>().map_err(sql_error(what))
}

/// Runs, in `dest`, the CREATE statement of every source table and then
/// index that `dest` does not have, in one transaction.
fn create_schema(source: &Connection, dest: &mut Connection) -> Result<(), CopyError> {
    let what = "read the source's schema";
    let mut stmt = source
        .prepare(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL \
             AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', name",
        )
        .map_err(sql_error(what))?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?))).map_err(sql_error(what))?;
    let schema: Vec<(String, String, String)> = rows.collect::<Result<_, _>>().map_err(sql_error(what))?;
    let tx = dest.transaction().map_err(sql_error("create the destination's schema"))?;
    for (kind, name, sql) in schema {
        let what = format!("create {kind} {name} in the destination");
        let exists: bool = tx
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = ?1 AND name = ?2",
                params![kind, name],
                |r| r.get(0),
            )
            .map_err(sql_error(what.clone()))?;
        if !exists {
            tx.execute_batch(&sql).map_err(sql_error(what))?;
        }
    }
    tx.commit().map_err(sql_error("create the destination's schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("src.sqlite");
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE b (name TEXT, n REAL);
             CREATE INDEX b_name ON b (name);
             INSERT INTO a VALUES (1, 'x'), (5, NULL), (6, 'z'), (40, 'w'), (41, 'q');
             INSERT INTO b (rowid, name, n) VALUES (3, 'p', 1.5), (9, 'q', NULL);
             CREATE TABLE \"odd \"\"name\" (k INTEGER PRIMARY KEY);",
        )
        .unwrap();
        path
    }

    fn rows(path: &Path, table: &str) -> Vec<Vec<SqlValue>> {
        let db = Connection::open(path).unwrap();
        let mut stmt = db.prepare(&format!("SELECT rowid, * FROM {} ORDER BY rowid", quote(table))).unwrap();
        let n = stmt.column_count();
        let rows = stmt.query_map([], |r| (0..n).map(|i| r.get::<_, SqlValue>(i)).collect()).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn plans_ranges_per_table_and_copies_them_twice_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        let plan = plan(&src, 2, &|| false).unwrap().unwrap();
        let ranges: Vec<(&str, i64, i64, u64)> = plan
            .iter()
            .map(|b| match b {
                Batch::Rows(r) => (r.table.as_str(), r.first, r.last, r.count),
                Batch::Files(_) => panic!("file batch"),
            })
            .collect();
        assert_eq!(ranges, [("a", 1, 5, 2), ("a", 6, 40, 2), ("a", 41, 41, 1), ("b", 3, 9, 2)]);
        let dest = dir.path().join("dest.sqlite");
        let mut copier = Copier::open(&src, &dest).unwrap();
        for batch in plan.iter().chain(&plan[1..2]) {
            let Batch::Rows(range) = batch else { unreachable!() };
            copier.copy(range, 0).unwrap();
        }
        drop(copier);
        Copier::open(&src, &dest).unwrap();
        for table in ["a", "b", "odd \"name"] {
            assert_eq!(rows(&dest, table), rows(&src, table), "{table}");
        }
        assert_eq!(rows(&dest, "a").len(), 5);
    }

    #[test]
    fn stops_between_batches_and_refuses_a_changed_source() {
        let dir = tempfile::tempdir().unwrap();
        let src = source(dir.path());
        assert_eq!(plan(&src, 2, &|| true).unwrap(), None);
        let dest = dir.path().join("dest.sqlite");
        let mut copier = Copier::open(&src, &dest).unwrap();
        let range = RowRange { table: "a".into(), first: 1, last: 6, count: 4 };
        let err = copier.copy(&range, 0).unwrap_err();
        assert!(matches!(err, CopyError::SourceChanged(_)), "{err}");
        assert!(rows(&dest, "a").is_empty(), "the failed batch was rolled back");
    }

    #[test]
    fn refuses_tables_without_rowid() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("w.sqlite");
        Connection::open(&src).unwrap().execute_batch("CREATE TABLE w (k TEXT PRIMARY KEY) WITHOUT ROWID").unwrap();
        let err = plan(&src, 10, &|| false).unwrap_err();
        assert!(err.to_string().contains("WITHOUT ROWID"), "{err}");
    }
}
