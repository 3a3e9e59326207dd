//! A small JSON Schema (draft 2020-12) validator for `examples/migrate/state.schema.json`: the keywords it uses, and a panic on any other.

use serde_json::{Map, Value};

const SCHEMA: &str = include_str!("../../../../examples/migrate/state.schema.json");

/// Keywords that only annotate.
const ANNOTATIONS: [&str; 4] = ["$schema", "title", "description", "$defs"];

fn schema() -> Value {
    serde_json::from_str(SCHEMA).expect("the schema is JSON")
}

/// Ok, or the JSON path of the first violation and why.
pub fn validate(instance: &Value) -> Result<(), String> {
    let root = schema();
    check(&root, &root, instance, "$")
}

pub fn assert_valid(instance: &Value) {
    if let Err(e) = validate(instance) {
        panic!("the schema rejects a real state file: {e}\n{instance:#}");
    }
}

fn check(root: &Value, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Some(keywords) = schema.as_object() else {
        return match schema.as_bool() {
            Some(true) => Ok(()),
            _ => Err(format!("{path}: the schema {schema} is false or not a schema")),
        };
    };
    for (keyword, arg) in keywords {
        check_keyword(root, keywords, keyword, arg, value, path)?;
    }
    Ok(())
}

fn check_keyword(
    root: &Value,
    schema: &Map<String, Value>,
    keyword: &str,
    arg: &Value,
    value: &Value,
    path: &str,
) -> Result<(), String> {
    let fail = |why: String| Err(format!("{path}: {why}"));
    match keyword {
        k if ANNOTATIONS.contains(&k) => Ok(()),
        "type" => {
            let types: Vec<&str> = match arg {
                Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                other => vec![other.as_str().expect("type name")],
            };
            if types.iter().any(|t| has_type(value, t)) {
                Ok(())
            } else {
                fail(format!("{value} is not {types:?}"))
            }
        }
        "const" if value != arg => fail(format!("{value} is not {arg}")),
        "enum" if !arg.as_array().expect("enum array").contains(value) => fail(format!("{value} is not one of {arg}")),
        "const" | "enum" => Ok(()),
        "minimum" => match value.as_f64() {
            Some(n) if n < arg.as_f64().expect("number") => fail(format!("{n} < {arg}")),
            _ => Ok(()),
        },
        "minLength" => match value.as_str() {
            Some(text) if (text.chars().count() as u64) < arg.as_u64().expect("length") => fail("too short".into()),
            _ => Ok(()),
        },
        "minItems" | "maxItems" => match value.as_array() {
            Some(items) => {
                let (n, limit) = (items.len() as u64, arg.as_u64().expect("count"));
                if (keyword == "minItems" && n < limit) || (keyword == "maxItems" && n > limit) {
                    fail(format!("{n} items breaks {keyword} {limit}"))
                } else {
                    Ok(())
                }
            }
            None => Ok(()),
        },
        "required" => match value.as_object() {
            Some(object) => {
                match arg.as_array().expect("names").iter().find(|n| !object.contains_key(n.as_str().unwrap())) {
                    Some(name) => fail(format!("missing {name}")),
                    None => Ok(()),
                }
            }
            None => Ok(()),
        },
        "properties" => match value.as_object() {
            Some(object) => {
                let properties = arg.as_object().expect("properties");
                for (name, sub) in properties {
                    if let Some(field) = object.get(name) {
                        check(root, sub, field, &format!("{path}.{name}"))?;
                    }
                }
                Ok(())
            }
            None => Ok(()),
        },
        "additionalProperties" => match value.as_object() {
            Some(object) => {
                let known = schema.get("properties").and_then(Value::as_object);
                for (name, field) in object {
                    if !known.is_some_and(|k| k.contains_key(name)) {
                        check(root, arg, field, &format!("{path}.{name}"))?;
                    }
                }
                Ok(())
            }
            None => Ok(()),
        },
        "items" => match value.as_array() {
            Some(items) => {
                items.iter().enumerate().try_for_each(|(idx, item)| check(root, arg, item, &format!("{path}[{idx}]")))
            }
            None => Ok(()),
        },
        "$ref" => {
            let target = arg.as_str().and_then(|r| r.strip_prefix("#/")).expect("a local $ref");
            let sub = target.split('/').fold(root, |node, part| &node[part]);
            assert!(!sub.is_null(), "dangling $ref {arg}");
            check(root, sub, value, path)
        }
        "allOf" => arg.as_array().expect("allOf array").iter().try_for_each(|sub| check(root, sub, value, path)),
        "not" if check(root, arg, value, path).is_ok() => fail(format!("{value} matches the `not` schema {arg}")),
        "not" => Ok(()),
        "if" => {
            let branch = if check(root, arg, value, path).is_ok() { "then" } else { "else" };
            schema.get(branch).map_or(Ok(()), |sub| check(root, sub, value, path))
        }
        "then" | "else" => Ok(()),
        "pattern" => match value.as_str() {
            Some(text) if !pattern_matches(arg.as_str().expect("pattern"), text) => {
                fail(format!("{text:?} does not match {arg}"))
            }
            _ => Ok(()),
        },
        other => panic!("the test validator does not know the keyword {other:?}; teach it"),
    }
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        other => panic!("unknown type {other}"),
    }
}

/// The schema's one regex, hand-translated: an absolute path, or a `.` or `..` component.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    assert_eq!(pattern, r"(^/)|(^|/)\.\.?(/|$)", "the test validator knows only the relativePath pattern");
    text.starts_with('/') || text.split('/').any(|part| part == "." || part == "..")
}

#[test]
fn the_validator_is_itself_checked() {
    assert!(validate(&Value::Null).unwrap_err().starts_with("$: "));
    let state = serde_json::json!({
        "version": 1, "kind": "tree", "source": "/s", "dest": "/d", "phase": "copy", "batch_size": 2,
        "total": 1, "done": 0, "batches": [{"first": "a/b", "last": "a/b", "count": 1}], "next_batch": 0,
        "in_flight": 0, "complete": false
    });
    assert_eq!(validate(&state), Ok(()));
    let mut bad = state.clone();
    bad["batches"][0]["first"] = "a/./b".into();
    assert!(validate(&bad).unwrap_err().starts_with("$.batches[0].first: "), "{:?}", validate(&bad));
    let mut bad = state.clone();
    bad["batches"][0]["last"] = "/abs".into();
    assert!(validate(&bad).is_err());
    let mut bad = state;
    bad["kind"] = "sqlite".into();
    assert!(validate(&bad).unwrap_err().contains("$.batches[0]"), "{:?}", validate(&bad));
}
