//! What the command prints on stderr, with secrets masked.
//!
//! Every human message goes through [`say!`] (a line) or [`say_part!`] (no
//! newline), and tracing through [`MaskedStderr`]: a profile's values and a
//! scenario's `env_secret` variables never reach the terminal or a CI log,
//! even inside an error quoting a build's output. A closed stderr is not an
//! error: the message is dropped.

use std::io::Write;

/// Prints a line on stderr with the process's secrets masked.
macro_rules! say {
    () => { $crate::output::stderr("\n") };
    ($($arg:tt)*) => { $crate::output::stderr(&(format!($($arg)*) + "\n")) };
}

/// Prints on stderr, without a newline, with the process's secrets masked.
macro_rules! say_part {
    ($($arg:tt)*) => { $crate::output::stderr(&format!($($arg)*)) };
}

/// Writes `text` to stderr, masked; errors (a closed stderr) are ignored.
pub fn stderr(text: &str) {
    let text = shakedown::redact::redact(text);
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A tracing writer: stderr, masked.
pub struct MaskedStderr;

impl Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        stderr(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
