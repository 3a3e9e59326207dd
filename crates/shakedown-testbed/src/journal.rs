//! An append-only JSON-lines log shared by the services: open, replay, append (fsync'd or buffered).
//!
//! Invariant: the file only ever holds whole lines. A torn last line (a crash
//! mid-write) is cut off when the log is opened, and a failed append is cut
//! back, so replay sees exactly the entries that were acknowledged as durable.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a log could not be opened, replayed or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("create data dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("read log {path}: {source}")]
    ReadLog { path: PathBuf, source: io::Error },
    #[error("replay log {path}: line {line_no} is not a valid entry: {source}")]
    Corrupt { path: PathBuf, line_no: usize, source: serde_json::Error },
    #[error("open log {path}: {source}")]
    OpenLog { path: PathBuf, source: io::Error },
    #[error("append to log {path}: {source}")]
    Append { path: PathBuf, source: io::Error },
}

/// When a recorded entry reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written and `sync_data`'d before [`Journal::record`] returns (the correct builds).
    SyncEachWrite,
    /// Kept in memory until [`Journal::flush`] (the lose-on-kill bugs).
    Buffered,
}

/// What replaying the log found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub n_entries: usize,
    /// Bytes of an incomplete last line that were cut off (0 if none).
    pub torn_bytes: usize,
}

/// Creates `dir` if needed, replays `dir/file_name` and opens it for appending.
pub fn open<T: DeserializeOwned>(
    dir: &Path,
    file_name: &str,
    durability: Durability,
) -> Result<(Journal, Vec<T>, Recovery), JournalError> {
    fs::create_dir_all(dir).map_err(|source| JournalError::CreateDir { path: dir.to_path_buf(), source })?;
    let path = dir.join(file_name);
    let bytes = read_log(&path)?;
    let replay = parse_log::<T>(&bytes).map_err(|(line_no, source)| JournalError::Corrupt {
        path: path.clone(),
        line_no,
        source,
    })?;
    let file =
        open_log(&path, replay.valid_len).map_err(|source| JournalError::OpenLog { path: path.clone(), source })?;
    let recovery = Recovery { n_entries: replay.entries.len(), torn_bytes: bytes.len() - replay.valid_len };
    let journal =
        Journal { path, file, len: replay.valid_len as u64, durability, pending: VecDeque::new(), broken: false };
    Ok((journal, replay.entries, recovery))
}

/// The append side of a log.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Length of the file up to its last complete entry.
    len: u64,
    durability: Durability,
    /// Encoded lines not yet written, with when they were recorded (`Buffered` only).
    pending: VecDeque<(Instant, Vec<u8>)>,
    /// A failed append could not be cut back, so the file may end in a partial
    /// line; appending after it would bury that line mid-log, so every later
    /// append fails instead.
    broken: bool,
}

impl Journal {
    /// Records `entry`: durable on return with [`Durability::SyncEachWrite`],
    /// buffered otherwise. Blocks on disk I/O.
    pub fn record<T: Serialize>(&mut self, entry: &T) -> Result<(), JournalError> {
        let line = encode(entry);
        match self.durability {
            Durability::SyncEachWrite => self.write_synced(&line),
            Durability::Buffered => {
                self.pending.push_back((Instant::now(), line));
                Ok(())
            }
        }
    }

    /// Writes buffered entries recorded at least `min_age` ago and syncs them;
    /// returns how many were written.
    pub fn flush(&mut self, min_age: Duration) -> Result<usize, JournalError> {
        let n_due = self.pending.iter().take_while(|(at, _)| at.elapsed() >= min_age).count();
        if n_due == 0 {
            return Ok(0);
        }
        let due = self.pending.iter().take(n_due);
        let bytes: Vec<u8> = due.flat_map(|(_, line)| line.iter().copied()).collect();
        self.write_synced(&bytes)?;
        self.pending.drain(..n_due);
        Ok(n_due)
    }

    /// Makes every later append fail, as a full disk would, by swapping the
    /// file for a read-only handle (which also cannot be cut back).
    #[cfg(test)]
    pub(crate) fn fail_appends(&mut self) {
        self.file = File::open(&self.path).expect("reopen the log read-only");
    }

    /// Appends whole lines and syncs them; on failure cuts the file back so a
    /// half-written line cannot end up in the middle of the log.
    fn write_synced(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        if self.broken {
            let source = io::Error::other("an earlier failed append could not be cut back");
            return Err(JournalError::Append { path: self.path.clone(), source });
        }
        let result = self.file.write_all(bytes).and_then(|()| self.file.sync_data());
        if let Err(source) = result {
            self.broken = self.file.set_len(self.len).is_err();
            return Err(JournalError::Append { path: self.path.clone(), source });
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// One log line: the entry's JSON and a newline.
pub(crate) fn encode<T: Serialize>(entry: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(entry).expect("a log entry always encodes as JSON");
    line.push(b'\n');
    line
}

fn read_log(path: &Path) -> Result<Vec<u8>, JournalError> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(JournalError::ReadLog { path: path.to_path_buf(), source }),
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
pub(crate) struct Replay<T> {
    pub(crate) entries: Vec<T>,
    pub(crate) valid_len: usize,
}

/// Parses log lines. A last line that is unterminated or unparsable is torn (a
/// crash mid-write) and left out; a bad line before it is corruption, reported
/// with its 1-based number.
pub(crate) fn parse_log<T: DeserializeOwned>(bytes: &[u8]) -> Result<Replay<T>, (usize, serde_json::Error)> {
    let mut entries = Vec::new();
    let mut pos = 0;
    let mut line_no = 0;
    while let Some(nl) = bytes[pos..].iter().position(|&b| b == b'\n') {
        let end = pos + nl + 1;
        line_no += 1;
        let line = &bytes[pos..end - 1];
        if !line.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<T>(line) {
                Ok(entry) => entries.push(entry),
                Err(_) if end == bytes.len() => break,
                Err(e) => return Err((line_no, e)),
            }
        }
        pos = end;
    }
    Ok(Replay { entries, valid_len: pos })
}
