//! Compatibility with a real toxiproxy client: the npm package
//! toxiproxy-node-client resets, creates a proxy and adds a latency toxic
//! through our API (tests/toxiproxy-node/latency.js), and the latency shows
//! on the wire.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use shakedown_proxy::{serve_api, Registry};
use tokio::net::TcpListener;
use tokio::process::Command;

use crate::support::*;

const LATENCY_MS: u64 = 300;
const NODE_TIMEOUT: Duration = Duration::from_secs(20);

fn script_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/toxiproxy-node")
}

/// Fails (never skips) when node or the client library is missing.
fn require_node() {
    let installed = script_dir().join("node_modules/toxiproxy-node-client/package.json");
    assert!(
        installed.exists(),
        "toxiproxy-node-client is not installed in {}: run scripts/install-deps",
        script_dir().display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(node.is_ok_and(|o| o.status.success()), "node is not on PATH: run scripts/install-deps");
}

async fn run_script(api: SocketAddr, upstream: SocketAddr) -> SocketAddr {
    let mut command = Command::new("node");
    command.arg("latency.js").arg(format!("http://{api}")).arg(upstream.to_string()).arg(LATENCY_MS.to_string());
    command.current_dir(script_dir()).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(NODE_TIMEOUT, command.output()).await.expect("node timed out").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "latency.js failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout.trim().parse().unwrap_or_else(|_| panic!("latency.js printed {stdout:?}, not an address"))
}

#[test]
fn node_client_adds_a_latency_toxic() {
    require_node();
    run(async {
        let listener = TcpListener::bind(any_port()).await.unwrap();
        let api = listener.local_addr().unwrap();
        let registry = Arc::new(Registry::new(5));
        tokio::spawn(serve_api(listener, registry.clone(), std::future::pending()));
        let upstream = echo_server().await;

        let listen = run_script(api, upstream).await;
        let mut client = connect(listen).await;
        let slow = round_trip(&mut client, 64).await;
        assert!(slow >= Duration::from_millis(LATENCY_MS), "round trip {slow:?} under the toxic");

        registry.link("echo").await.unwrap().remove_toxic("slow").unwrap();
        let fast = round_trip(&mut client, 64).await;
        assert!(fast < Duration::from_millis(LATENCY_MS / 3), "round trip {fast:?} without the toxic");
        registry.shutdown().await;
    });
}
