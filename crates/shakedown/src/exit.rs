//! The documented exit codes, one enum ordered by severity.

/// How a `shakedown` command ends, least severe first: a suite (or any
/// command that does several things) exits with the worst of its parts.
/// [`ExitCode::code`] is the number the process exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExitCode {
    /// 0: every check valid.
    Valid,
    /// 2: a check could not decide (unknown, vacuous, a capability missing).
    Unknown,
    /// 1: a check found the system wrong.
    Invalid,
    /// 4: a harness or environment failure (a build failed, a service never
    /// became ready, a program is missing, the harness died).
    Harness,
    /// 3: an invalid scenario, input or usage.
    Usage,
    /// 130: interrupted.
    Interrupted,
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Valid => 0,
            ExitCode::Invalid => 1,
            ExitCode::Unknown => 2,
            ExitCode::Usage => 3,
            ExitCode::Harness => 4,
            ExitCode::Interrupted => 130,
        }
    }

    /// The exit code with status `code`, if it is one of the documented ones.
    pub fn from_code(code: u8) -> Option<ExitCode> {
        [
            ExitCode::Valid,
            ExitCode::Invalid,
            ExitCode::Unknown,
            ExitCode::Usage,
            ExitCode::Harness,
            ExitCode::Interrupted,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// The most severe of `codes`; `Valid` when there are none.
    pub fn worst(codes: impl IntoIterator<Item = ExitCode>) -> ExitCode {
        codes.into_iter().max().unwrap_or(ExitCode::Valid)
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> std::process::ExitCode {
        std::process::ExitCode::from(c.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ExitCode::*;
    use super::*;

    #[test]
    fn severity_ranks_interrupted_over_usage_over_harness_over_invalid_over_unknown() {
        assert_eq!(ExitCode::worst([Valid, Unknown, Invalid]), Invalid);
        assert_eq!(ExitCode::worst([Invalid, Harness, Unknown]), Harness);
        assert_eq!(ExitCode::worst([Harness, Usage]), Usage);
        assert_eq!(ExitCode::worst([Usage, Interrupted]), Interrupted);
        assert_eq!(ExitCode::worst([]), Valid);
        for c in [Valid, Unknown, Invalid, Harness, Usage, Interrupted] {
            assert_eq!(ExitCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ExitCode::from_code(101), None);
    }
}
