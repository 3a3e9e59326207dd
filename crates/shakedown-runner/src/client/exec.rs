//! The `exec` client: one command per operation, as the operation's actor.

use super::{classify, Client, Operation, Outcome, Reply};
use crate::logs::{pump_keep, LogSink};
use crate::supervisor::{spawn_tracked, ProcSpec};
use shakedown_spec::ActionSpec;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Output kept per stream; the rest is read and dropped so the child never blocks.
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;

pub struct ExecClient {
    actions: Vec<ActionSpec>,
    /// Client env rendered per actor, with the actor's own env and HOME.
    envs: Vec<Vec<(String, String)>>,
    timeout: Duration,
    /// Relative program paths (`./tool.sh`) are resolved against it, as for services.
    scenario_dir: std::path::PathBuf,
}

impl ExecClient {
    pub fn new(
        actions: Vec<ActionSpec>,
        envs: Vec<Vec<(String, String)>>,
        timeout: Duration,
        scenario_dir: std::path::PathBuf,
    ) -> ExecClient {
        ExecClient { actions, envs, timeout, scenario_dir }
    }
}

#[async_trait::async_trait]
impl Client for ExecClient {
    async fn call(&self, op: Operation<'_>) -> Outcome {
        let action = &self.actions[op.action_index];
        let timeout = action.timeout.map_or(self.timeout, |d| d.0);
        let mut argv = op.rendered.argv.clone();
        crate::plan::resolve_program(&mut argv, &self.scenario_dir);
        let spec = ProcSpec {
            argv,
            env: self.envs[op.actor_index].clone(),
            cwd: op.actor.home.clone(),
            namespaces: Vec::new(),
        };
        run_command(&spec, op.rendered.stdin.clone(), timeout, action, None).await
    }
}

/// Runs a command to its end (or `timeout`, which kills its group) and
/// judges the reply like an exec action's. With `log`, its output lines also
/// go there as they come (exec steps); either way the first MiB of each
/// stream is kept for the result.
pub async fn run_command(
    spec: &ProcSpec,
    stdin: Option<String>,
    timeout: Duration,
    action: &ActionSpec,
    log: Option<Arc<LogSink>>,
) -> Outcome {
    let mut cmd = spec.command();
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, _group) = match spawn_tracked(&mut cmd) {
        Ok(c) => c,
        Err(e) => return Outcome::fail(format!("run {}: {e}", spec.argv[0])),
    };
    let pipe = child.stdin.take();
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        if let (Some(mut pipe), Some(text)) = (pipe, stdin) {
            // A command that exits without reading its input is not an error of ours.
            let _ = pipe.write_all(text.as_bytes()).await;
        }
        tokio::join!(read_output(out, "out", log.clone()), read_output(err, "err", log.clone()), child.wait())
    };
    match tokio::time::timeout(timeout, run).await {
        Ok((out, err, Ok(status))) => {
            let exit = status.code().unwrap_or(-1);
            classify(action, &Reply { exit: Some(exit), out, err, status: None })
        }
        Ok((_, _, Err(e))) => Outcome::info(format!("wait for {}: {e}", spec.argv[0])),
        // Dropping the group guard kills the command's whole group.
        Err(_) => Outcome::info(format!("timed out after {timeout:?}: {}", spec.argv.join(" "))),
    }
}

/// A pipe's first MiB, copied line by line into `log` when there is one.
async fn read_output(
    pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    stream: &'static str,
    log: Option<Arc<LogSink>>,
) -> String {
    match (pipe, log) {
        (None, _) => String::new(),
        (Some(pipe), Some(log)) => pump_keep(log, stream, pipe, MAX_OUTPUT_BYTES).await,
        (Some(mut pipe), None) => read_capped(Some(&mut pipe)).await,
    }
}

async fn read_capped(pipe: Option<&mut (impl tokio::io::AsyncRead + Unpin)>) -> String {
    let Some(pipe) = pipe else { return String::new() };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
