//! The toxiproxy-compatible API over real HTTP: every route, its status codes
//! and JSON shapes, and garbage that must not bring the server down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shakedown_proxy::{serve_api, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

use crate::support::*;

/// A running API server; dropping it shuts the server down.
pub(crate) struct Api {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    _stop: oneshot::Sender<()>,
}

pub(crate) async fn start_api() -> Api {
    let listener = TcpListener::bind(any_port()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let registry = Arc::new(Registry::new(1));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve_api(listener, registry.clone(), async move {
        let _ = stopped.await;
    }));
    Api { addr, registry, _stop: stop }
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body as
/// JSON (`Null` when empty or not JSON).
pub(crate) async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let raw = raw_exchange(addr, request.as_bytes(), false).await;
    let text = String::from_utf8_lossy(&raw);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Sends `bytes` and reads the answer to its end; `half_close` ends the
/// request stream, for requests that promise more than they send.
pub(crate) async fn raw_exchange(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Vec<u8> {
    let mut stream = connect(addr).await;
    // The server may close before reading all of the junk; that is its right.
    let _ = stream.write_all(bytes).await;
    if half_close {
        let _ = stream.shutdown().await;
    }
    let mut raw = Vec::new();
    let _ = timeout(IO_TIMEOUT, stream.read_to_end(&mut raw)).await.expect("answer timed out");
    raw
}

pub(crate) async fn create(api: &Api, name: &str, upstream: SocketAddr) -> Value {
    let body = json!({ "name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string() }).to_string();
    let (status, proxy) = call(api.addr, "POST", "/proxies", &body).await;
    assert_eq!(status, 201, "{proxy}");
    proxy
}

fn listen_of(proxy: &Value) -> SocketAddr {
    proxy["listen"].as_str().unwrap().parse().unwrap()
}

#[test]
fn proxy_routes() {
    run(async {
        let api = start_api().await;
        let upstream = echo_server().await;
        let (status, version) =
            raw_status(api.addr, "GET /version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
        assert_eq!(status, 200, "{version}");
        let proxy = create(&api, "echo", upstream).await;
        assert_eq!(proxy["name"], "echo");
        assert_eq!(proxy["enabled"], true);
        assert_eq!(proxy["upstream"], upstream.to_string());
        assert_eq!(proxy["toxics"], json!([]));
        round_trip(&mut connect(listen_of(&proxy)).await, 10).await;

        let (status, all) = call(api.addr, "GET", "/proxies", "").await;
        assert_eq!((status, all["echo"]["listen"].clone()), (200, proxy["listen"].clone()));
        let (status, one) = call(api.addr, "GET", "/proxies/echo", "").await;
        assert_eq!((status, one["name"].clone()), (200, json!("echo")));

        let (status, off) = call(api.addr, "POST", "/proxies/echo", r#"{"enabled":false}"#).await;
        assert_eq!((status, off["enabled"].clone()), (200, json!(false)));
        assert!(TcpStream::connect(listen_of(&proxy)).await.is_err(), "disabled proxies refuse connections");
        let (status, _) = call(api.addr, "POST", "/reset", "").await;
        assert_eq!(status, 204);
        assert_eq!(call(api.addr, "GET", "/proxies/echo", "").await.1["enabled"], true, "reset enables");

        let (status, moved) = call(api.addr, "POST", "/proxies/echo", r#"{"listen":"127.0.0.1:0"}"#).await;
        assert_eq!(status, 200);
        assert_ne!(moved["listen"], proxy["listen"], "a new listen address restarts the proxy there");
        round_trip(&mut connect(listen_of(&moved)).await, 10).await;

        let (status, _) = call(api.addr, "DELETE", "/proxies/echo", "").await;
        assert_eq!(status, 204);
        assert_eq!(call(api.addr, "GET", "/proxies/echo", "").await.0, 404);
        assert!(api.registry.list().await.is_empty());
    });
}

async fn raw_status(addr: SocketAddr, request: &str) -> (u16, String) {
    let raw = String::from_utf8_lossy(&raw_exchange(addr, request.as_bytes(), false).await).into_owned();
    (raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0), raw)
}

#[test]
fn toxic_routes() {
    run(async {
        let api = start_api().await;
        let proxy = create(&api, "echo", echo_server().await).await;
        let toxic =
            r#"{"name":"slow","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":200}}"#;
        let (status, added) = call(api.addr, "POST", "/proxies/echo/toxics", toxic).await;
        assert_eq!(status, 200, "{added}");
        assert_eq!(
            added,
            json!({"name":"slow","type":"latency","stream":"downstream","toxicity":1.0,
            "attributes":{"latency":200,"jitter":0}})
        );
        let mut client = connect(listen_of(&proxy)).await;
        assert!(round_trip(&mut client, 10).await >= Duration::from_millis(200));

        let (status, list) = call(api.addr, "GET", "/proxies/echo/toxics", "").await;
        assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(1)));
        assert_eq!(call(api.addr, "GET", "/proxies/echo", "").await.1["toxics"][0]["name"], "slow");
        let (status, one) = call(api.addr, "GET", "/proxies/echo/toxics/slow", "").await;
        assert_eq!((status, one["attributes"]["latency"].clone()), (200, json!(200)));

        let (status, updated) =
            call(api.addr, "POST", "/proxies/echo/toxics/slow", r#"{"attributes":{"latency":0}}"#).await;
        assert_eq!((status, updated["attributes"]["latency"].clone()), (200, json!(0)));
        assert!(round_trip(&mut client, 10).await < Duration::from_millis(150));

        let (status, _) = call(api.addr, "DELETE", "/proxies/echo/toxics/slow", "").await;
        assert_eq!(status, 204);
        let (status, _) = call(api.addr, "POST", "/proxies/echo/toxics", r#"{"type":"timeout"}"#).await;
        assert_eq!(status, 200, "defaults name the toxic timeout_downstream");
        assert_eq!(call(api.addr, "GET", "/proxies/echo/toxics/timeout_downstream", "").await.0, 200);
        assert_eq!(call(api.addr, "POST", "/reset", "").await.0, 204);
        assert_eq!(call(api.addr, "GET", "/proxies/echo/toxics", "").await.1, json!([]), "reset removes toxics");
    });
}

#[test]
fn populate_creates_and_replaces() {
    run(async {
        let api = start_api().await;
        let upstream = echo_server().await.to_string();
        let body = json!([{ "name": "a", "listen": "127.0.0.1:0", "upstream": upstream },
                          { "name": "b", "listen": "localhost:0", "upstream": upstream }]);
        let (status, made) = call(api.addr, "POST", "/populate", &body.to_string()).await;
        assert_eq!(status, 201, "{made}");
        assert_eq!(made["proxies"].as_array().unwrap().len(), 2);
        let again = json!([{ "name": "a", "listen": "127.0.0.1:0", "upstream": upstream, "enabled": false }]);
        let (status, replaced) = call(api.addr, "POST", "/populate", &again.to_string()).await;
        assert_eq!((status, replaced["proxies"][0]["enabled"].clone()), (201, json!(false)));
        assert_eq!(api.registry.list().await.len(), 2);
        let bad = json!([{ "name": "c", "listen": "0.0.0.0:0", "upstream": upstream }]);
        assert_eq!(call(api.addr, "POST", "/populate", &bad.to_string()).await.0, 400);
        assert_eq!(api.registry.list().await.len(), 2, "a rejected populate changes nothing");
    });
}

#[test]
fn errors_follow_toxiproxy() {
    run(async {
        let api = start_api().await;
        let upstream = echo_server().await;
        create(&api, "echo", upstream).await;
        let dup = json!({ "name": "echo", "upstream": upstream.to_string() }).to_string();
        let cases: Vec<(&str, &str, String, u16, &str)> = vec![
            ("POST", "/proxies", dup, 409, "already exists"),
            ("POST", "/proxies", r#"{"upstream":"127.0.0.1:1"}"#.into(), 400, "missing required field: name"),
            ("POST", "/proxies", r#"{"name":"x"}"#.into(), 400, "missing required field: upstream"),
            (
                "POST",
                "/proxies",
                r#"{"name":"x","listen":"0.0.0.0:0","upstream":"127.0.0.1:1"}"#.into(),
                400,
                "loopback",
            ),
            (
                "POST",
                "/proxies",
                r#"{"name":"x","listen":"192.168.1.1:80","upstream":"127.0.0.1:1"}"#.into(),
                400,
                "loopback",
            ),
            ("POST", "/proxies", "{not json".into(), 400, "read request body"),
            ("POST", "/proxies", r#"{"name":5}"#.into(), 400, "read request body"),
            ("GET", "/proxies/nope", String::new(), 404, "proxy not found"),
            ("DELETE", "/proxies/nope", String::new(), 404, "proxy not found"),
            ("POST", "/proxies/nope/toxics", r#"{"type":"latency"}"#.into(), 404, "proxy not found"),
            ("GET", "/proxies/echo/toxics/nope", String::new(), 404, "toxic not found"),
            ("DELETE", "/proxies/echo/toxics/nope", String::new(), 404, "toxic not found"),
            ("POST", "/proxies/echo/toxics", r#"{"type":"nope"}"#.into(), 400, "invalid toxic type"),
            ("POST", "/proxies/echo/toxics", r#"{"type":"latency","stream":"x"}"#.into(), 400, "stream was invalid"),
            ("POST", "/proxies/echo/toxics", r#"[1,2]"#.into(), 400, "read request body"),
            ("GET", "/nowhere", String::new(), 404, "no such route"),
        ];
        for (method, path, body, want, needle) in cases {
            let (status, answer) = call(api.addr, method, path, &body).await;
            assert_eq!(status, want, "{method} {path} {body}: {answer}");
            assert_eq!(answer["status"], want, "{answer}");
            assert!(answer["error"].as_str().unwrap().contains(needle), "{method} {path}: {answer}");
        }
        let toxic = r#"{"name":"t","type":"latency"}"#;
        assert_eq!(call(api.addr, "POST", "/proxies/echo/toxics", toxic).await.0, 200);
        let (status, answer) = call(api.addr, "POST", "/proxies/echo/toxics", toxic).await;
        assert_eq!((status, answer["status"].clone()), (409, json!(409)));
    });
}

#[test]
fn garbage_does_not_bring_the_server_down() {
    run(async {
        use rand::{Rng, RngCore, SeedableRng};
        let api = start_api().await;
        create(&api, "echo", echo_server().await).await;
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for i in 0..40 {
            let mut junk = vec![0u8; rng.gen_range(1..4000)];
            rng.fill_bytes(&mut junk);
            if i % 2 == 0 {
                // Raw bytes where a request line should be.
                let _ = raw_exchange(api.addr, &junk, true).await;
            } else {
                // A well-formed request carrying a junk JSON body.
                let body = String::from_utf8_lossy(&junk).into_owned();
                let path = ["/proxies", "/populate", "/proxies/echo", "/proxies/echo/toxics"][i % 4];
                let (status, _) = call(api.addr, "POST", path, &body).await;
                assert!((400..500).contains(&status), "junk to {path} answered {status}");
            }
        }
        let huge = format!(
            "POST /proxies HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            1 << 30
        );
        let _ = raw_exchange(api.addr, huge.as_bytes(), true).await;
        assert_eq!(call(api.addr, "GET", "/proxies/echo", "").await.0, 200, "still serving");
    });
}

#[test]
fn refuses_to_serve_beyond_loopback() {
    run(async {
        let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
        let served = serve_api(listener, Arc::new(Registry::new(0)), async {}).await;
        assert_eq!(served.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    });
}
