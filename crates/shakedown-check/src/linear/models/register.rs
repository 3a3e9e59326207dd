//! A read/write register that starts as null.

use crate::linear::model::{unknown_f, Model, OpInput, Val};

#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

#[derive(Debug, Clone)]
pub enum RegisterOp {
    Write(Val),
    Read(Val),
}

impl Model for Register {
    type State = Val;
    type Op = RegisterOp;

    fn name(&self) -> &str {
        "register"
    }

    fn parse(&self, op: &OpInput<'_>) -> Result<Option<RegisterOp>, String> {
        match op.f {
            "write" => Ok(Some(RegisterOp::Write(Val::from_json(op.value)))),
            "read" => Ok(op.output.map(|v| RegisterOp::Read(Val::from_json(v)))),
            f => Err(unknown_f("register", f)),
        }
    }

    fn init(&self) -> Val {
        Val::Null
    }

    fn step(&self, state: &Val, op: &RegisterOp) -> Option<Val> {
        match op {
            RegisterOp::Write(v) => Some(v.clone()),
            RegisterOp::Read(v) => (v == state).then(|| state.clone()),
        }
    }

    fn describe_state(&self, state: &Val) -> String {
        state.to_string()
    }
}
