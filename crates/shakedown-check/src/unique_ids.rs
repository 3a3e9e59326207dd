//! The `unique-ids` check: every successful id generation returns a distinct id.

use crate::element::{op_ref, Element};
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{Op, OpType};
use std::collections::BTreeMap;

/// How many ids a summary names before "... and N more".
const SUMMARY_IDS: usize = 20;

/// Checks an id generator: the completion values of ok `generate` ops must all
/// differ. Failed and indeterminate ops returned no id, so they are ignored;
/// an ok op that returned `null` returned no id either and is only counted.
/// Ids compare as [`Element`]s, so `"5"` and `5` are the same id.
#[derive(Debug, Clone)]
pub struct UniqueIdsCheck {
    /// The `f` of generate ops.
    pub f: String,
}

impl Default for UniqueIdsCheck {
    fn default() -> UniqueIdsCheck {
        UniqueIdsCheck::new("generate")
    }
}

impl UniqueIdsCheck {
    pub fn new(f: impl Into<String>) -> UniqueIdsCheck {
        UniqueIdsCheck { f: f.into() }
    }
}

impl Check for UniqueIdsCheck {
    fn kind(&self) -> &'static str {
        "unique-ids"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let (ids, null_ids) = ids_by_value(&ops, &self.f);
        let n_ids: usize = ids.values().map(Vec::len).sum();
        let duplicates: Vec<(&Element, &Vec<&Op>)> = ids.iter().filter(|(_, ops)| ops.len() > 1).collect();
        let details = json!({
            "ok_ids": n_ids,
            "distinct_ids": ids.len(),
            "null_ids": null_ids,
            "duplicated": duplicates.iter().map(|(id, ops)| duplicate_details(id, ops)).collect::<Vec<_>>(),
        });
        let (verdict, summary) = judge(&duplicates, n_ids);
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

/// The ok ops of action `f` grouped by the id they returned, and how many
/// returned `null`.
fn ids_by_value<'a>(ops: &'a [Op], f: &str) -> (BTreeMap<Element, Vec<&'a Op>>, u64) {
    let mut ids: BTreeMap<Element, Vec<&Op>> = BTreeMap::new();
    let mut null_ids = 0;
    for op in ops.iter().filter(|op| op.f == f && op.op_type() == OpType::Ok) {
        let value = op.value();
        if value.is_null() {
            null_ids += 1;
        } else {
            ids.entry(Element::new(value)).or_default().push(op);
        }
    }
    (ids, null_ids)
}

fn judge(duplicates: &[(&Element, &Vec<&Op>)], n_ids: usize) -> (Verdict, String) {
    if !duplicates.is_empty() {
        let names: Vec<String> =
            duplicates.iter().map(|(id, ops)| format!("{} ({} times)", id.display(), ops.len())).collect();
        let what = plural(duplicates.len() as u64, "id");
        return (Verdict::Invalid, format!("{what} returned more than once: {}", list_bounded(&names, SUMMARY_IDS)));
    }
    if n_ids < 2 {
        let what = plural(n_ids as u64, "successful generation");
        return (Verdict::Unknown, format!("vacuous: {what}, too few to compare"));
    }
    (Verdict::Valid, format!("all {n_ids} generated ids distinct"))
}

fn duplicate_details(id: &Element, ops: &[&Op]) -> Value {
    json!({ "id": id.value(), "count": ops.len(), "ops": ops.iter().map(|op| op_ref(op)).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, fail, history, info, ok, pending};
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&UniqueIdsCheck::default(), h, verdict, summary)
    }

    fn generate(id: Value) -> crate::testing::Step {
        ok("generate", json!(null), id)
    }

    #[test]
    fn accepts_distinct_ids() {
        let h = history(&[generate(json!(1)), generate(json!("a")), generate(json!(2)), fail("generate", json!(null))]);
        let r = check(&h, Verdict::Valid, "all 3 generated ids distinct");
        assert_eq!(r.details["distinct_ids"], 3);
    }

    #[test]
    fn rejects_duplicates_naming_every_op_that_got_them() {
        let h = history(&[generate(json!(7)), generate(json!(8)), generate(json!("7")), generate(json!(7))]);
        let r = check(&h, Verdict::Invalid, "1 id returned more than once: 7 (3 times)");
        let dup = &r.details["duplicated"][0];
        assert_eq!(dup["count"], 3);
        let indexes: Vec<_> = dup["ops"].as_array().unwrap().iter().map(|o| o["index"].clone()).collect();
        assert_eq!(indexes, [json!(1), json!(5), json!(7)]);
        assert_eq!(dup["ops"][1]["process"], 2);
        assert_eq!(dup["ops"][1]["actor"], "carol");
        assert_eq!(dup["ops"][1]["f"], "generate");
        assert_eq!(dup["ops"][1]["out"], "7");
    }

    #[test]
    fn too_few_ids_is_unknown() {
        check(&history(&[]), Verdict::Unknown, "vacuous: 0 successful generations");
        let h = history(&[generate(json!(1)), info("generate", json!(null)), pending("generate", json!(null))]);
        check(&h, Verdict::Unknown, "vacuous: 1 successful generation");
        let r = check(&history(&[generate(json!(null)), generate(json!(null))]), Verdict::Unknown, "vacuous");
        assert_eq!(r.details["null_ids"], 2);
    }

    #[test]
    fn uses_the_configured_action_name() {
        let h = history(&[ok("next", json!(null), json!(1)), ok("next", json!(null), json!(1))]);
        assert_check(&UniqueIdsCheck::new("next"), &h, Verdict::Invalid, "1 id returned more than once");
    }
}
