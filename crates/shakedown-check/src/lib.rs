//! Checks: pure, synchronous, deterministic functions from a history to verdicts.
//!
//! A [`Check`] reads a [`CheckInput`] (today the [`History`]; later final-state
//! snapshots and logs) and returns a [`CheckResult`]: a [`Verdict`], a one-line
//! summary a person reads, and machine-readable details. A bug found in the
//! system under test is a verdict, never an `Err`.
//!
//! Checks shipped here:
//! - [`StatsCheck`] (`stats`): op counts by action and result; unknown when an
//!   invoked action never succeeded.
//! - [`UnexpectedCheck`] (`unexpected`): invalid when any reply matched neither
//!   the ok nor the fail mapping.
//! - [`SetCheck`] (`set`): acknowledged adds must be in the final read; nothing
//!   else may be.
//! - [`state`]: checks on actors' state snapshots (`converge`, `event-counts`,
//!   `idempotent`, `sequence`, `causal-order`, `own-writes`, `field-merge`, `sql`).
//!
//! ```
//! use serde_json::json;
//! use shakedown_check::{run_checks, Check, CheckInput, SetCheck, Verdict};
//! use shakedown_history::{Header, HistoryBuilder, OpType, ProcessId};
//!
//! let mut b = HistoryBuilder::new(Header::new("doc", 7));
//! // Two acknowledged adds, then a read that only sees one of them.
//! b.invoke(10, ProcessId(0), "alice", "add", json!(1));
//! b.complete(20, ProcessId(0), OpType::Ok, json!(null), None);
//! b.invoke(30, ProcessId(1), "bob", "add", json!(2));
//! b.complete(40, ProcessId(1), OpType::Ok, json!(null), None);
//! b.invoke(50, ProcessId(0), "alice", "read", json!(null));
//! b.complete(60, ProcessId(0), OpType::Ok, json!([1]), None);
//! let history = b.finish();
//!
//! let checks: Vec<(String, Box<dyn Check>)> = vec![("set".into(), Box::new(SetCheck::default()))];
//! let results = run_checks(&checks, &CheckInput::new(&history));
//! assert_eq!(results[0].verdict, Verdict::Invalid);
//! assert_eq!(results[0].summary, "1 of 2 acknowledged adds lost: 2");
//! assert_eq!(results[0].details["lost"], json!([2]));
//! ```

pub mod bank;
pub mod counter;
mod element;
pub mod linear;
pub mod log;
pub mod monotonic;
pub mod read_your_writes;
pub mod resources;
pub mod resume;
pub mod set;
pub mod set_full;
pub mod state;
pub mod stats;
pub mod steps;
pub mod total_queue;
pub mod unexpected;
pub mod unique_ids;
pub mod vacuity;
mod verdict;

#[cfg(test)]
mod testing;

pub use bank::BankCheck;
pub use counter::CounterCheck;
pub use monotonic::MonotonicCheck;
pub use read_your_writes::ReadYourWritesCheck;
pub use set::SetCheck;
pub use set_full::SetFullCheck;
pub use stats::{OpCounts, StatsCheck};
pub use total_queue::{Delivery, TotalQueueCheck};
pub use unexpected::UnexpectedCheck;
pub use unique_ids::UniqueIdsCheck;
pub use verdict::Verdict;

use serde::{Deserialize, Serialize};
use shakedown_history::History;

/// What one check concluded about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The name the scenario gave the check; defaults to `kind`.
    pub name: String,
    /// Which checker produced this result: "set", "stats", "unexpected".
    pub kind: String,
    pub verdict: Verdict,
    /// One line a person reads, e.g. "3 of 120 acknowledged adds lost: 17, 42, 99".
    pub summary: String,
    /// Machine-readable counts, lists and counterexamples; never truncated.
    pub details: serde_json::Value,
}

impl CheckResult {
    /// A result named after its kind; [`run_checks`] renames it. Line breaks
    /// in the summary (an action name from an imported history, say) are
    /// escaped, so the summary stays one line whatever the input.
    pub fn new(kind: &str, verdict: Verdict, summary: impl Into<String>, details: serde_json::Value) -> CheckResult {
        let summary = summary.into().replace('\n', "\\n").replace('\r', "\\r");
        CheckResult { name: kind.to_string(), kind: kind.to_string(), verdict, summary, details }
    }
}

/// Everything a check may look at. It grows (final state, logs), so it is
/// non-exhaustive: build it with [`CheckInput::new`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CheckInput<'a> {
    pub history: &'a History,
    /// The services' and actors' parsed output, when it was captured.
    pub logs: Option<&'a shakedown_history::logs::Logs>,
    /// The state checks' snapshots, when states were taken.
    pub states: Option<&'a [shakedown_history::state::Snapshot]>,
    /// The run's metrics (throughput, latency, services' RSS and CPU), when measured.
    pub metrics: Option<&'a shakedown_history::metrics::Metrics>,
}

impl<'a> CheckInput<'a> {
    pub fn new(history: &'a History) -> CheckInput<'a> {
        CheckInput { history, logs: None, states: None, metrics: None }
    }

    pub fn with_logs(mut self, logs: &'a shakedown_history::logs::Logs) -> CheckInput<'a> {
        self.logs = Some(logs);
        self
    }

    pub fn with_states(mut self, states: &'a [shakedown_history::state::Snapshot]) -> CheckInput<'a> {
        self.states = Some(states);
        self
    }

    pub fn with_metrics(mut self, metrics: &'a shakedown_history::metrics::Metrics) -> CheckInput<'a> {
        self.metrics = Some(metrics);
        self
    }
}

/// A checker. Implementations are pure and bounded: the same input always
/// yields the same result, and a check never hangs or panics on odd histories.
pub trait Check: Send + Sync {
    /// The kind this checker reports, e.g. "set".
    fn kind(&self) -> &'static str;
    /// Checks the input; the result is named after the kind.
    fn check(&self, input: &CheckInput<'_>) -> CheckResult;
}

/// Runs every check in order and names each result as the caller asked.
/// Runs each check, each named as given. A check that panics does not take
/// the others down: its result is `unknown`, saying it panicked and why
/// (what Jepsen's `check-safe` does).
pub fn run_checks(checks: &[(String, Box<dyn Check>)], input: &CheckInput<'_>) -> Vec<CheckResult> {
    checks
        .iter()
        .map(|(name, check)| {
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check.check(input)));
            let mut result = match caught {
                Ok(result) => result,
                Err(panic) => {
                    let why = panic_message(panic.as_ref());
                    let summary = format!("the check failed inside shakedown (a bug): {why}");
                    CheckResult::new(check.kind(), Verdict::Unknown, summary, serde_json::json!({ "panic": why }))
                }
            };
            assert_eq!(result.kind, check.kind(), "a check must report its own kind");
            result.name = name.clone();
            result
        })
        .collect()
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// Lists the first `limit` items, then says how many more there are, so a
/// summary stays one readable line however many elements a check found.
pub(crate) fn list_bounded(items: &[String], limit: usize) -> String {
    let shown = items.iter().take(limit).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(limit) {
        0 => shown,
        more => format!("{shown} ... and {more} more"),
    }
}

/// "1 op", "2 ops": summaries are read by people.
pub(crate) fn plural(n: impl Into<u64>, word: &str) -> String {
    match n.into() {
        1 => format!("1 {word}"),
        n => format!("{n} {word}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{history, ok};
    use serde_json::json;

    #[test]
    fn run_checks_names_results_in_order() {
        let h = history(&[ok("add", json!(1), json!(null)), ok("read", json!(null), json!([1]))]);
        let checks: Vec<(String, Box<dyn Check>)> =
            vec![("my set".into(), Box::new(SetCheck::default())), ("stats".into(), Box::new(StatsCheck::default()))];
        let results = run_checks(&checks, &CheckInput::new(&h));
        let names: Vec<_> = results.iter().map(|r| (r.name.as_str(), r.kind.as_str())).collect();
        assert_eq!(names, [("my set", "set"), ("stats", "stats")]);
    }

    struct Panics;

    impl Check for Panics {
        fn kind(&self) -> &'static str {
            "panics"
        }

        fn check(&self, _input: &CheckInput<'_>) -> CheckResult {
            panic!("index out of bounds: the len is 0 but the index is 3")
        }
    }

    #[test]
    fn a_check_that_panics_is_unknown_and_its_neighbours_still_run() {
        let h = history(&[ok("add", json!(1), json!(null)), ok("read", json!(null), json!([1]))]);
        let checks: Vec<(String, Box<dyn Check>)> =
            vec![("boom".into(), Box::new(Panics)), ("set".into(), Box::new(SetCheck::default()))];
        let results = run_checks(&checks, &CheckInput::new(&h));
        assert_eq!(results[0].verdict, Verdict::Unknown);
        assert!(results[0].summary.contains("the len is 0 but the index is 3"), "{}", results[0].summary);
        assert_eq!(results[1].verdict, Verdict::Valid);
    }

    #[test]
    fn results_round_trip_through_json() {
        let r = CheckResult::new("set", Verdict::Invalid, "lost 1", json!({"lost": [1]}));
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains(r#""verdict":"invalid""#), "{text}");
        assert_eq!(serde_json::from_str::<CheckResult>(&text).unwrap(), r);
    }

    #[test]
    fn summaries_stay_one_line() {
        let r = CheckResult::new("stats", Verdict::Unknown, "never ok: a\nb\r", json!({}));
        assert_eq!(r.summary, r"never ok: a\nb\r");
    }

    #[test]
    fn list_bounded_says_how_many_were_left_out() {
        let items: Vec<String> = (1..=5).map(|i| i.to_string()).collect();
        assert_eq!(list_bounded(&items, 5), "1, 2, 3, 4, 5");
        assert_eq!(list_bounded(&items, 2), "1, 2 ... and 3 more");
        assert_eq!(list_bounded(&[], 2), "");
    }
}
