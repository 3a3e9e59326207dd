//! `examples/migrate/state.schema.json`, the schema the resume example holds
//! the migrate testbed's state files to, checked with the jsonschema crate.

use serde_json::Value;

const SCHEMA: &str = include_str!("../../../../../examples/migrate/state.schema.json");

/// Ok, or the JSON path of the first violation and why.
pub fn validate(instance: &Value) -> Result<(), String> {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema");
    validator.validate(instance).map_err(|e| format!("{}: {e}", e.instance_path()))
}

pub fn assert_valid(instance: &Value) {
    if let Err(e) = validate(instance) {
        panic!("the state file breaks the schema at {e}\n{instance:#}");
    }
}
