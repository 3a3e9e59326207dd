//! Reads a PostgreSQL query's rows as a state: over one connection, inside a
//! read-only transaction with a statement timeout, capped at [`MAX_ROWS`].
//!
//! The query is prepared first, which rejects several statements in one
//! string and tells each column's type; the rows then come through the simple
//! protocol as text and are typed by their column: integers and floats as
//! numbers, booleans, JSON as JSON, `bytea` as hex, the rest (numeric, dates,
//! uuids, text) as text, so every type reads without a per-type decoder.

use super::{StateError, MAX_ROWS};
use futures_util::StreamExt;
use serde_json::Value;
use shakedown_history::state::StateContent;
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// The rows of `query` against the database `conninfo` names, within `timeout`.
pub async fn read(conninfo: &str, query: &str, timeout: Duration) -> Result<StateContent, StateError> {
    let shown = redact(conninfo);
    match tokio::time::timeout(timeout, read_rows(conninfo, &shown, query, timeout)).await {
        Ok(result) => result,
        Err(_) => Err(StateError::Timeout(timeout)),
    }
}

async fn read_rows(conninfo: &str, shown: &str, query: &str, timeout: Duration) -> Result<StateContent, StateError> {
    let open = |e: tokio_postgres::Error| StateError::Open { path: shown.to_string(), message: message(&e) };
    let query_err = |e: tokio_postgres::Error| StateError::Query { path: shown.to_string(), message: message(&e) };
    let config: tokio_postgres::Config = conninfo
        .parse()
        .map_err(|e: tokio_postgres::Error| StateError::Open { path: shown.to_string(), message: message(&e) })?;
    let (client, connection) = config.connect(NoTls).await.map_err(open)?;
    // The connection task ends when `client` drops; aborting it on every
    // path keeps a hung server from holding a task.
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let statement = client.prepare(query).await.map_err(query_err)?;
    let types: Vec<Type> = statement.columns().iter().map(|c| c.type_().clone()).collect();
    let columns: Vec<String> = statement.columns().iter().map(|c| c.name().to_string()).collect();
    let begin = format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {}", timeout.as_millis().max(1));
    client.batch_execute(&begin).await.map_err(query_err)?;
    let mut rows = Vec::new();
    let stream = client.simple_query_raw(query).await.map_err(query_err)?;
    let mut stream = std::pin::pin!(stream);
    // Streamed, so a query returning too many rows stops at the cap.
    while let Some(message) = stream.next().await {
        let SimpleQueryMessage::Row(row) = message.map_err(query_err)? else { continue };
        if rows.len() == MAX_ROWS {
            return Err(StateError::TooManyRows);
        }
        rows.push((0..row.len()).map(|i| typed(row.get(i), types.get(i))).collect());
    }
    Ok(StateContent::Rows { columns, rows })
}

/// A column's text as the JSON value its type suggests; text when it does
/// not parse as that type.
fn typed(text: Option<&str>, ty: Option<&Type>) -> Value {
    let Some(text) = text else { return Value::Null };
    let as_text = || Value::String(text.to_string());
    match ty {
        Some(&Type::INT2 | &Type::INT4 | &Type::INT8 | &Type::OID) => {
            text.parse::<i64>().map_or_else(|_| as_text(), Value::from)
        }
        Some(&Type::FLOAT4 | &Type::FLOAT8) => {
            text.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or_else(as_text, Value::Number)
        }
        Some(&Type::NUMERIC) => text.parse::<i64>().map_or_else(|_| as_text(), Value::from),
        Some(&Type::BOOL) => Value::Bool(text == "t"),
        Some(&Type::JSON | &Type::JSONB) => serde_json::from_str(text).unwrap_or_else(|_| as_text()),
        Some(&Type::BYTEA) => Value::String(text.trim_start_matches("\\x").to_string()),
        _ => as_text(),
    }
}

/// The server's own words (with its detail and hint) rather than the
/// driver's "db error" wrapper.
fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut out = db.message().to_string();
            if let Some(detail) = db.detail() {
                out.push_str(&format!(" ({detail})"));
            }
            if let Some(hint) = db.hint() {
                out.push_str(&format!("; hint: {hint}"));
            }
            out
        }
        // "error connecting to server" alone hides the cause: add the chain.
        None => {
            let mut out = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                out.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            out
        }
    }
}

/// The connection string without its password, for messages and reports.
pub fn redact(conninfo: &str) -> String {
    if let Some((scheme, rest)) = conninfo.split_once("://") {
        if let Some((userinfo, host)) = rest.split_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return conninfo.to_string();
    }
    conninfo
        .split_whitespace()
        .map(|pair| if pair.starts_with("password=") { "password=***" } else { pair })
        .collect::<Vec<_>>()
        .join(" ")
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_from_urls_and_pairs() {
        assert_eq!(redact("postgresql://app:s3cret@127.0.0.1:5432/db"), "postgresql://app:***@127.0.0.1:5432/db");
        assert_eq!(redact("postgresql://app@127.0.0.1/db"), "postgresql://app@127.0.0.1/db");
        assert_eq!(redact("host=127.0.0.1 password=s3cret user=app"), "host=127.0.0.1 password=*** user=app");
    }

    #[test]
    fn columns_are_typed_by_their_postgres_type() {
        assert_eq!(typed(Some("42"), Some(&Type::INT8)), Value::from(42));
        assert_eq!(typed(Some("1.5"), Some(&Type::FLOAT8)), Value::from(1.5));
        assert_eq!(typed(Some("NaN"), Some(&Type::FLOAT8)), Value::from("NaN"));
        assert_eq!(typed(Some("3"), Some(&Type::NUMERIC)), Value::from(3));
        assert_eq!(typed(Some("3.10"), Some(&Type::NUMERIC)), Value::from("3.10"));
        assert_eq!(typed(Some("t"), Some(&Type::BOOL)), Value::Bool(true));
        assert_eq!(typed(Some("{\"a\": 1}"), Some(&Type::JSONB)), serde_json::json!({"a": 1}));
        assert_eq!(typed(Some("\\x00ff"), Some(&Type::BYTEA)), Value::from("00ff"));
        assert_eq!(typed(Some("2026-01-01"), Some(&Type::DATE)), Value::from("2026-01-01"));
        assert_eq!(typed(None, Some(&Type::TEXT)), Value::Null);
    }
}
