//! The repl service: primary and replica in-process on 127.0.0.1:0, the
//! replication link through real sockets (direct, a black hole, a forwarder
//! that splits bytes or cuts connections), driven over HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shakedown_testbed::repl::{self, Bug, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::support::{self, ok, run, status, Server};

/// Starts the service with its replica on `repl_listener`.
async fn start(repl_listener: TcpListener, config: Config) -> Server {
    support::start(move |listener, log, shutdown| repl::serve(listener, repl_listener, config.with_log(log), shutdown))
        .await
}

async fn bind() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// Polls `GET path` until it answers `expected`, for up to 5 s.
async fn eventually_reads(server: &Server, path: &str, expected: (u16, String)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = server.call("GET", path, "").await;
        if got == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{path} still reads {got:?}, not {expected:?}: {:?}", server.log.lines());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn acked_writes_are_read_from_the_replica() {
    run(async {
        let (repl_listener, repl_addr) = bind().await;
        let server = start(repl_listener, Config::new(repl_addr)).await;
        let cases = [
            ("GET", "/health", "", ok("ok")),
            ("GET", "/kv/r", "", status(404, "not found")),
            ("POST", "/kv/r/cas", r#"{"from":"a","to":"b"}"#, status(404, "not found")),
            ("PUT", "/kv/r", "a", ok("a")),
            ("GET", "/kv/r", "", ok("a")),
            ("POST", "/kv/r/cas", r#"{"from":"x","to":"b"}"#, status(409, "mismatch")),
            ("POST", "/kv/r/cas", r#"{"from":"a","to":"b"}"#, ok("b")),
            ("GET", "/kv/r", "", ok("b")),
            ("PUT", "/kv/n", "1", ok("1")),
            ("POST", "/kv/n/cas", r#"{"from":1,"to":2}"#, ok("2")),
            ("GET", "/kv/n", "", ok("2")),
        ];
        for (method, path, body, expected) in cases {
            assert_eq!(server.call(method, path, body).await, expected, "{method} {path} {body}");
        }
        assert_eq!(server.call("POST", "/kv/n/cas", "not json").await.0, 400);
        // Every 200 is visible at once on the replica: the read never goes stale.
        for i in 0..50 {
            let value = i.to_string();
            assert_eq!(server.call("PUT", "/kv/r", &value).await, ok(&value));
            assert_eq!(server.call("GET", "/kv/r", "").await, ok(&value));
        }
        assert!(server.logged("replica listening") && server.logged("replication connected"));
        server.stop().await;
    });
}

#[test]
fn a_black_hole_peer_times_writes_out_and_the_bug_acks_them() {
    run(async {
        // Connections complete in the kernel's backlog, but nothing ever reads or acks.
        let (_black_hole, hole_addr) = bind().await;
        for (bug, expected) in [(None, status(504, "replication ack timed out")), (Some(Bug::AckOnTimeout), ok("1"))] {
            let (repl_listener, _) = bind().await;
            let config = Config::new(hole_addr).with_ack_timeout(Duration::from_millis(100));
            let config = bug.into_iter().fold(config, Config::with_bug);
            let server = start(repl_listener, config).await;
            let started = Instant::now();
            assert_eq!(server.call("PUT", "/kv/r", "1").await, expected, "{bug:?}");
            assert!(started.elapsed() >= Duration::from_millis(100), "{:?}", started.elapsed());
            // The replica never got the write: with the bug, a read after a 200 is stale.
            assert_eq!(server.call("GET", "/kv/r", "").await, status(404, "not found"), "{bug:?}");
            server.stop().await;
        }
    });
}

#[test]
fn frames_split_into_single_bytes_still_parse() {
    run(async {
        let (repl_listener, repl_addr) = bind().await;
        let forwarder = Forwarder::start(repl_addr, Some(1)).await;
        let config = Config::new(forwarder.addr).with_ack_timeout(Duration::from_secs(5));
        let server = start(repl_listener, config).await;
        let long = "v".repeat(3000);
        let writes = [("r", "1"), ("ключ", "значение"), ("r", ""), ("long", long.as_str()), ("r", "22")];
        for (key, value) in writes {
            let path = format!("/kv/{}", percent_encode(key));
            assert_eq!(server.call("PUT", &path, value).await, ok(value), "{key}");
            assert_eq!(server.call("GET", &path, "").await, ok(value), "{key}");
        }
        assert!(forwarder.n_bytes.load(Ordering::SeqCst) > long.len());
        server.stop().await;
    });
}

#[test]
fn a_cut_link_reconnects_and_resends_unacked_writes() {
    run(async {
        let (repl_listener, repl_addr) = bind().await;
        let forwarder = Forwarder::start(repl_addr, None).await;
        let config = Config::new(forwarder.addr).with_ack_timeout(Duration::from_millis(200));
        let server = start(repl_listener, config).await;
        assert_eq!(server.call("PUT", "/kv/r", "1").await, ok("1"));
        forwarder.cut();
        assert_eq!(server.call("PUT", "/kv/r", "2").await, status(504, "replication ack timed out"));
        assert_eq!(server.call("GET", "/kv/r", "").await, ok("1"));
        forwarder.restore();
        // Nobody writes again: only a resend on the new connection can deliver "2".
        eventually_reads(&server, "/kv/r", ok("2")).await;
        assert_eq!(server.call("PUT", "/kv/r", "3").await, ok("3"));
        assert!(server.logged("replication link lost"));
        assert!(forwarder.n_accepted.load(Ordering::SeqCst) >= 2);
        server.stop().await;
    });
}

#[test]
fn a_stalled_link_is_redialed() {
    run(async {
        let (repl_listener, repl_addr) = bind().await;
        let forwarder = Forwarder::start(repl_addr, None).await;
        forwarder.swallow.store(true, Ordering::SeqCst);
        let mut config = Config::new(forwarder.addr).with_ack_timeout(Duration::from_millis(100));
        config.stall_timeout = Duration::from_millis(300);
        let server = start(repl_listener, config).await;
        // The connection stays open and silently drops the write: no error
        // ever comes, only the missing ack tells.
        assert_eq!(server.call("PUT", "/kv/r", "1").await, status(504, "replication ack timed out"));
        forwarder.swallow.store(false, Ordering::SeqCst);
        eventually_reads(&server, "/kv/r", ok("1")).await;
        let lost = server.log.lines().into_iter().find(|line| line.contains("replication link lost"));
        assert!(lost.is_some_and(|line| line.contains("with writes outstanding")), "{:?}", server.log.lines());
        server.stop().await;
    });
}

#[test]
fn dial_per_write_opens_a_connection_per_batch() {
    run(async {
        let (repl_listener, repl_addr) = bind().await;
        let forwarder = Forwarder::start(repl_addr, None).await;
        let config = Config::new(forwarder.addr).with_dial_per_write(true).with_ack_timeout(Duration::from_secs(2));
        let server = start(repl_listener, config).await;
        for value in ["1", "2", "3"] {
            assert_eq!(server.call("PUT", "/kv/r", value).await, ok(value));
            assert_eq!(server.call("GET", "/kv/r", "").await, ok(value));
        }
        assert_eq!(forwarder.n_accepted.load(Ordering::SeqCst), 3);
        server.stop().await;
    });
}

#[test]
fn garbage_on_the_replication_port_is_dropped() {
    run(async {
        let (repl_listener, repl_addr) = bind().await;
        let server = start(repl_listener, Config::new(repl_addr)).await;
        let mut stream = TcpStream::connect(repl_addr).await.expect("connect");
        stream.write_all(&[0xff; 64]).await.expect("write garbage");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok() && rest.is_empty(), "the replica should close without acking: {read:?} {rest:?}");
        assert!(server.logged("replication stream failed"));
        assert_eq!(server.call("PUT", "/kv/r", "1").await, ok("1"));
        server.stop().await;
    });
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A TCP forwarder in front of the replica: optionally writes everything in
/// chunks of `split` bytes, and can cut every connection and refuse new ones.
struct Forwarder {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// New connections are read and their bytes dropped: a black hole.
    swallow: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    n_accepted: Arc<AtomicUsize>,
    n_bytes: Arc<AtomicUsize>,
}

impl Forwarder {
    async fn start(upstream: SocketAddr, split: Option<usize>) -> Forwarder {
        let (listener, addr) = bind().await;
        let forwarder = Forwarder {
            addr,
            up: Arc::new(AtomicBool::new(true)),
            swallow: Arc::default(),
            live: Arc::default(),
            n_accepted: Arc::default(),
            n_bytes: Arc::default(),
        };
        let (up, live) = (Arc::clone(&forwarder.up), Arc::clone(&forwarder.live));
        let swallow = Arc::clone(&forwarder.swallow);
        let (n_accepted, n_bytes) = (Arc::clone(&forwarder.n_accepted), Arc::clone(&forwarder.n_bytes));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A cut link: the connection is closed as soon as it is made.
                if !up.load(Ordering::SeqCst) {
                    continue;
                }
                let task = if swallow.load(Ordering::SeqCst) {
                    tokio::spawn(drop_everything(client))
                } else {
                    n_accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(pipe(client, upstream, split, Arc::clone(&n_bytes)))
                };
                live.lock().unwrap().push(task.abort_handle());
            }
        });
        forwarder
    }

    /// Closes every live connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.live.lock().unwrap().drain(..).for_each(|task| task.abort());
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Reads and forgets whatever `client` sends, never answering.
async fn drop_everything(mut client: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(1..) = client.read(&mut buf).await {}
}

/// Forwards both ways between `client` and `upstream` until either side closes.
async fn pipe(client: TcpStream, upstream: SocketAddr, split: Option<usize>, n_bytes: Arc<AtomicUsize>) {
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    for stream in [&client, &server] {
        stream.set_nodelay(true).expect("nodelay");
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = copy(client_read, server_write, split, Arc::clone(&n_bytes)) => {}
        () = copy(server_read, client_write, split, n_bytes) => {}
    }
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    split: Option<usize>,
    n_bytes: Arc<AtomicUsize>,
) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            return;
        }
        n_bytes.fetch_add(n, Ordering::SeqCst);
        for chunk in buf[..n].chunks(split.unwrap_or(n)) {
            if to.write_all(chunk).await.is_err() {
                return;
            }
        }
    }
}
