//! The kv service's state and its append-only JSON-lines log: plan, persist, apply, replay.
//!
//! Invariant: mutations are serialized by the journal lock and each is recorded
//! in the log before it is applied, so log order equals apply order and, in the
//! fsync mode, the in-memory state never shows a write that is not durable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Name of the log file inside the data directory.
pub const LOG_FILE: &str = "kv.log";

/// Why the store could not open, replay or write its log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create data dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("read log {path}: {source}")]
    ReadLog { path: PathBuf, source: io::Error },
    #[error("replay log {path}: line {line_no} is not a valid entry: {source}")]
    Corrupt {
        path: PathBuf,
        line_no: usize,
        source: serde_json::Error,
    },
    #[error("open log {path}: {source}")]
    OpenLog { path: PathBuf, source: io::Error },
    #[error("append to log {path}: {source}")]
    Append { path: PathBuf, source: io::Error },
}

/// When a recorded mutation reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written and `sync_data`'d before the mutation is applied (the correct build).
    SyncEachWrite,
    /// Kept in memory until [`Store::flush`] (the `lost-write` bug).
    Buffered,
}

/// A request that may change the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    Cas {
        key: String,
        from: String,
        to: String,
    },
    SetAdd {
        set: String,
        element: String,
    },
}

/// What a command did, as the HTTP layer reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text is the response body.
    Done(String),
    NotFound,
    Mismatch,
}

/// One log entry: a state change that has already been decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mutation {
    Put { key: String, value: String },
    Delete { key: String },
    SetAdd { set: String, element: String },
}

/// A set element as `GET /set/{name}` reports it: integers before strings,
/// integers by value, so `[2, 10, "a"]` rather than `["10", "2", "a"]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Element {
    Int(i64),
    Str(String),
}

/// Keys and sets in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    values: BTreeMap<String, String>,
    sets: BTreeMap<String, BTreeSet<String>>,
}

impl State {
    /// Decides what `command` does against this state, without changing it.
    pub fn plan(&self, command: Command) -> (Outcome, Option<Mutation>) {
        match command {
            Command::Put { key, value } => (
                Outcome::Done(value.clone()),
                Some(Mutation::Put { key, value }),
            ),
            Command::Delete { key } => match self.values.get(&key) {
                None => (Outcome::NotFound, None),
                Some(old) => (Outcome::Done(old.clone()), Some(Mutation::Delete { key })),
            },
            Command::Cas { key, from, to } => match self.values.get(&key) {
                None => (Outcome::NotFound, None),
                Some(current) if *current != from => (Outcome::Mismatch, None),
                Some(_) => (
                    Outcome::Done(to.clone()),
                    Some(Mutation::Put { key, value: to }),
                ),
            },
            Command::SetAdd { set, element } => {
                let present = self.sets.get(&set).is_some_and(|s| s.contains(&element));
                let mutation = (!present).then(|| Mutation::SetAdd {
                    set,
                    element: element.clone(),
                });
                (Outcome::Done(element), mutation)
            }
        }
    }

    pub fn apply(&mut self, mutation: Mutation) {
        match mutation {
            Mutation::Put { key, value } => {
                self.values.insert(key, value);
            }
            Mutation::Delete { key } => {
                self.values.remove(&key);
            }
            Mutation::SetAdd { set, element } => {
                self.sets.entry(set).or_default().insert(element);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The elements of set `name`, sorted and deduplicated (empty if absent).
    pub fn elements(&self, name: &str) -> Vec<Element> {
        let raw = self.sets.get(name).into_iter().flatten();
        let mut elements: Vec<Element> = raw.map(|e| element_from(e)).collect();
        elements.sort();
        // "5" and "05" are different strings but the same number.
        elements.dedup();
        elements
    }
}

fn element_from(raw: &str) -> Element {
    raw.parse::<i64>()
        .map_or_else(|_| Element::Str(raw.to_string()), Element::Int)
}

/// What replaying the log found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub n_entries: usize,
    /// Bytes of an incomplete last line that were cut off (0 if none).
    pub torn_bytes: usize,
}

/// The state plus the log that makes it durable.
#[derive(Debug)]
pub struct Store {
    journal: Mutex<Journal>,
    state: RwLock<State>,
}

impl Store {
    /// Creates `dir` if needed, replays its log and opens it for appending.
    pub fn open(dir: &Path, durability: Durability) -> Result<(Store, Recovery), StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(LOG_FILE);
        let bytes = read_log(&path)?;
        let replay = parse_log(&bytes).map_err(|(line_no, source)| StoreError::Corrupt {
            path: path.clone(),
            line_no,
            source,
        })?;
        let file = open_log(&path, replay.valid_len).map_err(|source| StoreError::OpenLog {
            path: path.clone(),
            source,
        })?;
        let recovery = Recovery {
            n_entries: replay.mutations.len(),
            torn_bytes: bytes.len() - replay.valid_len,
        };
        let mut state = State::default();
        replay.mutations.into_iter().for_each(|m| state.apply(m));
        let journal = Journal::new(path, file, replay.valid_len, durability);
        let store = Store {
            journal: Mutex::new(journal),
            state: RwLock::new(state),
        };
        Ok((store, recovery))
    }

    /// Runs `command`: plans it, records the mutation in the log, then applies it.
    /// Blocks on disk I/O; call it from a blocking thread.
    pub fn execute(&self, command: Command) -> Result<Outcome, StoreError> {
        let mut journal = self.journal.lock().expect("kv journal lock poisoned");
        let (outcome, mutation) = self.read(|state| state.plan(command));
        if let Some(mutation) = mutation {
            journal.record(&mutation)?;
            self.state
                .write()
                .expect("kv state lock poisoned")
                .apply(mutation);
        }
        Ok(outcome)
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().expect("kv state lock poisoned"))
    }

    /// Writes buffered entries recorded at least `min_age` ago and syncs them;
    /// returns how many were written. A no-op in [`Durability::SyncEachWrite`].
    pub fn flush(&self, min_age: Duration) -> Result<usize, StoreError> {
        let mut journal = self.journal.lock().expect("kv journal lock poisoned");
        journal.flush(min_age)
    }
}

/// The append side of the log.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
    /// Length of the file up to its last complete entry.
    len: u64,
    durability: Durability,
    /// Encoded lines not yet written, with when they were recorded (`Buffered` only).
    pending: VecDeque<(Instant, Vec<u8>)>,
}

impl Journal {
    fn new(path: PathBuf, file: File, len: usize, durability: Durability) -> Journal {
        Journal {
            path,
            file,
            len: len as u64,
            durability,
            pending: VecDeque::new(),
        }
    }

    fn record(&mut self, mutation: &Mutation) -> Result<(), StoreError> {
        let line = encode(mutation);
        match self.durability {
            Durability::SyncEachWrite => self.write_synced(&line),
            Durability::Buffered => {
                self.pending.push_back((Instant::now(), line));
                Ok(())
            }
        }
    }

    fn flush(&mut self, min_age: Duration) -> Result<usize, StoreError> {
        let n_due = self
            .pending
            .iter()
            .take_while(|(at, _)| at.elapsed() >= min_age)
            .count();
        if n_due == 0 {
            return Ok(0);
        }
        let due = self.pending.iter().take(n_due);
        let bytes: Vec<u8> = due.flat_map(|(_, line)| line.iter().copied()).collect();
        self.write_synced(&bytes)?;
        self.pending.drain(..n_due);
        Ok(n_due)
    }

    /// Appends whole lines and syncs them; on failure cuts the file back so a
    /// half-written line cannot end up in the middle of the log.
    fn write_synced(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let result = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = result {
            let _ = self.file.set_len(self.len);
            return Err(StoreError::Append {
                path: self.path.clone(),
                source,
            });
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

fn encode(mutation: &Mutation) -> Vec<u8> {
    let mut line = serde_json::to_vec(mutation).expect("a mutation always encodes as JSON");
    line.push(b'\n');
    line
}

fn read_log(path: &Path) -> Result<Vec<u8>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(StoreError::ReadLog {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Opens the log for appending, cutting off a torn tail past `valid_len`.
fn open_log(path: &Path, valid_len: usize) -> io::Result<File> {
    let existed = path.exists();
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    if file.metadata()?.len() != valid_len as u64 {
        file.set_len(valid_len as u64)?;
        file.sync_data()?;
    }
    if !existed {
        // Make the new file's directory entry durable too.
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(file)
}

/// The entries of a log and the length of its valid prefix.
#[derive(Debug, PartialEq, Eq)]
struct Replay {
    mutations: Vec<Mutation>,
    valid_len: usize,
}

/// Parses log lines. A last line that is unterminated or unparsable is torn (a
/// crash mid-write) and left out; a bad line before it is corruption, reported
/// with its 1-based number.
fn parse_log(bytes: &[u8]) -> Result<Replay, (usize, serde_json::Error)> {
    let mut mutations = Vec::new();
    let mut pos = 0;
    let mut line_no = 0;
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let end = pos + nl + 1;
        line_no += 1;
        let line = &bytes[pos..end - 1];
        if !line.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<Mutation>(line) {
                Ok(m) => mutations.push(m),
                Err(_) if end == bytes.len() => break,
                Err(e) => return Err((line_no, e)),
            }
        }
        pos = end;
    }
    Ok(Replay {
        mutations,
        valid_len: pos,
    })
}

#[cfg(test)]
mod tests;
