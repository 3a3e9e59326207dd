//! Workload engine throughput against an in-process no-op client.
fn main() {}
