//! Integration tests of the fault proxy over real sockets.

mod api;
mod api_guard;
mod api_limits;
mod capacity;
mod http;
mod support;
mod toxics;
mod toxiproxy_node;
