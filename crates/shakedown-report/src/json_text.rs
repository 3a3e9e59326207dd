//! JSON laid out for people: one key per line, short arrays of scalars packed.

use serde_json::Value;

/// Lines of packed scalars stay under this many characters.
const WIDTH: usize = 100;

/// Pretty JSON that spends lines on structure, not on scalars: `serde_json`'s
/// pretty printer puts each of a thousand lost elements on its own line,
/// which buries the counterexample past any bounded excerpt. The output is
/// still valid JSON.
pub(crate) fn json_lines(value: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    emit(value, 0, String::new(), "", &mut lines);
    lines
}

pub(crate) fn json_text(value: &Value) -> String {
    json_lines(value).join("\n")
}

/// Emits `value` at `indent`, preceded by `head` (a key) and followed by `tail` (a comma).
fn emit(value: &Value, indent: usize, head: String, tail: &str, lines: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    if let Some(text) = inline(value) {
        let line = format!("{pad}{head}{text}{tail}");
        if line.chars().count() <= WIDTH {
            lines.push(line);
            return;
        }
    }
    match value {
        Value::Array(items) if items.iter().all(is_scalar) => {
            lines.push(format!("{pad}{head}["));
            let texts: Vec<String> = items.iter().map(Value::to_string).collect();
            pack(&texts, indent + 2, lines);
            lines.push(format!("{pad}]{tail}"));
        }
        Value::Array(items) => {
            lines.push(format!("{pad}{head}["));
            for (i, item) in items.iter().enumerate() {
                emit(item, indent + 2, String::new(), comma(i, items.len()), lines);
            }
            lines.push(format!("{pad}]{tail}"));
        }
        Value::Object(map) => {
            lines.push(format!("{pad}{head}{{"));
            for (i, (key, item)) in map.iter().enumerate() {
                emit(item, indent + 2, format!("{}: ", Value::from(key.as_str())), comma(i, map.len()), lines);
            }
            lines.push(format!("{pad}}}{tail}"));
        }
        scalar => lines.push(format!("{pad}{head}{scalar}{tail}")),
    }
}

/// The one-line form of a scalar or of a container holding only scalars.
fn inline(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) if items.iter().all(is_scalar) => {
            let texts: Vec<String> = items.iter().map(Value::to_string).collect();
            Some(format!("[{}]", texts.join(", ")))
        }
        Value::Object(map) if map.values().all(is_scalar) => {
            let texts: Vec<String> = map.iter().map(|(k, v)| format!("{}: {v}", Value::from(k.as_str()))).collect();
            Some(format!("{{{}}}", texts.join(", ")))
        }
        Value::Array(_) | Value::Object(_) => None,
        scalar => Some(scalar.to_string()),
    }
}

/// Packs scalar texts into lines of at most `WIDTH` characters, comma-separated.
fn pack(texts: &[String], indent: usize, lines: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    let mut line = String::new();
    for (i, text) in texts.iter().enumerate() {
        let piece = format!("{text}{}", comma(i, texts.len()));
        let fits = line.is_empty() || indent + line.chars().count() + 1 + piece.chars().count() <= WIDTH;
        if !fits {
            lines.push(format!("{pad}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    if !line.is_empty() {
        lines.push(format!("{pad}{line}"));
    }
}

fn comma(i: usize, len: usize) -> &'static str {
    if i + 1 < len {
        ","
    } else {
        ""
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packs_scalar_arrays_and_stays_valid_json() {
        let long = "x".repeat(90);
        let v = json!({"lost": [1, 2, 3], "none": [], "empty": {}, "read": {"actor": "alice", "size": 2},
            "mixed": [1, [2]], "wide": {"text": long, "n": 1}});
        let text = json_text(&v);
        let want = format!(
            r#"{{
  "empty": {{}},
  "lost": [1, 2, 3],
  "mixed": [
    1,
    [2]
  ],
  "none": [],
  "read": {{"actor": "alice", "size": 2}},
  "wide": {{
    "n": 1,
    "text": "{long}"
  }}
}}"#
        );
        assert_eq!(text, want);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn wraps_long_arrays_within_the_width() {
        let v = json!({"lost": (0..100).collect::<Vec<_>>()});
        let lines = json_lines(&v);
        assert!(lines.iter().all(|l| l.chars().count() <= WIDTH), "{lines:#?}");
        assert_eq!(lines[1], r#"  "lost": ["#);
        assert!(lines[2].starts_with("    0, 1, 2, "), "{}", lines[2]);
        assert!(lines.len() < 10, "{lines:#?}");
        assert_eq!(serde_json::from_str::<Value>(&lines.join("\n")).unwrap(), v);
        assert_eq!(json_text(&json!("a\nb")), r#""a\nb""#);
        assert_eq!(json_text(&json!([])), "[]");
    }
}
