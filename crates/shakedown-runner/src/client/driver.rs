//! The `driver` client: a long-running process per actor speaking JSON lines.
//!
//! Protocol (documented for driver authors in `docs/drivers.md`): shakedown
//! writes one request per line on the driver's stdin,
//! `{"id":1,"f":"add","value":5,"target":null,"actor":"alice"}`, and the
//! driver answers each with one line on stdout,
//! `{"id":1,"type":"ok","value":5}` (or `"fail"`/`"info"` with `"error"`).
//! Replies may come in any order. Stderr goes to `logs/driver-<actor>.log`.
//! A driver that exits is restarted on the next operation; its pending
//! operations complete as `info`. Every driver process is first sent a
//! readiness request, `{"id":N,"f":"shakedown:ready"}`; the workload does
//! not use it until it has answered (with anything: a `fail` "unknown f" is
//! fine), so a driver still importing its client library or connecting is
//! never handed an operation it cannot answer in time. One that does not
//! answer within [`READY_TIMEOUT`] fails the run, naming it. A driver that keeps exiting before it
//! answers anything is restarted with a growing pause, and after
//! [`MAX_FAILED_STARTS`] such starts in a row the run ends as a harness
//! failure naming it: a driver that cannot run is not a finding.

use super::{Client, Operation, Outcome};
use crate::logs::{pump, LogSink};
use crate::supervisor::{spawn_tracked, GroupGuard, ProcSpec};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::oneshot;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

/// Starts in a row that ended before the driver answered anything, after
/// which the run fails.
pub const MAX_FAILED_STARTS: u32 = 5;
/// The `f` of the readiness request every driver process gets first.
pub const READY_F: &str = "shakedown:ready";
/// How long a started driver has to answer its readiness request, unless
/// `SHAKEDOWN_DRIVER_READY_TIMEOUT` (a duration, e.g. `2m`) says otherwise.
pub const READY_TIMEOUT: Duration = Duration::from_secs(50);

fn ready_timeout() -> Duration {
    std::env::var("SHAKEDOWN_DRIVER_READY_TIMEOUT")
        .ok()
        .and_then(|t| humantime::parse_duration(&t).ok())
        .filter(|t| *t <= Duration::from_secs(24 * 3600))
        .unwrap_or(READY_TIMEOUT)
}

/// The pause before the second start of a failing driver; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

impl Running {
    /// Whether it may still be running: its exit has not been seen yet.
    fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

struct Running {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    /// The driver has answered at least one request.
    answered: Arc<AtomicBool>,
    /// How it exited, once it has.
    exit: Arc<Mutex<Option<String>>>,
    _group: GroupGuard,
}

struct Slot {
    spec: ProcSpec,
    log: Arc<LogSink>,
    running: tokio::sync::Mutex<Option<Arc<Running>>>,
    /// Starts in a row whose driver exited without answering.
    failed_starts: std::sync::atomic::AtomicU32,
}

pub struct DriverClient {
    slots: Vec<Slot>,
    next_id: AtomicU64,
    /// Per action: its own timeout, else the client's.
    timeouts: Vec<Duration>,
}

impl DriverClient {
    /// One driver per actor, in actor order; `timeouts` has one entry per action.
    pub fn new(per_actor: Vec<(ProcSpec, Arc<LogSink>)>, timeouts: Vec<Duration>) -> DriverClient {
        let slots = per_actor
            .into_iter()
            .map(|(spec, log)| Slot { spec, log, running: tokio::sync::Mutex::new(None), failed_starts: 0.into() })
            .collect();
        DriverClient { slots, next_id: AtomicU64::new(1), timeouts }
    }

    async fn driver(&self, actor_index: usize) -> Result<Arc<Running>, String> {
        let slot = &self.slots[actor_index];
        let mut guard = slot.running.lock().await;
        if let Some(r) = guard.as_ref().filter(|r| r.alive.load(Ordering::SeqCst)) {
            return Ok(r.clone());
        }
        if slot.failed_starts.load(Ordering::SeqCst) >= MAX_FAILED_STARTS {
            return Err(format!(
                "driver `{}` gave up after {MAX_FAILED_STARTS} failed starts",
                slot.spec.argv.join(" ")
            ));
        }
        if let Some(dead) = guard.take() {
            slot.restart_after(&dead).await?;
        }
        let running = Arc::new(start(slot)?);
        *guard = Some(running.clone());
        self.await_ready(slot, &running).await?;
        Ok(running)
    }

    /// Sends the readiness request and waits for its answer. A driver that
    /// exits first is left for the next call to restart (with backoff); one
    /// that stays silent fails the run.
    async fn await_ready(&self, slot: &Slot, running: &Running) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = match send(running, id, &json!({"id": id, "f": READY_F})).await {
            Ok(rx) => rx,
            // Its stdin is closed: it is exiting. Once its exit is seen, the next start restarts it.
            Err(e) => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while running.alive() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                return Err(format!("driver `{}` did not take its readiness request: {e}", slot.describe()));
            }
        };
        let limit = ready_timeout();
        match tokio::time::timeout(limit, rx).await {
            // An answer from the driver, or the note that it exited (sent to every pending request).
            Ok(Ok(_)) if running.answered.load(Ordering::SeqCst) => Ok(()),
            Ok(Ok(outcome)) => Err(outcome.error.unwrap_or_else(|| "the driver exited".into())),
            Ok(Err(_)) => Err(format!("driver `{}` dropped its readiness request", slot.describe())),
            Err(_) => {
                let why = format!(
                    "driver `{}` did not answer its readiness request ({READY_F}) within {limit:?}; \
                     its output is in {}",
                    slot.describe(),
                    slot.log.path.display()
                );
                if let Some(run) = crate::harness::tag_of(&slot.spec.env) {
                    crate::harness::fail(run, why.clone());
                }
                Err(why)
            }
        }
    }
}

/// Writes one request line and returns where its reply will arrive.
async fn send(running: &Running, id: u64, req: &Value) -> std::io::Result<oneshot::Receiver<Outcome>> {
    let (tx, rx) = oneshot::channel();
    running.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
    let mut line = req.to_string();
    line.push('\n');
    let sent = { running.stdin.lock().await.write_all(line.as_bytes()).await };
    if let Err(e) = sent {
        running.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        return Err(e);
    }
    Ok(rx)
}

impl Slot {
    /// The driver's command line.
    fn describe(&self) -> String {
        self.spec.argv.join(" ")
    }

    /// Before restarting after `dead` exited: pauses if it never answered,
    /// longer each time, and fails the run once that has happened
    /// [`MAX_FAILED_STARTS`] times in a row.
    async fn restart_after(&self, dead: &Running) -> Result<(), String> {
        if dead.answered.load(Ordering::SeqCst) {
            self.failed_starts.store(0, Ordering::SeqCst);
            return Ok(());
        }
        let failed = self.failed_starts.fetch_add(1, Ordering::SeqCst) + 1;
        let exit = dead.exit.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_else(|| "exited".into());
        if failed >= MAX_FAILED_STARTS {
            let why = format!(
                "driver `{}` exited {failed} times in a row before answering a request (last: {exit}); \
                 its output is in {}",
                self.spec.argv.join(" "),
                self.log.path.display()
            );
            if let Some(run) = crate::harness::tag_of(&self.spec.env) {
                crate::harness::fail(run, why.clone());
            }
            return Err(why);
        }
        tokio::time::sleep(FIRST_BACKOFF * 2u32.saturating_pow(failed - 1)).await;
        Ok(())
    }
}

fn start(slot: &Slot) -> Result<Running, String> {
    let mut cmd = slot.spec.command();
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, group) = spawn_tracked(&mut cmd).map_err(|e| format!("start driver {}: {e}", slot.spec.argv[0]))?;
    slot.log.push("sys", &format!("[shakedown] driver started: {}", slot.spec.argv.join(" ")));
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(slot.log.clone(), "err", err));
    }
    let pending: Pending = Arc::default();
    let alive = Arc::new(AtomicBool::new(true));
    let answered = Arc::new(AtomicBool::new(false));
    let exit: Arc<Mutex<Option<String>>> = Arc::default();
    let (p, a, said, e, log) = (pending.clone(), alive.clone(), answered.clone(), exit.clone(), slot.log.clone());
    tokio::spawn(async move {
        read_replies(stdout, &p, &said, &log).await;
        let how = child.wait().await.map_or_else(|e| e.to_string(), crate::supervisor::describe_exit);
        *e.lock().unwrap_or_else(|e| e.into_inner()) = Some(how.clone());
        a.store(false, Ordering::SeqCst);
        log.push("sys", &format!("[shakedown] driver exited: {how}"));
        for (_, tx) in p.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = tx.send(Outcome::info(format!("driver exited ({how})")));
        }
    });
    Ok(Running { stdin: tokio::sync::Mutex::new(stdin), pending, alive, answered, exit, _group: group })
}

async fn read_replies(stdout: tokio::process::ChildStdout, pending: &Pending, answered: &AtomicBool, log: &LogSink) {
    let mut reader = BufReader::new(stdout);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match next_line(&mut reader, &mut raw).await {
            Ok(true) => {}
            Ok(false) | Err(_) => return,
        }
        if raw.len() > MAX_REPLY_BYTES {
            log.push("sys", &format!("[shakedown] a reply longer than {MAX_REPLY_BYTES} bytes was left out"));
            continue;
        }
        let line = String::from_utf8_lossy(&raw);
        if line.trim().is_empty() {
            continue;
        }
        let shown = || crate::recorder::cap_text(line.to_string(), 4096);
        match parse_reply(&line) {
            Ok((id, outcome)) => {
                answered.store(true, Ordering::SeqCst);
                let tx = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                match tx {
                    Some(tx) => drop(tx.send(outcome)),
                    None => {
                        log.push("sys", &format!("[shakedown] reply for unknown or timed-out id {id}: {}", shown()))
                    }
                }
            }
            Err(why) => log.push("sys", &format!("[shakedown] unreadable reply ({why}): {}", shown())),
        }
    }
}

/// The longest reply line kept; a longer one is read through and left out,
/// so a driver printing without newlines cannot exhaust memory.
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;

/// Reads the next line into `raw` (without its newline), keeping at most
/// [`MAX_REPLY_BYTES`] + 1 bytes of it; false at the end of the stream.
async fn next_line(reader: &mut (impl tokio::io::AsyncBufRead + Unpin), raw: &mut Vec<u8>) -> std::io::Result<bool> {
    use tokio::io::AsyncBufReadExt;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(!raw.is_empty());
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = (MAX_REPLY_BYTES + 1).saturating_sub(raw.len());
        raw.extend_from_slice(&chunk[..take.min(room)]);
        reader.consume(take);
        if done {
            if raw.last() == Some(&b'\n') {
                raw.pop();
            }
            return Ok(true);
        }
    }
}

/// Parses one reply line into its id and outcome.
pub fn parse_reply(line: &str) -> Result<(u64, Outcome), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let id = v.get("id").and_then(Value::as_u64).ok_or("no numeric `id`")?;
    let error = v.get("error").map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string));
    let outcome = match v.get("type").and_then(Value::as_str) {
        Some("ok") => Outcome::ok(v.get("value").cloned()),
        Some("fail") => Outcome { error: error.or(Some("failed".into())), ..Outcome::fail("") },
        Some("info") => Outcome { error: error.or(Some("indeterminate".into())), ..Outcome::info("") },
        other => Outcome::unexpected(format!("driver reply with type {other:?} (expected ok, fail or info): {line}")),
    };
    Ok((id, outcome))
}

#[async_trait::async_trait]
impl Client for DriverClient {
    /// Starts every actor's driver at once and waits until each has answered
    /// its readiness request; one that exits first is started again, with
    /// the backoff and the limit of every restart.
    async fn open(&self, _actors: &[crate::context::ActorCtx]) -> Result<(), String> {
        let open_one = |i: usize| async move {
            loop {
                match self.driver(i).await {
                    Ok(_) => return Ok(()),
                    // Exited before it answered: the next call restarts it, or gives up.
                    Err(_) if self.slots[i].running.lock().await.as_ref().is_some_and(|r| !r.alive()) => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        let started = futures_util::future::join_all((0..self.slots.len()).map(open_one)).await;
        started.into_iter().collect()
    }

    fn open_timeout(&self) -> Duration {
        ready_timeout() + Duration::from_secs(10)
    }

    async fn call(&self, op: Operation<'_>) -> Outcome {
        let driver = match self.driver(op.actor_index).await {
            Ok(d) => d,
            Err(e) => return Outcome::fail(e),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let req = json!({"id": id, "f": op.f, "value": op.value, "target": op.target, "actor": op.actor.name});
        let rx = match send(&driver, id, &req).await {
            Ok(rx) => rx,
            Err(e) => return Outcome::info(format!("write to driver: {e}")),
        };
        let timeout = self.timeouts.get(op.action_index).copied().unwrap_or(crate::plan::DEFAULT_OP_TIMEOUT);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Outcome::info("driver dropped the request"),
            Err(_) => {
                driver.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Outcome::info(format!("driver did not reply within {timeout:?}"))
            }
        }
    }

    async fn close(&self) {
        for slot in &self.slots {
            // Dropping the running driver kills its group.
            slot.running.lock().await.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shakedown_history::OpType;

    #[tokio::test]
    async fn reply_lines_are_bounded_and_a_long_one_is_read_through() {
        let mut input = b"{\"id\":1}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_REPLY_BYTES + 10));
        input.extend(b"\n{\"id\":2}");
        let mut reader = &input[..];
        let mut raw = Vec::new();
        let mut lines = Vec::new();
        while {
            raw.clear();
            next_line(&mut reader, &mut raw).await.unwrap()
        } {
            lines.push(raw.len());
            assert!(raw.len() <= MAX_REPLY_BYTES + 1);
        }
        assert_eq!(lines, [8, MAX_REPLY_BYTES + 1, 8], "the long line is cut past the cap, the next one intact");
    }

    #[test]
    fn replies_parse_or_explain() {
        assert_eq!(parse_reply(r#"{"id":3,"type":"ok","value":[1]}"#).unwrap(), (3, Outcome::ok(Some(json!([1])))));
        let (_, f) = parse_reply(r#"{"id":3,"type":"fail","error":"exists"}"#).unwrap();
        assert_eq!((f.op_type, f.error.as_deref()), (OpType::Fail, Some("exists")));
        let (_, odd) = parse_reply(r#"{"id":3,"type":"maybe"}"#).unwrap();
        assert!(odd.unexpected);
        assert!(parse_reply("garbage").unwrap_err().contains("not JSON"));
        assert!(parse_reply(r#"{"type":"ok"}"#).unwrap_err().contains("id"));
    }
}
