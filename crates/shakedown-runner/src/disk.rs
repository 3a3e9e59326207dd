//! Disk-full faults: a size-limited tmpfs in a mount namespace (to be written).

/// Whether this machine can give a service a size-limited tmpfs in its own mount namespace.
pub fn probe() -> Result<(), String> {
    Err("not written yet".into())
}
