//! Files and directories of a run directory, created owner-only: a run's
//! history, logs and reports can hold replies and output nobody else should
//! read.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Mode of every file shakedown writes into a run directory.
pub const FILE_MODE: u32 = 0o600;
/// Mode of the run directory and the directories shakedown makes in it.
pub const DIR_MODE: u32 = 0o700;

/// Creates `path`, which must not exist yet, readable and writable by its owner only.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path)
}

/// Creates or truncates `path`, owner-only when it is new.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(FILE_MODE).open(path)?;
    f.write_all(bytes)
}

/// Opens `path` for appending, creating it owner-only.
pub fn append_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(FILE_MODE).open(path)
}

/// Creates `path` and its missing parents; the ones it creates are owner-only.
pub fn create_dir_private(path: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_and_dirs_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir_private(&dir).unwrap();
        create_private(&dir.join("h")).unwrap();
        assert!(create_private(&dir.join("h")).is_err(), "an existing file is never overwritten");
        write_private(&dir.join("r"), b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!((mode(&dir.join("h")), mode(&dir.join("r"))), (0o600, 0o600));
    }
}
