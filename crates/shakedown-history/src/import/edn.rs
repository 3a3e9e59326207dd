//! A small EDN reader for the subset that Jepsen and Porcupine histories use.
//!
//! Supported: maps, vectors, lists, sets `#{}`, keywords, symbols, strings with
//! escapes, integers (`N` suffix or beyond `i64` become [`Edn::BigInt`]),
//! floats (`M` suffix read as a float), `nil`, `true`/`false`, `;` comments,
//! `#_` discards, and commas as whitespace. Characters and tagged literals are
//! refused with an error rather than guessed at.

use serde_json::Value;

/// Nesting beyond this is refused, so hostile input cannot overflow the stack.
pub const MAX_DEPTH: usize = 128;

/// One EDN value. Map entries keep their order; duplicates are kept too.
#[derive(Debug, Clone, PartialEq)]
pub enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    /// An integer that does not fit `i64`, as its decimal text (sign included, suffix dropped).
    BigInt(String),
    Float(f64),
    Str(String),
    /// Without the leading colon.
    Keyword(String),
    Symbol(String),
    Vector(Vec<Edn>),
    List(Vec<Edn>),
    Set(Vec<Edn>),
    Map(Vec<(Edn, Edn)>),
}

/// Why EDN text could not be read, with the 1-based line where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct EdnError {
    pub line: usize,
    pub message: String,
}

impl Edn {
    /// JSON for this value: keywords and symbols become strings without the
    /// colon, sets and lists become arrays, nil becomes null, big integers
    /// become strings and non-finite floats null.
    pub fn to_json(&self) -> Value {
        match self {
            Edn::Nil => Value::Null,
            Edn::Bool(b) => Value::Bool(*b),
            Edn::Int(n) => Value::from(*n),
            Edn::BigInt(s) | Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) => Value::String(s.clone()),
            Edn::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
            Edn::Vector(items) | Edn::List(items) | Edn::Set(items) => {
                Value::Array(items.iter().map(Edn::to_json).collect())
            }
            Edn::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.to_key(), v.to_json())).collect()),
        }
    }

    /// A JSON object key for this value; later duplicates win.
    fn to_key(&self) -> String {
        match self {
            Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s) | Edn::BigInt(s) => s.clone(),
            Edn::Nil => "nil".to_string(),
            other => other.to_json().to_string(),
        }
    }

    /// The value under keyword `key` when this is a map (the last one if repeated).
    pub fn get(&self, key: &str) -> Option<&Edn> {
        let Edn::Map(entries) = self else { return None };
        entries.iter().rev().find(|(k, _)| matches!(k, Edn::Keyword(name) if name == key)).map(|(_, v)| v)
    }

    /// A short name of this value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Edn::Nil => "nil",
            Edn::Bool(_) => "a boolean",
            Edn::Int(_) | Edn::BigInt(_) => "an integer",
            Edn::Float(_) => "a float",
            Edn::Str(_) => "a string",
            Edn::Keyword(_) => "a keyword",
            Edn::Symbol(_) => "a symbol",
            Edn::Vector(_) => "a vector",
            Edn::List(_) => "a list",
            Edn::Set(_) => "a set",
            Edn::Map(_) => "a map",
        }
    }
}

/// Reads every top-level form of `text`, each with the line it starts on.
pub fn parse_all(text: &str) -> Result<Vec<(usize, Edn)>, EdnError> {
    let mut reader = Reader::new(text);
    let mut forms = Vec::new();
    while let Some(form) = reader.next_form()? {
        forms.push(form);
    }
    Ok(forms)
}

/// Reads exactly one form from `text` (a single line's value, say).
pub fn parse_one(text: &str) -> Result<Edn, EdnError> {
    let mut reader = Reader::new(text);
    let Some((_, form)) = reader.next_form()? else {
        return Err(reader.error("expected an EDN value, found the end of the input"));
    };
    reader.skip_ws()?;
    if reader.peek().is_some() {
        return Err(reader.error("expected one EDN value, found more text after it"));
    }
    Ok(form)
}

/// A cursor over EDN text that tracks the line.
#[derive(Debug)]
pub struct Reader<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    /// Forms being read right now, discarded ones included; bounds the recursion.
    depth: usize,
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a str) -> Reader<'a> {
        Reader { src, pos: 0, line: 1, depth: 0 }
    }

    pub fn line(&self) -> usize {
        self.line
    }

    pub fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    pub fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    pub fn error(&self, message: impl Into<String>) -> EdnError {
        EdnError { line: self.line, message: message.into() }
    }

    /// Skips whitespace, commas, comments and `#_` discarded forms.
    pub fn skip_ws(&mut self) -> Result<(), EdnError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == ',' => {
                    self.bump();
                }
                Some(';') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.bump();
                    }
                }
                Some('#') if self.src[self.pos..].starts_with("#_") => {
                    self.pos += 2;
                    self.read_form()?;
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next top-level form and its starting line, or `None` at the end.
    pub fn next_form(&mut self) -> Result<Option<(usize, Edn)>, EdnError> {
        self.skip_ws()?;
        if self.peek().is_none() {
            return Ok(None);
        }
        let line = self.line;
        Ok(Some((line, self.read_form()?)))
    }

    fn read_form(&mut self) -> Result<Edn, EdnError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(format!("expected EDN nested at most {MAX_DEPTH} deep")));
        }
        self.depth += 1;
        let form = self.read_form_inner();
        self.depth -= 1;
        form
    }

    fn read_form_inner(&mut self) -> Result<Edn, EdnError> {
        self.skip_ws()?;
        let Some(c) = self.peek() else {
            return Err(self.error("expected an EDN value, found the end of the input"));
        };
        match c {
            '[' => self.read_seq(']').map(Edn::Vector),
            '(' => self.read_seq(')').map(Edn::List),
            '{' => self.read_map(),
            '#' => self.read_dispatch(),
            '"' => self.read_string().map(Edn::Str),
            ':' => {
                self.bump();
                let token = self.read_token();
                if token.is_empty() {
                    return Err(self.error("expected a keyword name after ':'"));
                }
                Ok(Edn::Keyword(token.to_string()))
            }
            ']' | ')' | '}' => Err(self.error(format!("expected an EDN value, found an unmatched '{c}'"))),
            '\\' => Err(self.error("expected an EDN value (character literals are not supported)")),
            _ => {
                let token = self.read_token();
                if token.is_empty() {
                    self.bump();
                    return Err(self.error(format!("expected an EDN value, found {c:?}")));
                }
                atom(token).map_err(|m| self.error(m))
            }
        }
    }

    fn read_dispatch(&mut self) -> Result<Edn, EdnError> {
        self.bump();
        if self.peek() == Some('{') {
            return self.read_seq('}').map(Edn::Set);
        }
        Err(self.error("expected a set '#{' (tagged literals are not supported)"))
    }

    /// Reads an opening bracket, then forms up to `close`.
    fn read_seq(&mut self, close: char) -> Result<Vec<Edn>, EdnError> {
        let start = self.line;
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_ws()?;
            match self.peek() {
                None => {
                    let message = format!(
                        "expected '{close}' closing the one opened on line {start}, found the end of the input"
                    );
                    return Err(self.error(message));
                }
                Some(c) if c == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => items.push(self.read_form()?),
            }
        }
    }

    fn read_map(&mut self) -> Result<Edn, EdnError> {
        let items = self.read_seq('}')?;
        if items.len() % 2 != 0 {
            return Err(self.error("expected a map with an even number of forms"));
        }
        let mut entries = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        Ok(Edn::Map(entries))
    }

    fn read_string(&mut self) -> Result<String, EdnError> {
        let start = self.line;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                // Named at its opening quote: an unclosed string swallows the rest of the input.
                None => {
                    return Err(EdnError {
                        line: start,
                        message: format!(
                            "expected a closing '\"' for the string opened here, found the end of the input at line {}",
                            self.line
                        ),
                    })
                }
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.read_escape()?),
                Some(c) => out.push(c),
            }
        }
    }

    fn read_escape(&mut self) -> Result<char, EdnError> {
        let c = self.bump().ok_or_else(|| self.error("expected an escape, found the end of the input"))?;
        Ok(match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'b' => '\u{8}',
            'f' => '\u{c}',
            '"' | '\\' | '/' => c,
            'u' => {
                let mut code = 0u32;
                for _ in 0..4 {
                    let d = self.bump().and_then(|h| h.to_digit(16));
                    code = code * 16 + d.ok_or_else(|| self.error("expected four hex digits after \\u"))?;
                }
                char::from_u32(code).ok_or_else(|| self.error("expected a unicode scalar after \\u"))?
            }
            other => return Err(self.error(format!("expected a known string escape, found \\{other}"))),
        })
    }

    /// Reads up to the next delimiter.
    fn read_token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_whitespace() || matches!(c, ',' | '[' | ']' | '(' | ')' | '{' | '}' | '"' | ';') {
                break;
            }
            self.bump();
        }
        &self.src[start..self.pos]
    }
}

/// Classifies a bare token: number, nil, boolean or symbol.
fn atom(token: &str) -> Result<Edn, String> {
    let bytes = token.as_bytes();
    let numeric =
        bytes[0].is_ascii_digit() || (matches!(bytes[0], b'+' | b'-') && bytes.get(1).is_some_and(u8::is_ascii_digit));
    if numeric {
        return number(token);
    }
    Ok(match token {
        "nil" => Edn::Nil,
        "true" => Edn::Bool(true),
        "false" => Edn::Bool(false),
        _ => Edn::Symbol(token.to_string()),
    })
}

fn number(token: &str) -> Result<Edn, String> {
    let invalid = || format!("expected a number, found {token:?}");
    if let Some(digits) = token.strip_suffix('M') {
        return float(digits).ok_or_else(invalid);
    }
    let (digits, big) = match token.strip_suffix('N') {
        Some(d) => (d, true),
        None => (token, false),
    };
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(match digits.parse::<i64>() {
            Ok(n) if !big => Edn::Int(n),
            _ => Edn::BigInt(digits.strip_prefix('+').unwrap_or(digits).to_string()),
        });
    }
    if big {
        return Err(invalid());
    }
    float(digits).ok_or_else(invalid)
}

/// Parses decimal float text; refuses Rust-only spellings like "inf" or "nan".
fn float(text: &str) -> Option<Edn> {
    let ok = text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if !ok {
        return None;
    }
    text.parse::<f64>().ok().map(Edn::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(text: &str, expected: Value) {
        let edn = parse_one(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(edn.to_json(), expected, "{text:?}");
    }

    #[test]
    fn reads_the_subset() {
        check("nil", json!(null));
        check("true", json!(true));
        check("-42", json!(-42));
        check("+7", json!(7));
        check("1.5", json!(1.5));
        check("2e3", json!(2000.0));
        check("1.25M", json!(1.25));
        check("12N", json!("12"));
        check("99999999999999999999", json!("99999999999999999999"));
        check(":timed-out", json!("timed-out"));
        check("foo/bar", json!("foo/bar"));
        check(r#""a\"b\\c\n\u00e9""#, json!("a\"b\\c\né"));
        check("[3 0]", json!([3, 0]));
        check("(1, 2)", json!([1, 2]));
        check("#{:a}", json!(["a"]));
        check("{:process 0, :type :invoke, :value nil}", json!({"process": 0, "type": "invoke", "value": null}));
        check("[1 #_ 2 ; comment\n 3]", json!([1, 3]));
        check("{1 2, nil 3}", json!({"1": 2, "nil": 3}));
    }

    #[test]
    fn rejects_bad_edn_naming_the_line() {
        let cases = [
            ("[1 2", "line 1: expected ']'"),
            ("\n\n{:a}", "line 3: expected a map with an even number"),
            ("\"abc", "expected a closing"),
            (
                "[1\n \"abc\n\n",
                "line 2: expected a closing '\"' for the string opened here, found the end of the input at line 4",
            ),
            ("{:a\n[1 2", "line 2: expected ']' closing the one opened on line 2"),
            (r#""\q""#, "expected a known string escape"),
            ("1.2.3", "expected a number"),
            ("12abc", "expected a number"),
            ("\\a", "character literals"),
            ("#inst \"2020\"", "tagged literals"),
            (":", "keyword name"),
            ("]", "unmatched"),
            ("1 2", "more text"),
            ("", "end of the input"),
        ];
        for (text, want) in cases {
            let err = parse_one(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 5);
        assert!(parse_one(&deep).unwrap_err().message.contains("nested"));
        let discards = "#_".repeat(MAX_DEPTH * 4) + "1";
        assert!(parse_one(&discards).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn reports_form_lines() {
        let forms = parse_all("{:a 1}\n\n{:b 2} {:c 3}\n").unwrap();
        let lines: Vec<usize> = forms.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [1, 3, 3]);
        assert_eq!(forms[1].1.get("b"), Some(&Edn::Int(2)));
    }
}
