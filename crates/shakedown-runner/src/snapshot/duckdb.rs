//! Reads a DuckDB query's rows as a state, from the database file opened
//! read-only. DuckDB's bundled build is heavy, so it is behind the `duckdb`
//! cargo feature; without it a `duckdb` source reads as an error saying how
//! to get it, and its check is unknown.

use super::StateError;
use shakedown_history::state::StateContent;
use std::path::Path;
use std::time::Instant;

/// What a `duckdb` source says when the feature is off.
#[cfg(not(feature = "duckdb"))]
pub fn read(_path: &Path, _query: &str, _deadline: Instant) -> Result<StateContent, StateError> {
    Err(StateError::Unsupported(
        "this shakedown was built without DuckDB; rebuild with `--features duckdb` to read `duckdb` states".to_string(),
    ))
}

/// The query's rows, from the database opened read-only (never created).
#[cfg(feature = "duckdb")]
pub fn read(path: &Path, query: &str, deadline: Instant) -> Result<StateContent, StateError> {
    use super::MAX_ROWS;
    use duckdb::{AccessMode, Config, Connection};
    let shown = path.display().to_string();
    let open_err = |e: duckdb::Error| StateError::Open { path: shown.clone(), message: e.to_string() };
    let query_err = |e: duckdb::Error| StateError::Query { path: shown.clone(), message: e.to_string() };
    if !path.is_file() {
        return Err(StateError::Open { path: shown, message: "no such database file".to_string() });
    }
    let config = Config::default().access_mode(AccessMode::ReadOnly).map_err(open_err)?;
    let conn = Connection::open_with_flags(path, config).map_err(open_err)?;
    // A query still running at the deadline is interrupted from another thread.
    let interrupt = conn.interrupt_handle();
    let (done, done_rx) = std::sync::mpsc::channel::<()>();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(remaining) {
            interrupt.interrupt();
        }
    });
    let result = (|| {
        let mut stmt = conn.prepare(query).map_err(query_err)?;
        let mut rows = stmt.query([]).map_err(query_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| match Instant::now() > deadline {
            true => StateError::Timeout(std::time::Duration::ZERO),
            false => query_err(e),
        })? {
            if out.len() == MAX_ROWS {
                return Err(StateError::TooManyRows);
            }
            let n = row.as_ref().column_count();
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                let name = row.as_ref().column_name(i).map_or_else(|_| i.to_string(), String::clone);
                let value = row.get_ref(i).map_err(query_err)?;
                values.push(json(value, &name)?);
            }
            out.push(values);
        }
        let columns = stmt.column_names();
        Ok(StateContent::Rows { columns, rows: out })
    })();
    drop(done);
    let _ = watchdog.join();
    result
}

/// A DuckDB value as JSON: numbers, booleans, text and blobs (hex); other
/// types are refused with how to read them (cast to text in the query), so no
/// value is compared in a made-up form.
#[cfg(feature = "duckdb")]
fn json(value: duckdb::types::ValueRef<'_>, column: &str) -> Result<serde_json::Value, StateError> {
    use duckdb::types::ValueRef as V;
    use serde_json::Value;
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::String(f.to_string()), Value::Number);
    Ok(match value {
        V::Null => Value::Null,
        V::Boolean(b) => Value::Bool(b),
        V::TinyInt(i) => Value::from(i),
        V::SmallInt(i) => Value::from(i),
        V::Int(i) => Value::from(i),
        V::BigInt(i) => Value::from(i),
        V::UTinyInt(i) => Value::from(i),
        V::USmallInt(i) => Value::from(i),
        V::UInt(i) => Value::from(i),
        V::UBigInt(i) => Value::from(i),
        V::HugeInt(i) => i64::try_from(i).map_or_else(|_| Value::String(i.to_string()), Value::from),
        V::Float(f) => float(f64::from(f)),
        V::Double(f) => float(f),
        V::Decimal(d) => Value::String(d.to_string()),
        V::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        V::Blob(b) => Value::String(super::hex(b)),
        other => {
            return Err(StateError::Unsupported(format!(
                "column `{column}` has DuckDB type {:?}, which shakedown does not read; cast it in the query, e.g. `CAST({column} AS VARCHAR)`",
                other.data_type()
            )))
        }
    })
}

#[cfg(all(test, feature = "duckdb"))]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn database(dir: &Path, sql: &str) -> std::path::PathBuf {
        let path = dir.join("t.duckdb");
        let conn = duckdb::Connection::open(&path).unwrap();
        conn.execute_batch(sql).unwrap();
        path
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn rows_read_with_their_types_in_query_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(
            dir.path(),
            "CREATE TABLE t (i BIGINT, f DOUBLE, d DECIMAL(5,2), b BOOLEAN, s VARCHAR, bl BLOB, u UTINYINT);
             INSERT INTO t VALUES (2, 0.5, 3.25, false, 'y', '\\x00\\xFF'::BLOB, 7), (1, 1.5, 1.10, true, NULL, NULL, NULL);",
        );
        let got = read(&path, "SELECT * FROM t ORDER BY i", soon()).unwrap();
        let StateContent::Rows { columns, rows } = got else { panic!("rows") };
        assert_eq!(columns, ["i", "f", "d", "b", "s", "bl", "u"]);
        assert_eq!(
            rows,
            vec![
                vec![json!(1), json!(1.5), json!("1.10"), json!(true), json!(null), json!(null), json!(null)],
                vec![json!(2), json!(0.5), json!("3.25"), json!(false), json!("y"), json!("00ff"), json!(7)],
            ]
        );
    }

    #[test]
    fn types_without_a_faithful_json_form_are_refused_with_a_cast_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), "CREATE TABLE t (ts TIMESTAMP); INSERT INTO t VALUES ('2026-01-01 00:00:00');");
        let err = read(&path, "SELECT ts FROM t", soon()).unwrap_err().to_string();
        assert!(err.contains("column `ts`") && err.contains("CAST(ts AS VARCHAR)"), "{err}");
        let got = read(&path, "SELECT CAST(ts AS VARCHAR) AS ts FROM t", soon()).unwrap();
        assert!(matches!(got, StateContent::Rows { rows, .. } if rows == vec![vec![json!("2026-01-01 00:00:00")]]));
    }

    #[test]
    fn the_file_is_read_only_and_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path(), "CREATE TABLE t (i INT); INSERT INTO t VALUES (1);");
        let err = read(&path, "DELETE FROM t", soon()).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("read-only") || err.to_lowercase().contains("read only"), "{err}");
        let missing = dir.path().join("missing.duckdb");
        let err = read(&missing, "SELECT 1", soon()).unwrap_err().to_string();
        assert!(err.contains("no such database file"), "{err}");
        assert!(!missing.exists());
        let err = read(&path, "SELECT * FROM nope", soon()).unwrap_err().to_string();
        assert!(err.contains("nope"), "the query error names the table: {err}");
    }
}
