//! The `driver` client: a long-running process per actor speaking JSON lines.
//!
//! Protocol (documented for driver authors in `docs/drivers.md`): shakedown
//! writes one request per line on the driver's stdin,
//! `{"id":1,"f":"add","value":5,"target":null,"actor":"alice"}`, and the
//! driver answers each with one line on stdout,
//! `{"id":1,"type":"ok","value":5}` (or `"fail"`/`"info"` with `"error"`).
//! Replies may come in any order. Stderr goes to `logs/driver-<actor>.log`.
//! A driver that exits is restarted on the next operation; its pending
//! operations complete as `info`.

use super::{Client, Operation, Outcome};
use crate::logs::{pump, LogSink};
use crate::supervisor::{spawn_tracked, GroupGuard, ProcSpec};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::ChildStdin;
use tokio::sync::oneshot;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Outcome>>>>;

struct Running {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    _group: GroupGuard,
}

struct Slot {
    spec: ProcSpec,
    log: Arc<LogSink>,
    running: tokio::sync::Mutex<Option<Arc<Running>>>,
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
            .map(|(spec, log)| Slot { spec, log, running: tokio::sync::Mutex::new(None) })
            .collect();
        DriverClient { slots, next_id: AtomicU64::new(1), timeouts }
    }

    async fn driver(&self, actor_index: usize) -> Result<Arc<Running>, String> {
        let slot = &self.slots[actor_index];
        let mut guard = slot.running.lock().await;
        if let Some(r) = guard.as_ref().filter(|r| r.alive.load(Ordering::SeqCst)) {
            return Ok(r.clone());
        }
        let running = Arc::new(start(slot)?);
        *guard = Some(running.clone());
        Ok(running)
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
    let (p, a, log) = (pending.clone(), alive.clone(), slot.log.clone());
    tokio::spawn(async move {
        read_replies(stdout, &p, &log).await;
        a.store(false, Ordering::SeqCst);
        let how = child.wait().await.map_or_else(|e| e.to_string(), crate::supervisor::describe_exit);
        log.push("sys", &format!("[shakedown] driver exited: {how}"));
        for (_, tx) in p.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = tx.send(Outcome::info(format!("driver exited ({how})")));
        }
    });
    Ok(Running { stdin: tokio::sync::Mutex::new(stdin), pending, alive, _group: group })
}

async fn read_replies(stdout: tokio::process::ChildStdout, pending: &Pending, log: &LogSink) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        match parse_reply(&line) {
            Ok((id, outcome)) => {
                let tx = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                match tx {
                    Some(tx) => drop(tx.send(outcome)),
                    None => log.push("sys", &format!("[shakedown] reply for unknown or timed-out id {id}: {line}")),
                }
            }
            Err(why) => log.push("sys", &format!("[shakedown] unreadable reply ({why}): {line}")),
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
    async fn open(&self, _actors: &[crate::context::ActorCtx]) -> Result<(), String> {
        for i in 0..self.slots.len() {
            self.driver(i).await?;
        }
        Ok(())
    }

    async fn call(&self, op: Operation<'_>) -> Outcome {
        let driver = match self.driver(op.actor_index).await {
            Ok(d) => d,
            Err(e) => return Outcome::fail(e),
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        driver.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let req = json!({"id": id, "f": op.f, "value": op.value, "target": op.target, "actor": op.actor.name});
        let mut line = req.to_string();
        line.push('\n');
        let sent = { driver.stdin.lock().await.write_all(line.as_bytes()).await };
        if let Err(e) = sent {
            driver.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Outcome::info(format!("write to driver: {e}"));
        }
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
