//! Integration tests for the testbed services: real servers in-process on 127.0.0.1:0, driven over HTTP.

mod bank;
mod counter;
mod ids;
mod kv;
mod lock;
mod migrate;
mod queue;
mod queue_engines;
mod repl;
mod support;
mod sync;
