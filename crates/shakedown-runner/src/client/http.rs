//! The `http` client: one request per operation against a base URL.

use super::{classify, Client, Operation, Outcome, Reply};
use shakedown_spec::{ActionSpec, RetrySpec};
use std::time::Duration;

/// Bodies longer than this are cut in the reply, so one huge answer cannot exhaust memory.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long a worker waits after a refused connection before its next op.
const CONNECT_FAIL_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause between two attempts, however often the backoff doubled.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest wait a `Retry-After` header can ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);

/// The client's retry policy, resolved from `[client.retry]`.
#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub on: Vec<u16>,
    pub on_error: bool,
    pub backoff: Duration,
}

impl Retry {
    /// No retries: the default when `[client.retry]` is absent.
    pub fn none() -> Retry {
        Retry { attempts: 1, on: Vec::new(), on_error: false, backoff: Duration::ZERO }
    }

    pub fn from_spec(spec: &RetrySpec) -> Retry {
        Retry {
            attempts: spec.attempts.map_or(3, |a| a.get()),
            on: spec.on.clone().unwrap_or_else(|| vec![429, 503]),
            on_error: spec.on_error.unwrap_or(true),
            backoff: spec.backoff.map_or(Duration::from_millis(20), |d| d.0),
        }
    }
}

/// What one attempt came to, before classification.
enum Attempt {
    Replied {
        status: u16,
        retry_after: Option<Duration>,
        body: Result<String, String>,
    },
    Refused(String),
    /// The request could not even be built (a URL or header that is not
    /// valid): it never left, so it cannot have taken effect.
    NotSent(String),
    TimedOut,
    Broken(String),
}

pub struct HttpClient {
    http: reqwest::Client,
    /// Base URL per actor (the base may name `{actor.*}`).
    bases: Vec<String>,
    actions: Vec<ActionSpec>,
    timeout: Duration,
    retry: Retry,
}

impl HttpClient {
    pub fn new(
        bases: Vec<String>,
        actions: Vec<ActionSpec>,
        timeout: Duration,
        retry: Retry,
    ) -> Result<HttpClient, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(64)
            // Targets are on loopback or the run's own namespaces: never through a proxy.
            .no_proxy()
            .build()
            .map_err(|e| format!("build HTTP client: {e}"))?;
        Ok(HttpClient { http, bases, actions, timeout, retry })
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
        let url = format!(
            "{}{}",
            self.bases[op.actor_index].trim_end_matches('/'),
            op.rendered.path.as_deref().unwrap_or("")
        );
        if let Err(e) = reqwest::Url::parse(&url) {
            return Outcome::fail(format!("not sent: {url:?} is not a valid URL ({e})"));
        }
        let mut backoff = self.retry.backoff;
        for attempt in 1..=self.retry.attempts {
            let last = attempt == self.retry.attempts;
            let outcome = self.attempt(&op, method.clone(), &url, timeout).await;
            let retry_after = match &outcome {
                Attempt::Replied { status, retry_after, .. } if self.retry.on.contains(status) => Some(*retry_after),
                Attempt::Refused(_) | Attempt::TimedOut | Attempt::Broken(_) if self.retry.on_error => Some(None),
                Attempt::NotSent(_) => None,
                _ => None,
            };
            match retry_after {
                Some(after) if !last => {
                    tokio::time::sleep(after.unwrap_or(backoff)).await;
                    backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                }
                _ => return self.outcome(action, outcome, &url, timeout).await,
            }
        }
        unreachable!("the last attempt always returns")
    }
}

impl HttpClient {
    async fn attempt(&self, op: &Operation<'_>, method: reqwest::Method, url: &str, timeout: Duration) -> Attempt {
        let mut req = self.http.request(method, url).timeout(timeout);
        for (k, v) in &op.rendered.headers {
            req = req.header(k, v);
        }
        if let Some(body) = &op.rendered.body {
            req = req.body(body.clone());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                    .map(|secs| Duration::from_secs(secs).min(MAX_RETRY_AFTER));
                let body = read_body(resp).await.map_err(|e| e.to_string());
                Attempt::Replied { status, retry_after, body }
            }
            Err(e) if e.is_connect() => Attempt::Refused(error_chain(&e)),
            Err(e) if e.is_builder() => Attempt::NotSent(error_chain(&e)),
            Err(e) if e.is_timeout() => Attempt::TimedOut,
            Err(e) => Attempt::Broken(error_chain(&e)),
        }
    }

    async fn outcome(&self, action: &ActionSpec, attempt: Attempt, url: &str, timeout: Duration) -> Outcome {
        match attempt {
            Attempt::Replied { status, body: Ok(out), .. } => {
                classify(action, &Reply { status: Some(status), out, ..Reply::default() })
            }
            Attempt::Replied { status, body: Err(e), .. } => {
                Outcome::info(format!("status {status}, reading the body failed: {e}"))
            }
            // The request never left: it definitely did not take effect. The pause
            // keeps workers from spinning on a service that is down; it is harmless
            // because a fail never constrains a check.
            Attempt::Refused(e) => {
                tokio::time::sleep(CONNECT_FAIL_PAUSE).await;
                Outcome::fail(format!("connect {url}: {e}"))
            }
            Attempt::NotSent(e) => Outcome::fail(format!("not sent: {url}: {e}")),
            Attempt::TimedOut => Outcome::info(format!("timed out after {timeout:?}: {url}")),
            Attempt::Broken(e) => Outcome::info(format!("{url}: {e}")),
        }
    }
}

/// The body, cut at [`MAX_BODY_BYTES`]. Its buffer is sized from
/// `Content-Length` up front and becomes the text without a copy when it is
/// UTF-8, so a big reply is held once, not two or three times while growing.
async fn read_body(mut resp: reqwest::Response) -> Result<String, reqwest::Error> {
    let expected = resp.content_length().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(expected.min(MAX_BODY_BYTES));
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(String::from_utf8(body).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
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
