//! A register with compare-and-set; starts as null, like Jepsen's etcd register.

use crate::linear::model::{unknown_f, Model, OpInput, Val};
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default)]
pub struct CasRegister;

#[derive(Debug, Clone)]
pub enum CasOp {
    Write(Val),
    Read(Val),
    Cas { old: Val, new: Val },
}

impl Model for CasRegister {
    type State = Val;
    type Op = CasOp;

    fn name(&self) -> &str {
        "cas-register"
    }

    #[inline]
    fn parse(&self, op: &OpInput<'_>) -> Result<Option<CasOp>, String> {
        match op.f {
            "write" => Ok(Some(CasOp::Write(Val::from_json(op.value)))),
            "read" => Ok(op.output.map(|v| CasOp::Read(Val::from_json(v)))),
            "cas" => match op.value {
                Value::Array(pair) if pair.len() == 2 => {
                    Ok(Some(CasOp::Cas { old: Val::from_json(&pair[0]), new: Val::from_json(&pair[1]) }))
                }
                v => Err(format!("cas value {v} is not [old, new]")),
            },
            f => Err(unknown_f("cas-register", f)),
        }
    }

    fn init(&self) -> Val {
        Val::Null
    }

    fn step(&self, state: &Val, op: &CasOp) -> Option<Val> {
        match op {
            CasOp::Write(v) => Some(v.clone()),
            CasOp::Read(v) => (v == state).then(|| state.clone()),
            // A failed cas is a `fail` op and was dropped, so a cas that is
            // checked here must have succeeded.
            CasOp::Cas { old, new } => (old == state).then(|| new.clone()),
        }
    }

    fn describe_state(&self, state: &Val) -> String {
        state.to_string()
    }
}
