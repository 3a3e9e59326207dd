//! Testbed services with bug switches (placeholder, being written).

/// Entry point of the `shakedown-testbed` binary.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
