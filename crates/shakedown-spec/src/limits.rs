//! The limits of a scenario: the largest file, the longest durations, the
//! biggest counts and the longest names that validation accepts.
//!
//! Each limit is a documented number (docs/scenarios.md, "Limits") chosen so
//! that nothing a scenario file says can overflow the runner's arithmetic,
//! exhaust memory before the run starts, or keep a run going for years. A
//! value past a limit is a spec error naming the key and the limit.

use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// The largest scenario file, and the largest include file (bytes).
pub const MAX_SCENARIO_BYTES: u64 = 4 << 20;
/// The largest scenario text with every include appended (bytes).
pub const MAX_COMBINED_BYTES: u64 = 4 << 20;
/// The most files one scenario includes.
pub const MAX_INCLUDES: usize = 64;

/// The longest any duration in a scenario may be: a run, a fault's `for`,
/// an `at` offset, a step's `sleep`.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 86_400);
/// The longest timeout of one operation, probe, state read or HTTP fault delay.
pub const MAX_OP_TIMEOUT: Duration = HOUR;
/// The longest `[[build]]` timeout, linearizable search budget and resume attempt.
pub const MAX_LONG_TIMEOUT: Duration = DAY;
/// The longest stop `grace`, `drain` and `shutdown`.
pub const MAX_STOP: Duration = HOUR;
/// The longest `ready.interval` and `[client.retry]` `backoff`.
pub const MAX_INTERVAL: Duration = MINUTE;
/// The largest clock fault `offset`, either way (100 years).
pub const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(36_525 * 86_400);
/// The slowest and fastest clock fault `rate`.
pub const CLOCK_RATE_RANGE: (f64, f64) = (0.001, 1000.0);

/// The most concurrent client workers.
pub const MAX_CLIENTS: usize = 1024;
/// The most operations a run may be asked for (`ops`, trigger `ops`, `during_faults`).
pub const MAX_OPS: u64 = 10_000_000;
/// The slowest and fastest overall `rate` (operations per second).
pub const RATE_RANGE: (f64, f64) = (0.001, 1_000_000.0);
/// The largest action `weight`.
pub const MAX_WEIGHT: u32 = 1_000_000;
/// The most attempts of `[client.retry]`: the backoff doubles after each.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;
/// The largest `Retry-After` of an HTTP fault (seconds).
pub const MAX_RETRY_AFTER_S: u32 = 3600;

/// The most services; each is a process with its own ports and directory.
pub const MAX_SERVICES: usize = 512;
/// The most services with `[network] namespaces = true`: node addresses are
/// `.1` to `.249` of one /24 (the runner's `netns::MAX_NODES`).
pub const MAX_NAMESPACED_SERVICES: usize = 249;
/// The most extra named `ports` of one service.
pub const MAX_PORTS: usize = 64;
/// The most actors, links, and `[version.*]` tables.
pub const MAX_ACTORS: usize = 256;
/// The most actions, faults, checks and `[[build]]`s, each.
pub const MAX_ITEMS: usize = 1000;
/// The most entries of a list inside one item (`at`, `steps`, `rows`, `edits`, `on`, ...).
pub const MAX_LIST: usize = 10_000;

/// The most matrix dimensions, values per dimension, and cells in all.
pub const MAX_MATRIX_DIMENSIONS: usize = 16;
pub const MAX_MATRIX_VALUES: usize = 256;
pub const MAX_MATRIX_CELLS: usize = 1024;

/// The most `[[step]]`s at every depth, the deepest nesting, the largest
/// `repeat`, and the most steps a script runs with repeats unrolled.
pub const MAX_STEPS: usize = 10_000;
pub const MAX_STEP_DEPTH: usize = 16;
pub const MAX_REPEAT: u32 = 10_000;
pub const MAX_STEPS_RUN: u64 = 1_000_000;

/// The most `rounds` of an idempotent check.
pub const MAX_ROUNDS: u32 = 100;

/// `[resume]`: the most interruption `points`, `interruptions` per case and
/// resume `attempts` per case.
pub const MAX_POINTS: u32 = 1000;
pub const MAX_INTERRUPTIONS: u32 = 100;
pub const MAX_ATTEMPTS: u32 = 1000;

/// `[dataset.*]`: the most rows per table, tables, files, directory depth,
/// and the largest file.
pub const MAX_DATASET_ROWS: u64 = 10_000_000;
pub const MAX_DATASET_TABLES: usize = 64;
pub const MAX_DATASET_FILES: u64 = 100_000;
pub const MAX_DATASET_DEPTH: u32 = 16;
pub const MAX_DATASET_FILE_BYTES: u64 = 64 << 20;

/// The largest service `disk` tmpfs (it is memory) and resources `max_rss`.
pub const MAX_DISK_BYTES: u64 = 16 << 30;
pub const MAX_RSS_BYTES: u64 = 1 << 40;
/// Toxics: the fastest `bandwidth` (KB/s) and the largest slicer `average-size`.
pub const MAX_BANDWIDTH_KBS: u64 = 10_000_000;
pub const MAX_SLICE_BYTES: u64 = 1 << 20;

/// The longest name of a service, actor, link, version, dataset, port,
/// matrix key or value, action `f` or `name`, check, fault, step, phase,
/// pool, exec step `log`, tag or environment variable (characters).
pub const MAX_NAME_CHARS: usize = 64;
/// The longest scenario name with its longest matrix cell, as in
/// `NAME[engine=sqlite, version=2]` (characters): it names run directories,
/// and a file name has at most 255 bytes.
pub const MAX_RUN_NAME_CHARS: usize = 200;

/// A duration as scenario files write it (`30days`, `1h`), for messages.
pub(crate) fn describe(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `4194304` bytes as "4 MiB", for messages.
pub fn describe_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        // The units are powers of two, so a multiple has no bits below the unit's.
        if n >= size && n & (size - 1) == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(describe_bytes(MAX_SCENARIO_BYTES), "4 MiB");
        assert_eq!(describe_bytes(2 << 30), "2 GiB");
        assert_eq!(describe_bytes(1000), "1000 bytes");
        assert_eq!(describe(MAX_DURATION), "30days");
    }
}
