//! An unordered queue (a multiset): dequeue may return any present element, null when empty.

use crate::linear::model::{unknown_f, Model, OpInput, Val};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, Default)]
pub struct UnorderedQueue;

#[derive(Debug, Clone)]
pub enum UnorderedOp {
    Enqueue(Val),
    /// A dequeue that returned this value (null: the queue was empty).
    Dequeue(Val),
}

impl Model for UnorderedQueue {
    /// Element -> how many copies are queued.
    type State = BTreeMap<Val, u32>;
    type Op = UnorderedOp;

    fn name(&self) -> &str {
        "unordered-queue"
    }

    fn parse(&self, op: &OpInput<'_>) -> Result<Option<UnorderedOp>, String> {
        match op.f {
            "enqueue" => Ok(Some(UnorderedOp::Enqueue(Val::from_json(op.value)))),
            // A dequeue with an unknown result could have removed any element;
            // a deterministic step cannot say which, so it is treated as never
            // having happened (see the module docs of `linear`).
            "dequeue" => Ok(op.output.map(|v| UnorderedOp::Dequeue(Val::from_json(v)))),
            f => Err(unknown_f("unordered-queue", f)),
        }
    }

    fn init(&self) -> BTreeMap<Val, u32> {
        BTreeMap::new()
    }

    fn step(&self, state: &BTreeMap<Val, u32>, op: &UnorderedOp) -> Option<BTreeMap<Val, u32>> {
        match op {
            UnorderedOp::Enqueue(v) => {
                let mut next = state.clone();
                *next.entry(v.clone()).or_insert(0) += 1;
                Some(next)
            }
            UnorderedOp::Dequeue(Val::Null) => state.is_empty().then(|| state.clone()),
            UnorderedOp::Dequeue(v) => {
                let n = *state.get(v)?;
                let mut next = state.clone();
                if n == 1 {
                    next.remove(v);
                } else {
                    next.insert(v.clone(), n - 1);
                }
                Some(next)
            }
        }
    }

    fn describe_state(&self, state: &BTreeMap<Val, u32>) -> String {
        let items: Vec<String> =
            state.iter().flat_map(|(v, n)| std::iter::repeat_n(v.to_string(), *n as usize)).collect();
        format!("[{}]", items.join(","))
    }
}
