//! Templates: strings with `{placeholder}` parts filled at resolve or operation time.
//!
//! Parsed when the scenario is read, so a bad placeholder is a spec error with a
//! location; rendered by the runner through a lookup closure. Templates never go
//! through a shell: each renders to one argument.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A placeholder inside a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `{port}` or `{port.NAME}`: a port of the service being configured.
    Port(Option<String>),
    /// `{dir}`: the working directory of the service being configured.
    Dir,
    /// `{run.dir}`: the run directory.
    RunDir,
    /// `{scenario.dir}`: the directory holding the scenario file.
    ScenarioDir,
    /// `{service.NAME.port}` or `{service.NAME.port.PORT}`.
    ServicePort {
        service: String,
        port: Option<String>,
    },
    /// `{service.NAME.dir}`.
    ServiceDir(String),
    /// `{service.NAME.host}`: the service's address (its namespace's with
    /// `[network] namespaces = true`, else 127.0.0.1).
    ServiceHost(String),
    /// `{host}`: the address of the service being configured.
    Host,
    /// `{link.NAME.port}`: the loopback port of a proxy link.
    LinkPort(String),
    /// `{matrix.KEY}`: the value of a matrix dimension in this run's cell.
    Matrix(String),
    /// `{actor.name}`.
    ActorName,
    /// `{actor.home}`.
    ActorHome,
    /// `{seed}`.
    Seed,
    /// `{value}`: the operation's value.
    Value,
    /// `{value.0}`, `{value.from}`: a part of the operation's value, by array
    /// index or object key, path segments separated by dots.
    ValuePath(Vec<String>),
    /// `{target}`: the entity picked from the action's target pool.
    Target,
    /// `{int A..B}` (B excluded) or `{int A..=B}`: an integer drawn from the seed.
    Int {
        lo: i64,
        hi_exclusive: i64,
    },
    /// `{seq}`: a number unique within the run, increasing.
    Seq,
    /// `{pick POOL}`: an entity drawn from a pool without removing it.
    Pick(String),
    /// `{env.NAME}`: a variable of the environment shakedown runs in.
    Env(String),
    /// `{bin.NAME}`: the binary `NAME` names in this cell's `[version.CELL]`.
    Bin(String),
    /// `{stop.drain}`, `{stop.shutdown}`: the service's stop profile, e.g. "200ms".
    StopDrain,
    StopShutdown,
    /// `{case.dir}`: the directory of the resume case being run.
    CaseDir,
    /// `{case.name}`: its name (`golden`, `point-03`), e.g. for a database
    /// schema of its own.
    CaseName,
    /// `{dataset.NAME}`: the path of a generated dataset.
    Dataset(String),
}

impl Var {
    /// Whether the placeholder yields a number, so a lone one renders to a JSON number.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            Var::Int { .. } | Var::Seq | Var::Seed | Var::Port(_) | Var::ServicePort { .. } | Var::LinkPort(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(Var),
}

/// A parsed template with the span of its source in the scenario file (empty
/// when built in code).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    span: Range<usize>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid template {source_text:?}: {message}")]
pub struct TemplateError {
    pub source_text: String,
    pub message: String,
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let err = |message: String| TemplateError { source_text: source.to_string(), message };
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = source;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                lit.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(err("unmatched `}` (write `}}` for a literal brace)".into()));
            }
            let Some(end) = tail.find('}') else {
                return Err(err("unclosed `{` (write `{{` for a literal brace)".into()));
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(parse_var(tail[1..end].trim()).map_err(err)?));
            rest = &tail[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { source: source.to_string(), parts, span: 0..0 })
    }

    /// A template with no placeholders.
    pub fn literal(text: &str) -> Template {
        let parts = if text.is_empty() { vec![] } else { vec![Part::Lit(text.to_string())] };
        Template { source: text.replace('{', "{{").replace('}', "}}"), parts, span: 0..0 }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Lit(_) => None,
        })
    }

    /// The single placeholder when the template is exactly one, e.g. `"{int 0..5}"`.
    pub fn lone_var(&self) -> Option<&Var> {
        match self.parts.as_slice() {
            [Part::Var(v)] => Some(v),
            _ => None,
        }
    }

    /// Renders with `lookup` filling each placeholder.
    pub fn render<E>(&self, mut lookup: impl FnMut(&Var) -> Result<String, E>) -> Result<String, E> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => out.push_str(&lookup(v)?),
            }
        }
        Ok(out)
    }
}

impl From<&str> for Template {
    /// Parses a template; panics on a malformed one, so use it for literals in code.
    fn from(s: &str) -> Template {
        Template::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Template, D::Error> {
        let spanned = Spanned::<String>::deserialize(d)?;
        let mut t = Template::parse(spanned.get_ref()).map_err(serde::de::Error::custom)?;
        t.span = spanned.span();
        Ok(t)
    }
}

fn parse_var(inner: &str) -> Result<Var, String> {
    if let Some(range) = inner.strip_prefix("int ") {
        return parse_int_range(range.trim());
    }
    if let Some(pool) = inner.strip_prefix("pick ") {
        return ident(pool.trim()).map(|p| Var::Pick(p.to_string()));
    }
    let segs: Vec<&str> = inner.split('.').collect();
    let var = match segs.as_slice() {
        ["port"] => Var::Port(None),
        ["port", name] => Var::Port(Some(ident(name)?.to_string())),
        ["dir"] => Var::Dir,
        ["run", "dir"] => Var::RunDir,
        ["scenario", "dir"] => Var::ScenarioDir,
        ["service", s, "port"] => Var::ServicePort { service: ident(s)?.to_string(), port: None },
        ["service", s, "port", p] => {
            Var::ServicePort { service: ident(s)?.to_string(), port: Some(ident(p)?.to_string()) }
        }
        ["service", s, "dir"] => Var::ServiceDir(ident(s)?.to_string()),
        ["service", s, "host"] => Var::ServiceHost(ident(s)?.to_string()),
        ["host"] => Var::Host,
        ["link", l, "port"] => Var::LinkPort(ident(l)?.to_string()),
        ["matrix", k] => Var::Matrix(ident(k)?.to_string()),
        ["actor", "name"] => Var::ActorName,
        ["actor", "home"] => Var::ActorHome,
        ["seed"] => Var::Seed,
        ["value"] => Var::Value,
        ["value", path @ ..] => {
            Var::ValuePath(path.iter().map(|p| ident(p).map(str::to_string)).collect::<Result<_, _>>()?)
        }
        ["target"] => Var::Target,
        ["seq"] => Var::Seq,
        ["env", name] => Var::Env(ident(name)?.to_string()),
        ["bin", name] => Var::Bin(ident(name)?.to_string()),
        ["stop", "drain"] => Var::StopDrain,
        ["stop", "shutdown"] => Var::StopShutdown,
        ["case", "dir"] => Var::CaseDir,
        ["case", "name"] => Var::CaseName,
        ["dataset", name] => Var::Dataset(ident(name)?.to_string()),
        _ => return Err(format!("unknown placeholder `{{{inner}}}`; expected one of {PLACEHOLDERS}")),
    };
    Ok(var)
}

/// Every placeholder, as shown in errors.
pub const PLACEHOLDERS: &str = "{port}, {port.NAME}, {dir}, {run.dir}, {scenario.dir}, \
{service.NAME.port}, {service.NAME.port.PORT}, {service.NAME.dir}, {service.NAME.host}, {host}, \
{link.NAME.port}, {matrix.KEY}, {actor.name}, {actor.home}, \
{seed}, {value}, {value.PATH}, {target}, {seq}, {int A..B}, {pick POOL}, {env.NAME}, {bin.NAME}, \
{stop.drain}, {stop.shutdown}, {case.dir}, {case.name}, {dataset.NAME}";

fn ident(s: &str) -> Result<&str, String> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(s)
    } else {
        Err(format!("`{s}` is not a name (letters, digits, `_` and `-`)"))
    }
}

fn parse_int_range(range: &str) -> Result<Var, String> {
    let bad = || format!("`int {range}` is not a range; expected `int A..B` or `int A..=B`");
    let (lo, hi, inclusive) = if let Some((lo, hi)) = range.split_once("..=") {
        (lo, hi, true)
    } else if let Some((lo, hi)) = range.split_once("..") {
        (lo, hi, false)
    } else {
        return Err(bad());
    };
    let lo: i64 = lo.trim().parse().map_err(|_| bad())?;
    let hi: i64 = hi.trim().parse().map_err(|_| bad())?;
    let hi_exclusive = if inclusive { hi.checked_add(1).ok_or_else(bad)? } else { hi };
    if hi_exclusive <= lo {
        return Err(format!("`int {range}` is empty"));
    }
    Ok(Var::Int { lo, hi_exclusive })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_placeholders_and_escapes() {
        let t = Template::parse("http://127.0.0.1:{service.kv.port}/set/{{x}}/{int 0..=5}").unwrap();
        let rendered = t
            .render::<()>(|v| {
                Ok(match v {
                    Var::ServicePort { service, port: None } if service == "kv" => "80".into(),
                    Var::Int { lo: 0, hi_exclusive: 6 } => "3".into(),
                    other => panic!("unexpected {other:?}"),
                })
            })
            .unwrap();
        assert_eq!(rendered, "http://127.0.0.1:80/set/{x}/3");
    }

    #[test]
    fn rejects_bad_templates() {
        for (src, want) in [
            ("{nope}", "unknown placeholder `{nope}`"),
            ("{port", "unclosed `{`"),
            ("a}b", "unmatched `}`"),
            ("{int 5..5}", "is empty"),
            ("{int x..5}", "is not a range"),
            ("{service.a b.port}", "is not a name"),
        ] {
            let err = Template::parse(src).unwrap_err().to_string();
            assert!(err.contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn value_paths_parse() {
        let t = Template::parse("{value.0}-{value.from.x}").unwrap();
        let vars: Vec<&Var> = t.vars().collect();
        assert_eq!(vars, [&Var::ValuePath(vec!["0".into()]), &Var::ValuePath(vec!["from".into(), "x".into()])]);
        assert!(Template::parse("{value.}").is_err());
    }

    #[test]
    fn literal_round_trips_braces() {
        let t = Template::literal("{json}");
        assert_eq!(t.render::<()>(|_| unreachable!()).unwrap(), "{json}");
        assert_eq!(Template::parse(t.source()).unwrap().parts(), t.parts());
    }
}
