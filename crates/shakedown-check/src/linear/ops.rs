//! Invocations paired with their completions, borrowed from the history.
//!
//! `History::ops` clones every name and value, which costs more than the
//! search itself on a large keyed history; the checker only needs to look.

use rustc_hash::FxHashMap;
use serde_json::Value;
use shakedown_history::{EventKind, History, OpType, ProcessId};

/// One op, as `shakedown_history::Op` but borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpRef<'a> {
    pub process: ProcessId,
    pub f: &'a str,
    pub invoke_index: u64,
    pub invoke_value: &'a Value,
    /// Type, event index and value of the completion, if there was one.
    pub completion: Option<(OpType, u64, &'a Value)>,
}

impl OpRef<'_> {
    /// An op that never completed counts as `info`.
    pub fn op_type(&self) -> OpType {
        self.completion.map_or(OpType::Info, |(t, _, _)| t)
    }
}

/// Pairs ops exactly as `History::ops` does, in invocation order.
pub(crate) fn pair(history: &History) -> Vec<OpRef<'_>> {
    let mut ops: Vec<OpRef<'_>> = Vec::with_capacity(history.events.len() / 2);
    let mut open = Open::default();
    for e in &history.events {
        match &e.kind {
            EventKind::Invoke(inv) => {
                open.insert(inv.process, ops.len());
                ops.push(OpRef {
                    process: inv.process,
                    f: &inv.f,
                    invoke_index: e.index,
                    invoke_value: &inv.value,
                    completion: None,
                });
            }
            kind => {
                let Some((op_type, c)) = kind.completion() else { continue };
                let Some(i) = open.remove(c.process) else { continue };
                ops[i].completion = Some((op_type, e.index, &c.value));
            }
        }
    }
    ops
}

/// Process ids below this index a vector; larger ones go to a map.
const DENSE_PROCESSES: u64 = 1 << 12;

/// Each process's op in flight. Process ids are usually small numbers, so a
/// vector indexed by id does what a hash map would, without hashing.
#[derive(Default)]
struct Open {
    dense: Vec<usize>,
    sparse: FxHashMap<ProcessId, usize>,
}

impl Open {
    const NONE: usize = usize::MAX;

    fn insert(&mut self, p: ProcessId, op: usize) {
        if p.0 < DENSE_PROCESSES {
            let at = p.0 as usize;
            if at >= self.dense.len() {
                self.dense.resize((at + 1).max(16), Self::NONE);
            }
            self.dense[at] = op;
        } else {
            self.sparse.insert(p, op);
        }
    }

    fn remove(&mut self, p: ProcessId) -> Option<usize> {
        if p.0 < DENSE_PROCESSES {
            let slot = self.dense.get_mut(p.0 as usize)?;
            let op = std::mem::replace(slot, Self::NONE);
            (op != Self::NONE).then_some(op)
        } else {
            self.sparse.remove(&p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fail, history, info, ok, pending};
    use serde_json::json;

    #[test]
    fn pairs_like_history_ops() {
        let h = history(&[
            ok("write", json!(1), json!(null)),
            fail("cas", json!([1, 2])),
            info("read", json!(null)),
            pending("write", json!(3)),
        ]);
        let owned = h.ops();
        let borrowed = pair(&h);
        assert_eq!(owned.len(), borrowed.len());
        for (o, b) in owned.iter().zip(&borrowed) {
            assert_eq!(
                (o.process, o.f.as_str(), o.invoke_index, &o.invoke_value),
                (b.process, b.f, b.invoke_index, b.invoke_value)
            );
            assert_eq!(o.completion.as_ref().map(|c| (c.op_type, c.index, &c.value)), b.completion);
            assert_eq!(o.op_type(), b.op_type());
        }
    }
}
