//! HTTP fault rules: what each one does, which requests it applies to, and the
//! seeded draw that decides, request by request, which rules fire.

use std::time::Duration;

use hyper::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::HttpFaultError;

/// One fault rule. Rules are tried in order on every request; `probability`
/// is drawn from the layer's seeded RNG only for requests the filters match.
///
/// As JSON: `{"kind": "status", "status": 429, "retry_after": 1, "probability": 0.5,
/// "method": "POST", "path_prefix": "/orders"}`, `{"kind": "delay", "delay_ms": 300}`
/// or `{"kind": "abort", "when": "after"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpRule {
    #[serde(flatten)]
    pub fault: HttpFault,
    /// The chance a matching request is hit, 0 to 1 (default 1).
    #[serde(default = "always")]
    pub probability: f64,
    /// Only requests with this method (case-insensitive), e.g. `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Only requests whose path starts with this, e.g. `/orders`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

/// What a rule does to a request it hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HttpFault {
    /// Answer with `status` in the upstream's place, never forwarding.
    Status {
        status: u16,
        /// A `Retry-After` header, in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u32>,
        /// The response body (empty when absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    /// Wait this long before forwarding; later rules still apply.
    Delay { delay_ms: u64 },
    /// Close the client connection without a response.
    Abort { when: AbortWhen },
}

/// When an abort closes the client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AbortWhen {
    /// Without forwarding: the upstream never sees the request.
    Before,
    /// After the upstream answered: the request was applied, the answer is lost.
    After,
}

fn always() -> f64 {
    1.0
}

impl HttpRule {
    /// A rule hitting every request with `fault`.
    pub fn new(fault: HttpFault) -> HttpRule {
        HttpRule { fault, probability: 1.0, method: None, path_prefix: None }
    }

    /// The same rule, hitting a matching request with chance `probability`.
    pub fn with_probability(mut self, probability: f64) -> HttpRule {
        self.probability = probability;
        self
    }

    /// The same rule, only for requests with `method`.
    pub fn with_method(mut self, method: impl Into<String>) -> HttpRule {
        self.method = Some(method.into());
        self
    }

    /// The same rule, only for requests whose path starts with `prefix`.
    pub fn with_path_prefix(mut self, prefix: impl Into<String>) -> HttpRule {
        self.path_prefix = Some(prefix.into());
        self
    }

    /// Checks the probability, the status code and the method name.
    pub fn validate(&self) -> Result<(), HttpFaultError> {
        let invalid = |why: String| Err(HttpFaultError::InvalidRule(why));
        if !(0.0..=1.0).contains(&self.probability) {
            return invalid(format!("probability {} is not between 0 and 1", self.probability));
        }
        if let HttpFault::Status { status, .. } = self.fault {
            if StatusCode::from_u16(status).is_err() {
                return invalid(format!("status {status} is not an HTTP status code"));
            }
        }
        if let Some(method) = &self.method {
            if Method::from_bytes(method.as_bytes()).is_err() {
                return invalid(format!("method {method:?} is not an HTTP method"));
            }
        }
        Ok(())
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        let method_ok = self.method.as_ref().is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()));
        let path_ok = self.path_prefix.as_ref().is_none_or(|prefix| path.starts_with(prefix.as_str()));
        method_ok && path_ok
    }
}

/// What the rules decided for one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The sum of the delays that fired, waited before anything else.
    pub delay: Duration,
    pub n_delays: u32,
    /// A status or abort that fired: the first one ends the rule walk.
    pub end: Option<End>,
}

/// How a request ends when a terminal rule fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Status { status: u16, retry_after: Option<u32>, body: String },
    AbortBefore,
    AbortAfter,
}

/// Walks `rules` in order for one request: delays add up, the first status or
/// abort that fires ends the walk. Draws once per matching rule, so the same
/// seed and request order give the same plans.
pub(crate) fn plan(rules: &[HttpRule], method: &Method, path: &str, rng: &mut StdRng) -> Plan {
    let mut plan = Plan::default();
    for rule in rules.iter().filter(|rule| rule.matches(method, path)) {
        if !hit(rule.probability, rng) {
            continue;
        }
        let end = match &rule.fault {
            HttpFault::Delay { delay_ms } => {
                plan.delay += Duration::from_millis(*delay_ms);
                plan.n_delays += 1;
                continue;
            }
            HttpFault::Status { status, retry_after, body } => {
                End::Status { status: *status, retry_after: *retry_after, body: body.clone().unwrap_or_default() }
            }
            HttpFault::Abort { when: AbortWhen::Before } => End::AbortBefore,
            HttpFault::Abort { when: AbortWhen::After } => End::AbortAfter,
        };
        plan.end = Some(end);
        break;
    }
    plan
}

/// Probability 0 never fires and 1 always does, whatever the draw.
fn hit(probability: f64, rng: &mut StdRng) -> bool {
    let draw: f64 = rng.gen();
    draw < probability
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn rules(json: &str) -> Vec<HttpRule> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn rules_read_from_json_with_defaults() {
        let parsed = rules(
            r#"[{"kind":"status","status":429,"retry_after":1,"probability":0.5,"method":"POST"},
                {"kind":"delay","delay_ms":300,"path_prefix":"/a"},
                {"kind":"abort","when":"after"}]"#,
        );
        let status = HttpFault::Status { status: 429, retry_after: Some(1), body: None };
        assert_eq!(parsed[0], HttpRule::new(status).with_probability(0.5).with_method("POST"));
        assert_eq!(parsed[1], HttpRule::new(HttpFault::Delay { delay_ms: 300 }).with_path_prefix("/a"));
        assert_eq!(parsed[2], HttpRule::new(HttpFault::Abort { when: AbortWhen::After }));
        let round_trip: Vec<HttpRule> = serde_json::from_value(serde_json::to_value(&parsed).unwrap()).unwrap();
        assert_eq!(round_trip, parsed);
        for bad in [r#"[{"kind":"teapot"}]"#, r#"[{"kind":"abort","when":"during"}]"#, r#"[{"status":429}]"#] {
            assert!(serde_json::from_str::<Vec<HttpRule>>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_rejects_bad_values() {
        let status = |code| HttpRule::new(HttpFault::Status { status: code, retry_after: None, body: None });
        assert!(status(503).validate().is_ok());
        assert!(status(42).validate().is_err());
        assert!(status(503).with_probability(1.5).validate().is_err());
        assert!(status(503).with_probability(f64::NAN).validate().is_err());
        assert!(status(503).with_method("GE T").validate().is_err());
    }

    #[test]
    fn delays_add_up_and_the_first_end_wins() {
        let mut rng = StdRng::seed_from_u64(1);
        let all = rules(
            r#"[{"kind":"delay","delay_ms":10},{"kind":"delay","delay_ms":5},
                {"kind":"abort","when":"before","method":"post"},
                {"kind":"status","status":503,"path_prefix":"/x"},{"kind":"abort","when":"after"}]"#,
        );
        let post = plan(&all, &Method::POST, "/x/1", &mut rng);
        assert_eq!((post.delay, post.n_delays, post.end), (Duration::from_millis(15), 2, Some(End::AbortBefore)));
        let get = plan(&all, &Method::GET, "/x/1", &mut rng);
        let expected = End::Status { status: 503, retry_after: None, body: String::new() };
        assert_eq!(get.end, Some(expected));
        assert_eq!(plan(&all, &Method::GET, "/y", &mut rng).end, Some(End::AbortAfter));
    }

    #[test]
    fn probability_is_seeded_and_bounded() {
        let half = rules(r#"[{"kind":"abort","when":"before","probability":0.5}]"#);
        let draws = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..200).map(|_| plan(&half, &Method::GET, "/", &mut rng).end.is_some()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let n_hits = draws(7).iter().filter(|&&hit| hit).count();
        assert!((60..140).contains(&n_hits), "{n_hits} of 200");
        let mut rng = StdRng::seed_from_u64(7);
        let never = rules(r#"[{"kind":"abort","when":"before","probability":0}]"#);
        assert!((0..200).all(|_| plan(&never, &Method::GET, "/", &mut rng).end.is_none()));
    }
}
