//! The `steps` check: every step of a scenario's script completed. A command
//! step whose expectation failed, or a trigger that never fired, ended the
//! script; the runner recorded it as a `step failed` event.

use crate::{Check, CheckInput, CheckResult, Verdict};
use serde_json::json;
use shakedown_history::EventKind;

/// The service name the runner records script events under.
pub const SCRIPT: &str = "shakedown";

/// Invalid when the history holds a `step failed` event.
#[derive(Debug, Clone, Default)]
pub struct StepsCheck {}

impl Check for StepsCheck {
    fn kind(&self) -> &'static str {
        "steps"
    }

    fn check(&self, input: &CheckInput<'_>) -> CheckResult {
        let failed: Vec<(u64, String)> = input
            .history
            .events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Service(s) if s.service == SCRIPT && s.event == "step failed" => {
                    Some((e.index, s.detail.clone().unwrap_or_default()))
                }
                _ => None,
            })
            .collect();
        let details = json!({
            "failed": failed.iter().map(|(index, why)| json!({ "index": index, "step": why })).collect::<Vec<_>>(),
        });
        match failed.first() {
            None => CheckResult::new(self.kind(), Verdict::Valid, "every step completed".to_string(), details),
            Some((_, why)) => {
                CheckResult::new(self.kind(), Verdict::Invalid, format!("the script stopped: {why}"), details)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shakedown_history::{Header, HistoryBuilder, ServiceEvent};

    fn history(events: &[(&str, &str)]) -> shakedown_history::History {
        let mut b = HistoryBuilder::new(Header::new("t", 1));
        for (i, (service, event)) in events.iter().enumerate() {
            let e = ServiceEvent {
                service: service.to_string(),
                event: event.to_string(),
                expected: false,
                detail: Some(format!("step `exec lock-client`: exit code 1 ({i})")),
            };
            b.push(i as u64, EventKind::Service(e));
        }
        b.history().clone()
    }

    #[test]
    fn a_failed_step_is_invalid_and_named() {
        let h = history(&[(SCRIPT, "phase"), (SCRIPT, "step failed")]);
        let r = StepsCheck::default().check(&CheckInput::new(&h));
        assert_eq!(r.verdict, Verdict::Invalid);
        assert!(r.summary.contains("exit code 1 (1)"), "{}", r.summary);
        assert_eq!(r.details["failed"][0]["index"], 1);
    }

    #[test]
    fn a_script_without_failures_is_valid_even_if_a_service_failed_to_do_something() {
        let h = history(&[(SCRIPT, "phase"), ("kv", "step failed"), ("kv", "exited")]);
        let r = StepsCheck::default().check(&CheckInput::new(&h));
        assert_eq!(r.verdict, Verdict::Valid, "{}", r.summary);
    }
}
