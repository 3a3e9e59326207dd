//! Integration tests of the fault proxy over real sockets.

mod http;
mod toxics;
