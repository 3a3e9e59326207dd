//! State snapshots: what an actor's (or a service's) state looked like at one
//! moment of a run, for the state checks (convergence, idempotency, ...).
//!
//! The runner takes them (SQLite query rows, a command's JSON, a directory
//! tree) and the run directory keeps them as `states.json`; checks compare
//! them. A snapshot that could not be taken carries its error instead of
//! content, so a check can say why it is unknown.
//!
//! ```
//! use shakedown_history::state::{Snapshot, StateContent};
//! use serde_json::json;
//!
//! let a = Snapshot::ok("converge", "alice", "final", StateContent::json(json!({"n": 1})));
//! let b = Snapshot::ok("converge", "bob", "final", StateContent::json(json!({"n": 1})));
//! assert_eq!(a.hash(), b.hash());
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One state, taken for one check, of one owner, at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The label of the check it was taken for.
    pub check: String,
    /// The actor (or `-` when the state belongs to no actor).
    pub owner: String,
    /// When: "final", "before" or "after" (idempotency rounds).
    pub taken: String,
    /// The state, absent when it could not be taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<StateContent>,
    /// Why the state could not be taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a state holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum StateContent {
    /// A query's result: column names and rows of JSON values
    /// (integers, reals, text, null; blobs as hex text).
    Rows { columns: Vec<String>, rows: Vec<Vec<Value>> },
    /// A command's standard output, parsed as JSON.
    Json { value: Value },
    /// A directory tree: every regular file, sorted by path.
    Tree { entries: Vec<TreeEntry> },
}

/// One regular file of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Relative to the tree's root, with `/` separators.
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the contents.
    pub sha256: String,
}

impl Snapshot {
    pub fn ok(check: &str, owner: &str, taken: &str, content: StateContent) -> Snapshot {
        Snapshot {
            check: check.to_string(),
            owner: owner.to_string(),
            taken: taken.to_string(),
            content: Some(content),
            error: None,
        }
    }

    pub fn failed(check: &str, owner: &str, taken: &str, error: impl Into<String>) -> Snapshot {
        Snapshot {
            check: check.to_string(),
            owner: owner.to_string(),
            taken: taken.to_string(),
            content: None,
            error: Some(error.into()),
        }
    }

    /// A stable hash of the content (see [`StateContent::hash`]); `None` without content.
    pub fn hash(&self) -> Option<String> {
        self.content.as_ref().map(StateContent::hash)
    }
}

impl StateContent {
    /// A shorthand for `StateContent::Json { value }`.
    pub fn json(value: Value) -> StateContent {
        StateContent::Json { value }
    }

    /// A stable 64-bit FNV-1a hash of the content's canonical JSON (object
    /// keys sorted), as 16 hex digits: the same on every machine and run.
    pub fn hash(&self) -> String {
        let text = canonical(&serde_json::to_value(self).unwrap_or(Value::Null));
        format!("{:016x}", fnv1a(text.as_bytes()))
    }

    /// "rows", "json" or "tree".
    pub fn type_name(&self) -> &'static str {
        match self {
            StateContent::Rows { .. } => "rows",
            StateContent::Json { .. } => "json",
            StateContent::Tree { .. } => "tree",
        }
    }
}

/// JSON text with object keys in sorted order, whatever map type serde_json uses.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[*k]))).collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// Reads `states.json` text: a JSON array of snapshots.
pub fn read_states(text: &str) -> Result<Vec<Snapshot>, serde_json::Error> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(rows: Vec<Vec<Value>>) -> StateContent {
        StateContent::Rows { columns: vec!["id".into(), "title".into()], rows }
    }

    #[test]
    fn equal_content_hashes_equal_and_different_content_differs() {
        let a = rows(vec![vec![json!(1), json!("a")]]);
        let b = rows(vec![vec![json!(1), json!("a")]]);
        let c = rows(vec![vec![json!(1), json!("b")]]);
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.hash().len(), 16);
        // Key order in objects does not change the hash.
        let x = StateContent::json(json!({"a": 1, "b": [1, {"c": 2, "d": 3}]}));
        let y: Value = serde_json::from_str(r#"{"b": [1, {"d": 3, "c": 2}], "a": 1}"#).unwrap();
        assert_eq!(x.hash(), StateContent::json(y).hash());
        assert_ne!(x.hash(), StateContent::json(json!({"a": 2})).hash());
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing the hash function would make old states.json hashes meaningless.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn snapshots_round_trip_through_json() {
        let snaps = vec![
            Snapshot::ok("c", "alice", "final", rows(vec![vec![json!(1), Value::Null]])),
            Snapshot::ok(
                "c",
                "bob",
                "before",
                StateContent::Tree { entries: vec![TreeEntry { path: "a/b".into(), size: 3, sha256: "ab".into() }] },
            ),
            Snapshot::failed("c", "carol", "final", "no such file"),
        ];
        let text = serde_json::to_string(&snaps).unwrap();
        assert!(text.contains(r#""type":"rows""#), "{text}");
        assert!(!text.contains(r#""error":null"#), "{text}");
        assert_eq!(read_states(&text).unwrap(), snaps);
        assert_eq!(snaps[2].hash(), None);
        assert!(read_states("[{\"check\": 1}]").is_err());
    }
}
