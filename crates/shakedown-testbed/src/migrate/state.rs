//! The migrate job's JSON state file: the plan of batches and how far the copy got, read strictly, written atomically.
//!
//! `examples/migrate/state.schema.json` describes the same format; [`State::validate`]
//! checks what the schema checks plus what JSON Schema cannot say (counts add
//! up, batch keys in order), so a file that passes here passes the schema.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tree::is_safe_relative;
use super::Kind;

/// The only state format version this build reads and writes.
pub const VERSION: u32 = 1;

/// Pieces a torn (`torn-state-write`) write is cut into, with a pause after each.
const TORN_CHUNKS: usize = 16;
const TORN_PAUSE: Duration = Duration::from_millis(2);

/// Where the job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Enumerating the source; no plan yet. A resume redoes the traversal.
    Traversal,
    /// Copying the planned batches in order.
    Copy,
    /// Every batch copied.
    Complete,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Traversal => "traversal",
            Phase::Copy => "copy",
            Phase::Complete => "complete",
        }
    }
}

/// One batch of the plan: a key range of one table, or a range of file paths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Batch {
    Rows(RowRange),
    Files(FileRange),
}

/// Rows `first..=last` (by rowid, the INTEGER PRIMARY KEY when there is one) of `table`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowRange {
    pub table: String,
    pub first: i64,
    pub last: i64,
    pub count: u64,
}

/// The regular files whose paths (relative to the source root, `/`-separated)
/// sort, as strings, from `first` to `last` inclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRange {
    pub first: String,
    pub last: String,
    pub count: u64,
}

impl Batch {
    /// Items (rows or files) in the batch.
    pub fn count(&self) -> u64 {
        match self {
            Batch::Rows(range) => range.count,
            Batch::Files(range) => range.count,
        }
    }
}

/// The whole state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    pub kind: Kind,
    /// The `--source` and `--dest` the plan was made for; a resume must name the same.
    pub source: String,
    pub dest: String,
    pub phase: Phase,
    pub batch_size: u64,
    /// Items in the plan, and items in the batches before `next_batch`.
    pub total: u64,
    pub done: u64,
    pub batches: Vec<Batch>,
    /// Index of the first batch not yet known to be copied.
    pub next_batch: u64,
    /// The batch being copied when this was written (always `next_batch`), or null between batches.
    pub in_flight: Option<u64>,
    pub complete: bool,
}

/// Why a state file could not be used or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {} is corrupt: {why}", path.display())]
    Corrupt { path: PathBuf, why: String },
    #[error("read state file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("write state file {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

impl State {
    /// A fresh state in the traversal phase, before anything is planned.
    pub fn new(kind: Kind, source: &Path, dest: &Path, batch_size: u64) -> State {
        State {
            version: VERSION,
            kind,
            source: source.display().to_string(),
            dest: dest.display().to_string(),
            phase: Phase::Traversal,
            batch_size,
            total: 0,
            done: 0,
            batches: Vec::new(),
            next_batch: 0,
            in_flight: None,
            complete: false,
        }
    }

    /// Reads `path`: `Ok(None)` when it does not exist, [`StateError::Corrupt`]
    /// when it does not parse or does not fit the format.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path: path.to_path_buf(), source }),
        };
        let corrupt = |why: String| StateError::Corrupt { path: path.to_path_buf(), why };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        state.validate().map_err(corrupt)?;
        Ok(Some(state))
    }

    /// Every rule of the format; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != VERSION {
            return Err(format!("version is {}, this build reads version {VERSION}", self.version));
        }
        if self.batch_size == 0 {
            return Err("batch_size is 0".to_string());
        }
        if self.complete != (self.phase == Phase::Complete) {
            return Err(format!("complete is {} in phase {}", self.complete, self.phase.name()));
        }
        if self.phase == Phase::Traversal && (!self.batches.is_empty() || self.total != 0 || self.done != 0) {
            return Err("the traversal phase has a plan or progress".to_string());
        }
        self.validate_batches()?;
        self.validate_progress()
    }

    fn validate_batches(&self) -> Result<(), String> {
        let mut sum = 0u64;
        for (idx, batch) in self.batches.iter().enumerate() {
            let count = batch.count();
            if count == 0 || count > self.batch_size {
                return Err(format!("batches[{idx}].count is {count}, not 1..={}", self.batch_size));
            }
            match (self.kind, batch) {
                (Kind::Sqlite, Batch::Rows(range)) if range.first > range.last => {
                    return Err(format!("batches[{idx}]: first {} > last {}", range.first, range.last));
                }
                (Kind::Sqlite, Batch::Rows(range)) if range.last.abs_diff(range.first) < count - 1 => {
                    return Err(format!("batches[{idx}]: {count} rows cannot fit in {}..={}", range.first, range.last));
                }
                (Kind::Tree, Batch::Files(range))
                    if !is_safe_relative(&range.first) || !is_safe_relative(&range.last) =>
                {
                    return Err(format!("batches[{idx}] has a path that is not plain and relative"));
                }
                (Kind::Tree, Batch::Files(range))
                    if range.first > range.last || (count == 1) != (range.first == range.last) =>
                {
                    return Err(format!(
                        "batches[{idx}]: {count} files cannot lie in {:?}..={:?}",
                        range.first, range.last
                    ));
                }
                (Kind::Sqlite, Batch::Rows(_)) | (Kind::Tree, Batch::Files(_)) => {}
                (kind, _) => return Err(format!("batches[{idx}] is not a {} batch", kind.name())),
            }
            sum += count;
        }
        if sum != self.total {
            return Err(format!("total is {} but the batches hold {sum} items", self.total));
        }
        Ok(())
    }

    fn validate_progress(&self) -> Result<(), String> {
        let n_batches = self.batches.len() as u64;
        if self.next_batch > n_batches {
            return Err(format!("next_batch is {} but there are {n_batches} batches", self.next_batch));
        }
        let done: u64 = self.batches.iter().take(self.next_batch as usize).map(Batch::count).sum();
        if done != self.done {
            return Err(format!("done is {} but the batches before next_batch hold {done} items", self.done));
        }
        if let Some(in_flight) = self.in_flight {
            if in_flight != self.next_batch || in_flight >= n_batches {
                return Err(format!("in_flight is {in_flight}, next_batch {} of {n_batches}", self.next_batch));
            }
        }
        if self.phase == Phase::Complete && (self.next_batch != n_batches || self.in_flight.is_some()) {
            return Err("complete with batches left".to_string());
        }
        Ok(())
    }

    /// The state as it is written: pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        assert!(self.validate().is_ok(), "writing an invalid state: {:?}", self.validate());
        let mut bytes = serde_json::to_vec_pretty(self).expect("a state always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Writes the state to `path`: to `path.tmp`, fsync, rename over `path`,
    /// fsync the directory; or, with `torn`, in place in small pieces (the
    /// `torn-state-write` bug), so a kill mid-write leaves a torn file.
    pub fn save(&self, path: &Path, torn: bool) -> Result<(), StateError> {
        let bytes = self.to_bytes();
        let result = if torn { write_in_place(path, &bytes) } else { write_atomically(path, &bytes) };
        result.map_err(|source| StateError::Write { path: path.to_path_buf(), source })
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

fn write_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    let chunk_len = bytes.len().div_ceil(TORN_CHUNKS).max(1);
    for chunk in bytes.chunks(chunk_len) {
        file.write_all(chunk)?;
        file.flush()?;
        std::thread::sleep(TORN_PAUSE);
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned() -> State {
        let mut state = State::new(Kind::Sqlite, Path::new("/s"), Path::new("/d"), 2);
        state.phase = Phase::Copy;
        state.batches = vec![
            Batch::Rows(RowRange { table: "a".into(), first: 1, last: 2, count: 2 }),
            Batch::Rows(RowRange { table: "b".into(), first: 7, last: 7, count: 1 }),
        ];
        state.total = 3;
        state
    }

    #[test]
    fn accepts_consistent_states() {
        let mut state = planned();
        assert_eq!(state.validate(), Ok(()));
        state.in_flight = Some(0);
        assert_eq!(state.validate(), Ok(()));
        state.in_flight = None;
        state.next_batch = 2;
        state.done = 3;
        state.phase = Phase::Complete;
        state.complete = true;
        assert_eq!(state.validate(), Ok(()));
    }

    #[test]
    fn rejects_inconsistent_states() {
        type Spoil = fn(&mut State);
        let cases: [(&str, Spoil); 8] = [
            ("version", |s| s.version = 2),
            ("complete is true", |s| s.complete = true),
            ("done is 1", |s| s.done = 1),
            ("total is 4", |s| s.total = 4),
            ("in_flight is 1", |s| s.in_flight = Some(1)),
            ("next_batch is 3", |s| s.next_batch = 3),
            ("not a tree batch", |s| s.kind = Kind::Tree),
            ("batches[0].count is 3", |s| {
                s.batches[0] = Batch::Rows(RowRange { table: "a".into(), first: 1, last: 9, count: 3 })
            }),
        ];
        for (want, spoil) in cases {
            let mut state = planned();
            spoil(&mut state);
            let err = state.validate().unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn the_readme_example_is_a_valid_state() {
        let readme = include_str!("../../../../examples/migrate/README.md");
        let example = readme.split("```json\n").nth(1).and_then(|rest| rest.split("```").next()).unwrap();
        let state: State = serde_json::from_str(example).unwrap();
        assert_eq!(state.validate(), Ok(()));
        assert_eq!((state.in_flight, state.next_batch), (Some(1), 1));
    }

    #[test]
    fn round_trips_and_rejects_torn_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(State::load(&path).unwrap().is_none());
        let state = planned();
        for torn in [false, true] {
            state.save(&path, torn).unwrap();
            assert_eq!(State::load(&path).unwrap(), Some(state.clone()));
        }
        let bytes = std::fs::read(&path).unwrap();
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 3] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = State::load(&path).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{cut}: {err}");
            assert!(err.to_string().starts_with(&format!("state file {} is corrupt: ", path.display())), "{err}");
        }
        std::fs::write(&path, bytes.iter().map(|&b| if b == b'3' { b'4' } else { b }).collect::<Vec<_>>()).unwrap();
        assert!(matches!(State::load(&path), Err(StateError::Corrupt { .. })));
    }
}
