//! The control API against slow and excess clients: half-sent headers, a
//! trickle of header bytes, an idle keep-alive connection and a body that
//! never arrives are all cut at their deadline, and connections over the cap
//! are answered 503 at once; afterwards the API serves as before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shakedown_proxy::{serve_api_with, ApiLimits, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::api::call;
use crate::support::*;

const HEADER_TIMEOUT: Duration = Duration::from_millis(300);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// What a cut may take beyond its deadline on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(1500);
const HALF_SENT: &[u8] = b"POST /proxies HTTP/1.1\r\nHost: localhost\r\nContent-Type: appl";

/// An API server with short limits; it stops when the sender drops.
async fn start(max_connections: usize) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ApiLimits { header_read_timeout: HEADER_TIMEOUT, request_timeout: REQUEST_TIMEOUT, max_connections };
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    tokio::spawn(serve_api_with(listener, Arc::new(Registry::new(3)), limits, shutdown));
    (addr, stop)
}

/// Reads until the server closes; what it sent and how long that took.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = timeout(IO_TIMEOUT, stream.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server kept the connection open for {IO_TIMEOUT:?}");
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

fn assert_cut_at(elapsed: Duration, deadline: Duration, what: &str) {
    let early = deadline.saturating_sub(Duration::from_millis(50));
    assert!(elapsed >= early && elapsed < deadline + SLACK, "{what} cut after {elapsed:?}, deadline {deadline:?}");
}

#[test]
fn two_thousand_half_sent_requests_are_all_closed_and_the_api_recovers() {
    run(async {
        let (addr, _stop) = start(64).await;
        let mut clients = JoinSet::new();
        for _ in 0..2000 {
            let mut stream = connect(addr).await;
            // A client refused over the cap may be closed before it writes.
            let _ = stream.write_all(HALF_SENT).await;
            clients.spawn(async move { until_closed(&mut stream).await });
        }
        let answers = clients.join_all().await;
        // Served ones are closed without an answer at the header timeout;
        // each timeout frees a slot for a later client while they connect.
        let busy = answers.iter().filter(|(text, _)| text.starts_with("HTTP/1.1 503")).count();
        let cut = answers.iter().filter(|(text, _)| text.is_empty()).count();
        assert_eq!(busy + cut, 2000, "each was answered 503 or cut");
        assert!(busy >= 1000, "only {busy} of 2000 were refused over the cap of 64");
        let slowest = answers.iter().map(|(_, elapsed)| *elapsed).max().unwrap();
        assert!(slowest < HEADER_TIMEOUT + SLACK, "the last half-sent request was cut after {slowest:?}");
        assert_eq!(call(addr, "GET", "/proxies", "").await.0, 200, "the API serves again");
    });
}

#[test]
fn a_trickle_of_header_bytes_is_cut_at_the_header_timeout() {
    run(async {
        let (addr, _stop) = start(8).await;
        let mut stream = connect(addr).await;
        let started = Instant::now();
        let trickle = async {
            for byte in HALF_SENT {
                stream.write_all(&[*byte]).await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok::<_, std::io::Error>(())
        };
        let sent = timeout(IO_TIMEOUT, trickle).await.expect("the server neither read nor closed");
        if sent.is_ok() {
            until_closed(&mut stream).await;
        }
        assert_cut_at(started.elapsed(), HEADER_TIMEOUT, "a trickle of header bytes");
    });
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_header_timeout() {
    run(async {
        let (addr, _stop) = start(8).await;
        let mut stream = connect(addr).await;
        stream.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        timeout(IO_TIMEOUT, stream.read_exact(&mut head)).await.expect("no answer").unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        let (_, elapsed) = until_closed(&mut stream).await;
        assert_cut_at(elapsed, HEADER_TIMEOUT, "an idle keep-alive connection");
    });
}

#[test]
fn a_body_that_never_arrives_is_answered_408_at_the_request_timeout() {
    run(async {
        let (addr, _stop) = start(8).await;
        let mut stream = connect(addr).await;
        let head = "POST /proxies HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
        stream.write_all(format!("{head}{{\"name\":").as_bytes()).await.unwrap();
        let (answer, elapsed) = until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["status"], 408, "{body}");
        assert_cut_at(elapsed, REQUEST_TIMEOUT, "a body that never arrives");
    });
}

#[test]
fn connections_over_the_cap_are_answered_503_until_a_slot_frees() {
    run(async {
        let (addr, _stop) = start(4).await;
        let mut holding = Vec::new();
        for _ in 0..4 {
            let mut stream = connect(addr).await;
            stream.write_all(HALF_SENT).await.unwrap();
            holding.push(stream);
        }
        // The server sees the four before the fifth: it accepts in order.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (status, body) = call(addr, "GET", "/proxies", "").await;
        assert_eq!((status, body["status"].clone()), (503, Value::from(503)), "{body}");
        for stream in &mut holding {
            until_closed(stream).await;
        }
        eventually_status(addr, 200).await;
    });
}

/// Polls `GET /proxies` (bounded) until it answers `want`.
async fn eventually_status(addr: SocketAddr, want: u16) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let (status, _) = call(addr, "GET", "/proxies", "").await;
        if status == want {
            return;
        }
        assert!(Instant::now() < deadline, "the API still answers {status}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn stopping_closes_idle_and_half_sent_connections() {
    run(async {
        let listener = TcpListener::bind(any_port()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Long limits, so only the stop can close these connections in time.
        let limits = ApiLimits { header_read_timeout: Duration::from_secs(60), ..ApiLimits::default() };
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let server = tokio::spawn(serve_api_with(listener, Arc::new(Registry::new(3)), limits, shutdown));
        let mut idle = connect(addr).await;
        idle.write_all(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let mut head = [0u8; 12];
        timeout(IO_TIMEOUT, idle.read_exact(&mut head)).await.expect("no answer").unwrap();
        let mut half = connect(addr).await;
        half.write_all(HALF_SENT).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let started = Instant::now();
        drop(stop);
        let served = timeout(IO_TIMEOUT + SLACK, server).await.expect("the server did not stop in time");
        served.unwrap().unwrap();
        assert!(started.elapsed() < SLACK, "stopped after {:?}", started.elapsed());
        until_closed(&mut idle).await;
        until_closed(&mut half).await;
    });
}
