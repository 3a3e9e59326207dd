//! Scenario files for shakedown: the model, TOML parsing and validation with
//! errors that name the file, line and column.
//!
//! ```
//! let text = r#"
//! name = "doc"
//! [service.kv]
//! command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}"]
//! [[fault]]
//! kind = "kill"
//! target = "db"
//! every = "2s"
//! "#;
//! let err = shakedown_spec::parse(text, "doc.toml").unwrap_err();
//! assert!(err.to_string().starts_with("doc.toml:7:10: fault target `db` is not a defined service"));
//! ```

mod error;
mod fault;
mod include;
pub mod limits;
mod matrix;
mod model;
mod read;
mod resume;
mod state;
mod step;
mod template;
mod validate;
mod values;

pub use error::{Key, LoadError, SpecError, SpecErrors};
pub use fault::*;
pub use include::Segment;
pub use matrix::{cell_name, Cell, Guard};
pub use model::*;
pub use read::{open_regular, read_file, read_text_file, utf8_text, ReadError};
pub use resume::{
    parse_size_range, CorruptExpect, CorruptHow, CorruptSpec, Count, DatasetKind, DatasetSpec, ResumeAt, ResumeSpec,
};
pub use state::{FieldEditSpec, StateSource};
pub use step::{StepSpec, StepVerb, TriggerSpec, STEP_VERBS};
pub use template::{Part, Template, TemplateError, Var, PLACEHOLDERS};
pub use validate::{signal_number, MODELS};
pub use values::{Dur, Names, Pattern, ResultParser, ResultSource, ResultSpec, ValueTemplate};

use std::path::Path;
use std::sync::Arc;
pub use toml::Spanned;

/// Parses and validates a scenario; `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> Result<Scenario, SpecErrors> {
    parse_segments(text, origin, Vec::new())
}

/// Parses a scenario file's text, with its `include`s read relative to
/// `dir`; returns the scenario and the combined text a run directory keeps.
pub fn parse_file(text: &str, origin: &str, dir: &Path) -> Result<(Scenario, String), SpecErrors> {
    let (combined, segments) = include::expand(text, origin, dir)?;
    let scenario = parse_segments(&combined, origin, segments)?;
    Ok((scenario, combined))
}

fn parse_segments(text: &str, origin: &str, segments: Vec<Segment>) -> Result<Scenario, SpecErrors> {
    let fail =
        |errors| SpecErrors { origin: origin.to_string(), text: Arc::from(text), errors, segments: segments.clone() };
    let mut scenario: Scenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        fail(vec![SpecError::new(span, toml_message(&e))])
    })?;
    scenario.add_version_dimension();
    let errors = validate::validate(&scenario);
    if errors.is_empty() {
        return Ok(scenario);
    }
    // Parsed again only now, for the spans of the keys that errors name.
    let doc = toml::de::DeTable::parse(text).ok();
    let doc = doc.as_ref().map(|d| d.get_ref());
    Err(fail(errors.into_iter().map(|e| e.locate(text, doc)).collect()))
}

/// Reads, parses and validates a scenario file: a regular file of at most
/// [`limits::MAX_SCENARIO_BYTES`] of UTF-8 text.
pub fn load(path: &Path) -> Result<Scenario, LoadError> {
    let text = read_text_file(path, limits::MAX_SCENARIO_BYTES)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(parse_file(&text, &path.display().to_string(), dir)?.0)
}

impl Scenario {
    /// Validates a scenario built in code; errors carry no locations.
    pub fn validate(&self) -> Result<(), SpecErrors> {
        let errors = validate::validate(self);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors { origin: "<code>".into(), text: Arc::from(""), errors, segments: Vec::new() })
        }
    }
}

/// The parser's message, with the wording made to say what was expected.
fn toml_message(e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    msg.to_string()
}
