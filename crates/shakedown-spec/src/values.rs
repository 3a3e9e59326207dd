//! Small value types read from scenario files: durations, regex patterns, value templates.

use crate::limits::MAX_DURATION;
use crate::template::{Template, Var};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::ops::Range;
use std::time::Duration;
use toml::Spanned;

/// A duration written in humantime (`"250ms"`, `"2s"`, `"1m 30s"`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Dur {
        Dur(d)
    }
}

impl Dur {
    /// Parses humantime text of at most [`MAX_DURATION`]; the error reads
    /// after "failed to" in no context, as "invalid duration ...".
    pub fn parse(text: &str) -> Result<Dur, String> {
        let d = humantime::parse_duration(text.trim()).map_err(|e| {
            format!("invalid duration {text:?} ({e}); expected a duration like \"500ms\", \"2s\" or \"1m 30s\"")
        })?;
        if d > MAX_DURATION {
            return Err(format!(
                "duration {text:?} is above the maximum of {} for any duration in a scenario",
                crate::limits::describe(MAX_DURATION)
            ));
        }
        Ok(Dur(d))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dur, D::Error> {
        let text = String::deserialize(d)?;
        Dur::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A regular expression, compiled when the scenario is read.
#[derive(Clone)]
pub struct Pattern {
    pub regex: regex::Regex,
    pub span: Range<usize>,
}

impl Pattern {
    pub fn new(re: &str) -> Result<Pattern, regex::Error> {
        Ok(Pattern { regex: regex::Regex::new(re)?, span: 0..0 })
    }

    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let spanned = Spanned::<String>::deserialize(d)?;
        let regex = regex::Regex::new(spanned.get_ref()).map_err(|e| {
            serde::de::Error::custom(format!("invalid regular expression {:?}: {e}", spanned.get_ref()))
        })?;
        Ok(Pattern { regex, span: spanned.span() })
    }
}

/// The value of an operation: a TOML value whose strings are templates.
/// A string that is exactly one numeric placeholder (`"{int 0..5}"`, `"{seq}"`)
/// renders to a JSON number; other strings render to JSON strings.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ValueTemplate {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Template),
    List(Vec<ValueTemplate>),
    Map(Vec<(String, ValueTemplate)>),
}

impl ValueTemplate {
    pub fn templates(&self) -> Vec<&Template> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Template>) {
        match self {
            ValueTemplate::Str(t) => out.push(t),
            ValueTemplate::List(items) => items.iter().for_each(|i| i.collect(out)),
            ValueTemplate::Map(items) => items.iter().for_each(|(_, i)| i.collect(out)),
            _ => {}
        }
    }

    /// Renders to JSON with `lookup` filling placeholders.
    pub fn render<E>(&self, lookup: &mut impl FnMut(&Var) -> Result<String, E>) -> Result<serde_json::Value, E> {
        use serde_json::Value as J;
        Ok(match self {
            ValueTemplate::Null => J::Null,
            ValueTemplate::Bool(b) => J::Bool(*b),
            ValueTemplate::Int(i) => J::from(*i),
            ValueTemplate::Float(x) => J::from(*x),
            ValueTemplate::Str(t) => {
                let text = t.render(&mut *lookup)?;
                match (t.lone_var(), text.parse::<i64>()) {
                    (Some(v), Ok(n)) if v.is_numeric() => J::from(n),
                    _ => J::String(text),
                }
            }
            ValueTemplate::List(items) => J::Array(items.iter().map(|i| i.render(lookup)).collect::<Result<_, E>>()?),
            ValueTemplate::Map(items) => {
                J::Object(items.iter().map(|(k, v)| Ok((k.clone(), v.render(lookup)?))).collect::<Result<_, E>>()?)
            }
        })
    }
}

impl<'de> Deserialize<'de> for ValueTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ValueTemplate, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ValueTemplate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value: a string template, number, boolean, array or table")
            }
            fn visit_bool<E>(self, b: bool) -> Result<ValueTemplate, E> {
                Ok(ValueTemplate::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<ValueTemplate, E> {
                Ok(ValueTemplate::Int(i))
            }
            fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<ValueTemplate, E> {
                i64::try_from(u).map(ValueTemplate::Int).map_err(E::custom)
            }
            fn visit_f64<E>(self, x: f64) -> Result<ValueTemplate, E> {
                Ok(ValueTemplate::Float(x))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ValueTemplate, E> {
                Template::parse(s).map(ValueTemplate::Str).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<ValueTemplate, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(ValueTemplate::List(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<ValueTemplate, A::Error> {
                let mut items = Vec::new();
                while let Some((k, v)) = a.next_entry()? {
                    items.push((k, v));
                }
                Ok(ValueTemplate::Map(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// One or several names, written as a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Names(pub Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Names, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or an array of names")
            }
            fn visit_str<E>(self, s: &str) -> Result<Names, E> {
                Ok(Names(vec![s.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Names, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = a.next_element::<String>()? {
                    names.push(n);
                }
                Ok(Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

impl Names {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// Where a completion value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultSource {
    /// http: the response body.
    Body,
    /// http: the status code.
    Status,
    /// exec: standard output.
    Stdout,
    /// exec: standard error.
    Stderr,
    /// exec: the exit code.
    Exit,
}

/// How a completion value is parsed from its source.
#[derive(Debug, Clone)]
pub enum ResultParser {
    /// Trimmed text as an integer.
    Int,
    /// Trimmed text as a string.
    Str,
    /// JSON, optionally narrowed by a JSON pointer (`json:/items/0/id`).
    Json(Option<String>),
    /// The first capture group of a regex (the whole match if it has none).
    Regex(Pattern),
    /// Non-empty trimmed lines as an array of strings.
    Lines,
}

/// `SOURCE:PARSER[:ARG]`, e.g. `"body:int"`, `"stdout:json:/id"`, `"stdout:regex:id=(\\d+)"`.
#[derive(Debug, Clone)]
pub struct ResultSpec {
    pub source: ResultSource,
    pub parser: ResultParser,
}

impl std::str::FromStr for ResultSpec {
    type Err = String;
    fn from_str(text: &str) -> Result<ResultSpec, String> {
        const EXPECTED: &str = "expected SOURCE:PARSER with SOURCE one of body, status, stdout, stderr, exit \
and PARSER one of int, string, json, json:/POINTER, regex:PATTERN, lines";
        let (source, rest) = text.split_once(':').unwrap_or((text, "string"));
        let source = match source {
            "body" => ResultSource::Body,
            "status" => ResultSource::Status,
            "stdout" => ResultSource::Stdout,
            "stderr" => ResultSource::Stderr,
            "exit" => ResultSource::Exit,
            other => return Err(format!("unknown result source `{other}`; {EXPECTED}")),
        };
        let (name, arg) = match rest.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (rest, None),
        };
        let parser = match (name, arg) {
            ("int", None) => ResultParser::Int,
            ("string", None) => ResultParser::Str,
            ("lines", None) => ResultParser::Lines,
            ("json", ptr) => {
                if let Some(p) = ptr.filter(|p| !p.starts_with('/')) {
                    return Err(format!("JSON pointer `{p}` must start with `/`"));
                }
                ResultParser::Json(ptr.map(str::to_string))
            }
            ("regex", Some(re)) => ResultParser::Regex(Pattern::new(re).map_err(|e| e.to_string())?),
            _ => return Err(format!("unknown result parser `{rest}`; {EXPECTED}")),
        };
        Ok(ResultSpec { source, parser })
    }
}

impl<'de> Deserialize<'de> for ResultSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ResultSpec, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
