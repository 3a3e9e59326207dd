//! `shakedown proxy`, the binary: a real toxiproxy client library (the npm
//! toxiproxy-node-client) drives it, the latency it sets shows on the wire,
//! and bad arguments exit 3.

use crate::common::{repo_root, shakedown, stderr, write_file, SHAKEDOWN};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    if conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn round_trip(addr: &str) -> Duration {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    conn.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    started.elapsed()
}

#[test]
fn the_npm_toxiproxy_client_drives_shakedown_proxy() {
    let dir = repo_root().join("crates/shakedown-proxy/tests/toxiproxy-node");
    assert!(
        dir.join("node_modules/toxiproxy-node-client").exists(),
        "toxiproxy-node-client is missing: run scripts/install-deps"
    );
    let api = format!("127.0.0.1:{}", free_port());
    let mut proxy = Command::new(SHAKEDOWN)
        .args(["proxy", "--listen", &api, "--seed", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while TcpStream::connect(&api).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "shakedown proxy listens");
        std::thread::sleep(Duration::from_millis(20));
    }
    let upstream = echo_server();
    let out = Command::new("node")
        .arg("latency.js")
        .arg(format!("http://{api}"))
        .arg(upstream.to_string())
        .arg("300")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listen = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let slow = round_trip(&listen);
    assert!(slow >= Duration::from_millis(300), "the latency toxic shows: {slow:?}");
    assert!(round_trip(&upstream.to_string()) < Duration::from_millis(100), "the upstream itself is fast");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(proxy.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let status = proxy.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(TcpStream::connect(&listen).is_err(), "the proxy's links stop with it");
}

#[test]
fn shakedown_proxy_refuses_bad_arguments() {
    let o = shakedown(&["proxy", "--listen", "0.0.0.0:8474"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("not a loopback address"), "{}", stderr(&o));
    let tmp = tempfile::tempdir().unwrap();
    let config = write_file(tmp.path(), "proxies.json", "[{\"name\": \"a\",\n \"listen\": 5}]");
    let api = format!("127.0.0.1:{}", free_port());
    let o = shakedown(&["proxy", "--listen", &api, "--config", config.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("proxies.json:2:"), "the error names the line: {}", stderr(&o));
}
