//! Integration tests of the `shakedown` crate, in one test binary: the CLI end
//! to end, the built-in clients and faults, and the library facade.

mod architecture;
mod bugs;
mod check;
mod cli;
mod clients;
mod common;
mod containment;
mod engines;
mod environment;
mod etcd;
mod faults;
mod harness;
mod host;
mod library;
mod logs;
mod malformed;
mod matrix;
mod memory;
mod metrics;
mod postgres;
mod profiles;
mod proxy;
mod readiness;
mod resume;
mod scripted;
mod secrets;
mod state;
mod steps;
mod suites;
mod sweep;
mod versions;
