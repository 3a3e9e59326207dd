//! A lock: acquire succeeds only when free, release only when held.

use crate::linear::model::{unknown_f, Model, OpInput};

#[derive(Debug, Clone, Copy, Default)]
pub struct Mutex;

#[derive(Debug, Clone, Copy)]
pub enum MutexOp {
    Acquire,
    Release,
}

impl Model for Mutex {
    /// Whether the lock is held.
    type State = bool;
    type Op = MutexOp;

    fn name(&self) -> &str {
        "mutex"
    }

    fn parse(&self, op: &OpInput<'_>) -> Result<Option<MutexOp>, String> {
        match op.f {
            "acquire" => Ok(Some(MutexOp::Acquire)),
            "release" => Ok(Some(MutexOp::Release)),
            f => Err(unknown_f("mutex", f)),
        }
    }

    fn init(&self) -> bool {
        false
    }

    fn step(&self, held: &bool, op: &MutexOp) -> Option<bool> {
        match op {
            MutexOp::Acquire => (!held).then_some(true),
            MutexOp::Release => held.then_some(false),
        }
    }

    fn describe_state(&self, held: &bool) -> String {
        if *held { "held" } else { "free" }.to_string()
    }
}
