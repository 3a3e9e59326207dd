//! A grow-only set: add v, read the whole set.

use crate::linear::model::{unknown_f, Model, OpInput, Val};
use serde_json::Value;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, Default)]
pub struct Set;

#[derive(Debug, Clone)]
pub enum SetOp {
    Add(Val),
    Read(BTreeSet<Val>),
}

impl Model for Set {
    type State = BTreeSet<Val>;
    type Op = SetOp;

    fn name(&self) -> &str {
        "set"
    }

    fn parse(&self, op: &OpInput<'_>) -> Result<Option<SetOp>, String> {
        match op.f {
            "add" => Ok(Some(SetOp::Add(Val::from_json(op.value)))),
            "read" => match op.output {
                None => Ok(None),
                Some(Value::Array(items)) => Ok(Some(SetOp::Read(items.iter().map(Val::from_json).collect()))),
                Some(v) => Err(format!("read result {v} is not an array")),
            },
            f => Err(unknown_f("set", f)),
        }
    }

    fn init(&self) -> BTreeSet<Val> {
        BTreeSet::new()
    }

    fn step(&self, state: &BTreeSet<Val>, op: &SetOp) -> Option<BTreeSet<Val>> {
        match op {
            SetOp::Add(v) => {
                let mut next = state.clone();
                next.insert(v.clone());
                Some(next)
            }
            SetOp::Read(seen) => (seen == state).then(|| state.clone()),
        }
    }

    fn describe_state(&self, state: &BTreeSet<Val>) -> String {
        let items: Vec<String> = state.iter().map(Val::to_string).collect();
        format!("[{}]", items.join(","))
    }
}
