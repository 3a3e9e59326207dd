//! The peer the linearizability benchmarks run beside: porcupine-rs models
//! for cas-register and kv, and the conversion of a shakedown history into
//! porcupine-rs operations with shakedown's semantics (fail ops dropped;
//! info and pending ops returning at +infinity with an unknown result).

use porcupine_rs::{Model as PModel, Operation};
use serde_json::Value;
use shakedown_history::{History, OpType};
use std::collections::HashMap;

#[derive(Clone)]
pub struct PCas;

#[derive(Clone, Debug)]
pub enum PCasOp {
    Read(Option<i64>),
    /// A read whose result is unknown (`info`): Porcupine's etcd model accepts it in any state.
    ReadUnknown,
    Write(Option<i64>),
    Cas(Option<i64>, Option<i64>),
    /// A cas whose outcome is unknown: legal in any state, applied when it matches.
    CasUnknown(Option<i64>, Option<i64>),
}

impl PModel for PCas {
    type State = Option<i64>;
    type Op = PCasOp;
    type Metadata = ();

    fn init() -> Option<i64> {
        None
    }

    fn step(state: &Option<i64>, op: &PCasOp) -> (bool, Option<i64>) {
        match op {
            PCasOp::Read(v) => (v == state, *state),
            PCasOp::ReadUnknown => (true, *state),
            PCasOp::Write(v) => (true, *v),
            PCasOp::Cas(old, new) if old == state => (true, *new),
            PCasOp::Cas(..) => (false, *state),
            PCasOp::CasUnknown(old, new) if old == state => (true, *new),
            PCasOp::CasUnknown(..) => (true, *state),
        }
    }
}

#[derive(Clone)]
pub struct PKv;

#[derive(Clone, Debug)]
pub struct PKvOp {
    key: String,
    /// 0 get, 1 put, 2 append, 3 get with unknown result.
    f: u8,
    value: String,
}

impl PModel for PKv {
    type State = String;
    type Op = PKvOp;
    type Metadata = ();

    fn partition_operations(history: &[Operation<Self>]) -> Vec<Vec<Operation<Self>>> {
        let mut by_key: HashMap<&str, Vec<Operation<Self>>> = HashMap::new();
        for op in history {
            by_key.entry(op.op.key.as_str()).or_default().push(op.clone());
        }
        by_key.into_values().collect()
    }

    fn init() -> String {
        String::new()
    }

    fn step(state: &String, op: &PKvOp) -> (bool, String) {
        match op.f {
            0 => (op.value == *state, state.clone()),
            1 => (true, op.value.clone()),
            2 => (true, format!("{state}{}", op.value)),
            _ => (true, state.clone()),
        }
    }
}

/// Porcupine's input: `fail` ops dropped (they did not happen); `info` and
/// pending ops returning at +infinity, as Porcupine's etcd test does, with an
/// unknown result.
pub fn to_porcupine<M: PModel<Metadata = ()>>(
    h: &History,
    op: impl Fn(&str, &Value, Option<&Value>) -> M::Op,
) -> Vec<Operation<M>> {
    h.ops()
        .iter()
        .filter(|o| o.op_type() != OpType::Fail)
        .map(|o| {
            let c = o.completion.as_ref().filter(|c| c.op_type == OpType::Ok);
            Operation {
                client_id: Some(o.process.0 as u32),
                call_time: o.invoke_index as i64,
                return_time: c.map_or(i64::MAX, |c| c.index as i64),
                op: op(&o.f, &o.invoke_value, c.map(|c| &c.value)),
                metadata: None,
            }
        })
        .collect()
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

pub fn pcas_op(f: &str, v: &Value, out: Option<&Value>) -> PCasOp {
    match (f, out) {
        ("read", Some(out)) => PCasOp::Read(int(out)),
        ("read", None) => PCasOp::ReadUnknown,
        ("write", _) => PCasOp::Write(int(v)),
        ("cas", Some(_)) => PCasOp::Cas(int(&v[0]), int(&v[1])),
        ("cas", None) => PCasOp::CasUnknown(int(&v[0]), int(&v[1])),
        (f, _) => panic!("not a cas-register op: {f}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

pub fn pkv_op(f: &str, v: &Value, out: Option<&Value>) -> PKvOp {
    let key = text(&v["key"]);
    match (f, out) {
        ("get", Some(out)) => PKvOp { key, f: 0, value: text(&out["value"]) },
        ("get", None) => PKvOp { key, f: 3, value: String::new() },
        ("put", _) => PKvOp { key, f: 1, value: text(&v["value"]) },
        ("append", _) => PKvOp { key, f: 2, value: text(&v["value"]) },
        (f, _) => panic!("not a kv op: {f}"),
    }
}
