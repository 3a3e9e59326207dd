//! The `unexpected` check: every reply must match the scenario's ok or fail mapping.

use crate::{plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::Op;

/// Invalid when any completion is flagged `unexpected`: the service answered
/// something the scenario did not foresee, which is a bug in the service or in
/// the scenario, and either way a person must look at it.
#[derive(Debug, Clone, Default)]
pub struct UnexpectedCheck {}

/// How much of the first error the one-line summary quotes; details keep it whole.
const SUMMARY_ERROR_CHARS: usize = 120;

impl Check for UnexpectedCheck {
    fn kind(&self) -> &'static str {
        "unexpected"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let completed = ops.iter().filter(|op| op.completion.is_some()).count() as u64;
        let found: Vec<&Op> = ops.iter().filter(|op| op.completion.as_ref().is_some_and(|c| c.unexpected)).collect();
        let details = json!({
            "completed": completed,
            "count": found.len(),
            "ops": found.iter().map(|op| describe(op)).collect::<Vec<_>>(),
        });
        let Some(first) = found.first() else {
            let summary = format!("no unexpected replies in {}", plural(completed, "completed op"));
            return CheckResult::new(self.kind(), Verdict::Valid, summary, details);
        };
        let summary = format!(
            "{} of {} got unexpected replies; first: {}",
            found.len() as u64,
            plural(completed, "completed op"),
            one_line(first),
        );
        CheckResult::new(self.kind(), Verdict::Invalid, summary, details)
    }
}

/// The op in full, for the details.
fn describe(op: &Op) -> Value {
    let c = op.completion.as_ref().expect("only completed ops are unexpected");
    json!({
        "invoke_index": op.invoke_index,
        "index": c.index,
        "process": op.process,
        "actor": op.actor,
        "f": op.f,
        "value": op.invoke_value,
        "result": c.op_type,
        "reply": c.value,
        "error": c.error,
    })
}

/// "#12 alice add(5): <error, first line, bounded>".
fn one_line(op: &Op) -> String {
    let c = op.completion.as_ref().expect("only completed ops are unexpected");
    let error = c.error.as_deref().unwrap_or("(no error text)");
    let mut first_line: String = error.lines().next().unwrap_or("").chars().take(SUMMARY_ERROR_CHARS).collect();
    if first_line.len() < error.len() {
        first_line.push_str(" ...");
    }
    format!("#{} {} {}({}): {}", c.index, op.actor, op.f, op.invoke_value, first_line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, history, info, ok, pending, unexpected};
    use serde_json::json;
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&UnexpectedCheck::default(), h, verdict, summary)
    }

    #[test]
    fn accepts_histories_without_unexpected_replies() {
        check(&history(&[]), Verdict::Valid, "no unexpected replies in 0 completed ops");
        let h = history(&[ok("add", json!(1), json!(null)), info("add", json!(2)), pending("read", json!(null))]);
        check(&h, Verdict::Valid, "no unexpected replies in 2 completed ops");
    }

    #[test]
    fn rejects_and_lists_every_unexpected_reply_in_full() {
        let long_error = format!("HTTP 500: {}\nstack trace line", "x".repeat(300));
        let h = history(&[
            ok("add", json!(1), json!(null)),
            unexpected("add", json!(5), &long_error),
            unexpected("read", json!(null), "garbled"),
        ]);
        let r = check(
            &h,
            Verdict::Invalid,
            "2 of 3 completed ops got unexpected replies; first: #3 bob add(5): HTTP 500: xxx",
        );
        assert!(r.summary.ends_with("x ..."), "{}", r.summary);
        assert!(!r.summary.contains('\n'));
        assert_eq!(r.details["count"], 2);
        let first = &r.details["ops"][0];
        assert_eq!(first["error"], json!(long_error), "details keep the error whole");
        assert_eq!(
            (&first["invoke_index"], &first["index"], &first["process"], &first["actor"], &first["f"], &first["value"]),
            (&json!(2), &json!(3), &json!(1), &json!("bob"), &json!("add"), &json!(5)),
        );
        assert_eq!(r.details["ops"][1]["f"], "read");
    }
}
