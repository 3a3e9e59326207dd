//! Shared helpers for the link and API tests: a runtime with a deadline,
//! real upstream servers, and socket reads that never wait unbounded.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shakedown_proxy::{Link, LinkConfig, Stream, Toxic, ToxicKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a single socket wait in a test may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one test body on its own two-thread runtime with a deadline.
pub fn run(body: impl Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async { timeout(TEST_TIMEOUT, body).await.expect("test timed out") });
}

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An echo server: every connection gets its bytes back until it closes.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// What an upstream observed of one connection: when it was accepted, and
/// the size of every read.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub accepted_at: Option<Instant>,
    pub reads: Vec<(Instant, usize)>,
}

/// An upstream that records accepts and reads (and answers nothing).
pub async fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let index = {
                let mut log = log.lock().unwrap();
                log.push(Seen { accepted_at: Some(Instant::now()), reads: Vec::new() });
                log.len() - 1
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    log.lock().unwrap()[index].reads.push((Instant::now(), n));
                }
            });
        }
    });
    (addr, seen)
}

/// Bytes the first connection to a recording server has read so far.
pub fn bytes_seen(seen: &Mutex<Vec<Seen>>) -> usize {
    seen.lock().unwrap().first().map_or(0, |c| c.reads.iter().map(|r| r.1).sum())
}

pub fn start_link(upstream: SocketAddr) -> Link {
    let mut config = LinkConfig::new("test", any_port(), upstream);
    config.seed = 7;
    Link::start(config).unwrap()
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    let stream = timeout(IO_TIMEOUT, TcpStream::connect(addr)).await.expect("connect timed out").unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

pub fn toxic(name: &str, kind: ToxicKind, stream: Stream) -> Toxic {
    Toxic::new(name, kind, stream)
}

pub fn latency(ms: u64) -> ToxicKind {
    ToxicKind::Latency { latency_ms: ms, jitter_ms: 0 }
}

/// Sends `n` bytes and reads them back; the time it took.
pub async fn round_trip(stream: &mut TcpStream, n: usize) -> Duration {
    let started = Instant::now();
    let data: Vec<u8> = (0..n).map(|i| i as u8).collect();
    stream.write_all(&data).await.unwrap();
    let mut back = vec![0u8; n];
    timeout(IO_TIMEOUT, stream.read_exact(&mut back)).await.expect("echo timed out").unwrap();
    assert_eq!(back, data, "bytes come back unchanged");
    started.elapsed()
}

/// Reads until end of stream or error; the bytes and how it ended.
pub async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match timeout(IO_TIMEOUT, stream.read(&mut buf)).await.expect("read timed out") {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => return (got, Err(err)),
        }
    }
}

/// Waits (bounded) until `check` holds, polling.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
