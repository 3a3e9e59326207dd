//! Integration tests of the fault proxy over real sockets.

mod api;
mod capacity;
mod http;
mod support;
mod toxics;
mod toxiproxy_node;
