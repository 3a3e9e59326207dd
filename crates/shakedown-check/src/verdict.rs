//! The three-valued verdict of a check and how verdicts combine.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a check concluded. Ordered from best to worst so that combining
/// verdicts is taking the maximum: one invalid check makes a run invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The history satisfies the property.
    Valid,
    /// The check could not decide (vacuous history, missing data, budget spent).
    Unknown,
    /// The history violates the property; the details hold a counterexample.
    Invalid,
}

impl Verdict {
    /// The worse of two verdicts.
    pub fn combine(self, other: Verdict) -> Verdict {
        self.max(other)
    }

    /// The worst verdict of all; `Unknown` when there is none, because
    /// checking nothing proves nothing.
    pub fn all(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        verdicts.into_iter().reduce(Verdict::combine).unwrap_or(Verdict::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Unknown => "unknown",
            Verdict::Invalid => "invalid",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict::*;
    use super::*;

    #[test]
    fn worst_verdict_wins() {
        let cases: &[(&[Verdict], Verdict)] = &[
            (&[], Unknown),
            (&[Valid], Valid),
            (&[Valid, Valid], Valid),
            (&[Valid, Unknown], Unknown),
            (&[Invalid, Unknown, Valid], Invalid),
            (&[Unknown, Invalid], Invalid),
        ];
        for (verdicts, want) in cases {
            assert_eq!(Verdict::all(verdicts.iter().copied()), *want, "{verdicts:?}");
        }
        assert_eq!(Valid.combine(Invalid), Invalid);
        assert_eq!(Unknown.combine(Valid), Unknown);
    }

    #[test]
    fn serializes_lowercase() {
        assert_eq!(serde_json::to_string(&Invalid).unwrap(), r#""invalid""#);
        assert_eq!(serde_json::from_str::<Verdict>(r#""unknown""#).unwrap(), Unknown);
        assert_eq!(Valid.to_string(), "valid");
    }
}
