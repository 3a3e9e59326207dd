//! Environment faults: toxics, down links and HTTP faults on proxy links,
//! partitions between namespaced services, clock shifts and full disks. Each
//! is recorded as a window and undone when its `for` ends (or at heal).

use super::{sleep_or_stop, Nemesis};
use crate::environment::{LinkHandle, Network};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use shakedown_proxy::http::{AbortWhen as HttpAbort, HttpFault, HttpRule};
use shakedown_proxy::{Stream as ProxyStream, Toxic, ToxicKind};
use shakedown_spec::{AbortWhen, FaultKind, FaultSpec, HttpFaultSpec, Stream, ToxicSpec};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long an environment fault without `for` lasts: until the workload ends.
const UNTIL_HEAL: Duration = Duration::from_secs(24 * 60 * 60);

impl Nemesis {
    /// Adds a toxic, takes a link down, or sets an HTTP fault, for `for`.
    pub(super) async fn link_fault(
        &self,
        spec: &FaultSpec,
        target: &str,
        index: usize,
        stop: &mut watch::Receiver<bool>,
    ) {
        let (Some(link), Some(lock)) = (self.env.links.get(target), self.locks.get(&format!("link:{target}"))) else {
            return;
        };
        let _held = lock.lock().await;
        let lasting = spec.duration.map_or(UNTIL_HEAL, |d| d.0);
        match (spec.kind, link) {
            (FaultKind::Toxic, LinkHandle::Tcp(link)) => {
                let toxic = spec.toxic.as_ref().expect("validated: a toxic fault has a toxic").get_ref();
                let toxicity = spec.toxicity.as_ref().map_or(1.0, |t| *t.get_ref());
                let streams = match spec.stream.unwrap_or_default() {
                    Stream::Upstream => vec![ProxyStream::Upstream],
                    Stream::Downstream => vec![ProxyStream::Downstream],
                    Stream::Both => vec![ProxyStream::Upstream, ProxyStream::Downstream],
                };
                let toxics: Vec<Toxic> = streams
                    .into_iter()
                    .map(|stream| Toxic {
                        name: format!("fault-{index}-{}", stream.as_str()),
                        kind: toxic_kind(toxic),
                        stream,
                        toxicity,
                    })
                    .collect();
                let detail =
                    format!("{} {:?} toxicity {toxicity}", toxic.type_name(), toxic_kind(toxic)).replace("  ", " ");
                let id = self.recorder.fault_start("toxic", target, Some(detail));
                let mut problem = None;
                for t in &toxics {
                    if let Err(e) = link.add_toxic(t.clone()) {
                        problem = Some(format!("add toxic: {e}"));
                    }
                }
                sleep_or_stop(lasting, stop).await;
                for t in &toxics {
                    let _ = link.remove_toxic(&t.name);
                }
                self.recorder.fault_end(id, "toxic", target, problem);
            }
            (FaultKind::Down, LinkHandle::Tcp(link)) => {
                let id = self.recorder.fault_start("down", target, None);
                let problem = link.set_enabled(false).await.err().map(|e| format!("take the link down: {e}"));
                sleep_or_stop(lasting, stop).await;
                let problem = problem.or(link.set_enabled(true).await.err().map(|e| format!("bring the link up: {e}")));
                self.recorder.fault_end(id, "down", target, problem);
            }
            (FaultKind::Http, LinkHandle::Http(layer)) => {
                let http = spec.http.as_ref().expect("validated: an http fault has http").get_ref();
                let rule = http_rule(http);
                let detail = serde_json::to_string(&rule).unwrap_or_default();
                let id = self.recorder.fault_start("http", target, Some(detail));
                let problem = layer.set_rules(vec![rule]).err().map(|e| e.to_string());
                sleep_or_stop(lasting, stop).await;
                layer.clear();
                self.recorder.fault_end(id, "http", target, problem);
            }
            (kind, _) => {
                let why = format!("{} does not apply to link `{target}`", kind.as_str());
                self.recorder.service(target, "fault skipped", true, Some(why));
            }
        }
    }

    /// Shifts a service's clock, or fills its disk, for `for`.
    pub(super) async fn service_env_fault(&self, spec: &FaultSpec, target: &str, stop: &mut watch::Receiver<bool>) {
        let Some(lock) = self.locks.get(target) else { return };
        let _held = lock.lock().await;
        match spec.kind {
            FaultKind::Clock => {
                let Some(clock) = self.env.clocks.get(target) else { return };
                let offset_ms = spec.offset.map_or(0, |o| o.as_millis());
                let rate = spec.rate.as_ref().map_or(1.0, |r| *r.get_ref());
                let id = self.recorder.fault_start("clock", target, Some(format!("offset {offset_ms}ms rate {rate}")));
                let problem = clock.set(offset_ms, rate).err().map(|e| e.to_string());
                // Without `for`, the shift stays until the heal resets it.
                if let Some(lasting) = spec.duration {
                    sleep_or_stop(lasting.0, stop).await;
                    let reset = clock.reset().err().map(|e| e.to_string());
                    self.recorder.fault_end(id, "clock", target, problem.or(reset));
                } else {
                    sleep_or_stop(UNTIL_HEAL, stop).await;
                    self.recorder.fault_end(id, "clock", target, problem);
                }
            }
            FaultKind::DiskFull => {
                let Some(disk) = self.env.disks.get(target) else { return };
                let leave = spec.leave.map_or(0, |b| b.0);
                let filled = disk.fill(leave);
                let detail = match &filled {
                    Ok(bytes) => format!("filled {bytes} bytes, {leave} left free"),
                    Err(e) => format!("fill failed: {e}"),
                };
                let id = self.recorder.fault_start("disk-full", target, Some(detail));
                sleep_or_stop(spec.duration.map_or(UNTIL_HEAL, |d| d.0), stop).await;
                let problem = filled.err().map(|e| e.to_string()).or(disk.free().err().map(|e| e.to_string()));
                self.recorder.fault_end(id, "disk-full", target, problem);
            }
            other => unreachable!("{} is not a service environment fault", other.as_str()),
        }
    }

    /// Splits the target nodes by `mode` (nodes drawn from the seed) for `for`.
    pub(super) async fn partition(
        &self,
        spec: &FaultSpec,
        nodes: &[String],
        rng: &mut ChaCha8Rng,
        stop: &mut watch::Receiver<bool>,
    ) {
        let (Some(net), Some(lock)) = (self.env.network.as_ref(), self.locks.get("network")) else { return };
        let _held = lock.lock().await;
        let mode = spec.mode.unwrap_or_default();
        let cut = spec.cut.as_ref().map(|c| c.get_ref().0.clone()).unwrap_or_default();
        let label = if cut.is_empty() { mode.as_str() } else { "cut" };
        let seed: u64 = rng.gen();
        let (detail, problem) =
            match blocking(net, move |net, nodes| net.partition(mode, &cut, &nodes, seed), nodes).await {
                Ok(grudge) => (format!("{label}: {grudge}"), None),
                Err(e) => (label.to_string(), Some(e)),
            };
        let id = self.recorder.fault_start("partition", &nodes.join(","), Some(detail));
        sleep_or_stop(spec.duration.map_or(UNTIL_HEAL, |d| d.0), stop).await;
        let problem = problem.or(blocking(net, |net, _| net.heal(), nodes).await.err());
        self.recorder.fault_end(id, "partition", &nodes.join(","), problem);
    }
}

/// Runs a namespace command (a few milliseconds of `nft` per node) off the
/// async workers, so it does not stall the clients' operations.
async fn blocking<T: Send + 'static>(
    net: &Arc<dyn Network>,
    f: impl FnOnce(&dyn Network, Vec<String>) -> Result<T, String> + Send + 'static,
    nodes: &[String],
) -> Result<T, String> {
    let (net, nodes) = (net.clone(), nodes.to_vec());
    tokio::task::spawn_blocking(move || f(net.as_ref(), nodes))
        .await
        .unwrap_or_else(|e| Err(format!("the namespace task failed: {e}")))
}

fn ms(d: Option<shakedown_spec::Dur>) -> u64 {
    d.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
}

/// The proxy's toxic for a scenario's toxic.
fn toxic_kind(t: &ToxicSpec) -> ToxicKind {
    match t {
        ToxicSpec::Latency { latency, jitter } => {
            ToxicKind::Latency { latency_ms: ms(Some(*latency)), jitter_ms: ms(*jitter) }
        }
        ToxicSpec::Bandwidth { rate } => ToxicKind::Bandwidth { rate_kbs: *rate },
        ToxicSpec::SlowClose { delay } => ToxicKind::SlowClose { delay_ms: ms(Some(*delay)) },
        ToxicSpec::Timeout { timeout } => ToxicKind::Timeout { timeout_ms: ms(*timeout) },
        ToxicSpec::ResetPeer { timeout } => ToxicKind::ResetPeer { timeout_ms: ms(*timeout) },
        ToxicSpec::Slicer { average_size, size_variation, delay } => ToxicKind::Slicer {
            average_size: *average_size,
            size_variation: size_variation.unwrap_or(0),
            delay_us: delay.map_or(0, |d| u64::try_from(d.0.as_micros()).unwrap_or(u64::MAX)),
        },
        ToxicSpec::LimitData { bytes } => ToxicKind::LimitData { bytes: *bytes },
        ToxicSpec::SlowConnect { delay } => ToxicKind::SlowConnect { delay_ms: ms(Some(*delay)) },
    }
}

/// The HTTP layer's rule for a scenario's HTTP fault.
fn http_rule(h: &HttpFaultSpec) -> HttpRule {
    let fault = match (h.status, h.delay, h.abort) {
        (Some(status), _, _) => HttpFault::Status { status, retry_after: h.retry_after, body: None },
        (None, Some(delay), _) => HttpFault::Delay { delay_ms: ms(Some(delay)) },
        (None, None, Some(when)) => {
            HttpFault::Abort { when: if when == AbortWhen::After { HttpAbort::After } else { HttpAbort::Before } }
        }
        (None, None, None) => unreachable!("validated: an http fault has status, delay or abort"),
    };
    HttpRule {
        fault,
        probability: h.probability.unwrap_or(1.0),
        method: h.method.clone(),
        path_prefix: h.path_prefix.clone(),
    }
}
