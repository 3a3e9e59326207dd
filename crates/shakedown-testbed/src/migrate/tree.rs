//! The directory-tree side of `migrate`: plan lists of files, create the directories, copy each file by temp name and rename.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use super::state::{Batch, FileList};
use super::{CopyError, Plan};
use crate::log::Logger;

/// Suffix of the temporary name a file is written under before its rename.
const TMP_SUFFIX: &str = ".migrate-tmp";

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |source| CopyError::Io { what, path, source }
}

/// Every regular file under `source` in path order, cut into lists of at most
/// `batch_size`, and every directory; None when `stopped` says so. Symlinks and
/// special files are skipped with a warning.
pub fn plan(
    source: &Path,
    batch_size: u64,
    log: &Logger,
    stopped: &dyn Fn() -> bool,
) -> Result<Option<Plan>, CopyError> {
    assert!(batch_size > 0, "batch size 0");
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    if !walk(source, source, log, stopped, &mut files, &mut dirs)? {
        return Ok(None);
    }
    let batches = files
        .chunks(usize::try_from(batch_size).unwrap_or(usize::MAX))
        .map(|chunk| Batch::Files(FileList { files: chunk.to_vec(), count: chunk.len() as u64 }))
        .collect();
    Ok(Some(Plan { batches, dirs }))
}

/// Depth-first, entries sorted by name; false when stopped.
fn walk(
    root: &Path,
    dir: &Path,
    log: &Logger,
    stopped: &dyn Fn() -> bool,
    files: &mut Vec<String>,
    dirs: &mut Vec<String>,
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
            dirs.push(rel);
            if !walk(root, &path, log, stopped, files, dirs)? {
                return Ok(false);
            }
        } else if meta.is_file() {
            files.push(rel);
        } else {
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

/// The source and destination roots of a tree copy.
pub struct Copier {
    source: PathBuf,
    dest: PathBuf,
}

impl Copier {
    /// Creates the destination root and every planned directory.
    pub fn open(source: &Path, dest: &Path, dirs: &[String]) -> Result<Copier, CopyError> {
        std::fs::create_dir_all(dest).map_err(io_error("create directory", dest))?;
        for dir in dirs {
            let path = dest.join(dir);
            std::fs::create_dir_all(&path).map_err(io_error("create directory", &path))?;
        }
        Ok(Copier { source: source.to_path_buf(), dest: dest.to_path_buf() })
    }

    /// Copies each file to `NAME.migrate-tmp`, fsyncs it and renames it over
    /// `NAME`, then fsyncs the directories the batch wrote into.
    pub fn copy(&mut self, list: &FileList) -> Result<(), CopyError> {
        let mut parents = BTreeSet::new();
        for rel in &list.files {
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
        }
        for parent in parents {
            File::open(&parent).and_then(|dir| dir.sync_all()).map_err(io_error("sync directory", &parent))?;
        }
        Ok(())
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

    #[test]
    fn plans_files_in_path_order_and_copies_them() {
        let (src, dest) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (rel, body) in [("b.txt", "b"), ("a/z", "z"), ("a/c/d", ""), ("e", "eee")] {
            write(src.path(), rel, body);
        }
        std::fs::create_dir(src.path().join("empty")).unwrap();
        std::os::unix::fs::symlink("e", src.path().join("link")).unwrap();
        let log = Logger::memory();
        let Plan { batches, dirs } = plan(src.path(), 3, &log, &|| false).unwrap().unwrap();
        let lists: Vec<Vec<String>> = batches
            .iter()
            .map(|b| match b {
                Batch::Files(list) => list.files.clone(),
                Batch::Rows(_) => panic!("row batch"),
            })
            .collect();
        assert_eq!(lists, [vec!["a/c/d", "a/z", "b.txt"], vec!["e"]]);
        assert_eq!(dirs, ["a", "a/c", "empty"]);
        assert!(log.lines()[0].contains(r#""msg":"skipped","path":"link""#), "{:?}", log.lines());
        let target = dest.path().join("out");
        let mut copier = Copier::open(src.path(), &target, &dirs).unwrap();
        for batch in batches.iter().chain(&batches[..1]) {
            let Batch::Files(list) = batch else { unreachable!() };
            copier.copy(list).unwrap();
        }
        assert_eq!(std::fs::read_to_string(target.join("a/z")).unwrap(), "z");
        assert_eq!(std::fs::read_to_string(target.join("e")).unwrap(), "eee");
        assert!(target.join("empty").is_dir());
        assert!(!target.join("a/z.migrate-tmp").exists());
        assert_eq!(plan(src.path(), 3, &log, &|| true).unwrap(), None);
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
