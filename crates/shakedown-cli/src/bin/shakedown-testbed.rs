//! The bundled testbed binary: services with bug switches for tests and the quick start.

fn main() -> std::process::ExitCode {
    shakedown_testbed::main()
}
