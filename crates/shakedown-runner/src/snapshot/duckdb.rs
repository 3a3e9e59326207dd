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
