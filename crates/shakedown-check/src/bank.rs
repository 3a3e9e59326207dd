//! The `bank` check: every read of all accounts sums to the conserved total.

use crate::element::{as_integer, op_ref};
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Map, Value};
use shakedown_history::{Op, OpType};
use std::collections::BTreeMap;

/// How many reads a summary names before "... and N more".
const SUMMARY_READS: usize = 10;

/// Checks a bank: transfers move money between accounts, so every ok `read`,
/// whose value is an object `{account: balance}`, must sum to `total`, and no
/// balance may be negative unless `negative_allowed`. Balances are integers
/// (a string that parses as one counts). A read whose value is not such an
/// object says nothing and is listed as malformed.
#[derive(Debug, Clone)]
pub struct BankCheck {
    /// The `f` of read ops.
    pub read: String,
    /// The sum every read must show.
    pub total: i64,
    /// Whether an account may be overdrawn.
    pub negative_allowed: bool,
}

impl Default for BankCheck {
    fn default() -> BankCheck {
        BankCheck::new("read", 0)
    }
}

impl BankCheck {
    pub fn new(read: impl Into<String>, total: i64) -> BankCheck {
        BankCheck { read: read.into(), total, negative_allowed: false }
    }
}

/// A read that broke conservation or showed an overdrawn account.
#[derive(Debug)]
struct Violation<'a> {
    read: &'a Op,
    sum: i128,
    negative: BTreeMap<String, i64>,
}

impl Check for BankCheck {
    fn kind(&self) -> &'static str {
        "bank"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let reads: Vec<&Op> = ops.iter().filter(|op| op.f == self.read && op.op_type() == OpType::Ok).collect();
        let mut violations = Vec::new();
        let mut malformed = Vec::new();
        for read in &reads {
            match balances(read.value()) {
                Some(accounts) => violations.extend(self.judge_read(read, &accounts)),
                None => malformed.push(op_ref(read)),
            }
        }
        let details = json!({
            "total": self.total,
            "ok_reads": reads.len(),
            "malformed_reads": malformed,
            "violations": violations.iter().map(violation_details).collect::<Vec<_>>(),
        });
        let (verdict, summary) = self.verdict(&violations, reads.len(), malformed.len());
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

impl BankCheck {
    fn judge_read<'a>(&self, read: &'a Op, accounts: &BTreeMap<String, i64>) -> Option<Violation<'a>> {
        let sum: i128 = accounts.values().map(|b| i128::from(*b)).sum();
        let negative: BTreeMap<String, i64> =
            accounts.iter().filter(|(_, b)| !self.negative_allowed && **b < 0).map(|(a, b)| (a.clone(), *b)).collect();
        (sum != i128::from(self.total) || !negative.is_empty()).then_some(Violation { read, sum, negative })
    }

    fn verdict(&self, violations: &[Violation<'_>], n_reads: usize, n_malformed: usize) -> (Verdict, String) {
        if !violations.is_empty() {
            let shown: Vec<String> = violations.iter().map(|v| self.describe(v)).collect();
            let what = plural(violations.len() as u64, "read");
            return (Verdict::Invalid, format!("{what} wrong: {}", list_bounded(&shown, SUMMARY_READS)));
        }
        if n_malformed > 0 {
            let what = plural(n_malformed as u64, "read");
            return (Verdict::Unknown, format!("{what} not an object of integer balances"));
        }
        if n_reads == 0 {
            return (Verdict::Unknown, "vacuous: no successful read".to_string());
        }
        (Verdict::Valid, format!("all {} sum to {}", plural(n_reads as u64, "read"), self.total))
    }

    fn describe(&self, v: &Violation<'_>) -> String {
        let index = v.read.completion.as_ref().map_or(v.read.invoke_index, |c| c.index);
        let mut text = format!("read #{index}");
        if v.sum != i128::from(self.total) {
            text.push_str(&format!(" sums to {} not {}", v.sum, self.total));
        }
        if !v.negative.is_empty() {
            let accounts: Vec<String> = v.negative.iter().map(|(a, b)| format!("{a}={b}")).collect();
            text.push_str(&format!(" negative {}", accounts.join(" ")));
        }
        text
    }
}

/// The balances of a read, or `None` when its value is not an object of integers.
fn balances(value: &Value) -> Option<BTreeMap<String, i64>> {
    let accounts: &Map<String, Value> = value.as_object()?;
    accounts.iter().map(|(a, b)| Some((a.clone(), as_integer(b)?))).collect()
}

fn violation_details(v: &Violation<'_>) -> Value {
    json!({ "read": op_ref(v.read), "sum": v.sum, "negative": v.negative })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, fail, history, info, ok};
    use shakedown_history::History;

    fn bank() -> BankCheck {
        BankCheck::new("read", 100)
    }

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&bank(), h, verdict, summary)
    }

    fn read(v: Value) -> crate::testing::Step {
        ok("read", json!(null), v)
    }

    fn transfer() -> crate::testing::Step {
        ok("transfer", json!({"from": "a", "to": "b", "amount": 10}), json!(null))
    }

    #[test]
    fn accepts_reads_that_conserve_the_total() {
        let h = history(&[read(json!({"a": 50, "b": 50})), transfer(), read(json!({"a": 40, "b": "60"}))]);
        check(&h, Verdict::Valid, "all 2 reads sum to 100");
    }

    #[test]
    fn rejects_reads_with_the_wrong_sum() {
        let h = history(&[read(json!({"a": 50, "b": 50})), transfer(), read(json!({"a": 40, "b": 50}))]);
        let r = check(&h, Verdict::Invalid, "1 read wrong: read #5 sums to 90 not 100");
        let v = &r.details["violations"][0];
        assert_eq!(v["sum"], 90);
        assert_eq!((v["read"]["process"].clone(), v["read"]["actor"].clone()), (json!(2), json!("carol")));
        assert_eq!(v["read"]["out"], json!({"a": 40, "b": 50}));
    }

    #[test]
    fn rejects_negative_balances_unless_allowed() {
        let h = history(&[read(json!({"a": 110, "b": -10}))]);
        let r = check(&h, Verdict::Invalid, "read #1 negative b=-10");
        assert_eq!(r.details["violations"][0]["negative"], json!({"b": -10}));
        let lenient = BankCheck { negative_allowed: true, ..bank() };
        assert_check(&lenient, &h, Verdict::Valid, "all 1 read sum to 100");
    }

    #[test]
    fn malformed_or_missing_reads_are_unknown() {
        check(
            &history(&[transfer(), fail("read", json!(null)), info("read", json!(null))]),
            Verdict::Unknown,
            "vacuous",
        );
        check(&history(&[read(json!([50, 50]))]), Verdict::Unknown, "1 read not an object of integer balances");
        check(&history(&[read(json!({"a": 50, "b": "lots"}))]), Verdict::Unknown, "not an object");
        // A violation outranks a malformed read.
        check(&history(&[read(json!(null)), read(json!({"a": 1}))]), Verdict::Invalid, "sums to 1 not 100");
    }
}
