//! Porcupine's key-value model: get, put and append on independent string keys.

use crate::linear::model::{unknown_f, Model, OpInput};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default)]
pub struct Kv;

#[derive(Debug, Clone)]
pub struct KvOp {
    pub key: Arc<str>,
    pub kind: KvKind,
    pub value: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvKind {
    /// `value` is what the get returned ("" when absent).
    Get,
    Put,
    Append,
}

impl Model for Kv {
    /// The value of the partition's one key; "" when absent.
    type State = Arc<str>;
    type Op = KvOp;

    fn name(&self) -> &str {
        "kv"
    }

    fn parse(&self, op: &OpInput<'_>) -> Result<Option<KvOp>, String> {
        let kind = match op.f {
            "get" => KvKind::Get,
            "put" => KvKind::Put,
            "append" => KvKind::Append,
            f => return Err(unknown_f("kv", f)),
        };
        let key = string_field(op.value, "key")?.ok_or_else(|| format!("{} value {} has no key", op.f, op.value))?;
        let value = match kind {
            KvKind::Get => match op.output {
                // A get whose result is unknown neither constrains nor changes anything.
                None => return Ok(None),
                Some(out) => string_field(out, "value")?.unwrap_or_default(),
            },
            KvKind::Put | KvKind::Append => string_field(op.value, "value")?.unwrap_or_default(),
        };
        Ok(Some(KvOp { key: Arc::from(&*key), kind, value: Arc::from(&*value) }))
    }

    fn partition_key<'a>(&self, op: &'a KvOp) -> Option<&'a str> {
        Some(&op.key)
    }

    fn init(&self) -> Arc<str> {
        "".into()
    }

    fn step(&self, state: &Arc<str>, op: &KvOp) -> Option<Arc<str>> {
        match op.kind {
            KvKind::Get => (op.value == *state).then(|| state.clone()),
            KvKind::Put => Some(op.value.clone()),
            KvKind::Append => Some(format!("{state}{}", op.value).into()),
        }
    }

    fn describe_state(&self, state: &Arc<str>) -> String {
        format!("{state:?}")
    }
}

/// A field of `{"key": K, "value": V}` as a string: strings as they are,
/// numbers as their text, null or missing as `None`.
fn string_field<'a>(v: &'a Value, field: &str) -> Result<Option<Cow<'a, str>>, String> {
    let Value::Object(map) = v else {
        return Err(format!("value {v} is not an object with {field:?}"));
    };
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(Cow::Borrowed(s))),
        Some(Value::Number(n)) => Ok(Some(Cow::Owned(n.to_string()))),
        Some(other) => Err(format!("{field} {other} is not a string")),
    }
}
