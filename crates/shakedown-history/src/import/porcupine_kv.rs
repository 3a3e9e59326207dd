//! Porcupine's key-value histories: one EDN map per line,
//! `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`.
//!
//! Each op's value is `{"key": K, "value": V}`, V null for nil; a completion
//! with a nil value keeps the invocation's, except a `get`, which read nil.

use super::edn::{parse_all, Edn};
use super::jepsen_edn::type_and_f;
use super::{ImportError, Record};
use serde_json::{json, Value};

pub(crate) fn parse(text: &str) -> Result<Vec<Record>, ImportError> {
    parse_all(text)?.into_iter().map(|(line, form)| parse_op(line, &form)).collect()
}

fn parse_op(line: usize, form: &Edn) -> Result<Record, ImportError> {
    let err = |message: String| ImportError::new(line, message);
    if !matches!(form, Edn::Map(_)) {
        return Err(err(format!("expected an op map, found {}", form.kind())));
    }
    let process = match form.get("process") {
        Some(Edn::Int(p)) => {
            u64::try_from(*p).map_err(|_| err(format!("expected a non-negative integer :process, found {p}")))?
        }
        Some(Edn::BigInt(p)) => return Err(err(format!("expected a process that fits 64 bits, found {p}"))),
        Some(other) => return Err(err(format!("expected an integer :process, found {}", other.kind()))),
        None => return Err(err("expected a :process entry".to_string())),
    };
    let (completion, f) = type_and_f(form).map_err(err)?;
    let key = form.get("key").ok_or_else(|| err("expected a :key entry".to_string()))?.to_json();
    let value = form.get("value").map_or(Value::Null, Edn::to_json);
    let keeps_invoke_value = completion.is_some() && value.is_null() && f != "get" && f != "read";
    let value = (!keeps_invoke_value).then(|| json!({"key": key, "value": value}));
    Ok(Record { line, process, completion, f, value, error: None, time_ns: None })
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format};
    use crate::OpType;
    use serde_json::json;

    const SAMPLE: &str = r#"{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
{:process 1, :type :invoke, :f :get, :key "7", :value nil}
{:process 0, :type :ok, :f :append, :key "0", :value nil}
{:process 1, :type :ok, :f :get, :key "7", :value ""}
{:process 1, :type :invoke, :f :get, :key "6", :value nil}
{:process 1, :type :ok, :f :get, :key "6", :value nil}
"#;

    #[test]
    fn imports_key_value_ops() {
        let h = import(SAMPLE, Format::PorcupineKv, "t").unwrap();
        h.validate().unwrap();
        let ops = h.ops();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].invoke_value, json!({"key": "0", "value": "x 0 0 y"}));
        assert_eq!(ops[0].value(), &json!({"key": "0", "value": "x 0 0 y"}), "nil completion keeps the invoke value");
        assert_eq!(ops[1].invoke_value, json!({"key": "7", "value": null}));
        assert_eq!((ops[1].op_type(), ops[1].value()), (OpType::Ok, &json!({"key": "7", "value": ""})));
        assert_eq!(ops[2].value(), &json!({"key": "6", "value": null}), "a get that read nil");
    }

    #[test]
    fn rejects_bad_ops_naming_the_line() {
        let cases = [
            (r#"{:process 0, :type :invoke, :f :get, :key "0""#, "line 1: expected '}'"),
            ("\n{:process :x, :type :invoke, :f :get, :key \"0\"}", "line 2: expected an integer :process"),
            (r#"{:process -1, :type :invoke, :f :get, :key "0"}"#, "line 1: expected a non-negative integer"),
            (r#"{:process 0, :type :done, :f :get, :key "0"}"#, "line 1: expected :type :invoke"),
            (r#"{:process 0, :type :ok, :f :get, :key "0"}"#, "line 1: completion for process 0 has no pending"),
            (r#"{:process 0, :type :invoke, :f :get}"#, "line 1: expected a :key"),
            ("[1]", "line 1: expected an op map"),
            (
                "{:process 99999999999999999999, :type :invoke, :f :get, :key \"0\"}",
                "line 1: expected a process that fits 64 bits, found 99999999999999999999",
            ),
        ];
        for (text, want) in cases {
            let err = import(text, Format::PorcupineKv, "t").expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }
}
