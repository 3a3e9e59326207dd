//! Reading input files safely: regular files only, at most a given size, and
//! UTF-8 text, with the line and column of the first byte that is not.
//!
//! A device (`/dev/zero`), a FIFO or a directory named as a scenario, an
//! include or a history would otherwise be read until memory runs out, or
//! block forever; a file past the size cap is refused before it is read whole.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// Why an input file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: is larger than the maximum of {}{}", crate::limits::describe_bytes(*max_bytes), size_note(*size))]
    TooLarge { path: String, max_bytes: u64, size: Option<u64> },
    #[error("{path}:{line}:{col}: invalid UTF-8 (byte 0x{byte:02x}); expected UTF-8 text")]
    InvalidUtf8 { path: String, line: usize, col: usize, byte: u8 },
}

fn size_note(size: Option<u64>) -> String {
    size.map(|n| format!(" ({n} bytes)")).unwrap_or_default()
}

impl ReadError {
    /// Whether the file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    /// The 1-based line the problem is on, when it has one (invalid UTF-8).
    pub fn line(&self) -> Option<usize> {
        match self {
            ReadError::InvalidUtf8 { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// Reads `path` as UTF-8 text if it is a regular file of at most `max_bytes`.
pub fn read_text_file(path: &Path, max_bytes: u64) -> Result<String, ReadError> {
    utf8_text(read_file(path, max_bytes)?, &path.display().to_string())
}

/// `bytes` as text; `origin` names them in the error, which gives the line
/// and column of the first byte that is not UTF-8.
pub fn utf8_text(bytes: Vec<u8>, origin: &str) -> Result<String, ReadError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let (line, col) = line_col(&bytes[..at]);
        ReadError::InvalidUtf8 { path: origin.to_string(), line, col, byte: bytes[at] }
    })
}

/// Reads `path`'s bytes if it is a regular file of at most `max_bytes`.
pub fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, ReadError> {
    let name = || path.display().to_string();
    let io = |source| ReadError::Io { path: name(), source };
    let file = open_regular(path, max_bytes)?;
    let meta = file.metadata().map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(max_bytes)).unwrap_or(0));
    file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > max_bytes) {
        return Err(ReadError::TooLarge { path: name(), max_bytes, size: None });
    }
    Ok(bytes)
}

/// Opens `path` for reading if it is a regular file of at most `max_bytes`
/// (as it is now: a reader of a growing file must cap what it reads itself).
pub fn open_regular(path: &Path, max_bytes: u64) -> Result<File, ReadError> {
    let name = || path.display().to_string();
    let io = |source| ReadError::Io { path: name(), source };
    // Looked at before opening: opening a FIFO blocks until a writer comes.
    let meta = std::fs::metadata(path).map_err(io)?;
    if let Some(kind) = not_regular(&meta.file_type()) {
        return Err(ReadError::NotRegular { path: name(), kind });
    }
    if meta.len() > max_bytes {
        return Err(ReadError::TooLarge { path: name(), max_bytes, size: Some(meta.len()) });
    }
    let file = File::open(path).map_err(io)?;
    // The open file may not be the one looked at (replaced in between), so
    // it is checked again, and read through a cap whatever it says its size is.
    let meta = file.metadata().map_err(io)?;
    if let Some(kind) = not_regular(&meta.file_type()) {
        return Err(ReadError::NotRegular { path: name(), kind });
    }
    Ok(file)
}

/// What a file is when it is not a regular file, as "a FIFO".
fn not_regular(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        return None;
    }
    let kinds = [
        (t.is_dir(), "a directory"),
        (t.is_char_device(), "a character device"),
        (t.is_block_device(), "a block device"),
        (t.is_fifo(), "a FIFO"),
        (t.is_socket(), "a socket"),
    ];
    Some(kinds.into_iter().find(|(is, _)| *is).map_or("not a file", |(_, kind)| kind))
}

/// The 1-based line and column (in characters) just after valid UTF-8 `prefix`.
fn line_col(prefix: &[u8]) -> (usize, usize) {
    let line_start = prefix.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let line = prefix.iter().filter(|b| **b == b'\n').count() + 1;
    let col = String::from_utf8_lossy(&prefix[line_start..]).chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    #[test]
    fn text_within_the_cap_is_read() {
        let f = file_with("name = \"ü\"\n".as_bytes());
        assert_eq!(read_text_file(f.path(), 64).unwrap(), "name = \"ü\"\n");
        assert_eq!(read_text_file(f.path(), 12).unwrap().len(), 12, "exactly the cap is fine");
    }

    #[test]
    fn invalid_utf8_names_its_line_and_column() {
        let f = file_with(b"name = \"a\"\nseed = \"\xc3\xbc\xff\"\n");
        let err = read_text_file(f.path(), 1024).unwrap_err();
        assert_eq!(err.line(), Some(2));
        let shown = err.to_string();
        assert!(shown.ends_with(":2:10: invalid UTF-8 (byte 0xff); expected UTF-8 text"), "{shown}");
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        for (path, kind) in
            [(Path::new("/dev/zero"), "a character device"), (fifo.as_path(), "a FIFO"), (dir.path(), "a directory")]
        {
            let err = read_text_file(path, 1024).unwrap_err().to_string();
            assert!(err.contains(&format!("is {kind}, not a regular file")), "{err}");
        }
    }

    #[test]
    fn files_past_the_cap_are_refused() {
        let f = file_with(&[b'a'; 100]);
        let err = read_text_file(f.path(), 99).unwrap_err().to_string();
        assert!(err.ends_with("is larger than the maximum of 99 bytes (100 bytes)"), "{err}");
        let err = read_text_file(Path::new("/nonexistent/x.toml"), 99).unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/x.toml: "), "{err}");
    }
}
