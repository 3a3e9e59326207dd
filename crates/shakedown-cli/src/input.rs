//! The binary's input edges: scenario and history files are read only when
//! they are regular files of bounded size, and flags that become sizes,
//! durations or counts are bounded too.

use shakedown_spec::limits::MAX_SCENARIO_BYTES;
use shakedown_spec::ReadError;
use std::path::Path;
use std::time::Duration;

/// The largest history file `shakedown check` reads unless
/// `--max-history-bytes` says otherwise.
pub const DEFAULT_MAX_HISTORY_BYTES: &str = "2GiB";

/// A scenario file's text: a regular file of at most [`MAX_SCENARIO_BYTES`] of UTF-8.
pub fn read_scenario(path: &Path) -> Result<String, ReadError> {
    shakedown_spec::read_text_file(path, MAX_SCENARIO_BYTES)
}

/// A history file's text: a regular file of at most `max_bytes` of UTF-8.
pub fn read_history(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    shakedown_spec::read_text_file(path, max_bytes)
}

/// The largest small file shakedown reads besides scenarios and histories:
/// profiles, `.env` files, baselines, proxy configs, a run's reports.
pub const MAX_SMALL_FILE_BYTES: u64 = 64 << 20;

/// A small file's text (see [`MAX_SMALL_FILE_BYTES`]), refusing devices,
/// FIFOs and oversized files, as an I/O error whose kind is kept (a missing
/// file is still `NotFound`) and whose message does not repeat the path.
pub fn read_small(path: &Path) -> std::io::Result<String> {
    use shakedown_spec::ReadError;
    shakedown_spec::read_text_file(path, MAX_SMALL_FILE_BYTES).map_err(|e| match e {
        ReadError::Io { source, .. } => source,
        ReadError::NotRegular { kind, .. } => {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("is {kind}, not a regular file"))
        }
        ReadError::TooLarge { .. } => std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("is larger than {} MiB", MAX_SMALL_FILE_BYTES >> 20),
        ),
        ReadError::InvalidUtf8 { line, col, .. } => {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("invalid UTF-8 at line {line}, column {col}"))
        }
    })
}

/// A size for a flag: bytes, or with a unit (`512MiB`, `4GiB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    shakedown_spec::ByteSize::parse(text).map(|b| b.0)
}

/// A duration for a flag, at most the longest duration a scenario may hold,
/// so that adding it to the clock cannot overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    shakedown_spec::Dur::parse(text).map(|d| d.0)
}

/// The most scenarios `--jobs` runs at once.
pub const MAX_JOBS: usize = 256;

/// `--jobs`: 1 to [`MAX_JOBS`]; a larger count would only overflow the
/// suite's semaphore (it panics past `usize::MAX >> 3` permits).
pub fn parse_jobs(text: &str) -> Result<std::num::NonZeroUsize, String> {
    let n: usize = text.trim().parse().map_err(|_| format!("`{text}` is not a number of scenarios"))?;
    match std::num::NonZeroUsize::new(n) {
        Some(jobs) if n <= MAX_JOBS => Ok(jobs),
        _ => Err(format!("{n} is not 1 to {MAX_JOBS}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_sizes_with_units_and_bounded_durations_and_jobs() {
        assert_eq!(parse_size(DEFAULT_MAX_HISTORY_BYTES), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        let err = parse_duration("18446744073709551615s").unwrap_err();
        assert!(err.contains("above the maximum of 30days"), "{err}");
        assert_eq!(parse_jobs("256").map(|n| n.get()), Ok(MAX_JOBS));
        assert!(parse_jobs("0").is_err() && parse_jobs("18446744073709551615").is_err() && parse_jobs("x").is_err());
    }

    #[test]
    fn small_files_keep_not_found_and_refuse_devices() {
        let missing = read_small(Path::new("/nonexistent/x.json")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        let dev = read_small(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(dev, "is a character device, not a regular file");
    }

    #[test]
    fn scenario_files_are_capped_and_regular() {
        let err = read_scenario(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(err, "/dev/zero: is a character device, not a regular file");
        let big = tempfile::NamedTempFile::new().unwrap();
        big.as_file().set_len(MAX_SCENARIO_BYTES + 1).unwrap();
        let err = read_scenario(big.path()).unwrap_err().to_string();
        assert!(err.ends_with("is larger than the maximum of 4 MiB (4194305 bytes)"), "{err}");
        let err = read_history(big.path(), 1024).unwrap_err().to_string();
        assert!(err.contains("larger than the maximum of 1 KiB"), "{err}");
    }
}
