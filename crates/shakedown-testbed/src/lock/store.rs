//! The lock service's backing store: one JSON file per key in a directory that several servers share.
//!
//! Invariant: every read-modify-write of a key happens under an exclusive
//! `flock` on `DIR/lock.flock`, and a key's file is replaced atomically (a
//! fsync'd temporary file renamed over it, then the directory fsync'd), so a
//! primary and a backup pointed at the same directory see one history and a
//! crash leaves either the old or the new record, never half of one. `flock`
//! is released by the kernel when a process dies, so a killed server never
//! leaves the store locked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The file every server locks around a read-modify-write.
pub const LOCK_FILE: &str = "lock.flock";
/// The directory holding one `HEX(key).json` per key.
pub const KEYS_DIR: &str = "keys";
/// How long an operation waits for the other server to release the store.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Longest key accepted, in bytes.
const MAX_KEY_LEN: usize = 200;

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("create data dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("lock {path}: still held by another process after {waited_ms} ms")]
    LockTimeout { path: PathBuf, waited_ms: u128 },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("parse {path}: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error("write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// A key's lease: who holds it, with which fencing token, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub token: u64,
    pub expires_unix_ms: u64,
}

/// Everything stored for one key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub content: String,
    /// Bumped by every accepted write; 0 before the first.
    pub version: u64,
    /// The last fencing token handed out for this key; tokens only grow.
    pub fencing: u64,
    pub lease: Option<Lease>,
}

impl Record {
    /// The lease if it has not expired at `now_ms`.
    pub fn live_lease(&self, now_ms: u64) -> Option<&Lease> {
        self.lease.as_ref().filter(|lease| lease.expires_unix_ms > now_ms)
    }
}

/// What an acquire did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is the caller's; `renewed` when the caller already held it
    /// (same owner, same token, new expiry).
    Granted { lease: Lease, renewed: bool },
    /// Someone else holds a live lease.
    Held { lease: Lease },
}

/// Why a write or release with a token was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No live lease carries this token (a newer holder, a release, expiry).
    StaleToken { current: Option<u64> },
    /// The lease is right but the state moved on since the caller read it.
    StaleVersion { current: u64 },
}

/// A directory of key records shared by every server pointed at it.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Creates `dir` and its key directory if needed.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let keys = dir.join(KEYS_DIR);
        fs::create_dir_all(&keys).map_err(|source| StoreError::CreateDir { path: keys, source })?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    /// Grants `owner` the lease on `key` for `ttl` unless another owner holds
    /// a live one. The same owner gets its live lease back with the same token.
    pub fn acquire(&self, key: &str, owner: &str, ttl: Duration, now_ms: u64) -> Result<Acquired, StoreError> {
        self.update(key, |record| {
            let expires_unix_ms = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
            let held = record.live_lease(now_ms).cloned();
            let (token, renewed) = match held {
                Some(lease) if lease.owner != owner => return (false, Acquired::Held { lease }),
                Some(lease) => (lease.token, true),
                None => {
                    record.fencing += 1;
                    (record.fencing, false)
                }
            };
            let lease = Lease { owner: owner.to_string(), token, expires_unix_ms };
            record.lease = Some(lease.clone());
            (true, Acquired::Granted { lease, renewed })
        })
    }

    /// The record of `key` (empty, version 0, if never written).
    pub fn read(&self, key: &str) -> Result<Record, StoreError> {
        self.locked(|| read_record(&self.key_path(key)))
    }

    /// Replaces the content of `key` if `token` is the live lease's and
    /// `version` is the current one; returns the new version.
    pub fn write(
        &self,
        key: &str,
        token: u64,
        version: u64,
        content: &str,
        now_ms: u64,
    ) -> Result<Result<u64, Refusal>, StoreError> {
        self.update(key, |record| {
            if let Err(refusal) = check_token(record, token, now_ms) {
                return (false, Err(refusal));
            }
            if record.version != version {
                return (false, Err(Refusal::StaleVersion { current: record.version }));
            }
            record.version += 1;
            record.content = content.to_string();
            (true, Ok(record.version))
        })
    }

    /// Ends the lease carrying `token`.
    pub fn release(&self, key: &str, token: u64, now_ms: u64) -> Result<Result<(), Refusal>, StoreError> {
        self.update(key, |record| match check_token(record, token, now_ms) {
            Ok(()) => {
                record.lease = None;
                (true, Ok(()))
            }
            Err(refusal) => (false, Err(refusal)),
        })
    }

    /// Reads, changes and (when `change` says so) atomically rewrites a
    /// key's record, all under the store lock.
    fn update<T>(&self, key: &str, change: impl FnOnce(&mut Record) -> (bool, T)) -> Result<T, StoreError> {
        let path = self.key_path(key);
        self.locked(|| {
            let mut record = read_record(&path)?;
            let (changed, outcome) = change(&mut record);
            if changed {
                write_atomically(&path, &record)?;
            }
            Ok(outcome)
        })
    }

    /// Runs `f` holding the exclusive `flock` on [`LOCK_FILE`], waiting up to
    /// [`LOCK_WAIT`] for it.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let lock_err = |source| StoreError::Lock { path: path.clone(), source };
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(lock_err)?;
        let started = Instant::now();
        loop {
            // SAFETY: flock on a descriptor this function owns for the whole call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(lock_err(err));
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(StoreError::LockTimeout { path, waited_ms: started.elapsed().as_millis() });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Closing `file` when it drops releases the lock.
        f()
    }

    fn key_path(&self, key: &str) -> PathBuf {
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(KEYS_DIR).join(format!("{hex}.json"))
    }
}

/// Whether `key` is one the store takes: 1 to 200 bytes of letters, digits, `.`, `_`, `-`, `/`, `:`.
pub fn valid_key(key: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':');
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.chars().all(allowed)
}

fn check_token(record: &Record, token: u64, now_ms: u64) -> Result<(), Refusal> {
    match record.live_lease(now_ms) {
        Some(lease) if lease.token == token => Ok(()),
        live => Err(Refusal::StaleToken { current: live.map(|lease| lease.token) }),
    }
}

fn read_record(path: &Path) -> Result<Record, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt { path: path.into(), source }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Record::default()),
        Err(source) => Err(StoreError::Read { path: path.into(), source }),
    }
}

/// Writes `record` to a temporary file, fsyncs it, renames it over `path` and
/// fsyncs the directory, so readers see the old or the new record whole.
fn write_atomically(path: &Path, record: &Record) -> Result<(), StoreError> {
    let write_err = |source| StoreError::Write { path: path.to_path_buf(), source };
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let bytes = serde_json::to_vec(record).expect("a lock record always encodes as JSON");
    let mut file = File::create(&tmp).map_err(write_err)?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(write_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn granted(outcome: Acquired) -> Lease {
        match outcome {
            Acquired::Granted { lease, .. } => lease,
            held => panic!("not granted: {held:?}"),
        }
    }

    #[test]
    fn leases_tokens_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lease = granted(store.acquire("k", "a", TTL, 1000).unwrap());
        assert_eq!((lease.token, lease.expires_unix_ms), (1, 11_000));
        assert!(matches!(store.acquire("k", "b", TTL, 2000).unwrap(), Acquired::Held { .. }));
        let again = store.acquire("k", "a", TTL, 2000).unwrap();
        assert!(matches!(&again, Acquired::Granted { lease, renewed: true } if lease.token == 1), "{again:?}");
        assert_eq!(store.write("k", 1, 0, "x", 2000).unwrap(), Ok(1));
        assert_eq!(store.write("k", 1, 0, "y", 2000).unwrap(), Err(Refusal::StaleVersion { current: 1 }));
        assert_eq!(store.write("k", 7, 1, "y", 2000).unwrap(), Err(Refusal::StaleToken { current: Some(1) }));
        assert_eq!(store.release("k", 1, 2000).unwrap(), Ok(()));
        assert_eq!(store.write("k", 1, 1, "y", 2000).unwrap(), Err(Refusal::StaleToken { current: None }));
        let record = store.read("k").unwrap();
        assert_eq!((record.content.as_str(), record.version, record.lease), ("x", 1, None));
        // After expiry another owner gets a bigger token and the old one is fenced off.
        let first = granted(store.acquire("k", "a", TTL, 3000).unwrap());
        let second = granted(store.acquire("k", "b", TTL, 20_000).unwrap());
        assert!(second.token > first.token);
        assert_eq!(store.release("k", first.token, 20_000).unwrap(), Err(Refusal::StaleToken { current: Some(3) }));
        assert_eq!(store.read("never").unwrap(), Record::default());
    }

    #[test]
    fn two_stores_on_one_dir_share_state() {
        let dir = tempfile::tempdir().unwrap();
        let (primary, backup) = (Store::open(dir.path()).unwrap(), Store::open(dir.path()).unwrap());
        let lease = granted(primary.acquire("k", "a", TTL, 0).unwrap());
        assert!(matches!(backup.acquire("k", "b", TTL, 0).unwrap(), Acquired::Held { .. }));
        assert_eq!(backup.write("k", lease.token, 0, "from backup", 0).unwrap(), Ok(1));
        assert_eq!(primary.read("k").unwrap().content, "from backup");
    }

    #[test]
    fn validates_keys() {
        for good in ["k", "a/b:c.d_e-f", &"x".repeat(200)] {
            assert!(valid_key(good), "{good}");
        }
        for bad in ["", "a b", "a?b", "é", &"x".repeat(201)] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
