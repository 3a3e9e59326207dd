//! The resume check on hand-made histories and snapshots: cases it must
//! accept and cases it must reject, each for its own reason.

use super::*;
use shakedown_history::state::TreeEntry;
use shakedown_history::{FaultEvent, Header, HistoryBuilder, Invoke, ProcessId};

struct H {
    b: HistoryBuilder,
    t: u64,
    next: u64,
}

impl H {
    fn new() -> H {
        H { b: HistoryBuilder::new(Header::new("r", 1)), t: 0, next: 0 }
    }

    fn op(&mut self, case: &str, f: &str, ok: bool) -> &mut H {
        self.t += 1;
        let p = ProcessId(self.next);
        self.next += 1;
        let inv = Invoke { process: p, actor: case.into(), f: f.into(), value: json!({ "case": case }) };
        self.b.push(self.t, EventKind::Invoke(inv));
        self.t += 1;
        let (ty, err) =
            if ok { (OpType::Ok, None) } else { (OpType::Info, Some("interrupted by SIGKILL".to_string())) };
        self.b.complete_with(self.t, p, ty, json!({ "case": case }), err, false);
        self
    }

    fn corrupt(&mut self, case: &str) -> &mut H {
        for phase in [FaultPhase::Start, FaultPhase::End] {
            self.t += 1;
            let e = FaultEvent {
                fault_id: 0,
                phase,
                fault: "corrupt".into(),
                target: case.into(),
                detail: Some("truncate state.json".into()),
            };
            self.b.push(self.t, EventKind::Fault(e));
        }
        self
    }

    fn history(&self) -> shakedown_history::History {
        self.b.history().clone()
    }
}

fn rows(ids: &[i64]) -> StateContent {
    StateContent::Rows { columns: vec!["id".into()], rows: ids.iter().map(|i| vec![json!(i)]).collect() }
}

fn snap(owner: &str, taken: &str, content: StateContent) -> Snapshot {
    Snapshot::ok(RESUME, owner, taken, content)
}

fn state(owner: &str, taken: &str, v: Value) -> Snapshot {
    snap(owner, taken, StateContent::Json { value: v })
}

fn run(check: &ResumeCheck, h: &H, states: &[Snapshot]) -> CheckResult {
    let history = h.history();
    check.check(&CheckInput::new(&history).with_states(states))
}

fn two_cases() -> H {
    let mut h = H::new();
    h.op("golden", "job", true).op("point-01", "job", false).op("point-01", "resume", true);
    h.op("point-02", "job", false).op("point-02", "resume", true);
    h
}

#[test]
fn cases_that_end_like_the_golden_run_are_valid() {
    let states = [
        snap("golden", "final", rows(&[1, 2, 3])),
        state("point-01", "state-1", json!({ "done": 1 })),
        snap("point-01", "final", rows(&[1, 2, 3])),
        state("point-02", "state-1", json!({ "done": 2 })),
        snap("point-02", "final", rows(&[1, 2, 3])),
    ];
    let r = run(&ResumeCheck { progress: Some("/done".into()), corrupt: None }, &two_cases(), &states);
    assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
    assert!(r.summary.contains("all 2 interruption points"), "{}", r.summary);
}

#[test]
fn missing_and_duplicated_rows_are_named_per_case() {
    let states = [
        snap("golden", "final", rows(&[1, 2, 3, 4])),
        snap("point-01", "final", rows(&[1, 2, 4])),
        snap("point-02", "final", rows(&[1, 2, 3, 3, 4])),
    ];
    let r = run(&ResumeCheck::default(), &two_cases(), &states);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert!(
        r.summary.starts_with("2 of 2 interruption points failed; first, point-01 (alone: --point 1): differs"),
        "{}",
        r.summary
    );
    let cases = r.details["cases"].as_array().unwrap();
    assert_eq!(cases[0]["missing"], json!([[3]]));
    assert_eq!(cases[1]["extra"], json!([[3]]), "the duplicate is extra");
}

#[test]
fn trees_compare_by_path_and_content() {
    let entry = |p: &str, h: &str| TreeEntry { path: p.into(), size: 1, sha256: h.into() };
    let golden = StateContent::Tree { entries: vec![entry("a", "1"), entry("b", "2")] };
    let states = [
        snap("golden", "final", golden.clone()),
        snap(
            "point-01",
            "final",
            StateContent::Tree { entries: vec![entry("a", "1"), entry("b", "X"), entry("c", "3")] },
        ),
        snap("point-02", "final", golden),
    ];
    let r = run(&ResumeCheck::default(), &two_cases(), &states);
    let case = &r.details["cases"][0];
    assert_eq!((case["changed"].clone(), case["extra"].clone()), (json!(["b"]), json!(["c"])));
    assert_eq!(r.details["cases"][1]["verdict"], "valid");
}

#[test]
fn a_case_that_never_finishes_is_invalid() {
    let mut h = H::new();
    h.op("golden", "job", true).op("point-01", "job", false).op("point-01", "resume", false);
    let states = [snap("golden", "final", rows(&[])), snap("point-01", "final", rows(&[]))];
    let r = run(&ResumeCheck::default(), &h, &states);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert!(r.summary.contains("never finished after 2 attempt(s)"), "{}", r.summary);
}

#[test]
fn schema_violations_name_the_json_path_and_progress_must_not_go_back() {
    let schema = json!({
        "type": "object",
        "required": ["done"],
        "properties": { "done": { "type": "integer", "minimum": 0 } }
    });
    let states = [
        snap("schema", "schema", StateContent::Json { value: schema }),
        snap("golden", "final", rows(&[1])),
        state("point-01", "state-1", json!({ "done": "three" })),
        snap("point-01", "final", rows(&[1])),
        state("point-02", "state-1", json!({ "done": 5 })),
        state("point-02", "state-resume-1", json!({ "done": 2 })),
        snap("point-02", "final", rows(&[1])),
        state("point-01", "state-resume-1", json!({ "unparsed": "{\"done\": 1" })),
    ];
    let r = run(&ResumeCheck { progress: Some("/done".into()), corrupt: None }, &two_cases(), &states);
    let p1 = r.details["cases"][0]["problems"].to_string();
    assert!(p1.contains("breaks the schema at /done"), "{p1}");
    assert!(p1.contains("is not JSON"), "{p1}");
    let p2 = r.details["cases"][1]["problems"].to_string();
    assert!(p2.contains("progress went backwards: 5 at state-1, then 2 at state-resume-1"), "{p2}");
}

#[test]
fn damaged_state_must_be_refused_when_the_scenario_expects_an_error() {
    let mut h = H::new();
    h.op("golden", "job", true).op("point-01", "job", false).corrupt("point-01");
    h.op("point-01", "resume", false);
    h.op("point-02", "job", false).corrupt("point-02").op("point-02", "resume", true);
    let states = [
        snap("golden", "final", rows(&[1, 2])),
        snap("point-01", "final", rows(&[1])),
        snap("point-02", "final", rows(&[1, 2])),
    ];
    let r = run(&ResumeCheck { progress: None, corrupt: Some(Expect::Error) }, &h, &states);
    assert_eq!(r.details["cases"][0]["verdict"], "valid", "refused, nothing extra: {}", r.details);
    // Refused before it created the destination: nothing to read, nothing extra.
    let unread = [states[0].clone(), Snapshot::failed(RESUME, "point-01", "final", "no such file"), states[2].clone()];
    let r2 = run(&ResumeCheck { progress: None, corrupt: Some(Expect::Error) }, &h, &unread);
    assert_eq!(r2.details["cases"][0]["verdict"], "valid", "{}", r2.details);
    let r3 = run(&ResumeCheck::default(), &h, &unread);
    assert!(r3.details["cases"][0]["problems"].to_string().contains("could not be read"), "{}", r3.details);
    let p2 = r.details["cases"][1]["problems"].to_string();
    assert!(p2.contains("after truncate state.json, the job reported done"), "{p2}");
    let r = run(&ResumeCheck { progress: None, corrupt: Some(Expect::Recover) }, &h, &states);
    assert_eq!(r.details["cases"][1]["verdict"], "valid");
    assert!(r.details["cases"][0]["problems"].to_string().contains("never finished"), "{}", r.details);
}

#[test]
fn a_job_that_does_not_finish_uninterrupted_is_invalid_and_one_that_never_ran_unknown() {
    let mut h = H::new();
    h.op("golden", "job", false);
    let r = run(&ResumeCheck::default(), &h, &[snap("golden", "final", rows(&[]))]);
    assert_eq!(r.verdict, Verdict::Invalid);
    assert!(r.summary.contains("did not finish even uninterrupted: interrupted by SIGKILL"), "{}", r.summary);
    let r = run(&ResumeCheck::default(), &H::new(), &[]);
    assert_eq!(r.verdict, Verdict::Unknown, "{}", r.summary);
}

#[test]
fn json_arrays_from_a_command_compare_as_multisets_of_rows() {
    let json = |v: Value| StateContent::Json { value: v };
    let states = [
        snap("golden", "final", json(json!([{ "id": 1 }, { "id": 2 }]))),
        snap("point-01", "final", json(json!([{ "id": 2 }, { "id": 1 }]))),
        snap("point-02", "final", json(json!([{ "id": 1 }, { "id": 1 }]))),
    ];
    let r = run(&ResumeCheck::default(), &two_cases(), &states);
    let cases = r.details["cases"].as_array().unwrap();
    assert_eq!(cases[0]["verdict"], "valid", "order does not matter");
    assert_eq!((cases[1]["missing"].clone(), cases[1]["extra"].clone()), (json!([{ "id": 2 }]), json!([{ "id": 1 }])));
}
