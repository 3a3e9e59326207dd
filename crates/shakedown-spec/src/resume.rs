//! Resume scenarios and datasets: a job interrupted at many points, resumed
//! until done, its final state compared with an uninterrupted (golden) run's;
//! and the seeded source data (`[dataset.NAME]`) such jobs copy.

use crate::model::{LogMatchSpec, OutcomeSpec};
use crate::state::StateSource;
use crate::template::Template;
use crate::values::Dur;
use serde::Deserialize;
use std::num::NonZeroU32;
use toml::Spanned;

/// A number, or a template that renders to one (`"{matrix.rows}"`).
#[derive(Debug, Clone)]
pub enum Count {
    Number(u64),
    Template(Template),
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a count (a number of 0 or more, or a template such as \"{matrix.rows}\")")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Count, E> {
                Ok(Count::Number(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Count, E> {
                u64::try_from(n).map(Count::Number).map_err(|_| E::custom(format!("{n} is below 0; expected a count")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Count, E> {
                Template::parse(s).map(Count::Template).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `[dataset.NAME]`: source data generated from the seed before anything
/// starts, at `{dataset.NAME}` (a file for sqlite, a directory for tree).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub kind: DatasetKind,
    /// sqlite: rows per table (0 and 1 are fine).
    pub rows: Option<Count>,
    /// sqlite: table names (default `["items"]`); each has `id INTEGER
    /// PRIMARY KEY`, `name TEXT`, `qty INTEGER`, `price REAL`, `note TEXT`
    /// (sometimes NULL) with values drawn from the seed.
    pub tables: Option<Vec<String>>,
    /// tree: how many files.
    pub files: Option<Count>,
    /// tree: file sizes drawn from this range, e.g. "0..64KiB" (default "0..4KiB").
    pub size: Option<String>,
    /// tree: directory depth (default 2).
    pub depth: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetKind {
    Sqlite,
    Tree,
}

/// `[resume]`: interrupt a job at `points` places, resume it until done, and
/// compare each case's final state (`compare`) with the golden run's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeSpec {
    /// The job's command; `{case.dir}` is the case's own directory.
    pub job: Spanned<Vec<Template>>,
    /// The command that resumes it (default: `job` again).
    pub resume: Option<Vec<Template>>,
    /// How many interruption cases (default 10); each is its own case in the report.
    pub points: Option<NonZeroU32>,
    /// Signals drawn from the seed per interruption: INT, TERM, KILL (default INT).
    pub signals: Option<Spanned<Vec<String>>>,
    /// Where to interrupt: fractions of the golden run's duration (default),
    /// or `{ log = { ... } }`: at the Nth matching output line, N spread over
    /// the golden run's matches (progress markers, phase lines).
    pub at: Option<ResumeAt>,
    /// Interruptions per case before it is left to finish (default 1).
    pub interruptions: Option<NonZeroU32>,
    /// Resume attempts per case before it counts as never finishing (default 10).
    pub attempts: Option<NonZeroU32>,
    /// Limit per job attempt (default 60s); past it the attempt is killed.
    pub timeout: Option<Dur>,
    /// When an attempt means the job finished (default exit 0).
    pub done: Option<OutcomeSpec>,
    /// The job's state file: read after each interruption.
    pub state_file: Option<Template>,
    /// A JSON Schema (file, relative to the scenario) the state file must fit.
    pub state_schema: Option<Template>,
    /// A JSON pointer into the state file to a number that must never go
    /// down across resumes (e.g. "/done").
    pub progress: Option<Spanned<String>>,
    /// The final state compared with the golden run's.
    pub compare: StateSource,
    /// Damage done to a file between an interruption and the resume.
    #[serde(default)]
    pub corrupt: Vec<CorruptSpec>,
    /// Run only this case (1-based; `shakedown run --point N`), after the
    /// golden run: a failing case replays alone with the same seed.
    #[serde(skip)]
    pub only_point: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeAt {
    pub log: Option<LogMatchSpec>,
}

/// `[[resume.corrupt]]`: what happens to `file` after each interruption.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorruptSpec {
    pub file: Template,
    pub how: CorruptHow,
    /// `error`: the next attempt must exit with an error (not done) and the
    /// destination may lack items but never hold extra or duplicated ones;
    /// `recover`: the job must finish with the golden state.
    pub expect: CorruptExpect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CorruptHow {
    /// Cut the file to half its length.
    Truncate,
    /// Flip one bit at an offset drawn from the seed.
    Bitflip,
    /// Make it empty.
    Empty,
    /// Remove it.
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorruptExpect {
    Error,
    Recover,
}

impl CorruptHow {
    pub fn as_str(self) -> &'static str {
        match self {
            CorruptHow::Truncate => "truncate",
            CorruptHow::Bitflip => "bitflip",
            CorruptHow::Empty => "empty",
            CorruptHow::Delete => "delete",
        }
    }
}

impl ResumeSpec {
    pub fn n_points(&self) -> u32 {
        self.points.map_or(10, NonZeroU32::get)
    }

    pub fn n_attempts(&self) -> u32 {
        self.attempts.map_or(10, NonZeroU32::get)
    }

    pub fn n_interruptions(&self) -> u32 {
        self.interruptions.map_or(1, NonZeroU32::get)
    }

    /// The signal names to draw from (default `["INT"]`), without `SIG`.
    pub fn signal_names(&self) -> Vec<String> {
        match &self.signals {
            Some(s) if !s.get_ref().is_empty() => {
                s.get_ref().iter().map(|n| n.trim_start_matches("SIG").to_string()).collect()
            }
            _ => vec!["INT".to_string()],
        }
    }
}

/// Parses a size range like "0..64KiB" or "1KiB..1MiB" into bytes [lo, hi].
pub fn parse_size_range(text: &str) -> Result<(u64, u64), String> {
    let (lo, hi) =
        text.split_once("..").ok_or_else(|| format!("size range {text:?} is not `LO..HI`, e.g. \"0..64KiB\""))?;
    let parse = |s: &str| -> Result<u64, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: u64 = num.parse().map_err(|_| format!("size {s:?} in {text:?} is not a number with a unit"))?;
        let mult = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => return Err(format!("unknown size unit {other:?} in {text:?}; expected B, KiB, MiB or GiB")),
        };
        n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo > hi {
        return Err(format!("size range {text:?} is empty: {lo} > {hi}"));
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::parse_size_range;

    #[test]
    fn a_compare_source_needs_one_database_or_command_with_its_query() {
        let scenario = |compare: &str| format!("name = \"r\"\n[resume]\njob = [\"true\"]\ncompare = {compare}\n");
        let cases = [
            ("{ postgres = \"postgresql://127.0.0.1/db\" }", "`compare` needs `query` with `postgres`"),
            ("{ duckdb = \"{case.dir}/d.db\" }", "`compare` needs `query` with `duckdb`"),
            ("{ tree = \"a\", postgres = \"b\", query = \"q\" }", "(found postgres and tree)"),
            ("{ query = \"q\" }", "has `query` but no database"),
        ];
        for (compare, want) in cases {
            let err = crate::parse(&scenario(compare), "r.toml").unwrap_err().to_string();
            assert!(err.contains(want), "{compare}: wanted {want:?} in {err}");
        }
        let ok = "{ postgres = \"postgresql://127.0.0.1/db\", query = \"SELECT * FROM \\\"{case.name}\\\".t\" }";
        crate::parse(&scenario(ok), "r.toml").unwrap();
        let outside = "name = \"r\"\nduration = \"1s\"\n[[check]]\nkind = \"sql\"\nstate = { postgres = \"x\", query = \"{case.name}\" }\nempty = true\n";
        let err = crate::parse(outside, "r.toml").unwrap_err().to_string();
        assert!(err.contains("`{case.name}` only applies inside `[resume]`"), "{err}");
    }

    #[test]
    fn size_ranges_parse_with_units_and_bad_ones_say_why() {
        assert_eq!(parse_size_range("0..64KiB"), Ok((0, 65536)));
        assert_eq!(parse_size_range("1KiB..1MiB"), Ok((1024, 1 << 20)));
        assert!(parse_size_range("64KiB").unwrap_err().contains("not `LO..HI`"));
        assert!(parse_size_range("1..2TB").unwrap_err().contains("unknown size unit"));
        assert!(parse_size_range("9..1").unwrap_err().contains("empty"));
    }
}
