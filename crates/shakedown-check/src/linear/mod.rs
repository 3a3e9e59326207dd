//! Linearizability: does some order of the ops, consistent with real time, satisfy a sequential model?
//!
//! [`check_model`] (or [`check`] with a model from [`model_by_name`]) drops
//! `fail` ops, parses the rest with a [`Model`], splits them per key
//! (P-compositionality), and runs the WGL search on each partition, in
//! parallel when there are many. An `info` op, or one that never completed,
//! may take effect anywhere after its invocation, or never. Every search runs
//! under a [`Budget`]; spending it yields `unknown`, never a hang.
//!
//! A counterexample names the partition, the longest linearizable prefix the
//! search found, the `ok` op that could not follow it and the ops concurrent
//! with that op.
//!
//! Known approximation: `unordered-queue` ignores a dequeue whose result is
//! unknown (a deterministic step cannot say which element it took).
//!
//! ```
//! use serde_json::json;
//! use shakedown_check::linear::{check, model_by_name, Budget};
//! use shakedown_check::Verdict;
//! use shakedown_history::{Header, HistoryBuilder, OpType, ProcessId};
//!
//! let mut b = HistoryBuilder::new(Header::new("doc", 7));
//! b.invoke(10, ProcessId(0), "alice", "write", json!(1));
//! b.complete(20, ProcessId(0), OpType::Ok, json!(null), None);
//! // A read after the write completed cannot see the initial null.
//! b.invoke(30, ProcessId(1), "bob", "read", json!(null));
//! b.complete(40, ProcessId(1), OpType::Ok, json!(null), None);
//! let model = model_by_name("register").unwrap();
//! let result = check(&b.finish(), model.as_ref(), &Budget::default());
//! assert_eq!(result.verdict, Verdict::Invalid);
//! assert_eq!(result.summary, "op 2 (process 1 read → null) cannot be linearized after 1 op; state was 1");
//! ```

mod model;
pub mod models;
mod ops;
mod report;
mod search;

#[cfg(test)]
mod brute;
#[cfg(test)]
mod tests;

pub use model::{Model, OpInput, Val};

use crate::{Check, CheckInput, CheckResult, Verdict};
use ops::OpRef;
use rustc_hash::FxHashMap;
use search::{SearchOp, Searched};
use serde_json::Value;
use shakedown_history::{History, OpType};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The names [`model_by_name`] knows.
pub const MODELS: &[&str] =
    &["register", "cas-register", "kv", "mutex", "set", "fifo-queue", "unordered-queue", "counter"];

/// Partitions are searched on several threads only when there are at least
/// this many ops: below it, starting threads costs more than it saves.
const PARALLEL_MIN_OPS: usize = 2_000;

/// How much searching a check may do. Each partition gets `max_steps`; all
/// share the deadline; the memory limit holds for all partitions together
/// (each of the searches running at once gets its share).
#[derive(Debug, Clone, Copy, Default)]
pub struct Budget {
    pub deadline: Option<Instant>,
    pub max_steps: Option<u64>,
    pub max_memory_bytes: Option<usize>,
}

/// The default memory budget of a linearizability check.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 1 << 30;

impl Budget {
    /// A budget that ends `timeout` from now, with the default memory limit.
    pub fn timeout(timeout: Duration) -> Budget {
        Budget {
            deadline: Instant::now().checked_add(timeout),
            max_steps: None,
            max_memory_bytes: Some(DEFAULT_MAX_MEMORY_BYTES),
        }
    }

    /// This budget split between `n` searches running at once.
    fn shared_by(self, n: usize) -> Budget {
        Budget { max_memory_bytes: self.max_memory_bytes.map(|b| b / n.max(1)), ..self }
    }
}

/// A model behind a pointer: what [`model_by_name`] returns and [`check`] takes.
pub trait AnyModel: Send + Sync {
    fn name(&self) -> &str;
    fn check_history(&self, history: &History, budget: &Budget) -> CheckResult;
}

impl<M: Model> AnyModel for M {
    fn name(&self) -> &str {
        Model::name(self)
    }

    fn check_history(&self, history: &History, budget: &Budget) -> CheckResult {
        check_model(history, self, budget)
    }
}

/// One of the built-in models by name (see [`MODELS`]).
pub fn model_by_name(name: &str) -> Option<Box<dyn AnyModel>> {
    Some(match name {
        "register" => Box::new(models::Register),
        "cas-register" => Box::new(models::CasRegister),
        "kv" => Box::new(models::Kv),
        "mutex" => Box::new(models::Mutex),
        "set" => Box::new(models::Set),
        "fifo-queue" => Box::new(models::FifoQueue),
        "unordered-queue" => Box::new(models::UnorderedQueue),
        "counter" => Box::new(models::Counter),
        _ => return None,
    })
}

/// Checks `history` against a model chosen at run time.
pub fn check(history: &History, model: &dyn AnyModel, budget: &Budget) -> CheckResult {
    model.check_history(history, budget)
}

/// Checks `history` against `model`.
pub fn check_model<M: Model + ?Sized>(history: &History, model: &M, budget: &Budget) -> CheckResult {
    let ops = ops::pair(history);
    let partitions = match partition(model, &ops) {
        Ok(partitions) => partitions,
        Err(e) => return report::malformed(model.name(), &ops[e.op], &e.reason),
    };
    let n_ok: usize = partitions.iter().map(|p| p.ops.iter().filter(|o| o.ret.is_some()).count()).sum();
    if n_ok == 0 {
        return report::vacuous(model.name(), ops.len());
    }
    let results = search_all(model, &partitions, budget);
    report::conclude(model, &ops, &partitions, &results)
}

/// The `linearizable` check: a model name and a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearizableCheck {
    /// One of [`MODELS`].
    pub model: String,
    /// Wall-clock limit for the whole search; `None` for none.
    pub timeout: Option<Duration>,
    /// Step limit per partition; `None` for none.
    pub max_steps: Option<u64>,
    /// Memory limit of the search's caches; `None` for none.
    pub max_memory_bytes: Option<usize>,
}

impl LinearizableCheck {
    /// A check with a one-minute timeout and the default memory limit.
    pub fn new(model: &str) -> LinearizableCheck {
        LinearizableCheck {
            model: model.to_string(),
            timeout: Some(Duration::from_secs(60)),
            max_steps: None,
            max_memory_bytes: Some(DEFAULT_MAX_MEMORY_BYTES),
        }
    }
}

impl Check for LinearizableCheck {
    fn kind(&self) -> &'static str {
        "linearizable"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let Some(model) = model_by_name(&self.model) else {
            let summary = format!("unknown model {:?}; known models: {}", self.model, MODELS.join(", "));
            return CheckResult::new("linearizable", Verdict::Unknown, summary, serde_json::json!({}));
        };
        let budget = Budget {
            deadline: self.timeout.and_then(|t| Instant::now().checked_add(t)),
            max_steps: self.max_steps,
            max_memory_bytes: self.max_memory_bytes,
        };
        check(input.history, model.as_ref(), &budget)
    }
}

/// How many of the last linearized ops [`explain`] shows in full.
const PREFIX_TAIL: usize = 10;

/// Adds `prefix_tail` to an invalid linearizable result: the last few ops of
/// the linearized prefix in full, so a person sees what led to the state.
/// Kept out of the check itself, whose cost on small histories is dominated
/// by building reports; callers run it once when presenting a result.
pub fn explain(result: &mut CheckResult, history: &History) {
    if result.kind != "linearizable" || result.verdict != Verdict::Invalid {
        return;
    }
    let Some(prefix) = result.details.get("linearized_prefix").and_then(Value::as_array) else { return };
    let wanted: Vec<u64> = prefix.iter().rev().take(PREFIX_TAIL).rev().filter_map(Value::as_u64).collect();
    let ops = history.ops();
    let tail: Vec<Value> = wanted
        .iter()
        .filter_map(|i| ops.iter().find(|op| op.invoke_index == *i))
        .map(|op| {
            serde_json::json!({
                "index": op.invoke_index,
                "process": op.process,
                "f": op.f,
                "value": op.invoke_value,
                "type": op.op_type().as_str(),
                "result": op.completion.as_ref().map(|c| &c.value),
            })
        })
        .collect();
    if let Some(details) = result.details.as_object_mut() {
        details.insert("prefix_tail".into(), Value::Array(tail));
    }
}

/// The ops on one key, ready to search.
pub(crate) struct Partition<O> {
    pub key: Option<String>,
    pub ops: Vec<SearchOp<O>>,
    /// For each op of the partition, its position in `History::ops()`.
    pub sources: Vec<usize>,
}

pub(crate) struct Malformed {
    pub op: usize,
    pub reason: String,
}

/// Drops `fail` ops and ops the model ignores, and groups the rest by key in key order.
pub(crate) fn partition<M: Model + ?Sized>(model: &M, ops: &[OpRef<'_>]) -> Result<Vec<Partition<M::Op>>, Malformed> {
    let mut partitions: Vec<Partition<M::Op>> = Vec::new();
    let mut by_key: FxHashMap<String, usize> = FxHashMap::default();
    let mut unkeyed: Option<usize> = None;
    // The last unknown op per (partition, f, value), for `SearchOp::twin`.
    let mut last_unknown: FxHashMap<(usize, &str, String), usize> = FxHashMap::default();
    for (idx, op) in ops.iter().enumerate() {
        let (output, ret) = match op.completion {
            Some((OpType::Fail, _, _)) => continue,
            Some((OpType::Ok, index, value)) => (Some(value), Some(index)),
            _ => (None, None),
        };
        let input = OpInput { f: op.f, value: op.invoke_value, output };
        let parsed = model.parse(&input).map_err(|reason| Malformed { op: idx, reason })?;
        let Some(parsed) = parsed else { continue };
        let key = model.partition_key(&parsed);
        let at = match key {
            // An unkeyed model usually puts every op in this one partition.
            None => *unkeyed.get_or_insert_with(|| open_partition(&mut partitions, None, ops.len() - idx)),
            Some(k) => match by_key.get(k) {
                Some(&at) => at,
                None => {
                    let at = open_partition(&mut partitions, Some(k.to_string()), 0);
                    by_key.insert(k.to_string(), at);
                    at
                }
            },
        };
        let position = partitions[at].ops.len();
        let twin = match ret {
            Some(_) => None,
            None => last_unknown.insert((at, op.f, op.invoke_value.to_string()), position),
        };
        partitions[at].ops.push(SearchOp { call: op.invoke_index, ret, op: parsed, twin });
        partitions[at].sources.push(idx);
    }
    // Key order, so the first counterexample reported is the same every run.
    partitions.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(partitions)
}

fn open_partition<O>(partitions: &mut Vec<Partition<O>>, key: Option<String>, capacity: usize) -> usize {
    partitions.push(Partition { key, ops: Vec::with_capacity(capacity), sources: Vec::with_capacity(capacity) });
    partitions.len() - 1
}

/// Searches every partition, on all cores when the history is large.
fn search_all<M: Model + ?Sized>(
    model: &M,
    partitions: &[Partition<M::Op>],
    budget: &Budget,
) -> Vec<Searched<M::State>> {
    let n_ops: usize = partitions.iter().map(|p| p.ops.len()).sum();
    let sequential = || partitions.iter().map(|p| search::search(model, &p.ops, *budget)).collect();
    // Small inputs stay on this thread, and do not even ask how many cores
    // there are: on Linux that reads cgroup files, which costs more than
    // checking a few hundred ops.
    if partitions.len() <= 1 || n_ops < PARALLEL_MIN_OPS {
        return sequential();
    }
    let n_threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(partitions.len());
    if n_threads <= 1 {
        return sequential();
    }
    let budget = &budget.shared_by(n_threads);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Searched<M::State>>>> = Mutex::new((0..partitions.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..n_threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = partitions.get(i) else { break };
                let searched = search::search(model, &p.ops, *budget);
                results.lock().expect("no search thread panics holding the lock")[i] = Some(searched);
            });
        }
    });
    let results = results.into_inner().expect("no search thread panicked");
    results.into_iter().map(|r| r.expect("every partition was searched")).collect()
}
