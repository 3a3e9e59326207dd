//! A counter that starts at zero: add n (or increment), read.

use crate::linear::model::{int_of, unknown_f, Model, OpInput};

#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

#[derive(Debug, Clone)]
pub enum CounterOp {
    Add(i64),
    Read(i64),
}

impl Model for Counter {
    type State = i64;
    type Op = CounterOp;

    fn name(&self) -> &str {
        "counter"
    }

    fn parse(&self, op: &OpInput<'_>) -> Result<Option<CounterOp>, String> {
        match op.f {
            "add" => Ok(Some(CounterOp::Add(int_of(op.value, "add value")?))),
            "increment" => Ok(Some(CounterOp::Add(1))),
            "read" => op.output.map(|v| int_of(v, "read result").map(CounterOp::Read)).transpose(),
            f => Err(unknown_f("counter", f)),
        }
    }

    fn init(&self) -> i64 {
        0
    }

    fn step(&self, state: &i64, op: &CounterOp) -> Option<i64> {
        match *op {
            CounterOp::Add(n) => state.checked_add(n),
            CounterOp::Read(n) => (n == *state).then_some(n),
        }
    }

    fn describe_state(&self, state: &i64) -> String {
        state.to_string()
    }
}
