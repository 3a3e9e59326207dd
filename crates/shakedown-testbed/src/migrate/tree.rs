//! The directory-tree side of `migrate`: plan ranges of sorted paths, create the directories, copy each file by temp name and rename.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use super::items::{fails, injected_error, ItemOutcome};
use super::state::{Batch, FileRange};
use super::CopyError;
use crate::log::Logger;

/// Suffix of the temporary name a file is written under before its rename.
const TMP_SUFFIX: &str = ".migrate-tmp";

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |source| CopyError::Io { what, path, source }
}

/// Every regular file under `source`, sorted by relative path as a string,
/// cut into ranges of at most `batch_size` files; None when `stopped` says so.
pub fn plan(
    source: &Path,
    batch_size: u64,
    log: &Logger,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<Vec<Batch>>, CopyError> {
    assert!(batch_size > 0, "batch size 0");
    let Some(Listing { files, .. }) = list(source, Some(log), stopped)? else {
        return Ok(None);
    };
    let batches = files
        .chunks(usize::try_from(batch_size).unwrap_or(usize::MAX))
        .map(|chunk| {
            let (first, last) = (chunk[0].clone(), chunk[chunk.len() - 1].clone());
            Batch::Files(FileRange { first, last, count: chunk.len() as u64 })
        })
        .collect();
    Ok(Some(batches))
}

/// What a walk of the source found, relative paths sorted as strings.
struct Listing {
    files: Vec<String>,
    dirs: Vec<String>,
}

/// Walks the whole tree; None when stopped. Symlinks and special files are
/// skipped with a warning.
fn list(root: &Path, log: Option<&Logger>, stopped: &dyn Fn() -> bool) -> Result<Option<Listing>, CopyError> {
    let mut listing = Listing { files: Vec::new(), dirs: Vec::new() };
    if !walk(root, root, log, stopped, &mut listing)? {
        return Ok(None);
    }
    listing.files.sort();
    listing.dirs.sort();
    Ok(Some(listing))
}

/// Depth-first; false when stopped.
fn walk(
    root: &Path,
    dir: &Path,
    log: Option<&Logger>,
    stopped: &dyn Fn() -> bool,
    out: &mut Listing,
) -> Result<bool, CopyError> {
    if stopped() {
        return Ok(false);
    }
    let entries = std::fs::read_dir(dir).map_err(io_error("read directory", dir))?;
    let mut paths =
        entries.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>().map_err(io_error("read directory", dir))?;
    paths.sort();
    for path in paths {
        let meta = std::fs::symlink_metadata(&path).map_err(io_error("inspect", &path))?;
        let rel = relative(root, &path)?;
        if meta.is_dir() {
            out.dirs.push(rel);
            if !walk(root, &path, log, stopped, out)? {
                return Ok(false);
            }
        } else if meta.is_file() {
            out.files.push(rel);
        } else if let Some(log) = log {
            log.warn("skipped", &[("path", rel.into()), ("reason", "not a regular file or directory".into())]);
        }
    }
    Ok(true)
}

/// `path` under `root` as a `/`-separated UTF-8 string.
fn relative(root: &Path, path: &Path) -> Result<String, CopyError> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| CopyError::Unsupported(format!("{} escapes the source", path.display())))?;
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    match parts {
        Some(parts) => Ok(parts.join("/")),
        None => Err(CopyError::Unsupported(format!("{} is not a UTF-8 path", path.display()))),
    }
}

/// Whether `rel` is a plain relative path that stays under its root.
pub fn is_safe_relative(rel: &str) -> bool {
    !rel.is_empty() && Path::new(rel).components().all(|c| matches!(c, Component::Normal(_)))
}

/// The source and destination roots of a tree copy, and the source's files.
pub struct Copier {
    source: PathBuf,
    dest: PathBuf,
    /// The source's files as listed when the copy phase began, sorted.
    files: Vec<String>,
}

impl Copier {
    /// Lists the source again and creates the destination root and every
    /// directory of the source (so empty ones exist too).
    pub fn open(source: &Path, dest: &Path) -> Result<Copier, CopyError> {
        // The traversal already warned about what it skips.
        let Some(Listing { files, dirs }) = list(source, None, &|| false)? else {
            unreachable!("a listing that is never stopped");
        };
        std::fs::create_dir_all(dest).map_err(io_error("create directory", dest))?;
        for dir in dirs {
            let path = dest.join(dir);
            std::fs::create_dir_all(&path).map_err(io_error("create directory", &path))?;
        }
        Ok(Copier { source: source.to_path_buf(), dest: dest.to_path_buf(), files })
    }

    /// Copies each file of `range` to `NAME.migrate-tmp`, fsyncs it and
    /// renames it over `NAME`, then fsyncs the directories the batch wrote
    /// into. The files `--fail-every fail_every` picks (by 1-based position in
    /// the sorted listing) are left out and reported failed. A range that no
    /// longer holds exactly its planned files is an error.
    pub fn copy(&mut self, range: &FileRange, fail_every: u64) -> Result<Vec<ItemOutcome>, CopyError> {
        let lo = self.files.partition_point(|f| *f < range.first);
        let hi = self.files.partition_point(|f| *f <= range.last);
        let files = &self.files[lo..hi];
        let (first, last) = (files.first(), files.last());
        if files.len() as u64 != range.count || first != Some(&range.first) || last != Some(&range.last) {
            let what =
                format!("files {:?}..={:?}: planned {}, found {}", range.first, range.last, range.count, files.len());
            return Err(CopyError::SourceChanged(what));
        }
        let mut parents = BTreeSet::new();
        let mut outcomes = Vec::with_capacity(files.len());
        for (idx, rel) in files.iter().enumerate() {
            let position = i64::try_from(lo + idx + 1).unwrap_or(i64::MAX);
            if fails(position, fail_every) {
                outcomes.push(ItemOutcome::failed(rel.clone(), injected_error(position, fail_every)));
                continue;
            }
            let (from, to) = (self.source.join(rel), self.dest.join(rel));
            let parent = to.parent().unwrap_or(&self.dest).to_path_buf();
            std::fs::create_dir_all(&parent).map_err(io_error("create directory", &parent))?;
            let mut tmp = to.as_os_str().to_owned();
            tmp.push(TMP_SUFFIX);
            let tmp = PathBuf::from(tmp);
            std::fs::copy(&from, &tmp).map_err(io_error("copy", &from))?;
            File::open(&tmp).and_then(|file| file.sync_all()).map_err(io_error("sync", &tmp))?;
            std::fs::rename(&tmp, &to).map_err(io_error("rename into place", &to))?;
            parents.insert(parent);
            outcomes.push(ItemOutcome::copied(rel.clone()));
        }
        for parent in parents {
            File::open(&parent).and_then(|dir| dir.sync_all()).map_err(io_error("sync directory", &parent))?;
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, body: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }

    fn range(first: &str, last: &str, count: u64) -> Batch {
        Batch::Files(FileRange { first: first.into(), last: last.into(), count })
    }

    #[test]
    fn plans_ranges_of_sorted_paths_and_copies_them() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (rel, body) in [("b.txt", "b"), ("a/z", "z"), ("a/c/d", ""), ("e", "eee"), ("a-c", "-")] {
            write(src.path(), rel, body);
        }
        std::fs::create_dir(src.path().join("empty")).unwrap();
        std::os::unix::fs::symlink("e", src.path().join("link")).unwrap();
        let log = Logger::memory();
        let batches = plan(src.path(), 3, &log, &|| false).unwrap().unwrap();
        assert_eq!(batches, [range("a-c", "a/z", 3), range("b.txt", "e", 2)]);
        assert!(log.lines()[0].contains(r#""msg":"skipped","path":"link""#), "{:?}", log.lines());
        let target = dest.path().join("out");
        let mut copier = Copier::open(src.path(), &target).unwrap();
        for batch in batches.iter().chain(&batches[..1]) {
            let Batch::Files(files) = batch else { unreachable!() };
            copier.copy(files, 0).unwrap();
        }
        assert_eq!(std::fs::read_to_string(target.join("a/z")).unwrap(), "z");
        assert_eq!(std::fs::read_to_string(target.join("e")).unwrap(), "eee");
        assert!(target.join("empty").is_dir());
        assert!(!target.join("a/z.migrate-tmp").exists());
        assert_eq!(plan(src.path(), 3, &log, &|| true).unwrap(), None);
    }

    #[test]
    fn refuses_a_range_whose_files_changed() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for rel in ["a", "c", "d"] {
            write(src.path(), rel, rel);
        }
        let batches = plan(src.path(), 2, &Logger::memory(), &|| false).unwrap().unwrap();
        write(src.path(), "b", "new");
        std::fs::remove_file(src.path().join("d")).unwrap();
        let mut copier = Copier::open(src.path(), dest.path()).unwrap();
        for batch in &batches {
            let Batch::Files(files) = batch else { unreachable!() };
            let err = copier.copy(files, 0).unwrap_err();
            assert!(matches!(err, CopyError::SourceChanged(_)), "{err}");
        }
        assert!(!dest.path().join("a").exists(), "nothing of a changed range is copied");
    }

    #[test]
    fn safe_relative_paths() {
        for good in ["a", "a/b", "a b/c.txt"] {
            assert!(is_safe_relative(good), "{good}");
        }
        for bad in ["", "/a", "../a", "a/../../b", "./a"] {
            assert!(!is_safe_relative(bad), "{bad}");
        }
    }
}
