//! Jepsen EDN histories: op maps (`:index :time :type :process :f :value`), one
//! per line or all in one vector. Ops of non-integer processes (the nemesis) are skipped.

use super::edn::{Edn, Reader};
use super::jepsen_log::value_and_error;
use super::{op_type, ImportError, OpType, Record};

pub(crate) fn parse(text: &str) -> Result<Vec<Record>, ImportError> {
    let mut records = Vec::new();
    for (line, form) in forms(text)? {
        if let Some(r) = parse_op(line, &form)? {
            records.push(r);
        }
    }
    Ok(records)
}

/// The op maps with their lines: the items of a single top-level vector, or every top-level form.
fn forms(text: &str) -> Result<Vec<(usize, Edn)>, ImportError> {
    let mut reader = Reader::new(text);
    reader.skip_ws()?;
    if reader.peek() != Some('[') {
        return Ok(super::edn::parse_all(text)?);
    }
    reader.bump();
    let mut items = Vec::new();
    loop {
        reader.skip_ws()?;
        match reader.peek() {
            None => return Err(ImportError::new(reader.line(), "expected ']' closing the history vector")),
            Some(']') => break,
            Some(_) => items.extend(reader.next_form()?),
        }
    }
    reader.bump();
    if let Some((line, _)) = reader.next_form()? {
        return Err(ImportError::new(line, "expected nothing after the history vector"));
    }
    Ok(items)
}

fn parse_op(line: usize, form: &Edn) -> Result<Option<Record>, ImportError> {
    let err = |message: String| ImportError::new(line, message);
    if !matches!(form, Edn::Map(_)) {
        return Err(err(format!("expected an op map, found {}", form.kind())));
    }
    let process = match form.get("process") {
        Some(Edn::Int(p)) => {
            u64::try_from(*p).map_err(|_| err(format!("expected a non-negative process, found {p}")))?
        }
        Some(Edn::BigInt(p)) => return Err(err(format!("expected a process that fits 64 bits, found {p}"))),
        Some(_) => return Ok(None),
        None => return Err(err("expected a :process entry".to_string())),
    };
    let (completion, f) = type_and_f(form).map_err(err)?;
    let failed = completion.is_some_and(|t| t != OpType::Ok);
    let (value, mut error) = value_and_error(failed, form.get("value").cloned().unwrap_or(Edn::Nil));
    if let Some(e) = form.get("error") {
        error = Some(match e.to_json() {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    }
    let time_ns = match form.get("time") {
        Some(Edn::Int(t)) => u64::try_from(*t).ok(),
        _ => None,
    };
    Ok(Some(Record { line, process, completion, f, value, error, time_ns }))
}

/// The `:type` and `:f` of an op map, which both formats require.
pub(crate) fn type_and_f(form: &Edn) -> Result<(Option<OpType>, String), String> {
    let completion = match form.get("type") {
        Some(Edn::Keyword(t)) => {
            op_type(t).ok_or_else(|| format!("expected :type :invoke, :ok, :fail or :info, found :{t}"))?
        }
        Some(other) => return Err(format!("expected a keyword :type, found {}", other.kind())),
        None => return Err("expected a :type entry".to_string()),
    };
    let f = match form.get("f") {
        Some(Edn::Keyword(f) | Edn::Str(f) | Edn::Symbol(f)) => f.clone(),
        Some(other) => return Err(format!("expected a keyword :f, found {}", other.kind())),
        None => return Err("expected an :f entry".to_string()),
    };
    Ok((completion, f))
}

#[cfg(test)]
mod tests {
    use super::super::{import, Format};
    use crate::{OpType, ProcessId};
    use serde_json::json;

    #[test]
    fn imports_a_vector_with_times_and_skips_the_nemesis() {
        let text = r#"[{:type :invoke, :f :write, :value 1, :process 0, :time 100, :index 0}
 {:type :info, :f :start, :value nil, :process :nemesis, :time 150}
 {:type :invoke, :f :read, :value nil, :process 1, :time 200}
 {:type :ok, :f :write, :value 1, :process 0, :time 300}
 {:type :info, :f :read, :value nil, :process 1, :time 400, :error "timeout"}
 {:type :invoke, :f :read, :value nil, :process 1, :time 500}
 {:type :ok, :f :read, :value 1, :process 1, :time 600}]"#;
        let h = import(text, Format::JepsenEdn, "t").unwrap();
        h.validate().unwrap();
        let ops = h.ops();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].invoke_time_ns, 100);
        assert_eq!(ops[1].completion.as_ref().unwrap().error.as_deref(), Some("timeout"));
        assert_eq!(ops[1].value(), &json!(null), "an info read keeps null");
        assert_eq!((ops[2].process, ops[2].op_type(), ops[2].value()), (ProcessId(2), OpType::Ok, &json!(1)));
    }

    #[test]
    fn imports_one_map_per_line_with_line_times_when_time_goes_backwards() {
        let text = "{:type :invoke, :f :add, :value 5, :process 3, :time 10}\n\
                    {:type :fail, :f :add, :value :refused, :process 3, :time 5}\n";
        let h = import(text, Format::JepsenEdn, "t").unwrap();
        let op = &h.ops()[0];
        assert_eq!((op.invoke_time_ns, op.completion.as_ref().unwrap().time_ns), (1000, 2000));
        assert_eq!((op.op_type(), op.value()), (OpType::Fail, &json!(5)));
        assert_eq!(op.completion.as_ref().unwrap().error.as_deref(), Some("refused"));
    }

    #[test]
    fn rejects_bad_ops_naming_the_line() {
        let cases = [
            ("{:type :invoke, :f :read, :process 0", "line 1: expected '}'"),
            ("{:type :invoke :f :read :process 0}\n[1 2]", "line 2: expected an op map"),
            ("{:type :start, :f :read, :process 0}", "line 1: expected :type :invoke"),
            ("{:type :invoke, :f 3, :process 0}", "line 1: expected a keyword :f"),
            ("{:type :invoke, :f :read}", "line 1: expected a :process"),
            ("{:type :invoke, :f :read, :process -2}", "line 1: expected a non-negative process"),
            ("\n{:type :ok, :f :read, :process 0}", "line 2: completion for process 0 has no pending"),
            ("[{:type :invoke, :f :read, :process 0}", "expected ']'"),
            ("[{:type :invoke, :f :read, :process 0}]\n{}", "line 2: expected nothing after"),
        ];
        for (text, want) in cases {
            let err = import(text, Format::JepsenEdn, "t").expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }
}
