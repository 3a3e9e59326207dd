//! The control API against browsers: a foreign `Host` (DNS rebinding), a
//! state-changing request from a foreign `Origin` (CSRF), and a body that is
//! not JSON are refused with 403 and change nothing; toxiproxy's own clients
//! (JSON bodies, empty POSTs with or without a content type) still pass.

use std::net::SocketAddr;

use serde_json::Value;

use crate::api::{call, create, raw_exchange, start_api, Api};
use crate::support::*;

const TOXIC: &str = r#"{"name":"slow","type":"latency","attributes":{"latency":10}}"#;

/// Sends one request with exactly `headers` (each ending in CRLF) and
/// `body`; the status and the body as JSON (`Null` when not JSON).
async fn send(addr: SocketAddr, request_line: &str, headers: &str, body: &str) -> (u16, Value) {
    let length = if body.is_empty() { String::new() } else { format!("Content-Length: {}\r\n", body.len()) };
    let raw = format!("{request_line}\r\n{headers}{length}Connection: close\r\n\r\n{body}");
    let answer = raw_exchange(addr, raw.as_bytes(), false).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Runs each `(request line, headers, body, wanted status)`; a 403 must come
/// with toxiproxy's JSON error body.
async fn check(api: &Api, cases: &[(&str, String, &str, u16)]) {
    for (line, headers, body, want) in cases {
        let (status, answer) = send(api.addr, line, headers, body).await;
        assert_eq!(status, *want, "{line} with {headers:?}: {answer}");
        if *want == 403 {
            assert_eq!(answer["status"], 403, "{line} with {headers:?}: {answer}");
            assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{answer}");
        }
    }
}

#[test]
fn foreign_hosts_are_refused_and_loopback_names_pass() {
    run(async {
        let api = start_api().await;
        let port = api.addr.port();
        let get = "GET /version HTTP/1.1";
        let host = |value: &str| format!("Host: {value}\r\n");
        check(
            &api,
            &[
                (get, host("evil.example"), "", 403),
                (get, host(&format!("evil.example:{port}")), "", 403),
                (get, host("127.0.0.1.evil.example"), "", 403),
                (get, host("localhost.evil.example"), "", 403),
                (get, host("10.0.0.1"), "", 403),
                (get, host("[::2]"), "", 403),
                (get, host("localhost:notaport"), "", 403),
                (get, String::new(), "", 403),
                (get, format!("{}{}", host("localhost"), host("evil.example")), "", 403),
                (get, host("localhost"), "", 200),
                (get, host("LocalHost"), "", 200),
                (get, host(&format!("localhost:{port}")), "", 200),
                (get, host(&format!("127.0.0.1:{port}")), "", 200),
                (get, host("127.9.8.7"), "", 200),
                (get, host(&format!("[::1]:{port}")), "", 200),
                (get, host("[::1]"), "", 200),
            ],
        )
        .await;
    });
}

#[test]
fn cross_origin_and_non_json_writes_are_refused_and_change_nothing() {
    run(async {
        let api = start_api().await;
        create(&api, "echo", echo_server().await).await;
        assert_eq!(call(api.addr, "POST", "/proxies/echo/toxics", TOXIC).await.0, 200);
        let host = format!("Host: {}\r\n", api.addr);
        let with = |extra: &str| format!("{host}{extra}");
        let evil_text = with("Origin: http://evil.example\r\nContent-Type: text/plain\r\n");
        let evil_json = with("Origin: http://evil.example\r\nContent-Type: application/json\r\n");
        check(
            &api,
            &[
                ("POST /reset HTTP/1.1", evil_text.clone(), "x", 403),
                ("POST /reset HTTP/1.1", evil_text, "", 403),
                ("POST /reset HTTP/1.1", with("Origin: null\r\n"), "", 403),
                ("POST /reset HTTP/1.1", with("Origin: http://localhost.evil.example\r\n"), "", 403),
                ("POST /proxies/echo HTTP/1.1", evil_json, r#"{"enabled":false}"#, 403),
                ("DELETE /proxies/echo HTTP/1.1", with("Origin: https://evil.example:8443\r\n"), "", 403),
                ("POST /proxies/echo/toxics/slow HTTP/1.1", with("Content-Type: text/plain\r\n"), "{}", 403),
                ("POST /proxies/echo/toxics/slow HTTP/1.1", with(""), r#"{"toxicity":0.5}"#, 403),
                (
                    "POST /proxies/echo HTTP/1.1",
                    with("Content-Type: application/x-www-form-urlencoded\r\n"),
                    "a=b",
                    403,
                ),
                ("POST /populate HTTP/1.1", with("Content-Type: multipart/form-data; boundary=x\r\n"), "[]", 403),
                // Reads are harmless: a browser's same-origin policy keeps the answer from the page.
                ("GET /proxies/echo HTTP/1.1", with("Origin: http://evil.example\r\n"), "", 200),
            ],
        )
        .await;
        let (_, proxy) = call(api.addr, "GET", "/proxies/echo", "").await;
        assert_eq!(proxy["enabled"], true, "no refused request took the proxy down");
        assert_eq!(proxy["toxics"][0]["name"], "slow", "no refused request reset or removed the toxic");
        assert_eq!(proxy["toxics"][0]["toxicity"], 1.0, "no refused request updated the toxic");
    });
}

#[test]
fn toxiproxy_clients_requests_pass() {
    run(async {
        let api = start_api().await;
        create(&api, "echo", echo_server().await).await;
        let host = format!("Host: {}\r\n", api.addr);
        let with = |extra: &str| format!("{host}{extra}");
        let json_utf8 = with("Content-Type: Application/JSON; charset=utf-8\r\n");
        let local_origin = with("Origin: http://localhost:3000\r\nContent-Type: application/json\r\n");
        check(
            &api,
            &[
                ("POST /proxies/echo/toxics HTTP/1.1", json_utf8, TOXIC, 200),
                ("POST /proxies/echo/toxics/slow HTTP/1.1", local_origin, r#"{"toxicity":0.5}"#, 200),
                // toxiproxy-node-client: an empty POST with no content type, and Content-Length: 0.
                ("POST /reset HTTP/1.1", with("Content-Length: 0\r\n"), "", 204),
                // toxiproxy's Go client up to 2.1 posts /reset as text/plain with an empty body.
                ("POST /reset HTTP/1.1", with("Content-Type: text/plain\r\nContent-Length: 0\r\n"), "", 204),
                ("DELETE /proxies/echo HTTP/1.1", with("Origin: http://127.0.0.1:9\r\n"), "", 204),
            ],
        )
        .await;
        assert_eq!(call(api.addr, "GET", "/proxies/echo", "").await.0, 404, "the allowed DELETE went through");
    });
}
