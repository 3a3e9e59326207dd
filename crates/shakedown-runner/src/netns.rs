//! Network namespaces for the Linux tier (to be written).
