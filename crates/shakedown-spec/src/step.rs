//! Scripted steps and triggers: a scenario's `[[step]]` sequence, run instead
//! of (or around) the random workload, and the `when` conditions that make
//! steps and faults fire at a log line, an operation count or a named phase.

use crate::matrix::Guard;
use crate::model::{LogMatchSpec, OutcomeSpec};
use crate::template::Template;
use crate::values::{Dur, ResultSpec};
use serde::Deserialize;
use std::num::NonZeroU32;
use toml::Spanned;

/// One step. Exactly one verb (`start`, `stop`, `kill`, `restart`, `pause`,
/// `resume`, `action`, `exec`, `wait`, `parallel`, `repeat`, `fault`, `heal`,
/// `check`, `sleep`, `workload`, `phase`) says what it does; the other keys
/// modify it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Shown in the history and in errors (default: the verb and its object).
    pub name: Option<String>,
    /// Matrix guards: the step runs only in matching cells.
    pub only: Option<Guard>,
    pub except: Option<Guard>,
    /// Wait for this before doing the step.
    pub when: Option<Spanned<TriggerSpec>>,

    /// Start a stopped service and wait until it is ready.
    pub start: Option<Spanned<String>>,
    /// Stop a service gracefully, with its stop profile.
    pub stop: Option<Spanned<String>>,
    /// SIGKILL a service (an abort); it stays down until started.
    pub kill: Option<Spanned<String>>,
    /// Stop a service with its stop profile and start it again.
    pub restart: Option<Spanned<String>>,
    /// SIGSTOP a service; `resume` continues it.
    pub pause: Option<Spanned<String>>,
    pub resume: Option<Spanned<String>>,
    /// Run a workload action once, as `actor` (default: the first actor).
    pub action: Option<Spanned<String>>,
    /// Run a command as `actor`; recorded as an operation `f` (default
    /// "exec"), its output captured as the log `log` (default: the actor).
    pub exec: Option<Spanned<Vec<Template>>>,
    /// Wait for a trigger and do nothing else.
    pub wait: Option<Spanned<TriggerSpec>>,
    /// Run these steps at the same time; the step ends when all have.
    pub parallel: Option<Vec<StepSpec>>,
    /// Run `steps` this many times.
    pub repeat: Option<NonZeroU32>,
    /// A sequence of steps (with `repeat`, or as one branch of `parallel`).
    pub steps: Option<Vec<StepSpec>>,
    /// Inject the `[[fault]]` with this name; it lasts its `for`, or until a
    /// `heal` step names it (or the run ends).
    pub fault: Option<Spanned<String>>,
    /// Heal the named fault, or every fault with `"all"`.
    pub heal: Option<Spanned<String>>,
    /// Run the named `[[check]]` on the history so far (reported as `NAME@STEP`).
    pub check: Option<Spanned<String>>,
    pub sleep: Option<Dur>,
    /// Run the random workload (the weighted actions) for this long.
    pub workload: Option<Dur>,
    /// Mark a named phase as reached; triggers `when = { phase = NAME }`.
    pub phase: Option<Spanned<String>>,

    /// action, exec: who does it (default: the first actor).
    pub actor: Option<Spanned<String>>,
    /// exec: the operation's name in the history (default "exec").
    pub f: Option<String>,
    /// exec: text fed to the command's stdin.
    pub stdin: Option<Template>,
    /// exec: when the command succeeded (default exit 0); a step whose
    /// expectation fails ends the script and the run's `steps` check fails.
    pub expect: Option<OutcomeSpec>,
    /// exec: the completion value, e.g. `"stdout:json:/id"` (default: stdout).
    pub result: Option<Spanned<ResultSpec>>,
    /// exec: add the completion value to this pool.
    pub capture: Option<String>,
    /// exec: the log source its output is recorded under (default: the actor).
    pub log: Option<String>,
    /// How long the step (or its trigger) may take (default 30s; a command's
    /// default is the client's op timeout or 30s).
    pub timeout: Option<Dur>,
}

/// When a step or a fault fires: every given condition, checked in the order
/// phase, ops, log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// A log entry matching this, printed after the trigger was armed.
    pub log: Option<LogMatchSpec>,
    /// At least this many operations completed since the run began.
    pub ops: Option<u64>,
    /// A `phase` step with this name has run.
    pub phase: Option<Spanned<String>>,
    /// Give up after this long (default 30s): a step fails, a fault is skipped.
    pub timeout: Option<Dur>,
}

/// The verbs a step can have, for messages.
pub const STEP_VERBS: &[&str] = &[
    "start", "stop", "kill", "restart", "pause", "resume", "action", "exec", "wait", "parallel", "repeat", "fault",
    "heal", "check", "sleep", "workload", "phase",
];

/// What a step does, borrowed from its spec.
#[derive(Debug, Clone, Copy)]
pub enum StepVerb<'a> {
    Start(&'a str),
    Stop(&'a str),
    Kill(&'a str),
    Restart(&'a str),
    Pause(&'a str),
    Resume(&'a str),
    Action(&'a str),
    Exec(&'a [Template]),
    Wait(&'a TriggerSpec),
    Parallel(&'a [StepSpec]),
    Repeat(u32, &'a [StepSpec]),
    /// `steps` alone: a sequence (a branch of `parallel`).
    Sequence(&'a [StepSpec]),
    Fault(&'a str),
    Heal(&'a str),
    Check(&'a str),
    Sleep(std::time::Duration),
    Workload(std::time::Duration),
    Phase(&'a str),
}

impl StepSpec {
    /// The verbs that are set, by name.
    pub fn verbs(&self) -> Vec<&'static str> {
        let set = [
            self.start.is_some(),
            self.stop.is_some(),
            self.kill.is_some(),
            self.restart.is_some(),
            self.pause.is_some(),
            self.resume.is_some(),
            self.action.is_some(),
            self.exec.is_some(),
            self.wait.is_some(),
            self.parallel.is_some(),
            self.repeat.is_some(),
            self.fault.is_some(),
            self.heal.is_some(),
            self.check.is_some(),
            self.sleep.is_some(),
            self.workload.is_some(),
            self.phase.is_some(),
        ];
        STEP_VERBS.iter().zip(set).filter(|(_, on)| *on).map(|(v, _)| *v).collect()
    }

    /// What the step does; `None` when it has no verb (or several, which
    /// validation rejects). `steps` without `repeat` is a sequence.
    pub fn verb(&self) -> Option<StepVerb<'_>> {
        fn s(x: &Option<Spanned<String>>) -> Option<&str> {
            x.as_ref().map(|v| v.get_ref().as_str())
        }
        let nested = self.steps.as_deref().unwrap_or(&[]);
        let verb = if let Some(n) = s(&self.start) {
            StepVerb::Start(n)
        } else if let Some(n) = s(&self.stop) {
            StepVerb::Stop(n)
        } else if let Some(n) = s(&self.kill) {
            StepVerb::Kill(n)
        } else if let Some(n) = s(&self.restart) {
            StepVerb::Restart(n)
        } else if let Some(n) = s(&self.pause) {
            StepVerb::Pause(n)
        } else if let Some(n) = s(&self.resume) {
            StepVerb::Resume(n)
        } else if let Some(n) = s(&self.action) {
            StepVerb::Action(n)
        } else if let Some(c) = &self.exec {
            StepVerb::Exec(c.get_ref())
        } else if let Some(t) = &self.wait {
            StepVerb::Wait(t.get_ref())
        } else if let Some(p) = &self.parallel {
            StepVerb::Parallel(p)
        } else if let Some(r) = self.repeat {
            StepVerb::Repeat(r.get(), nested)
        } else if let Some(n) = s(&self.fault) {
            StepVerb::Fault(n)
        } else if let Some(n) = s(&self.heal) {
            StepVerb::Heal(n)
        } else if let Some(n) = s(&self.check) {
            StepVerb::Check(n)
        } else if let Some(d) = self.sleep {
            StepVerb::Sleep(d.0)
        } else if let Some(d) = self.workload {
            StepVerb::Workload(d.0)
        } else if let Some(n) = s(&self.phase) {
            StepVerb::Phase(n)
        } else if self.steps.is_some() {
            StepVerb::Sequence(nested)
        } else {
            return None;
        };
        Some(verb)
    }

    /// A short label: the name, else the verb and its object (`stop primary`).
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        match self.verb() {
            Some(StepVerb::Start(n)) => format!("start {n}"),
            Some(StepVerb::Stop(n)) => format!("stop {n}"),
            Some(StepVerb::Kill(n)) => format!("kill {n}"),
            Some(StepVerb::Restart(n)) => format!("restart {n}"),
            Some(StepVerb::Pause(n)) => format!("pause {n}"),
            Some(StepVerb::Resume(n)) => format!("resume {n}"),
            Some(StepVerb::Action(n)) => format!("action {n}"),
            Some(StepVerb::Exec(c)) => format!("exec {}", c.first().map(|t| t.source()).unwrap_or_default()),
            Some(StepVerb::Wait(_)) => "wait".into(),
            Some(StepVerb::Parallel(p)) => format!("parallel ({} branches)", p.len()),
            Some(StepVerb::Repeat(n, _)) => format!("repeat {n}"),
            Some(StepVerb::Sequence(s)) => format!("sequence ({} steps)", s.len()),
            Some(StepVerb::Fault(n)) => format!("fault {n}"),
            Some(StepVerb::Heal(n)) => format!("heal {n}"),
            Some(StepVerb::Check(n)) => format!("check {n}"),
            Some(StepVerb::Sleep(d)) => format!("sleep {d:?}"),
            Some(StepVerb::Workload(d)) => format!("workload {d:?}"),
            Some(StepVerb::Phase(n)) => format!("phase {n}"),
            None => "step".into(),
        }
    }

    /// This step and every step nested in it, depth first.
    pub fn walk(&self) -> Vec<&StepSpec> {
        let mut out = vec![self];
        for s in self.parallel.iter().flatten().chain(self.steps.iter().flatten()) {
            out.extend(s.walk());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    const BASE: &str = r#"
name = "t"
[service.primary]
command = ["lock"]
[actor.client]
[client]
kind = "exec"
[[action]]
f = "read"
command = ["cat", "x"]
[[fault]]
name = "cut"
kind = "kill"
target = "primary"
[[check]]
kind = "stats"
"#;

    fn parse(steps: &str) -> Result<crate::Scenario, String> {
        crate::parse(&format!("{BASE}{steps}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_script_with_every_verb_parses() {
        let s = parse(
            r#"
[[step]]
parallel = [
  { exec = ["lock-client", "update"], actor = "client", log = "lc", expect = { exit = [0] } },
  { steps = [
      { wait = { log = { source = "lc", match = "client.phase", fields = { phase = "before-save" } } } },
      { stop = "primary" },
      { phase = "stopped" },
  ] },
]
[[step]]
repeat = 3
steps = [{ action = "read", actor = "client" }, { sleep = "10ms" }]
[[step]]
fault = "cut"
when = { phase = "stopped", ops = 2 }
[[step]]
heal = "all"
[[step]]
check = "stats"
[[step]]
workload = "1s"
[[step]]
start = "primary"
"#,
        )
        .unwrap();
        let labels: Vec<String> = s.step.iter().map(|st| st.label()).collect();
        assert_eq!(
            labels,
            [
                "parallel (2 branches)",
                "repeat 3",
                "fault cut",
                "heal all",
                "check stats",
                "workload 1s",
                "start primary"
            ]
        );
        assert_eq!(s.step[0].walk().len(), 6);
    }

    #[test]
    fn steps_with_no_verb_several_verbs_or_unknown_names_are_located() {
        let err = parse("[[step]]\nactor = \"client\"\n").unwrap_err();
        assert!(err.contains("a step has no verb"), "{err}");
        assert!(err.contains("`actor` only applies to `action` and `exec` steps"), "{err}");
        let err = parse("[[step]]\nstop = \"primary\"\nkill = \"primary\"\n").unwrap_err();
        assert!(err.contains("several verbs (stop, kill)"), "{err}");
        let err = parse("[[step]]\nstop = \"db\"\n").unwrap_err();
        assert!(err.contains("t.toml:18:8: step: service `db` is not defined"), "{err}");
        let err = parse("[[step]]\nfault = \"nope\"\n").unwrap_err();
        assert!(
            err.contains(
                "`fault` step names fault `nope`, which is not defined; expected one of the named faults: `cut`"
            ),
            "{err}"
        );
        let err = parse("[[step]]\naction = \"write\"\n").unwrap_err();
        assert!(err.contains("step names action `write`"), "{err}");
        let err = parse("[[step]]\ncheck = \"linear\"\n").unwrap_err();
        assert!(err.contains("step names check `linear`"), "{err}");
        let err = parse("[[step]]\nexec = [\"x\"]\nactor = \"bob\"\n").unwrap_err();
        assert!(err.contains("step names actor `bob`"), "{err}");
        let err = parse("[[step]]\nrepeat = 2\n").unwrap_err();
        assert!(err.contains("`repeat` needs `steps`"), "{err}");
        let err = parse("[[step]]\nstop = \"primary\"\ncapture = \"ids\"\n").unwrap_err();
        assert!(err.contains("`capture` only applies to `exec` steps"), "{err}");
        let err = parse("[[step]]\nbogus = 1\n").unwrap_err();
        assert!(err.contains("unknown key `bogus`"), "{err}");
    }

    #[test]
    fn triggers_need_a_condition_and_known_sources_and_phases() {
        let err = parse("[[step]]\nwait = { timeout = \"1s\" }\n").unwrap_err();
        assert!(err.contains("a trigger needs `log`, `ops` or `phase`"), "{err}");
        let err = parse("[[step]]\nwait = { log = { source = \"ghost\" } }\n").unwrap_err();
        assert!(err.contains("log source `ghost` is not a service, actor or exec step log"), "{err}");
        let err = parse("[[step]]\nwait = { phase = \"copy\" }\n").unwrap_err();
        assert!(err.contains("trigger names phase `copy`, which no `phase` step reaches"), "{err}");
    }

    #[test]
    fn a_pool_filled_by_an_exec_step_can_be_targeted_by_actions() {
        let text = BASE.replace("command = [\"cat\", \"x\"]", "command = [\"cat\", \"{target}\"]\ntarget = \"docs\"");
        let err = crate::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("pool `docs` is never filled"), "{err}");
        let with_step = format!("{text}[[step]]\nexec = [\"mkdoc\"]\ncapture = \"docs\"\n");
        assert!(crate::parse(&with_step, "t.toml").is_ok());
    }

    #[test]
    fn faults_take_a_trigger_instead_of_a_schedule_but_not_both() {
        let text = BASE.replace("name = \"cut\"\n", "when = { ops = 10 }\n");
        assert!(crate::parse(&text, "t.toml").is_ok());
        let text = BASE.replace("name = \"cut\"\n", "when = { ops = 10 }\nat = [\"1s\"]\n");
        let err = crate::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("a fault has both a schedule and `when`"), "{err}");
        let text = BASE.replace("name = \"cut\"\n", "");
        let err = crate::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("a fault needs a schedule"), "{err}");
    }
}
