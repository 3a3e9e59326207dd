//! The fault proxy: TCP links that pass bytes through a chain of toxics
//! (latency, bandwidth, slow connect, timeout, reset, slicer, data limit, down),
//! an HTTP fault layer (injected statuses, delays, aborts), and a
//! toxiproxy-compatible HTTP control API.

pub mod http;
