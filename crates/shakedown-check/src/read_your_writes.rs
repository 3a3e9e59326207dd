//! The `read-your-writes` check: an actor's reads never miss its own acknowledged write.

use crate::element::{op_ref, select, Element};
use crate::{list_bounded, plural, Check, CheckInput, CheckResult, Verdict};
use serde_json::{json, Value};
use shakedown_history::{Op, OpType};
use std::collections::{BTreeMap, BTreeSet};

/// How many violations a summary names before "... and N more".
const SUMMARY_VIOLATIONS: usize = 10;

/// Checks the read-your-writes session guarantee on registers, one session
/// per actor: once an actor's `write` of `v` completed ok, every `read` that
/// actor invokes afterwards must return `v` or a value written later.
///
/// A read misses the actor's write `w` only when its value is definitely
/// older: every write of that value completed before `w` was invoked, so in
/// every linearization it precedes `w` (values compare as [`Element`]s). A
/// write of the value concurrent with `w`, or an indeterminate one, may take
/// effect after `w`, so such reads are allowed. A read of `null` after `w` is
/// a violation. A read of a value no acknowledged write produced cannot be
/// judged and is only counted.
///
/// By default the register is single and values are whole: a write's invoked
/// value, a read's completion value. With `key`, a JSON pointer picks the key
/// out of the invoked value of both writes and reads; with `value_pointer`,
/// one picks the value out of a write's invoked value and a read's
/// completion value.
#[derive(Debug, Clone)]
pub struct ReadYourWritesCheck {
    /// The `f` of write ops.
    pub write: String,
    /// The `f` of read ops.
    pub read: String,
    /// JSON pointer to the key in invoked values; one register when `None`.
    pub key: Option<String>,
    /// JSON pointer to the value in write invocations and read completions.
    pub value_pointer: Option<String>,
}

impl Default for ReadYourWritesCheck {
    fn default() -> ReadYourWritesCheck {
        ReadYourWritesCheck::new("write", "read")
    }
}

impl ReadYourWritesCheck {
    pub fn new(write: impl Into<String>, read: impl Into<String>) -> ReadYourWritesCheck {
        ReadYourWritesCheck { write: write.into(), read: read.into(), key: None, value_pointer: None }
    }
}

/// An acknowledged write, or an ok read, of one key.
#[derive(Debug, Clone)]
struct Access<'a> {
    op: &'a Op,
    key: Element,
    value: Element,
    completed: u64,
}

/// A read that missed its actor's own write.
#[derive(Debug)]
struct Violation<'a> {
    write: &'a Access<'a>,
    read: &'a Access<'a>,
}

#[derive(Debug, Default)]
struct Tally {
    /// Reads that followed an acknowledged write by their actor.
    judged: usize,
    /// Of those, reads of a value no acknowledged write produced.
    unranked: usize,
}

impl Check for ReadYourWritesCheck {
    fn kind(&self) -> &'static str {
        "read-your-writes"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let ops = input.history.ops();
        let writes = self.accesses(&ops, &self.write);
        let reads = self.accesses(&ops, &self.read);
        let latest = latest_writes(&ops, self);
        let (violations, tally) = judge(&latest, &writes, &reads);
        let details = json!({
            "acknowledged_writes": writes.len(),
            "ok_reads": reads.len(),
            "judged_reads": tally.judged,
            "unranked_reads": tally.unranked,
            "violations": violations.iter().map(violation_details).collect::<Vec<_>>(),
        });
        let (verdict, summary) = verdict(&violations, &tally);
        CheckResult::new(self.kind(), verdict, summary, details)
    }
}

impl ReadYourWritesCheck {
    /// The ok ops of action `f` as accesses, in completion order. A write's
    /// value is in its invocation, a read's in its completion; an op whose
    /// key or value the pointers cannot find is skipped.
    fn accesses<'a>(&self, ops: &'a [Op], f: &str) -> Vec<Access<'a>> {
        let mut out: Vec<Access<'a>> = ops
            .iter()
            .filter(|op| op.f == f)
            .filter_map(|op| {
                let c = op.completion.as_ref().filter(|c| c.op_type == OpType::Ok)?;
                let key = match &self.key {
                    Some(p) => op.invoke_value.pointer(p)?,
                    None => &Value::Null,
                };
                let source = if f == self.write { &op.invoke_value } else { &c.value };
                let value = select(source, self.value_pointer.as_deref()).unwrap_or(&Value::Null);
                Some(Access { op, key: Element::new(key), value: Element::new(value), completed: c.index })
            })
            .collect();
        out.sort_by_key(|a| a.completed);
        out
    }
}

/// For each (key, value), the latest completion index of a write of it;
/// `u64::MAX` when some write of it never completed ok (it may take effect at
/// any later time). Failed writes never happened and are left out.
fn latest_writes(ops: &[Op], check: &ReadYourWritesCheck) -> BTreeMap<(Element, Element), u64> {
    let mut latest: BTreeMap<(Element, Element), u64> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.f == check.write) {
        let completed = match op.completion.as_ref().map(|c| (c.op_type, c.index)) {
            Some((OpType::Fail, _)) => continue,
            Some((OpType::Ok, index)) => index,
            _ => u64::MAX,
        };
        let key = match &check.key {
            Some(p) => match op.invoke_value.pointer(p) {
                Some(k) => k,
                None => continue,
            },
            None => &Value::Null,
        };
        let value = select(&op.invoke_value, check.value_pointer.as_deref()).unwrap_or(&Value::Null);
        let slot = latest.entry((Element::new(key), Element::new(value))).or_insert(0);
        *slot = (*slot).max(completed);
    }
    latest
}

/// Judges each read against its actor's last own write.
fn judge<'a>(
    latest: &BTreeMap<(Element, Element), u64>,
    writes: &'a [Access<'a>],
    reads: &'a [Access<'a>],
) -> (Vec<Violation<'a>>, Tally) {
    let acked: BTreeSet<(&Element, &Element)> = writes.iter().map(|w| (&w.key, &w.value)).collect();
    let mut tally = Tally::default();
    let mut violations = Vec::new();
    for read in reads {
        let Some((_, write)) = last_own_write(writes, read) else { continue };
        tally.judged += 1;
        let acknowledged = acked.contains(&(&read.key, &read.value));
        match latest.get(&(read.key.clone(), read.value.clone())) {
            Some(done) if acknowledged && *done < write.op.invoke_index => violations.push(Violation { write, read }),
            Some(_) if acknowledged => {}
            _ if read.value.value().is_null() => violations.push(Violation { write, read }),
            _ => tally.unranked += 1,
        }
    }
    assert!(violations.len() + tally.unranked <= tally.judged);
    (violations, tally)
}

/// The read's actor's last write of the read's key that completed before the
/// read was invoked, with its position among all acknowledged writes.
fn last_own_write<'a>(writes: &'a [Access<'a>], read: &Access<'_>) -> Option<(usize, &'a Access<'a>)> {
    writes
        .iter()
        .enumerate()
        .rev()
        .find(|(_, w)| w.op.actor == read.op.actor && w.key == read.key && w.completed < read.op.invoke_index)
}

fn verdict(violations: &[Violation<'_>], tally: &Tally) -> (Verdict, String) {
    if !violations.is_empty() {
        let shown: Vec<String> = violations.iter().map(describe).collect();
        let what = plural(violations.len() as u64, "read");
        return (
            Verdict::Invalid,
            format!("{what} missed the actor's own write: {}", list_bounded(&shown, SUMMARY_VIOLATIONS)),
        );
    }
    if tally.judged == tally.unranked {
        let what = plural(tally.judged as u64, "read");
        return (
            Verdict::Unknown,
            format!("vacuous: {what} after an own acknowledged write, {} ranked", tally.judged - tally.unranked),
        );
    }
    let mut summary = format!("all {} saw the actor's own write or a later one", plural(tally.judged as u64, "read"));
    if tally.unranked > 0 {
        summary.push_str(&format!(" ({} of an unacknowledged value)", tally.unranked));
    }
    (Verdict::Valid, summary)
}

fn describe(v: &Violation<'_>) -> String {
    format!(
        "{} read #{} saw {} after write #{} of {}",
        v.read.op.actor,
        v.read.completed,
        v.read.value.display(),
        v.write.completed,
        v.write.value.display()
    )
}

fn violation_details(v: &Violation<'_>) -> Value {
    json!({
        "actor": v.read.op.actor,
        "key": v.read.key.value(),
        "write": op_ref(v.write.op),
        "written": v.write.value.value(),
        "read": op_ref(v.read.op),
        "seen": v.read.value.value(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_check, interleaved, inv, ret, ret_as, Ev};
    use shakedown_history::History;

    fn check(h: &History, verdict: Verdict, summary: &str) -> CheckResult {
        assert_check(&ReadYourWritesCheck::default(), h, verdict, summary)
    }

    /// Process `p` writes `v` and is acknowledged; processes 0 and 3 are alice, 1 is bob.
    fn write(p: u64, v: Value) -> [Ev; 2] {
        [inv(p, "write", v), ret(p, json!(null))]
    }

    fn read(p: u64, v: Value) -> [Ev; 2] {
        [inv(p, "read", json!(null)), ret(p, v)]
    }

    fn h(steps: &[[Ev; 2]]) -> History {
        let events: Vec<Ev> = steps.iter().flat_map(|s| s.iter().map(copy)).collect();
        interleaved(&events)
    }

    fn copy(e: &Ev) -> Ev {
        match e {
            Ev::Invoke { p, f, value } => inv(*p, f, value.clone()),
            Ev::Complete { p, op_type, out } => ret_as(*p, *op_type, out.clone()),
        }
    }

    #[test]
    fn accepts_reads_of_the_own_write_or_a_later_one() {
        let hist =
            h(&[write(0, json!(1)), read(0, json!(1)), write(1, json!(2)), read(0, json!(2)), read(1, json!("2"))]);
        check(&hist, Verdict::Valid, "all 3 reads saw the actor's own write or a later one");
    }

    #[test]
    fn rejects_a_read_older_than_the_own_write() {
        let hist = h(&[write(1, json!(1)), write(0, json!(2)), read(0, json!(1))]);
        let r = check(
            &hist,
            Verdict::Invalid,
            "1 read missed the actor's own write: alice read #5 saw 1 after write #3 of 2",
        );
        let v = &r.details["violations"][0];
        assert_eq!((v["write"]["index"].clone(), v["read"]["index"].clone()), (json!(3), json!(5)));
        assert_eq!((v["read"]["process"].clone(), v["read"]["actor"].clone()), (json!(0), json!("alice")));
        assert_eq!(v["write"]["value"], 2);
        // Reading nothing after one's own write is a violation too.
        check(&h(&[write(0, json!(1)), read(0, json!(null))]), Verdict::Invalid, "alice read #3 saw null");
    }

    #[test]
    fn other_actors_need_not_see_the_write() {
        let hist = h(&[write(0, json!(1)), write(0, json!(2)), read(1, json!(1)), read(0, json!(2))]);
        check(&hist, Verdict::Valid, "all 1 read saw");
    }

    #[test]
    fn a_read_concurrent_with_the_write_is_not_judged() {
        let hist = interleaved(&[
            inv(0, "read", json!(null)),
            inv(3, "write", json!(1)),
            ret(3, json!(null)),
            ret(0, json!(null)),
        ]);
        check(&hist, Verdict::Unknown, "vacuous: 0 reads after an own acknowledged write");
    }

    #[test]
    fn keys_are_separate_registers() {
        let keyed = ReadYourWritesCheck {
            key: Some("/key".into()),
            value_pointer: Some("/value".into()),
            ..Default::default()
        };
        let w = |p, k: &str, v: i64| [inv(p, "write", json!({"key": k, "value": v})), ret(p, json!(null))];
        let r = |p, k: &str, v: i64| [inv(p, "read", json!({"key": k})), ret(p, json!({"value": v}))];
        let hist = h(&[w(0, "x", 1), w(0, "y", 5), r(0, "x", 1), r(0, "y", 5)]);
        assert_check(&keyed, &hist, Verdict::Valid, "all 2 reads");
        let hist = h(&[w(0, "x", 1), w(0, "x", 2), r(0, "x", 1), r(0, "z", 1)]);
        let res = assert_check(&keyed, &hist, Verdict::Invalid, "alice read #5 saw 1 after write #3 of 2");
        assert_eq!(res.details["violations"][0]["key"], "x");
    }

    /// Bob's write of 11 is concurrent with Alice's write of 10 and completes
    /// last, yet the server applied it first: Bob reading 10 is legal.
    #[test]
    fn a_concurrent_write_completing_first_may_still_come_later() {
        use shakedown_history::{Header, HistoryBuilder, ProcessId};
        let mut b = HistoryBuilder::new(Header::new("t", 0));
        let (alice, bob) = (ProcessId(0), ProcessId(1));
        b.invoke(1, bob, "bob", "write", json!(11));
        b.invoke(2, alice, "alice", "write", json!(10));
        b.complete(3, alice, OpType::Ok, json!(10), None);
        b.complete(4, bob, OpType::Ok, json!(11), None);
        b.invoke(5, bob, "bob", "read", Value::Null);
        b.complete(6, bob, OpType::Ok, json!(10), None);
        check(&b.finish(), Verdict::Valid, "all 1 read");
    }

    /// A value whose every write completed before the own write began is older.
    #[test]
    fn a_value_written_before_the_own_write_began_is_stale() {
        use shakedown_history::{Header, HistoryBuilder, ProcessId};
        let mut b = HistoryBuilder::new(Header::new("t", 0));
        let (alice, bob) = (ProcessId(0), ProcessId(1));
        b.invoke(1, alice, "alice", "write", json!(10));
        b.complete(2, alice, OpType::Ok, json!(10), None);
        b.invoke(3, bob, "bob", "write", json!(11));
        b.complete(4, bob, OpType::Ok, json!(11), None);
        b.invoke(5, bob, "bob", "read", Value::Null);
        b.complete(6, bob, OpType::Ok, json!(10), None);
        check(&b.finish(), Verdict::Invalid, "missed the actor's own write");
    }

    #[test]
    fn a_value_rewritten_later_does_not_make_newer_values_older() {
        // Alice writes 1, bob writes 2, carol writes 1 again: alice reading 2 is fine.
        let hist = h(&[write(0, json!(1)), write(1, json!(2)), write(2, json!(1)), read(0, json!(2))]);
        check(&hist, Verdict::Valid, "all 1 read saw");
    }

    #[test]
    fn unranked_or_missing_reads_are_unknown() {
        check(&h(&[]), Verdict::Unknown, "vacuous: 0 reads");
        let hist = h(&[
            write(0, json!(1)),
            [inv(1, "write", json!(9)), ret_as(1, OpType::Info, json!(null))],
            read(0, json!(9)),
        ]);
        let r = check(&hist, Verdict::Unknown, "vacuous: 1 read after an own acknowledged write, 0 ranked");
        assert_eq!(r.details["unranked_reads"], 1);
    }
}
