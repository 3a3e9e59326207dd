//! Clients: how an operation reaches the system under test.
//!
//! The worker renders an action's templates into [`Rendered`] and hands the
//! client an [`Operation`]; the client returns an [`Outcome`]. Built-in clients
//! are `exec`, `driver` and `http`; library users implement [`Client`].

pub mod driver;
pub mod exec;
pub mod http;

use crate::context::ActorCtx;
pub use crate::recorder::Outcome;
use serde_json::Value;
use shakedown_spec::{ActionSpec, OutcomeSpec, ResultParser, ResultSource, ResultSpec};
use std::borrow::Cow;

/// An action's templates, filled for one operation.
#[derive(Debug, Default, Clone)]
pub struct Rendered {
    pub path: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub argv: Vec<String>,
    pub stdin: Option<String>,
}

/// One operation as a client sees it.
pub struct Operation<'a> {
    pub actor: &'a ActorCtx,
    pub actor_index: usize,
    pub action_index: usize,
    pub f: &'a str,
    pub value: &'a Value,
    pub target: Option<&'a Value>,
    pub rendered: &'a Rendered,
}

/// Performs operations against the system. Must never panic on a bad reply:
/// a reply outside the expected shapes is [`Outcome::unexpected`].
#[async_trait::async_trait]
pub trait Client: Send + Sync {
    /// Prepares per-actor resources (e.g. starts drivers) before the workload.
    async fn open(&self, _actors: &[ActorCtx]) -> Result<(), String> {
        Ok(())
    }

    /// How long `open` may take before the run fails.
    fn open_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    async fn call(&self, op: Operation<'_>) -> Outcome;

    /// Releases resources; nothing the client started may outlive this.
    async fn close(&self) {}
}

/// A reply in the terms `ok`/`fail` mappings and result specs use.
#[derive(Debug, Default)]
pub struct Reply {
    pub status: Option<u16>,
    pub exit: Option<i32>,
    /// Body (http) or stdout (exec).
    pub out: String,
    pub err: String,
}

impl Reply {
    /// `prefix`, then the status or exit code and the output, in one buffer
    /// of the right size: a body may be megabytes, so no intermediate copy
    /// of it is made (the recorder then cuts the text to its cap).
    fn describe_after(&self, prefix: &str) -> String {
        let (out, err) = (self.out.trim_end(), self.err.trim_end());
        let mut s = String::with_capacity(prefix.len() + 40 + out.len() + err.len());
        s.push_str(prefix);
        if let Some(st) = self.status {
            s.push_str("status ");
            s.push_str(&st.to_string());
        }
        if let Some(code) = self.exit {
            s.push_str("exit code ");
            s.push_str(&code.to_string());
        }
        if !self.out.is_empty() {
            s.push_str("; output: ");
            s.push_str(out);
        }
        if !self.err.is_empty() {
            s.push_str("; stderr: ");
            s.push_str(err);
        }
        s
    }

    /// The text `match` patterns see; borrowed when there is no stderr.
    fn text_for_match(&self) -> Cow<'_, str> {
        if self.err.is_empty() {
            Cow::Borrowed(&self.out)
        } else {
            Cow::Owned(format!("{}\n{}", self.out, self.err))
        }
    }
}

fn matches(spec: &OutcomeSpec, reply: &Reply) -> bool {
    let status_ok = spec.status.is_empty() || reply.status.is_some_and(|s| spec.status.contains(&s));
    let exit_ok = spec.exit.is_empty() || reply.exit.is_some_and(|c| spec.exit.contains(&c));
    let text_ok = spec.matches.as_ref().is_none_or(|re| re.regex.is_match(&reply.text_for_match()));
    status_ok && exit_ok && text_ok
}

/// Maps a reply to ok / fail / unexpected with the action's mappings.
pub fn classify(action: &ActionSpec, reply: &Reply) -> Outcome {
    let ok = match &action.ok {
        Some(spec) => matches(spec, reply),
        None => reply.status.is_some_and(|s| (200..300).contains(&s)) || reply.exit == Some(0),
    };
    if ok {
        return match &action.result {
            None => Outcome::ok(None),
            Some(r) => match parse_result(r.get_ref(), reply) {
                Ok(v) => Outcome::ok(Some(v)),
                Err(e) => Outcome::unexpected(
                    reply.describe_after(&format!("ok reply, but its result could not be read: {e}; ")),
                ),
            },
        };
    }
    if action.fail.as_ref().is_some_and(|spec| matches(spec, reply)) {
        return Outcome::fail(reply.describe_after(""));
    }
    Outcome::unexpected(reply.describe_after("reply matches neither ok nor fail: "))
}

/// Reads a completion value from a reply.
pub fn parse_result(spec: &ResultSpec, reply: &Reply) -> Result<Value, String> {
    let text = match spec.source {
        ResultSource::Body | ResultSource::Stdout => Cow::Borrowed(reply.out.as_str()),
        ResultSource::Stderr => Cow::Borrowed(reply.err.as_str()),
        ResultSource::Status => Cow::Owned(reply.status.map(|s| s.to_string()).unwrap_or_default()),
        ResultSource::Exit => Cow::Owned(reply.exit.map(|c| c.to_string()).unwrap_or_default()),
    };
    parse_text(&spec.parser, &text)
}

pub fn parse_text(parser: &ResultParser, text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    match parser {
        ResultParser::Int => {
            trimmed.parse::<i64>().map(Value::from).map_err(|_| format!("{trimmed:?} is not an integer"))
        }
        ResultParser::Str => Ok(Value::String(trimmed.to_string())),
        ResultParser::Lines => Ok(Value::Array(
            trimmed.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| Value::String(l.into())).collect(),
        )),
        ResultParser::Json(ptr) => {
            let v: Value = serde_json::from_str(trimmed).map_err(|e| format!("not JSON ({e})"))?;
            match ptr {
                None => Ok(v),
                Some(p) => v.pointer(p).cloned().ok_or_else(|| format!("JSON has nothing at {p}")),
            }
        }
        ResultParser::Regex(re) => {
            let caps = re.regex.captures(text).ok_or_else(|| format!("no match for /{}/", re.as_str()))?;
            let m = caps.get(1).or_else(|| caps.get(0)).map_or("", |m| m.as_str());
            Ok(Value::String(m.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shakedown_history::OpType;

    fn action(toml_text: &str) -> ActionSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn default_mapping_and_refusals() {
        let a = action("f = \"w\"\nfail = { status = [409] }\nresult = \"body:int\"");
        let r = |status, out: &str| Reply { status: Some(status), out: out.into(), ..Reply::default() };
        assert_eq!(classify(&a, &r(200, " 7\n")), Outcome::ok(Some(Value::from(7))));
        assert_eq!(classify(&a, &r(409, "mismatch")).op_type, OpType::Fail);
        let odd = classify(&a, &r(500, "boom"));
        assert!(odd.unexpected && odd.error.unwrap().contains("status 500; output: boom"));
        let garbled = classify(&a, &r(200, "seven"));
        assert!(garbled.unexpected && garbled.op_type == OpType::Info);
    }

    #[test]
    fn a_big_reply_is_described_in_one_buffer_of_its_size() {
        let a = action("f = \"w\"\nok = { status = [299] }");
        let body = "x".repeat(4 * 1024 * 1024);
        let reply = Reply { status: Some(200), out: format!("{body}\n"), ..Reply::default() };
        let error = classify(&a, &reply).error.unwrap();
        assert_eq!(error, format!("reply matches neither ok nor fail: status 200; output: {body}"));
        assert!(error.capacity() < error.len() + 64, "{} for {}", error.capacity(), error.len());
        let exec = Reply { exit: Some(3), out: "o".into(), err: "e\n".into(), ..Reply::default() };
        assert_eq!(
            classify(&a, &exec).error.unwrap(),
            "reply matches neither ok nor fail: exit code 3; output: o; stderr: e"
        );
    }

    #[test]
    fn parsers() {
        let json = ResultParser::Json(Some("/a/1".into()));
        assert_eq!(parse_text(&json, r#"{"a":[1,2]}"#).unwrap(), Value::from(2));
        assert!(parse_text(&json, r#"{"a":[]}"#).is_err());
        let re = ResultParser::Regex(shakedown_spec::Pattern::new("id=(\\d+)").unwrap());
        assert_eq!(parse_text(&re, "made id=42 ok").unwrap(), Value::from("42"));
        assert_eq!(parse_text(&ResultParser::Lines, "a\n\n b \n").unwrap(), serde_json::json!(["a", "b"]));
    }
}
