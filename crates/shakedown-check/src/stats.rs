//! The `stats` check: how many ops of each action ended ok, fail, info or skip.

use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shakedown_history::History;
use std::collections::BTreeMap;

/// Result names, in the order reports show them.
pub const RESULTS: [&str; 4] = ["ok", "fail", "info", "skip"];

/// Op counts by result and by action. An op that never completed counts as
/// `info`, because it may still have taken effect. Every result key is present,
/// zero or not, so the JSON shape does not depend on the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Invoked ops plus skipped ones.
    pub total: u64,
    /// Result ("ok", "fail", "info", "skip") to count.
    pub by_result: BTreeMap<String, u64>,
    /// Action `f` to result to count.
    pub by_action: BTreeMap<String, BTreeMap<String, u64>>,
}

impl OpCounts {
    pub fn of(history: &History) -> OpCounts {
        let mut counts = OpCounts { by_result: zeroes(), ..OpCounts::default() };
        for op in history.ops() {
            counts.add(&op.f, op.op_type().as_str());
        }
        for skip in history.skips() {
            counts.add(&skip.f, "skip");
        }
        assert_eq!(counts.total, counts.by_result.values().sum::<u64>());
        counts
    }

    fn add(&mut self, f: &str, result: &'static str) {
        self.total += 1;
        *self.by_result.entry(result.to_string()).or_default() += 1;
        let action = self.by_action.entry(f.to_string()).or_insert_with(zeroes);
        *action.entry(result.to_string()).or_default() += 1;
    }

    /// The count of `result` for action `f`, zero when absent.
    pub fn get(&self, f: &str, result: &str) -> u64 {
        self.by_action.get(f).and_then(|r| r.get(result)).copied().unwrap_or(0)
    }

    /// "120 ops: 100 ok, 10 fail, 8 info, 2 skip".
    pub fn describe(&self) -> String {
        format!("{}: {}", plural(self.total, "op"), describe_results(&self.by_result))
    }
}

/// "100 ok, 10 fail, 8 info, 2 skip" for one map of result counts.
pub fn describe_results(by_result: &BTreeMap<String, u64>) -> String {
    RESULTS.iter().map(|r| format!("{} {r}", by_result.get(*r).copied().unwrap_or(0))).collect::<Vec<_>>().join(", ")
}

fn zeroes() -> BTreeMap<String, u64> {
    RESULTS.iter().map(|r| (r.to_string(), 0)).collect()
}

/// Counts ops; unknown when some invoked action never succeeded, because a
/// property checked over an action that never worked holds vacuously.
#[derive(Debug, Clone, Default)]
pub struct StatsCheck {}

impl Check for StatsCheck {
    fn kind(&self) -> &'static str {
        "stats"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let counts = OpCounts::of(input.history);
        let invoked = counts.total - counts.by_result["skip"];
        let never_ok: Vec<String> = counts
            .by_action
            .keys()
            .filter(|f| counts.get(f, "ok") == 0 && counts.get(f, "skip") < counts.by_action[*f].values().sum())
            .cloned()
            .collect();
        let (verdict, summary) = if invoked == 0 {
            (Verdict::Unknown, format!("no op was invoked ({})", counts.describe()))
        } else if !never_ok.is_empty() {
            let names = list_bounded(&never_ok, 20);
            (Verdict::Unknown, format!("never ok: {names} ({})", counts.describe()))
        } else {
            (Verdict::Valid, counts.describe())
        };
        let details = json!({
            "by_action": counts.by_action,
            "by_result": counts.by_result,
            "total": counts.total,
            "never_ok": never_ok,
        });
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, fail, history, info, ok, pending, skip};
    use serde_json::json;
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&StatsCheck::default(), h, verdict, summary)
    }

    #[test]
    fn counts_every_result_of_every_action() {
        let h = history(&[
            ok("add", json!(1), json!(null)),
            fail("add", json!(2)),
            info("add", json!(3)),
            pending("add", json!(4)),
            skip("add"),
            ok("read", json!(null), json!([1])),
            skip("delete"),
        ]);
        let r = check(&h, Verdict::Valid, "7 ops: 2 ok, 1 fail, 2 info, 2 skip");
        assert_eq!(r.details["total"], 7);
        assert_eq!(r.details["by_action"]["add"], json!({"ok": 1, "fail": 1, "info": 2, "skip": 1}));
        assert_eq!(r.details["by_action"]["delete"], json!({"ok": 0, "fail": 0, "info": 0, "skip": 1}));
        assert_eq!(r.details["by_result"], json!({"ok": 2, "fail": 1, "info": 2, "skip": 2}));
    }

    #[test]
    fn an_action_that_never_succeeded_is_unknown() {
        let h = history(&[ok("add", json!(1), json!(null)), fail("cas", json!(1)), info("read", json!(null))]);
        let r = check(&h, Verdict::Unknown, "never ok: cas, read (3 ops:");
        assert_eq!(r.details["never_ok"], json!(["cas", "read"]));
    }

    #[test]
    fn empty_or_skip_only_histories_are_unknown() {
        check(&history(&[]), Verdict::Unknown, "no op was invoked (0 ops: 0 ok, 0 fail, 0 info, 0 skip)");
        check(&history(&[skip("add")]), Verdict::Unknown, "no op was invoked (1 op: 0 ok, 0 fail, 0 info, 1 skip)");
    }

    #[test]
    fn an_action_only_skipped_does_not_make_it_unknown() {
        let h = history(&[ok("add", json!(1), json!(null)), skip("delete")]);
        check(&h, Verdict::Valid, "2 ops: 1 ok, 0 fail, 0 info, 1 skip");
    }
}
