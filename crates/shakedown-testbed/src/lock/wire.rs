//! A minimal blocking HTTP/1.1 client for the testbed's CLI clients: one request per connection, JSON bodies.
//!
//! The lock and sync clients need to tell "the endpoint is unreachable or
//! went away" (fail over, retry) apart from "the endpoint answered with an
//! error", and every wait needs a deadline; a few dozen lines over
//! `std::net::TcpStream` make both explicit.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest response body read, so a misbehaving server cannot exhaust memory.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Why a request got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("parse endpoint {url:?}: {why}")]
    BadUrl { url: String, why: &'static str },
    #[error("connect to {addr}: {source}")]
    Connect { addr: String, source: io::Error },
    #[error("exchange with {addr}: {source}")]
    Io { addr: String, source: io::Error },
    #[error("read the response from {addr}: {why}")]
    BadResponse { addr: String, why: String },
}

impl WireError {
    /// Whether the request may not have reached the server or its answer was
    /// lost (as opposed to a malformed URL): the cases a client retries or
    /// fails over on.
    pub fn is_transport(&self) -> bool {
        !matches!(self, WireError::BadUrl { .. })
    }
}

/// An HTTP answer: status and body text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// Where to send requests: `http://HOST:PORT` with an optional path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given, for logs.
    pub url: String,
    host_port: String,
    prefix: String,
}

impl Endpoint {
    /// Parses `http://HOST:PORT[/PREFIX]`; only plain http is spoken.
    pub fn parse(url: &str) -> Result<Endpoint, WireError> {
        let bad = |why| WireError::BadUrl { url: url.to_string(), why };
        let rest = url.strip_prefix("http://").ok_or_else(|| bad("must start with http://"))?;
        let (host_port, prefix) = match rest.find('/') {
            Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host_port.is_empty() || !host_port.contains(':') {
            return Err(bad("must name HOST:PORT"));
        }
        Ok(Endpoint { url: url.to_string(), host_port: host_port.to_string(), prefix: prefix.to_string() })
    }

    /// Sends one request with a JSON body (or none) and reads the whole answer,
    /// giving up after `timeout` on connect and on each read or write.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>, timeout: Duration) -> Result<Reply, WireError> {
        let addr = self.resolve()?;
        let io = |source| WireError::Io { addr: self.host_port.clone(), source };
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|source| WireError::Connect { addr: self.host_port.clone(), source })?;
        stream.set_read_timeout(Some(timeout)).map_err(io)?;
        stream.set_write_timeout(Some(timeout)).map_err(io)?;
        let body = body.unwrap_or("");
        let head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.prefix,
            self.host_port,
            body.len()
        );
        stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes())).map_err(io)?;
        let mut response = Vec::new();
        stream.take(MAX_RESPONSE_BYTES).read_to_end(&mut response).map_err(io)?;
        parse_reply(&response).map_err(|why| WireError::BadResponse { addr: self.host_port.clone(), why })
    }

    fn resolve(&self) -> Result<SocketAddr, WireError> {
        let connect = |source| WireError::Connect { addr: self.host_port.clone(), source };
        let mut addrs = self.host_port.to_socket_addrs().map_err(connect)?;
        addrs.next().ok_or_else(|| connect(io::Error::new(io::ErrorKind::NotFound, "no address")))
    }
}

/// Splits a full HTTP/1.1 response into status and body, honouring
/// `Content-Length` when present (the connection was asked to close, so the
/// body otherwise runs to the end).
fn parse_reply(response: &[u8]) -> Result<Reply, String> {
    if response.is_empty() {
        return Err("the connection closed before a response".to_string());
    }
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse::<u16>().ok());
    let status = status.ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut body = &response[split + 4..];
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("chunked responses are not supported".to_string());
        }
        if name.eq_ignore_ascii_case("content-length") {
            let len: usize = value.trim().parse().map_err(|_| format!("bad content-length {value:?}"))?;
            if body.len() < len {
                return Err(format!("body cut short: {} of {len} bytes", body.len()));
            }
            body = &body[..len];
        }
    }
    Ok(Reply { status, body: String::from_utf8_lossy(body).into_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        let endpoint = Endpoint::parse("http://127.0.0.1:9/api/").unwrap();
        assert_eq!((endpoint.host_port.as_str(), endpoint.prefix.as_str()), ("127.0.0.1:9", "/api"));
        assert_eq!(Endpoint::parse("http://127.0.0.1:9").unwrap().prefix, "");
        for bad in ["127.0.0.1:9", "https://127.0.0.1:9", "http://", "http://host/x"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_replies() {
        let ok = parse_reply(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhiextra").unwrap();
        assert_eq!(ok, Reply { status: 200, body: "hi".to_string() });
        let to_end = parse_reply(b"HTTP/1.1 409 Conflict\r\n\r\n{}").unwrap();
        assert_eq!(to_end, Reply { status: 409, body: "{}".to_string() });
        let bad: [&[u8]; 4] = [
            b"",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhi",
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        ];
        for response in bad {
            assert!(parse_reply(response).is_err(), "{:?}", String::from_utf8_lossy(response));
        }
    }

    #[test]
    fn a_closed_port_is_a_transport_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let endpoint = Endpoint::parse(&format!("http://{addr}")).unwrap();
        let err = endpoint.call("GET", "/", None, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, WireError::Connect { .. }) && err.is_transport(), "{err}");
    }
}
