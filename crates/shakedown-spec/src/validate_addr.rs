//! Validation of what goes on the wire: URLs, `host:port` addresses, HTTP
//! methods and header names, and the numbers of toxics and HTTP faults.
//!
//! Templates are rendered with stand-in values for their placeholders (a
//! port for `{port}`, `127.0.0.1` for `{host}`, `1` for anything else), so
//! a URL that could never parse, such as `ht!tp://x`, is refused when the
//! scenario is read instead of failing every operation of the run.

use super::limits_check::{with, Zero};
use super::Validator;
use crate::error::Key;
use crate::fault::{HttpFaultSpec, ToxicSpec};
use crate::limits::{MAX_BANDWIDTH_KBS, MAX_OP_TIMEOUT, MAX_RETRY_AFTER_S, MAX_SLICE_BYTES};
use crate::model::RequestSpec;
use crate::template::{Part, Template, Var};

impl Validator<'_> {
    /// An http or https URL with a host, once its placeholders are filled.
    pub(super) fn url(&mut self, at: Vec<Key>, what: &str, t: &Template) {
        let Some(text) = stand_in(t) else { return };
        let like = "expected a URL like \"http://127.0.0.1:{port}\"";
        let problem = match url::Url::parse(&text) {
            Err(e) => format!("is not a URL ({e}); {like}"),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                format!("has scheme `{}`; expected http or https", u.scheme())
            }
            Ok(u) if u.host_str().is_none_or(str::is_empty) => format!("has no host; {like}"),
            Ok(_) => return,
        };
        self.err_at(at, format!("{what} {:?} {problem}", t.source()));
    }

    /// `host:port`, or a lone port when `port_alone` is allowed, once its
    /// placeholders are filled.
    pub(super) fn host_port(&mut self, at: Vec<Key>, what: &str, t: &Template, port_alone: bool) {
        let Some(text) = stand_in(t) else { return };
        let (host, port) = match (text.rsplit_once(':'), port_alone) {
            (Some((host, port)), _) => (Some(host), port),
            (None, true) => (None, text.as_str()),
            (None, false) => (Some(""), ""),
        };
        let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
        let host_ok = host.is_none_or(|h| !h.is_empty() && !h.contains(char::is_whitespace));
        if !(port_ok && host_ok) {
            let expected = if port_alone { "a port or `host:port`" } else { "`host:port`" };
            self.err_at(at, format!("{what} {:?} is not {expected} with a port of 1 to 65535", t.source()));
        }
    }

    /// The method and headers of an http action's request.
    pub(super) fn request(&mut self, at: Vec<Key>, ctx: &str, r: &RequestSpec) {
        if let Some(m) = &r.method {
            self.method(with(&at, [Key::from("method")]), ctx, m);
        }
        for (name, value) in &r.headers {
            let here = with(&at, [Key::from("headers"), Key::from(name)]);
            if !is_token(name) {
                self.err_at(here.clone(), format!("{ctx}header name {name:?} is not an HTTP token"));
            }
            if has_line_break(value) {
                self.err_at(here, format!("{ctx}header `{name}` holds a line break or NUL"));
            }
        }
        if has_line_break(&r.path) {
            self.err_at(with(&at, [Key::from("path")]), format!("{ctx}`path` holds a line break or NUL"));
        }
    }

    fn method(&mut self, at: Vec<Key>, ctx: &str, m: &str) {
        if !is_token(m) || m.len() > 32 {
            self.err_at(at, format!("{ctx}method {m:?} is not an HTTP method; expected e.g. GET, POST or PUT"));
        }
    }

    /// Toxics whose numbers the proxy cannot take: a slice of 0 bytes, a
    /// bandwidth of 0, delays past the operation timeout.
    pub(super) fn toxic_limits(&mut self, at: Vec<Key>, ctx: &str, t: &ToxicSpec) {
        let key = |k: &str| with(&at, [Key::from(k)]);
        let max = MAX_OP_TIMEOUT;
        match t {
            ToxicSpec::Latency { latency, jitter } => {
                self.dur(key("latency"), ctx, Some(*latency), Zero::Refused, max);
                self.dur(key("jitter"), ctx, *jitter, Zero::Allowed, max);
            }
            ToxicSpec::Bandwidth { rate } if *rate == 0 || *rate > MAX_BANDWIDTH_KBS => {
                let msg = format!("{ctx}bandwidth `rate` = {rate} KB/s is outside 1 to {MAX_BANDWIDTH_KBS}");
                self.err_at(key("rate"), msg);
            }
            ToxicSpec::Bandwidth { .. } | ToxicSpec::LimitData { .. } => {}
            ToxicSpec::SlowClose { delay } | ToxicSpec::SlowConnect { delay } => {
                self.dur(key("delay"), ctx, Some(*delay), Zero::Refused, max)
            }
            ToxicSpec::Timeout { timeout } | ToxicSpec::ResetPeer { timeout } => {
                self.dur(key("timeout"), ctx, *timeout, Zero::Allowed, max)
            }
            ToxicSpec::Slicer { average_size, size_variation, delay } => {
                if *average_size == 0 || *average_size > MAX_SLICE_BYTES {
                    let msg = format!("{ctx}slicer `average-size` = {average_size} is outside 1 to {MAX_SLICE_BYTES}");
                    self.err_at(key("average-size"), msg);
                }
                if let Some(v) = size_variation.filter(|v| v >= average_size) {
                    let msg =
                        format!("{ctx}slicer `size-variation` = {v} must be below `average-size` ({average_size})");
                    self.err_at(key("size-variation"), msg);
                }
                self.dur(key("delay"), ctx, *delay, Zero::Allowed, max);
            }
        }
    }

    pub(super) fn http_fault_limits(&mut self, at: Vec<Key>, ctx: &str, h: &HttpFaultSpec) {
        let key = |k: &str| with(&at, [Key::from(k)]);
        self.dur(key("delay"), ctx, h.delay, Zero::Refused, MAX_OP_TIMEOUT);
        if let Some(n) = h.retry_after {
            self.at_most(key("retry_after"), ctx, "retry_after", u64::from(n), u64::from(MAX_RETRY_AFTER_S));
        }
        if let Some(m) = &h.method {
            self.method(key("method"), ctx, m);
        }
    }
}

/// The template rendered with stand-ins; `None` when it starts with a
/// placeholder whose value could be a whole URL (`{env.BASE}`), which only
/// the run can tell.
fn stand_in(t: &Template) -> Option<String> {
    if let Some(Part::Var(v)) = t.parts().first() {
        if !matches!(v, Var::Port(_) | Var::ServicePort { .. } | Var::LinkPort(_) | Var::Host | Var::ServiceHost(_)) {
            return None;
        }
    }
    let filled = t.render::<()>(|v| {
        Ok(match v {
            Var::Port(_) | Var::ServicePort { .. } | Var::LinkPort(_) => "8080",
            Var::Host | Var::ServiceHost(_) => "127.0.0.1",
            _ => "1",
        }
        .to_string())
    });
    filled.ok()
}

/// An HTTP token (RFC 9110): what a method or a header name may be.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether the literal text of `t` holds CR, LF or NUL, which would end a header or request line.
fn has_line_break(t: &Template) -> bool {
    t.parts().iter().any(|p| matches!(p, Part::Lit(s) if s.contains(['\r', '\n', '\0'])))
}

#[cfg(test)]
mod tests {
    fn parse(text: &str) -> Result<crate::Scenario, String> {
        crate::parse(text, "t.toml").map_err(|e| e.to_string())
    }

    const HTTP: &str = "name = \"t\"\n[service.kv]\ncommand = [\"kv\"]\n[client]\nkind = \"http\"\n";

    #[test]
    fn client_base_urls_must_parse_with_stand_ins() {
        for good in [
            "http://127.0.0.1:{service.kv.port}",
            "https://{service.kv.host}:8443/api",
            "{env.BASE}",
            "http://{env.HOST}:{env.PORT}/x",
        ] {
            let text = format!("{HTTP}base = \"{good}\"\n");
            parse(&text).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let cases = [
            ("ht!tp://x", "t.toml:6:8: [client] `base` \"ht!tp://x\" is not a URL"),
            ("ftp://127.0.0.1/", "has scheme `ftp`; expected http or https"),
            ("http://", "is not a URL (empty host)"),
            ("http://127.0.0.1:99999", "is not a URL (invalid port number)"),
        ];
        for (bad, want) in cases {
            let err = parse(&format!("{HTTP}base = \"{bad}\"\n")).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn ready_probes_and_link_upstreams_need_addresses() {
        let svc = "name = \"t\"\n[service.kv]\ncommand = [\"kv\"]\n";
        parse(&format!("{svc}ready = {{ tcp = \"{{port}}\" }}\n")).unwrap();
        parse(&format!("{svc}ready = {{ tcp = \"{{host}}:{{port}}\" }}\n")).unwrap();
        parse(&format!("{svc}ready = {{ http = \"http://{{host}}:{{port}}/health\" }}\n")).unwrap();
        let err = parse(&format!("{svc}ready = {{ tcp = \"localhost:0\" }}\n")).unwrap_err();
        assert!(
            err.contains("t.toml:4:17: service `kv`: `ready.tcp` \"localhost:0\" is not a port or `host:port`"),
            "{err}"
        );
        let err = parse(&format!("{svc}ready = {{ http = \"127.0.0.1:{{port}}/health\" }}\n")).unwrap_err();
        assert!(err.contains("`ready.http` \"127.0.0.1:{port}/health\""), "{err}");
        let err = parse(&format!("{svc}[link.db]\nupstream = \"127.0.0.1:http\"\n")).unwrap_err();
        assert!(err.contains("t.toml:5:12: link `db`: `upstream` \"127.0.0.1:http\" is not `host:port`"), "{err}");
    }

    #[test]
    fn methods_and_header_names_are_http_tokens() {
        let action = |req: &str| {
            format!("{HTTP}base = \"http://{{service.kv.host}}:{{service.kv.port}}\"\n[[action]]\nf = \"get\"\nrequest = {req}\n")
        };
        parse(&action("{ method = \"PATCH\", path = \"/x\", headers = { x-id = \"{seq}\" } }")).unwrap();
        let err = parse(&action("{ method = \"GE T\", path = \"/x\" }")).unwrap_err();
        assert!(err.contains("t.toml:9:22: action `get`: method \"GE T\" is not an HTTP method"), "{err}");
        let err = parse(&action("{ path = \"/x\", headers = { \"a b\" = \"1\" } }")).unwrap_err();
        assert!(err.contains("header name \"a b\" is not an HTTP token"), "{err}");
        let err = parse(&action("{ path = \"/x\", headers = { a = \"1\\r\\nb: 2\" } }")).unwrap_err();
        assert!(err.contains("header `a` holds a line break"), "{err}");
    }

    #[test]
    fn toxic_numbers_the_proxy_cannot_take_are_refused() {
        let fault = |toxic: &str| {
            format!("name = \"t\"\n[service.kv]\ncommand = [\"kv\"]\n[link.l]\nupstream = \"127.0.0.1:{{service.kv.port}}\"\n[[fault]]\nkind = \"toxic\"\ntarget = \"l\"\nevery = \"1s\"\ntoxic = {toxic}\n")
        };
        parse(&fault("{ type = \"slicer\", average-size = 10, size-variation = 9 }")).unwrap();
        parse(&fault("{ type = \"bandwidth\", rate = 100 }")).unwrap();
        let cases = [
            (
                "{ type = \"slicer\", average-size = 0 }",
                "t.toml:10:43: fault `toxic`: slicer `average-size` = 0 is outside 1 to 1048576",
            ),
            (
                "{ type = \"slicer\", average-size = 4, size-variation = 4 }",
                "`size-variation` = 4 must be below `average-size` (4)",
            ),
            ("{ type = \"bandwidth\", rate = 0 }", "bandwidth `rate` = 0 KB/s is outside 1 to 10000000"),
            ("{ type = \"latency\", latency = \"0s\" }", "`latency` is 0s; expected a duration above 0"),
            ("{ type = \"latency\", latency = \"2h\" }", "`latency` = 2h is above the maximum of 1h"),
        ];
        for (toxic, want) in cases {
            let err = parse(&fault(toxic)).unwrap_err();
            assert!(err.contains(want), "{toxic}: {err}");
        }
    }
}
