//! Validation of `[[step]]` scripts and triggers: one verb per step, names
//! that refer to defined services, actors, actions, faults, checks and phases.

use super::{one_of, Ctx, Validator};
use crate::step::{StepSpec, StepVerb, TriggerSpec, STEP_VERBS};
use crate::values::ResultSource;
use std::collections::BTreeSet;
use std::ops::Range;
use toml::Spanned;

/// Keys that only make sense with some verbs.
const EXEC_ONLY: &[&str] = &["f", "stdin", "expect", "result", "capture", "log"];

impl<'a> Validator<'a> {
    pub(super) fn steps(&mut self) {
        let steps: Vec<&'a StepSpec> = self.s.step.iter().flat_map(|s| s.walk()).collect();
        for step in steps {
            self.step(step);
        }
    }

    fn step(&mut self, step: &'a StepSpec) {
        let verbs = step.verbs();
        let label = step.label();
        let anchor = || "[[step]]".to_string();
        match verbs.as_slice() {
            [] if step.steps.is_some() => {}
            [] => self.err_near(
                anchor(),
                format!(
                    "a step has no verb; expected one of `{}` (or `steps` for a sequence)",
                    STEP_VERBS.join("`, `")
                ),
            ),
            [_] => {}
            many => {
                self.err_near(anchor(), format!("step `{label}` has several verbs ({}); expected one", many.join(", ")))
            }
        }
        if step.steps.is_some() && !verbs.is_empty() && step.repeat.is_none() {
            self.err_near(anchor(), format!("step `{label}`: `steps` goes with `repeat`, or alone as a sequence"));
        }
        if step.repeat.is_some() && step.steps.as_ref().is_none_or(|s| s.is_empty()) {
            self.err_near(anchor(), format!("step `{label}`: `repeat` needs `steps`, the steps to repeat"));
        }
        self.step_modifiers(step, &label);
        if let Some(w) = &step.when {
            self.trigger(w.span(), w.get_ref());
        }
        match step.verb() {
            Some(
                StepVerb::Start(_)
                | StepVerb::Stop(_)
                | StepVerb::Kill(_)
                | StepVerb::Restart(_)
                | StepVerb::Pause(_)
                | StepVerb::Resume(_),
            ) => {
                let target = [&step.start, &step.stop, &step.kill, &step.restart, &step.pause, &step.resume]
                    .into_iter()
                    .flatten()
                    .next();
                if let Some(t) = target {
                    self.step_service(t);
                }
            }
            Some(StepVerb::Action(name)) => self.step_action(step, name),
            Some(StepVerb::Exec(cmd)) => {
                if cmd.is_empty() {
                    self.err_near(
                        anchor(),
                        "an `exec` step has an empty command; expected the program and its arguments",
                    );
                }
                self.templates(cmd.iter().chain(step.stdin.iter()), Ctx::Actor);
                if let Some(r) = &step.result {
                    let source = r.get_ref().source;
                    if !matches!(source, ResultSource::Stdout | ResultSource::Stderr | ResultSource::Exit) {
                        self.err(r.span(), format!("step `{label}`: result source {source:?} does not apply to a command; expected stdout, stderr or exit"));
                    }
                }
            }
            Some(StepVerb::Wait(t)) => {
                let span = step.wait.as_ref().map_or(0..0, |w| w.span());
                self.trigger(span, t);
            }
            Some(StepVerb::Parallel([])) => {
                self.err_near(anchor(), "a `parallel` step has no branches; expected a list of steps")
            }
            Some(StepVerb::Fault(name)) => self.step_fault(step.fault.as_ref(), name, false),
            Some(StepVerb::Heal(name)) => self.step_fault(step.heal.as_ref(), name, true),
            Some(StepVerb::Check(name)) => {
                let labels: BTreeSet<&str> = self.s.check.iter().map(|c| c.label()).collect();
                if !labels.contains(name) {
                    let span = step.check.as_ref().map_or(0..0, |c| c.span());
                    let msg = format!("step names check `{name}`, which is not defined; {}", one_of("checks", &labels));
                    self.err(span, msg);
                }
            }
            Some(StepVerb::Workload(_)) if self.s.action.iter().all(|a| a.weight == Some(0)) => {
                self.err_near(anchor(), "a `workload` step needs actions with a positive weight to draw from")
            }
            _ => {}
        }
    }

    fn step_modifiers(&mut self, step: &StepSpec, label: &str) {
        let is_exec = step.exec.is_some();
        let set = [
            step.f.is_some(),
            step.stdin.is_some(),
            step.expect.is_some(),
            step.result.is_some(),
            step.capture.is_some(),
            step.log.is_some(),
        ];
        for (key, on) in EXEC_ONLY.iter().zip(set) {
            if on && !is_exec {
                self.err_near("[[step]]".into(), format!("step `{label}`: `{key}` only applies to `exec` steps"));
            }
        }
        if let Some(actor) = &step.actor {
            if step.exec.is_none() && step.action.is_none() {
                self.err(actor.span(), format!("step `{label}`: `actor` only applies to `action` and `exec` steps"));
            }
            let names: BTreeSet<&str> = self.s.actor.keys().map(String::as_str).collect();
            if !names.contains(actor.get_ref().as_str()) {
                let msg = format!(
                    "step names actor `{}`, which is not defined; {}",
                    actor.get_ref(),
                    one_of("actors", &names)
                );
                self.err(actor.span(), msg);
            }
        }
    }

    fn step_service(&mut self, target: &Spanned<String>) {
        if !self.s.service.contains_key(target.get_ref()) {
            let msg = self.no_service(target.get_ref());
            self.err(target.span(), format!("step: {msg}"));
        }
    }

    fn step_action(&mut self, step: &StepSpec, name: &str) {
        let labels: BTreeSet<&str> = self.s.action.iter().map(|a| a.label()).collect();
        if !labels.contains(name) {
            let span = step.action.as_ref().map_or(0..0, |a| a.span());
            let msg = format!("step names action `{name}`, which is not defined; {}", one_of("actions", &labels));
            self.err(span, msg);
        }
    }

    fn step_fault(&mut self, at: Option<&Spanned<String>>, name: &str, heal: bool) {
        if heal && name == "all" {
            return;
        }
        let names: BTreeSet<&str> =
            self.s.fault.iter().filter_map(|f| f.name.as_ref()).map(|n| n.get_ref().as_str()).collect();
        if !names.contains(name) {
            let verb = if heal { "heal" } else { "fault" };
            let msg = format!(
                "`{verb}` step names fault `{name}`, which is not defined; {}{}",
                one_of("named faults", &names),
                if heal { " (or \"all\")" } else { "" }
            );
            self.err(at.map_or(0..0, |a| a.span()), msg);
        }
    }

    pub(super) fn trigger(&mut self, span: Range<usize>, t: &TriggerSpec) {
        if t.log.is_none() && t.ops.is_none() && t.phase.is_none() {
            self.err(
                span.clone(),
                "a trigger needs `log`, `ops` or `phase`, e.g. `{ log = { source = \"kv\", match = \"ready\" } }`",
            );
        }
        if let Some(source) = t.log.as_ref().and_then(|l| l.source.as_ref()) {
            if !self.log_source_known(source.get_ref()) {
                let msg = format!("log source `{}` is not a service, actor or exec step log", source.get_ref());
                self.err(source.span(), msg);
            }
        }
        if let Some(phase) = &t.phase {
            let phases: BTreeSet<&str> = self
                .s
                .step
                .iter()
                .flat_map(|s| s.walk())
                .filter_map(|s| s.phase.as_ref())
                .map(|p| p.get_ref().as_str())
                .collect();
            if !phases.contains(phase.get_ref().as_str()) {
                let msg = format!(
                    "trigger names phase `{}`, which no `phase` step reaches; {}",
                    phase.get_ref(),
                    one_of("phases", &phases)
                );
                self.err(phase.span(), msg);
            }
        }
    }

    /// Services, actors, `log` names of exec steps, drivers and builds.
    pub(super) fn log_source_known(&self, name: &str) -> bool {
        self.s.service.contains_key(name)
            || self.s.actor.contains_key(name)
            || name.starts_with("driver-")
            || name == "build"
            || self.s.step.iter().flat_map(|s| s.walk()).any(|s| s.log.as_deref() == Some(name))
    }
}
