//! Build steps: commands run once, in order, before any service starts.

use crate::logs::{pump, LogSink};
use crate::supervisor::{spawn_tracked, ProcSpec};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("run build command `{command}`: {message}")]
    Failed { command: String, message: String, output: Vec<String> },
}

/// Runs one build command with its output captured to `log`.
pub async fn run_build(spec: &ProcSpec, timeout: Duration, log: &Arc<LogSink>) -> Result<(), BuildError> {
    let command = spec.argv.join(" ");
    log.push("sys", &format!("[shakedown] build: {command}"));
    let fail =
        |message: String, log: &LogSink| BuildError::Failed { command: command.clone(), message, output: log.tail(40) };
    let mut cmd = spec.command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, _group) = spawn_tracked(&mut cmd).map_err(|e| fail(e.to_string(), log))?;
    let out = tokio::spawn(pump(log.clone(), "out", child.stdout.take().expect("piped")));
    let err = tokio::spawn(pump(log.clone(), "err", child.stderr.take().expect("piped")));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(fail(e.to_string(), log)),
        Err(_) => return Err(fail(format!("timed out after {timeout:?}"), log)),
    };
    let _ = tokio::join!(out, err);
    if status.success() {
        Ok(())
    } else {
        Err(fail(crate::supervisor::describe_exit(status), log))
    }
}
