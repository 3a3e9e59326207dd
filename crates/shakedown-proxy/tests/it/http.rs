//! The HTTP fault layer against a real axum upstream, observed by a real HTTP client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, Uri};
use axum::Router;
use shakedown_proxy::http::{AbortWhen, HttpFault, HttpFaultError, HttpFaultHandle, HttpFaultLayer, HttpRule};
use shakedown_proxy::{ConnectFuture, Connector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one test body on its own runtime with a deadline.
fn run(body: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async { tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test timed out") });
}

/// An upstream that counts the requests it handled and echoes them as
/// `METHOD PATH BODY`.
struct Upstream {
    addr: SocketAddr,
    n_handled: Arc<AtomicU64>,
}

impl Upstream {
    async fn start() -> Upstream {
        let n_handled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&n_handled);
        let echo = move |method: Method, uri: Uri, body: Bytes| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            format!("{method} {} {}", uri.path(), String::from_utf8_lossy(&body))
        };
        let router = Router::new().fallback(echo);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Upstream { addr, n_handled }
    }

    fn n_handled(&self) -> u64 {
        self.n_handled.load(Ordering::SeqCst)
    }
}

async fn layer(upstream: &Upstream, seed: u64) -> HttpFaultHandle {
    HttpFaultLayer::new(upstream.addr, seed).bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).pool_max_idle_per_host(0).build().unwrap()
}

/// Sends one request through `handle`: status, `Retry-After` and body, or the client's error.
async fn call(handle: &HttpFaultHandle, method: Method, path: &str, body: &str) -> Result<Reply, reqwest::Error> {
    let url = format!("http://{}{path}", handle.listen_addr());
    let response = client().request(method, url).body(body.to_string()).send().await?;
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await?;
    Ok(Reply { status, retry_after, body })
}

#[derive(Debug, PartialEq)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

fn ok(body: &str) -> Reply {
    Reply { status: 200, retry_after: None, body: body.to_string() }
}

fn status(code: u16) -> HttpRule {
    HttpRule::new(HttpFault::Status { status: code, retry_after: None, body: None })
}

fn abort(when: AbortWhen) -> HttpRule {
    HttpRule::new(HttpFault::Abort { when })
}

#[test]
fn requests_pass_untouched_without_rules() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        assert_eq!(call(&handle, Method::GET, "/a", "").await.unwrap(), ok("GET /a "));
        assert_eq!(call(&handle, Method::POST, "/b?x=1", "body").await.unwrap(), ok("POST /b body"));
        assert_eq!(upstream.n_handled(), 2);
        let counts = handle.stop().await;
        assert_eq!((counts.forwarded, counts.status, counts.upstream_errors), (2, 0, 0));
    });
}

#[test]
fn status_rule_answers_in_place_with_retry_after() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        let fault = HttpFault::Status { status: 429, retry_after: Some(1), body: Some("slow down".into()) };
        handle.set_rules(vec![HttpRule::new(fault)]).unwrap();
        let reply = call(&handle, Method::PUT, "/k", "v").await.unwrap();
        let expected = Reply { status: 429, retry_after: Some("1".into()), body: "slow down".into() };
        assert_eq!(reply, expected);
        handle.set_rules(vec![status(503)]).unwrap();
        let reply = call(&handle, Method::GET, "/k", "").await.unwrap();
        assert_eq!(reply, Reply { status: 503, retry_after: None, body: String::new() });
        assert_eq!(upstream.n_handled(), 0, "a status rule never forwards");
        assert_eq!(handle.counts().status, 2);
    });
}

#[test]
fn delay_rule_waits_then_forwards() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        handle.set_rules(vec![HttpRule::new(HttpFault::Delay { delay_ms: 300 })]).unwrap();
        let started = Instant::now();
        assert_eq!(call(&handle, Method::GET, "/d", "").await.unwrap(), ok("GET /d "));
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
        assert_eq!(upstream.n_handled(), 1);
        handle.clear();
        let started = Instant::now();
        call(&handle, Method::GET, "/d", "").await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
        assert_eq!(handle.counts().delay, 1);
    });
}

#[test]
fn abort_before_closes_without_forwarding() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        handle.set_rules(vec![abort(AbortWhen::Before)]).unwrap();
        let err = call(&handle, Method::POST, "/orders", "x").await.unwrap_err();
        assert!(!err.is_timeout(), "closed at once, not timed out: {err}");
        assert_eq!(upstream.n_handled(), 0);
        assert_eq!((handle.counts().abort_before, handle.counts().forwarded), (1, 0));
    });
}

#[test]
fn abort_after_reaches_the_upstream_but_loses_the_answer() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        handle.set_rules(vec![abort(AbortWhen::After)]).unwrap();
        let err = call(&handle, Method::POST, "/orders", "x").await.unwrap_err();
        assert!(!err.is_timeout(), "closed at once, not timed out: {err}");
        assert_eq!(upstream.n_handled(), 1, "the upstream applied the request");
        assert_eq!((handle.counts().abort_after, handle.counts().forwarded), (1, 1));
    });
}

#[test]
fn probability_zero_never_and_one_always_fires() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        handle.set_rules(vec![status(503).with_probability(0.0)]).unwrap();
        for _ in 0..20 {
            assert_eq!(call(&handle, Method::GET, "/p", "").await.unwrap().status, 200);
        }
        handle.set_rules(vec![status(503).with_probability(1.0)]).unwrap();
        for _ in 0..20 {
            assert_eq!(call(&handle, Method::GET, "/p", "").await.unwrap().status, 503);
        }
        assert_eq!(upstream.n_handled(), 20);
    });
}

#[test]
fn the_same_seed_hits_the_same_requests() {
    run(async {
        let upstream = Upstream::start().await;
        let statuses = |seed| {
            let upstream = &upstream;
            async move {
                let handle = layer(upstream, seed).await;
                handle.set_rules(vec![status(503).with_probability(0.5)]).unwrap();
                let mut statuses = Vec::new();
                for _ in 0..40 {
                    statuses.push(call(&handle, Method::GET, "/s", "").await.unwrap().status);
                }
                statuses
            }
        };
        let first = statuses(9).await;
        assert_eq!(first, statuses(9).await);
        assert_ne!(first, statuses(10).await);
        assert!(first.contains(&200) && first.contains(&503), "{first:?}");
    });
}

#[test]
fn filters_select_by_method_and_path_prefix() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        handle.set_rules(vec![status(503).with_method("post").with_path_prefix("/orders")]).unwrap();
        let cases = [(Method::GET, "/orders/1", 200), (Method::POST, "/other", 200), (Method::POST, "/orders/1", 503)];
        for (method, path, expected) in cases {
            let reply = call(&handle, method.clone(), path, "").await.unwrap();
            assert_eq!(reply.status, expected, "{method} {path}");
        }
        assert_eq!(upstream.n_handled(), 2);
    });
}

#[test]
fn rules_change_on_a_live_connection() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        // One keep-alive client, so the same connection sees every rule set.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let url = format!("http://{}/live", handle.listen_addr());
        let get = || async { client.get(&url).send().await.unwrap().status().as_u16() };
        assert_eq!(get().await, 200);
        handle.set_rules(vec![status(503)]).unwrap();
        assert_eq!(get().await, 503);
        handle.set_rules(vec![status(429), status(503)]).unwrap();
        assert_eq!(get().await, 429);
        assert_eq!(handle.rules(), vec![status(429), status(503)]);
        handle.clear();
        assert_eq!(get().await, 200);
    });
}

#[test]
fn garbage_on_the_socket_is_refused_and_the_layer_keeps_serving() {
    run(async {
        let upstream = Upstream::start().await;
        let handle = layer(&upstream, 1).await;
        let garbage: [&[u8]; 4] = [
            b"\x00\xff\x13garbage\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET /\r\nHost: \xff\r\n\r\n",
            &[b'A'; 70_000],
        ];
        for bytes in garbage {
            let answer = send_raw(handle.listen_addr(), bytes).await;
            assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer:?}");
        }
        // A request cut off in its headers, then the client goes away.
        send_raw(handle.listen_addr(), b"POST /x HTTP/1.1\r\nContent-Le").await;
        assert_eq!(call(&handle, Method::GET, "/after", "").await.unwrap(), ok("GET /after "));
        assert_eq!(upstream.n_handled(), 1);
    });
}

/// Writes `bytes`, half-closes, and reads whatever comes back before the close.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The layer may close before reading everything; that is an answer too.
    let _ = stream.write_all(bytes).await;
    let _ = stream.shutdown().await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the layer neither answered nor closed");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn an_unreachable_upstream_is_a_bad_gateway() {
    run(async {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let handle = HttpFaultLayer::new(addr, 1).bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let reply = call(&handle, Method::GET, "/", "").await.unwrap();
        assert_eq!(reply.status, 502, "{reply:?}");
        assert!(reply.body.starts_with("failed to connect to the upstream"), "{reply:?}");
        assert_eq!(handle.counts().upstream_errors, 1);
    });
}

#[test]
fn a_silent_upstream_times_out_as_a_gateway_timeout() {
    run(async {
        // Accepts connections (the kernel does) and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let layer = HttpFaultLayer::new(silent.local_addr().unwrap(), 1)
            .with_timeouts(Duration::from_secs(1), Duration::from_millis(200));
        let handle = layer.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_eq!(call(&handle, Method::GET, "/", "").await.unwrap().status, 504);
    });
}

#[test]
fn the_connector_opens_upstream_connections() {
    run(async {
        let upstream = Upstream::start().await;
        let n_connects = Arc::new(AtomicU64::new(0));
        let (real, counter) = (upstream.addr, Arc::clone(&n_connects));
        // The layer's own idea of the upstream is a dead address: only the
        // connector knows where the service really is.
        let connector: Arc<dyn Connector> = Arc::new(move |_addr| -> ConnectFuture {
            counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(TcpStream::connect(real))
        });
        let layer = HttpFaultLayer::new("127.0.0.1:9".parse().unwrap(), 1).with_connector(connector);
        let handle = layer.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_eq!(call(&handle, Method::GET, "/c", "").await.unwrap(), ok("GET /c "));
        assert_eq!(n_connects.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn start_takes_a_bound_listener_and_stop_closes_it() {
    run(async {
        let upstream = Upstream::start().await;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let handle = HttpFaultLayer::start(listener, upstream.addr, 1).unwrap();
        let addr = handle.listen_addr();
        assert_eq!(call(&handle, Method::GET, "/", "").await.unwrap().status, 200);
        handle.stop().await;
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting after stop");
    });
}

#[test]
fn bad_rules_and_addresses_are_refused() {
    run(async {
        let upstream = Upstream::start().await;
        let not_loopback = HttpFaultLayer::new(upstream.addr, 1).bind("0.0.0.0:0".parse().unwrap()).await;
        assert!(matches!(not_loopback, Err(HttpFaultError::NotLoopback(_))));
        let handle = layer(&upstream, 1).await;
        handle.set_rules(vec![status(503)]).unwrap();
        let err = handle.set_rules(vec![status(200), status(1000)]).unwrap_err().to_string();
        assert!(err.starts_with("read http rule: status 1000"), "{err}");
        assert!(handle.set_rules(vec![status(503).with_probability(-0.1)]).is_err());
        assert_eq!(handle.rules(), vec![status(503)], "a refused set leaves the rules as they were");
    });
}
