//! Clock faults through libfaketime (to be written).

/// The libfaketime library to preload, or why there is none.
pub fn probe() -> Result<std::path::PathBuf, String> {
    Err("not written yet".into())
}
