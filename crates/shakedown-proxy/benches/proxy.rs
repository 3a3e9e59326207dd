//! Throughput and latency of the proxy beside direct loopback and socat (to be written).
fn main() {}
