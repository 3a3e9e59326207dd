//! Secrets masked in everything a run writes or prints.
//!
//! A [`Redactor`] holds secret values (from profiles, `.env` files and
//! variables a scenario marks secret) and replaces each occurrence with
//! `***`, in text and in the strings (and keys) of JSON values. JSON is
//! masked as values, never as text, so a secret that looks like a number
//! cannot turn `"value":8472` into invalid JSON.
//! Values shorter than [`MIN_SECRET_CHARS`] are not masked: masking `1` or
//! `on` would garble every output and hide nothing.

use aho_corasick::{AhoCorasick, MatchKind};
use std::sync::{Arc, RwLock};

/// The process's secrets: every run in a process masks the union of them all,
/// which is never less safe than masking its own.
static SECRETS: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// Adds `values` to the secrets every output of this process masks.
pub fn add_secrets(values: impl IntoIterator<Item = String>) {
    let mut guard = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    let mut all: Vec<String> = guard.as_ref().map(|r| r.secrets.clone()).unwrap_or_default();
    all.extend(values);
    *guard = Some(Arc::new(Redactor::new(all)));
}

/// The redactor for the process's secrets so far.
pub fn current() -> Arc<Redactor> {
    SECRETS.read().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
}

/// Masks the process's secrets in `text`.
pub fn redact(text: &str) -> String {
    current().redact(text)
}

/// What a secret is replaced with.
pub const MASK: &str = "***";
/// Shorter values are not treated as secrets.
pub const MIN_SECRET_CHARS: usize = 4;

/// Replaces secret values with [`MASK`]. The default masks nothing.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    /// A redactor for `values`; short and repeated values are left out.
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = Vec::new();
        for v in values.into_iter().filter(|v| v.chars().count() >= MIN_SECRET_CHARS) {
            if !secrets.contains(&v) {
                secrets.push(v);
            }
        }
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let matcher = (!secrets.is_empty())
            .then(|| AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&secrets).ok())
            .flatten();
        Redactor { secrets, matcher }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// The secret values, for tests that grep outputs.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        match &self.matcher {
            Some(m) if m.is_match(text) => m.replace_all(text, &vec![MASK; self.secrets.len()]),
            _ => text.to_string(),
        }
    }

    /// Masks `text` in place; cheap when it holds no secret.
    pub fn redact_string(&self, text: &mut String) {
        if let Some(m) = self.matcher.as_ref().filter(|m| m.is_match(text.as_str())) {
            *text = m.replace_all(text, &vec![MASK; self.secrets.len()]);
        }
    }

    /// Masks every string and object key in `value`.
    pub fn redact_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.redact_string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (mut k, mut v) in entries {
                    self.redact_string(&mut k);
                    self.redact_value(&mut v);
                    map.insert(k, v);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_text_and_json_strings_longest_first() {
        let r = Redactor::new(["hunter2\"x".to_string(), "hunter2".to_string(), "on".to_string(), "8472".into()]);
        assert_eq!(r.redact("pw=hunter2\"x and hunter2, on"), "pw=*** and ***, on");
        let mut v = serde_json::json!({ "error": "bad password hunter2\"x", "hunter2": [8472, "8472"] });
        r.redact_value(&mut v);
        assert_eq!(v, serde_json::json!({ "error": "bad password ***", "***": [8472, "***"] }));
        assert!(Redactor::default().is_empty());
        assert_eq!(Redactor::default().redact("hunter2"), "hunter2");
        assert!(Redactor::new(["abc".to_string()]).is_empty(), "short values are not secrets");
    }
}
