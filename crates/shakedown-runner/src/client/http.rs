//! The `http` client: one request per operation against a base URL.

use super::{classify, Client, Operation, Outcome, Reply};
use shakedown_spec::ActionSpec;
use std::time::Duration;

/// Bodies longer than this are cut in the reply, so one huge answer cannot exhaust memory.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long a worker waits after a refused connection before its next op.
const CONNECT_FAIL_PAUSE: Duration = Duration::from_millis(20);

pub struct HttpClient {
    http: reqwest::Client,
    /// Base URL per actor (the base may name `{actor.*}`).
    bases: Vec<String>,
    actions: Vec<ActionSpec>,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(bases: Vec<String>, actions: Vec<ActionSpec>, timeout: Duration) -> Result<HttpClient, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(64)
            // Targets are on loopback or the run's own namespaces: never through a proxy.
            .no_proxy()
            .build()
            .map_err(|e| format!("build HTTP client: {e}"))?;
        Ok(HttpClient { http, bases, actions, timeout })
    }
}

#[async_trait::async_trait]
impl Client for HttpClient {
    async fn call(&self, op: Operation<'_>) -> Outcome {
        let action = &self.actions[op.action_index];
        let timeout = action.timeout.map_or(self.timeout, |d| d.0);
        let method = action.request.as_ref().and_then(|r| r.get_ref().method.clone()).unwrap_or_else(|| "GET".into());
        let Ok(method) = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
            return Outcome::fail(format!("invalid HTTP method {method:?}"));
        };
        let url = format!("{}{}", self.bases[op.actor_index].trim_end_matches('/'), op.rendered.path.as_deref().unwrap_or(""));
        let mut req = self.http.request(method, &url).timeout(timeout);
        for (k, v) in &op.rendered.headers {
            req = req.header(k, v);
        }
        if let Some(body) = &op.rendered.body {
            req = req.body(body.clone());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match read_body(resp).await {
                    Ok(out) => classify(action, &Reply { status: Some(status), out, ..Reply::default() }),
                    Err(e) => Outcome::info(format!("status {status}, reading the body failed: {e}")),
                }
            }
            // The request never left: it definitely did not take effect. The pause
            // keeps workers from spinning on a service that is down; it is harmless
            // because a fail never constrains a check.
            Err(e) if e.is_connect() => {
                tokio::time::sleep(CONNECT_FAIL_PAUSE).await;
                Outcome::fail(format!("connect {url}: {}", error_chain(&e)))
            }
            Err(e) if e.is_timeout() => Outcome::info(format!("timed out after {timeout:?}: {url}")),
            Err(e) => Outcome::info(format!("{url}: {}", error_chain(&e))),
        }
    }
}

async fn read_body(mut resp: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
