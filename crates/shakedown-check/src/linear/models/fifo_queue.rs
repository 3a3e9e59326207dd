//! A FIFO queue: enqueue v; dequeue returns the oldest element or null when empty.

use crate::linear::model::{unknown_f, Model, OpInput, Val};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, Default)]
pub struct FifoQueue;

#[derive(Debug, Clone)]
pub enum FifoOp {
    Enqueue(Val),
    /// A dequeue that returned this value (null: the queue was empty).
    Dequeue(Val),
    /// A dequeue whose result is unknown: if it took effect, it removed the head.
    DequeueUnknown,
}

impl Model for FifoQueue {
    type State = VecDeque<Val>;
    type Op = FifoOp;

    fn name(&self) -> &str {
        "fifo-queue"
    }

    fn parse(&self, op: &OpInput<'_>) -> Result<Option<FifoOp>, String> {
        match op.f {
            "enqueue" => Ok(Some(FifoOp::Enqueue(Val::from_json(op.value)))),
            "dequeue" => Ok(Some(op.output.map_or(FifoOp::DequeueUnknown, |v| FifoOp::Dequeue(Val::from_json(v))))),
            f => Err(unknown_f("fifo-queue", f)),
        }
    }

    fn init(&self) -> VecDeque<Val> {
        VecDeque::new()
    }

    fn step(&self, state: &VecDeque<Val>, op: &FifoOp) -> Option<VecDeque<Val>> {
        match op {
            FifoOp::Enqueue(v) => {
                let mut next = state.clone();
                next.push_back(v.clone());
                Some(next)
            }
            FifoOp::Dequeue(Val::Null) => state.is_empty().then(|| state.clone()),
            FifoOp::Dequeue(v) => (state.front() == Some(v)).then(|| state.iter().skip(1).cloned().collect()),
            FifoOp::DequeueUnknown => Some(state.iter().skip(1).cloned().collect()),
        }
    }

    fn describe_state(&self, state: &VecDeque<Val>) -> String {
        let items: Vec<String> = state.iter().map(Val::to_string).collect();
        format!("[{}]", items.join(","))
    }
}
