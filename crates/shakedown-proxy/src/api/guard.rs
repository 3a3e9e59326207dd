//! Keeps web pages from driving the control API. A page can make a browser
//! send requests to loopback: after DNS rebinding its own host name points
//! at 127.0.0.1 (the request carries that foreign `Host`), and a plain form
//! or `fetch` can POST `text/plain` cross-origin without a CORS preflight
//! (the request carries the page's `Origin`). So every request must name a
//! loopback host, and a state-changing one must not come from a foreign
//! origin nor carry a body that is not JSON. Toxiproxy's clients send JSON,
//! or no body at all (some with a `text/plain` content type), and no `Origin`.

use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN, TRANSFER_ENCODING};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{Ipv4Addr, Ipv6Addr};

use super::ApiError;

/// Answers 403 to a request `refusal` names, and passes the others on.
pub(super) async fn guard(request: Request, next: Next) -> Response {
    match refusal(request.method(), request.headers()) {
        Some(reason) => {
            tracing::debug!(method = %request.method(), uri = %request.uri(), reason, "refused an API request");
            ApiError::new(StatusCode::FORBIDDEN, reason.to_string()).into_response()
        }
        None => next.run(request).await,
    }
}

/// Why a request must be refused, or `None` when it may pass.
fn refusal(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    let mut hosts = headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.to_str().ok(),
        _ => return Some("serve request: it needs exactly one Host header"),
    };
    if !host.is_some_and(is_loopback_authority) {
        return Some("serve request: Host must be localhost, 127.x.x.x or [::1] (DNS rebinding guard)");
    }
    if method.is_safe() {
        return None;
    }
    if let Some(origin) = headers.get(ORIGIN) {
        if !origin.to_str().is_ok_and(is_loopback_origin) {
            return Some("change state: cross-origin requests are refused (CSRF guard)");
        }
    }
    if has_body(headers) && !is_json(headers) {
        return Some("change state: a request body must be sent as Content-Type: application/json");
    }
    None
}

/// Whether the request says it carries a body: a non-zero length, or chunks.
fn has_body(headers: &HeaderMap) -> bool {
    let length = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok());
    headers.contains_key(TRANSFER_ENCODING) || length.is_some_and(|l| l.trim() != "0")
}

/// Whether the media type (parameters such as charset aside) is JSON.
fn is_json(headers: &HeaderMap) -> bool {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let media_type = content_type.map(|t| t.split(';').next().unwrap_or("").trim());
    media_type.is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
}

/// `http://` or `https://` and a loopback authority, as browsers serialise origins.
fn is_loopback_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let web = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    web && is_loopback_authority(authority)
}

/// `localhost`, an address in 127.0.0.0/8 or `[::1]`, each with an optional port.
fn is_loopback_authority(authority: &str) -> bool {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((ip, rest)) = bracketed.split_once(']') else { return false };
        let port_ok = rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port);
        return port_ok && ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    let host = match authority.split_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return false,
        None => authority,
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_digit()) && text.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    /// `expected`: whether the request passes.
    fn check(method: Method, pairs: &[(&'static str, &'static str)], expected: bool) {
        let refused = refusal(&method, &headers(pairs));
        assert_eq!(refused.is_none(), expected, "{method} {pairs:?}: {refused:?}");
    }

    #[test]
    fn hosts() {
        for host in ["localhost", "LOCALHOST:80", "127.0.0.1", "127.255.0.9:8474", "[::1]", "[::1]:8474"] {
            check(Method::GET, &[("host", host)], true);
        }
        let foreign = ["evil.example", "evil.example:8474", "127.0.0.1.nip.io", "localhost.", "0.0.0.0", "[::]", ""];
        for host in foreign.into_iter().chain(["[::1", "[::1]x", "localhost:", "localhost:99999", "127.1", "::1"]) {
            check(Method::GET, &[("host", host)], false);
        }
        check(Method::GET, &[], false);
        check(Method::GET, &[("host", "localhost"), ("host", "localhost")], false);
    }

    #[test]
    fn origins_of_state_changing_requests() {
        let host = ("host", "localhost:8474");
        check(Method::POST, &[host, ("origin", "http://localhost:3000")], true);
        check(Method::DELETE, &[host, ("origin", "https://127.0.0.1")], true);
        check(Method::PUT, &[host, ("origin", "http://[::1]:1")], true);
        for origin in ["http://evil.example", "null", "file://", "localhost", "ftp://localhost", "http://localhost/x"] {
            check(Method::POST, &[host, ("origin", origin)], false);
            check(Method::PATCH, &[host, ("origin", origin)], false);
        }
        check(Method::GET, &[host, ("origin", "http://evil.example")], true);
    }

    #[test]
    fn bodies_of_state_changing_requests() {
        let host = ("host", "127.0.0.1");
        check(Method::POST, &[host], true);
        check(Method::POST, &[host, ("content-length", "0")], true);
        check(Method::POST, &[host, ("content-length", "0"), ("content-type", "text/plain")], true);
        check(Method::POST, &[host, ("content-length", "2"), ("content-type", "application/json")], true);
        check(
            Method::POST,
            &[host, ("content-length", "2"), ("content-type", "application/json; charset=utf-8")],
            true,
        );
        check(Method::POST, &[host, ("content-length", "2")], false);
        check(Method::POST, &[host, ("content-length", "2"), ("content-type", "text/plain")], false);
        check(Method::POST, &[host, ("transfer-encoding", "chunked"), ("content-type", "text/plain")], false);
        check(Method::POST, &[host, ("content-length", "2"), ("content-type", "application/jsonx")], false);
        check(Method::GET, &[host, ("content-length", "2"), ("content-type", "text/plain")], true);
    }
}
