//! JUnit XML: one test suite per run, one test case per check, for CI dashboards.

use crate::json_text::json_text;
use crate::summary::{render_summary, Style};
use crate::{write_file, Report, ReportError};
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use shakedown_check::{CheckResult, Verdict};
use std::path::Path;
use std::time::Duration;

/// The JUnit XML of a run. The suite and each case's classname are the
/// scenario, with the matrix cell appended when there is one so that cells do
/// not collide in CI. An invalid check is a failure, an unknown one skipped,
/// and harness errors a test case named "harness" in error. The suite's
/// system-out holds the plain terminal summary, which ends with the replay line.
pub fn junit_xml(report: &Report) -> String {
    let label = suite_label(report);
    let mut suite = TestSuite::new(label.as_str());
    suite.set_time(Duration::from_millis(report.duration_ms));
    suite.add_properties(properties(report));
    for check in &report.checks {
        suite.add_test_case(check_case(check, &label));
        suite.add_test_cases(resume_cases(check, &label));
    }
    if !report.errors.is_empty() {
        suite.add_test_case(harness_case(&report.errors, &label));
    }
    suite.set_system_out(render_summary(report, Style { color: false }));
    let mut junit = quick_junit::Report::new("shakedown");
    junit.set_time(Duration::from_millis(report.duration_ms));
    junit.add_test_suite(suite);
    // Serializing into memory has no I/O to fail, and quick-junit strips the
    // characters XML cannot hold, so an error here would be a bug.
    junit.to_string().expect("serializing JUnit XML into memory")
}

/// Writes `junit.xml`.
pub fn write_junit(report: &Report, path: &Path) -> Result<(), ReportError> {
    write_file(path, &shakedown_history::redact::redact(&junit_xml(report)))
}

fn suite_label(report: &Report) -> String {
    match report.matrix_cell() {
        cell if cell.is_empty() => report.scenario.clone(),
        cell => format!("{}[{cell}]", report.scenario),
    }
}

fn properties(report: &Report) -> Vec<Property> {
    let mut props = vec![
        Property::new("seed", report.seed.to_string()),
        Property::new("run_dir", report.run_dir.as_str()),
        Property::new("verdict", report.verdict.as_str()),
        Property::new("shakedown_version", report.shakedown_version.as_str()),
        Property::new("started_at", report.started_at.as_str()),
    ];
    props.extend(report.matrix.iter().map(|(k, v)| Property::new(format!("matrix.{k}"), v.as_str())));
    props
}

fn check_case(check: &CheckResult, classname: &str) -> TestCase {
    let status = match check.verdict {
        Verdict::Valid => TestCaseStatus::success(),
        Verdict::Invalid => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(check.summary.as_str()).set_type(check.kind.as_str());
            status.set_description(json_text(&check.details));
            status
        }
        Verdict::Unknown => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(check.summary.as_str()).set_type("unknown");
            status
        }
    };
    let mut case = TestCase::new(check.name.as_str(), status);
    case.set_classname(classname);
    case
}

/// A resume check's interruption points, each its own case (`resume/point-03`),
/// failed with its problems, so CI lists which points broke.
fn resume_cases(check: &CheckResult, classname: &str) -> Vec<TestCase> {
    if check.kind != "resume" {
        return Vec::new();
    }
    let cases = check.details["cases"].as_array().map(Vec::as_slice).unwrap_or_default();
    cases
        .iter()
        .map(|c| {
            let name = format!("{}/{}", check.name, c["case"].as_str().unwrap_or("?"));
            let status = if c["verdict"] == "invalid" {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                let problems: Vec<&str> =
                    c["problems"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
                status.set_message(problems.join("; ")).set_type("resume");
                status.set_description(json_text(c));
                status
            } else {
                TestCaseStatus::success()
            };
            let mut case = TestCase::new(name, status);
            case.set_classname(classname);
            case
        })
        .collect()
}

fn harness_case(errors: &[String], classname: &str) -> TestCase {
    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
    status.set_message(errors[0].as_str()).set_type("harness");
    status.set_description(errors.join("\n"));
    let mut case = TestCase::new("harness", status);
    case.set_classname(classname);
    case
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use quick_junit::Report as Junit;

    fn parse(xml: &str) -> TestSuite {
        let mut junit = Junit::deserialize_from_str(xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
        assert_eq!(junit.test_suites.len(), 1);
        junit.test_suites.remove(0)
    }

    fn case<'a>(suite: &'a TestSuite, name: &str) -> &'a TestCase {
        suite.test_cases.iter().find(|c| c.name.as_str() == name).unwrap_or_else(|| panic!("no test case {name}"))
    }

    #[test]
    fn one_case_per_check_and_an_invalid_check_fails() {
        let report = fixture::report(true);
        let xml = junit_xml(&report);
        assert!(xml.contains("<failure"), "{xml}");
        let suite = parse(&xml);
        assert_eq!((suite.name.as_str(), suite.tests, suite.failures), ("kv-set", 3, 1));
        let names: Vec<_> = suite.test_cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["stats", "set", "unexpected"]);
        assert!(suite.test_cases.iter().all(|c| c.classname.as_deref() == Some("kv-set")));
        let TestCaseStatus::NonSuccess { kind, message, description, .. } = &case(&suite, "set").status else {
            panic!("set must fail")
        };
        assert_eq!(*kind, NonSuccessKind::Failure);
        assert_eq!(message.as_deref(), Some("1 of 2 acknowledged adds lost: 2"));
        assert!(description.as_deref().unwrap().contains("\n  \"lost\": [2],\n"), "{description:?}");
        assert!(matches!(case(&suite, "stats").status, TestCaseStatus::Success { .. }));
    }

    #[test]
    fn properties_and_system_out_tell_how_to_replay() {
        let suite = parse(&junit_xml(&fixture::report(true)));
        let props: Vec<_> = suite.properties.iter().map(|p| (p.name.as_str(), p.value.as_str())).collect();
        assert!(props.contains(&("seed", "42")), "{props:?}");
        assert!(props.contains(&("run_dir", ".shakedown/runs/r1")), "{props:?}");
        let out = suite.system_out.as_deref().unwrap();
        assert!(out.contains("replay: shakedown run .shakedown/runs/r1/scenario.toml --seed 42"), "{out}");
        assert!(!out.contains('\x1b'), "system-out is plain text");
    }

    #[test]
    fn an_unknown_check_is_skipped_with_its_reason() {
        let mut report = fixture::report(false);
        report.checks[1].verdict = Verdict::Unknown;
        report.checks[1].summary = "no successful final read (0 reads attempted)".into();
        let xml = junit_xml(&report);
        assert!(xml.contains("<skipped"), "{xml}");
        let suite = parse(&xml);
        let TestCaseStatus::Skipped { message, .. } = &case(&suite, "set").status else {
            panic!("set must be skipped")
        };
        assert_eq!(message.as_deref(), Some("no successful final read (0 reads attempted)"));
    }

    #[test]
    fn harness_errors_and_matrix_cells_show_up() {
        let mut report = fixture::report(false);
        report.errors = vec!["service kv never became ready".into(), "build failed".into()];
        report.matrix = [("engine".to_string(), "binlog".to_string())].into();
        let suite = parse(&junit_xml(&report));
        assert_eq!((suite.name.as_str(), suite.tests, suite.errors), ("kv-set[engine=binlog]", 4, 1));
        assert!(suite.properties.iter().any(|p| (p.name.as_str(), p.value.as_str()) == ("matrix.engine", "binlog")));
        let TestCaseStatus::NonSuccess { kind, message, description, .. } = &case(&suite, "harness").status else {
            panic!("harness must error")
        };
        assert_eq!((*kind, message.as_deref()), (NonSuccessKind::Error, Some("service kv never became ready")));
        assert_eq!(description.as_deref(), Some("service kv never became ready\nbuild failed"));
    }

    #[test]
    fn writes_a_file_and_survives_control_characters() {
        let mut report = fixture::report(true);
        report.checks[1].summary = "lost \u{0}\u{1b}[31m: 2".into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write_junit(&report, &path).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        assert!(xml.starts_with("<?xml"), "{xml}");
        parse(&xml);
    }
}
