//! What the command prints: stderr with secrets masked, and neither stream
//! ever panicking.
//!
//! The print macros here shadow std's in every module of the binary (main.rs
//! declares this module first, with `#[macro_use]`):
//! - std's `println!` and `eprintln!` panic when the reader of a pipe has
//!   gone, as in `shakedown run ... 2>&1 | head -1`, which would end a run
//!   with exit 101 and its services unstopped; here the text is dropped.
//! - Everything on stderr is masked: a profile's values and a scenario's
//!   `env_secret` variables never reach the terminal or a CI log, even inside
//!   an error quoting a build's output. Tracing writes through [`MaskedStderr`].
//!
//! Stdout carries results (`--format json`), which are masked where they are
//! made (as JSON values, see `Report::to_json_pretty`).

use std::io::Write;

/// Writes to stderr with the process's secrets masked, dropping the text
/// when stderr is closed.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    let text = shakedown::redact::redact(&args.to_string());
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Writes to stdout, dropping the text when stdout is closed; results that
/// must stop once nobody reads use `cli::print_line`, which says so.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(args).and_then(|()| out.flush());
}

/// `eprintln!` that masks secrets and drops its line when stderr is a closed pipe.
macro_rules! eprintln {
    () => {
        $crate::output::write_stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that masks secrets and drops its text when stderr is a closed pipe.
macro_rules! eprint {
    ($($arg:tt)*) => {
        $crate::output::write_stderr(format_args!($($arg)*))
    };
}

/// `println!` that drops its line when stdout is a closed pipe.
macro_rules! println {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that drops its text when stdout is a closed pipe.
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// A tracing writer: stderr, masked.
pub struct MaskedStderr;

impl Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_stderr(format_args!("{}", String::from_utf8_lossy(buf)));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
