//! A brute-force linearizability checker for tiny histories: the oracle the WGL search is tested against.

use super::search::SearchOp;
use super::{partition, Model};
use shakedown_history::History;

/// Whether some subset of the indeterminate ops, together with every ok op,
/// has an order consistent with real time that the model accepts. `None`
/// when the history does not fit the model.
pub(crate) fn linearizable<M: Model>(model: &M, history: &History) -> Option<bool> {
    let ops = super::ops::pair(history);
    let partitions = partition(model, &ops).ok()?;
    Some(partitions.iter().all(|p| partition_linearizable(model, &p.ops)))
}

fn partition_linearizable<M: Model>(model: &M, ops: &[SearchOp<M::Op>]) -> bool {
    let unknown: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].ret.is_none()).collect();
    assert!(unknown.len() < 16, "brute force is for tiny histories");
    (0u32..1 << unknown.len()).any(|mask| {
        let mut included: Vec<bool> = ops.iter().map(|o| o.ret.is_some()).collect();
        for (bit, &i) in unknown.iter().enumerate() {
            included[i] = mask & (1 << bit) != 0;
        }
        orders(model, ops, &mut included, model.init())
    })
}

/// Tries every op that may come next: one no other remaining op returned before.
fn orders<M: Model>(model: &M, ops: &[SearchOp<M::Op>], remaining: &mut [bool], state: M::State) -> bool {
    let left: Vec<usize> = (0..ops.len()).filter(|&i| remaining[i]).collect();
    if left.is_empty() {
        return true;
    }
    for &i in &left {
        let blocked = left.iter().any(|&j| ops[j].ret.is_some_and(|r| r < ops[i].call));
        if blocked {
            continue;
        }
        let Some(next) = model.step(&state, &ops[i].op) else { continue };
        remaining[i] = false;
        let found = orders(model, ops, remaining, next);
        remaining[i] = true;
        if found {
            return true;
        }
    }
    false
}
