//! The `Model` trait a sequential specification implements, and the value type models share.

use serde_json::Value;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::Arc;

/// One operation as a model sees it, before parsing.
#[derive(Debug, Clone, Copy)]
pub struct OpInput<'a> {
    /// The operation's function, e.g. "read".
    pub f: &'a str,
    /// The value the operation was invoked with.
    pub value: &'a Value,
    /// The completion value of an `ok` op; `None` when the op's outcome is
    /// unknown (`info`, or never completed).
    pub output: Option<&'a Value>,
}

/// A sequential specification: the states an object can be in and how each
/// operation moves between them.
///
/// Operations are parsed once ([`Model::parse`]) so that the search, which
/// calls [`Model::step`] millions of times, never touches JSON.
///
/// ```
/// use shakedown_check::linear::{check_model, Budget, Model, OpInput};
/// use shakedown_check::Verdict;
/// use shakedown_history::{Header, HistoryBuilder, OpType, ProcessId};
/// use serde_json::json;
///
/// /// A flag that can be set once; "set" fails if it already was.
/// struct Once;
///
/// impl Model for Once {
///     type State = bool;
///     type Op = ();
///     fn name(&self) -> &str { "once" }
///     fn parse(&self, op: &OpInput<'_>) -> Result<Option<()>, String> {
///         match op.f { "set" => Ok(Some(())), f => Err(format!("unknown f {f}")) }
///     }
///     fn init(&self) -> bool { false }
///     fn step(&self, set: &bool, _op: &()) -> Option<bool> { (!set).then_some(true) }
/// }
///
/// let mut b = HistoryBuilder::new(Header::new("doc", 1));
/// for p in 0..2 {
///     b.invoke(10 * p, ProcessId(p), "a", "set", json!(null));
///     b.complete(10 * p + 5, ProcessId(p), OpType::Ok, json!(null), None);
/// }
/// let result = check_model(&b.finish(), &Once, &Budget::default());
/// assert_eq!(result.verdict, Verdict::Invalid);
/// ```
pub trait Model: Send + Sync {
    type State: Clone + Eq + Hash + Debug + Send;
    type Op: Clone + Debug + Send + Sync;

    /// The model's name, e.g. "register".
    fn name(&self) -> &str;

    /// Turns a history op into a model op. `Ok(None)` drops the op: it neither
    /// constrains nor changes the state (a read whose result is unknown).
    /// `Err` says why the op does not belong to this model.
    fn parse(&self, op: &OpInput<'_>) -> Result<Option<Self::Op>, String>;

    /// The independent object an op acts on (P-compositionality): ops with
    /// different keys are checked separately. `None` puts every op in one
    /// partition.
    fn partition_key<'a>(&self, _op: &'a Self::Op) -> Option<&'a str> {
        None
    }

    /// The state before any op.
    fn init(&self) -> Self::State;

    /// The state after applying `op`, or `None` when `op` cannot happen in `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    /// How a counterexample prints a state.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}

/// A JSON value normalized for equality: integers and strings that parse as
/// i64 compare equal, so `"3"` read back equals `3` written. Cheap to clone
/// and hash, unlike `serde_json::Value`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Val {
    Null,
    Int(i64),
    /// Any other value, as its JSON text.
    Json(Arc<str>),
}

impl Val {
    /// The single place where numbers and numeric strings are reconciled.
    #[inline]
    pub fn from_json(v: &Value) -> Val {
        match v {
            Value::Null => Val::Null,
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Json(n.to_string().into()),
            },
            Value::String(s) => match s.parse::<i64>() {
                Ok(i) => Val::Int(i),
                Err(_) => Val::Json(v.to_string().into()),
            },
            other => Val::Json(other.to_string().into()),
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Null => f.write_str("null"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Json(s) => f.write_str(s),
        }
    }
}

impl Debug for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The error every model gives for an f it does not know.
pub(crate) fn unknown_f(model: &str, f: &str) -> String {
    format!("f {f:?} is not an operation of the {model} model")
}

/// An integer argument or result, accepting numeric strings.
pub(crate) fn int_of(v: &Value, what: &str) -> Result<i64, String> {
    match Val::from_json(v) {
        Val::Int(i) => Ok(i),
        other => Err(format!("{what} {other} is not an integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_strings_equal_numbers() {
        assert_eq!(Val::from_json(&json!("42")), Val::from_json(&json!(42)));
        assert_ne!(Val::from_json(&json!("x")), Val::from_json(&json!(null)));
        assert_eq!(Val::from_json(&json!("x")).to_string(), "\"x\"");
        assert_eq!(Val::from_json(&json!([1, 2])).to_string(), "[1,2]");
    }
}
