//! Service processes: each in its own process group, started, probed for
//! readiness, signalled and stopped; exits recorded as history events.
//!
//! Every group ever started is in a process-wide registry until it is reaped,
//! so [`kill_all_groups`] can end them all from any exit path (drop guard,
//! signal handler, panic). What leaves its group (a daemon) or outlives
//! shakedown is the run's containment's to kill (see [`crate::containment`]).

use crate::containment::{self, Join, Owner};
use crate::logs::{pump, LogSink};
use crate::recorder::Recorder;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use shakedown_spec::Pattern;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::sync::watch;

/// Every live group, with the run directory of the run that started it
/// (`SHAKEDOWN_RUN_DIR` in its environment), so one run's cleanup never
/// touches another's processes when several run in one process.
static LIVE_GROUPS: Mutex<BTreeMap<i32, Option<String>>> = Mutex::new(BTreeMap::new());

/// The variable that tags a spawned process with its run.
pub const RUN_DIR_VAR: &str = "SHAKEDOWN_RUN_DIR";

/// SIGKILLs every process group shakedown started and has not reaped yet.
pub fn kill_all_groups() {
    let groups: Vec<i32> = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
    groups.into_iter().for_each(kill_group);
}

/// SIGKILLs the process groups started by the run in `run_dir`.
pub fn kill_run_groups(run_dir: &std::path::Path) {
    let tag = run_dir.display().to_string();
    let groups: Vec<i32> = LIVE_GROUPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, t)| t.as_deref() == Some(tag.as_str()))
        .map(|(pgid, _)| *pgid)
        .collect();
    groups.into_iter().for_each(kill_group);
}

fn kill_group(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGCONT);
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}

/// Records a spawn failure that is the machine's fault against the command's run.
fn report_spawn_problem(cmd: &Command, e: &std::io::Error) {
    let std_cmd = cmd.as_std();
    let program = std_cmd.get_program().to_string_lossy().into_owned();
    let tag = std_cmd.get_envs().find(|(k, _)| *k == RUN_DIR_VAR).and_then(|(_, v)| v);
    if let (Some(tag), Some(why)) = (tag, crate::harness::spawn_problem(&program, e, &format!("`{program}`"))) {
        crate::harness::fail(&tag.to_string_lossy(), why);
    }
}

fn register(pgid: i32, cmd: &Command) {
    let tag = cmd
        .as_std()
        .get_envs()
        .find(|(k, _)| *k == RUN_DIR_VAR)
        .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
    if let Some(tag) = &tag {
        containment::group_started(tag, pgid);
    }
    LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).insert(pgid, tag);
}

fn unregister(pgid: i32) {
    let tag = LIVE_GROUPS.lock().unwrap_or_else(|p| p.into_inner()).remove(&pgid).flatten();
    if let Some(tag) = tag {
        containment::group_ended(&tag, pgid);
    }
}

/// Kills a tracked process group when dropped (exec ops, probes, drivers, builds).
pub struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
        unregister(self.0);
    }
}

/// Spawns `cmd` (made by [`ProcSpec::command`]) and tracks its group until
/// the guard drops. A program the machine lacks also fails its run (see
/// [`crate::harness`]): no op should be judged on it.
pub fn spawn_tracked(cmd: &mut Command) -> std::io::Result<(tokio::process::Child, GroupGuard)> {
    let child = cmd.spawn().inspect_err(|e| report_spawn_problem(cmd, e))?;
    let pgid = child.id().map_or(0, |id| id as i32);
    assert!(pgid > 0, "a freshly spawned child has a pid");
    register(pgid, cmd);
    Ok((child, GroupGuard(pgid)))
}

/// A command ready to spawn: program, arguments, environment, working dir,
/// and the namespaces it runs in.
#[derive(Debug, Clone, Default)]
pub struct ProcSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Namespaces to enter before exec (a network namespace, a mount
    /// namespace with a size-limited tmpfs), held open by the run.
    pub namespaces: Vec<Namespace>,
}

/// A namespace held by an open file descriptor, and its `CLONE_NEW*` type.
#[derive(Debug, Clone)]
pub struct Namespace {
    pub fd: Arc<OwnedFd>,
    pub nstype: libc::c_int,
}

impl ProcSpec {
    /// A tokio command in a new process group that joins its run's
    /// containment (see [`containment`]) and dies with shakedown.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).envs(self.env.iter().cloned()).current_dir(&self.cwd);
        cmd.process_group(0).kill_on_drop(true).stdin(Stdio::null());
        let run = self.env.iter().rev().find(|(k, _)| k == RUN_DIR_VAR).map(|(_, v)| v.as_str());
        if run.is_some() {
            cmd.env(containment::OWNER_VAR, Owner::current().tag());
        }
        let join = run.map(Join::for_run).unwrap_or_default();
        let moves_mount = !self.namespaces.is_empty() || join.enters_mount_namespace();
        let namespaces: Vec<(RawFd, libc::c_int)> =
            self.namespaces.iter().map(|n| (n.fd.as_raw_fd(), n.nstype)).collect();
        // Entering a mount namespace moves the process to its root, and std
        // changes directory before pre_exec runs: change back afterwards.
        let cwd = std::ffi::CString::new(self.cwd.as_os_str().as_encoded_bytes()).ok();
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: joining the cgroup (open, write, close), prctl, getppid,
        // setns and chdir are async-signal-safe system calls; nothing here
        // allocates. The cgroup comes first, so the child is contained before
        // it can do anything else. PDEATHSIG asks the kernel to SIGKILL the
        // child if shakedown's spawning thread dies, a backstop that a
        // change of user clears; if shakedown died before the prctl, the
        // parent is no longer ours and the child gives up. The namespace fds
        // stay open in the parent until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                join.enter()?;
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                for &(fd, nstype) in &namespaces {
                    if libc::setns(fd, nstype) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(cwd) = cwd.as_ref().filter(|_| moves_mount) {
                    if libc::chdir(cwd.as_ptr()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }
}

/// How a process ended, in words.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => {
            format!("killed by {}", Signal::try_from(sig).map_or(format!("signal {sig}"), |s| s.to_string()))
        }
        _ => "unknown exit".to_string(),
    }
}

/// A spawned process group and the means to wait for its end.
struct Proc {
    pgid: i32,
    exit: watch::Receiver<Option<String>>,
    expected: Arc<AtomicBool>,
}

#[derive(Debug, Clone)]
pub enum Probe {
    None,
    Tcp(String),
    Http { url: String, status: Option<u16> },
    Log(Pattern),
    Exec(ProcSpec),
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("start service {service} ({program}): {why}")]
    Spawn { service: String, program: String, why: String },
    #[error("service {service} did not become ready within {timeout:?}: {reason}")]
    NotReady { service: String, timeout: Duration, reason: String },
    #[error("service {service} exited before it was ready ({exit})")]
    ExitedEarly { service: String, exit: String },
}

pub struct Service {
    pub name: String,
    /// What `start` spawns; an upgrade swaps it.
    proc_spec: Mutex<ProcSpec>,
    pub probe: Probe,
    pub ready_timeout: Duration,
    pub probe_interval: Duration,
    pub stop_signal: Signal,
    pub grace: Duration,
    pub log: Arc<LogSink>,
    recorder: Arc<Recorder>,
    proc: Mutex<Option<Proc>>,
    paused: AtomicBool,
}

impl Service {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        proc_spec: ProcSpec,
        probe: Probe,
        ready_timeout: Duration,
        probe_interval: Duration,
        stop_signal: Signal,
        grace: Duration,
        log: Arc<LogSink>,
        recorder: Arc<Recorder>,
    ) -> Service {
        Service {
            name,
            proc_spec: Mutex::new(proc_spec),
            probe,
            ready_timeout,
            probe_interval,
            stop_signal,
            grace,
            log,
            recorder,
            proc: Mutex::new(None),
            paused: AtomicBool::new(false),
        }
    }

    /// The process `start` spawns.
    pub fn proc_spec(&self) -> ProcSpec {
        self.proc_spec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces what the next `start` spawns (an upgrade to another binary).
    pub fn set_proc_spec(&self, spec: ProcSpec) {
        *self.proc_spec.lock().unwrap_or_else(|p| p.into_inner()) = spec;
    }

    /// The process group of the running process, if one is running.
    pub fn pgid(&self) -> Option<i32> {
        let guard = self.proc.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|p| p.exit.borrow().is_none()).map(|p| p.pgid)
    }

    pub fn is_running(&self) -> bool {
        let guard = self.proc.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().is_some_and(|p| p.exit.borrow().is_none())
    }

    /// Spawns the process and waits until its probe passes.
    pub async fn start(&self) -> Result<(), ServiceError> {
        let from_seq = self.log.next_seq();
        let exit = self.spawn()?;
        self.recorder.service(&self.name, "started", true, None);
        self.wait_ready(from_seq, exit).await?;
        self.recorder.service(&self.name, "ready", true, None);
        Ok(())
    }

    fn spawn(&self) -> Result<watch::Receiver<Option<String>>, ServiceError> {
        let spec = self.proc_spec();
        let mut cmd = spec.command();
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let program = spec.argv[0].clone();
        let mut child = cmd.spawn().map_err(|source| {
            let why = crate::harness::spawn_problem(&program, &source, &format!("service {}", self.name));
            ServiceError::Spawn { service: self.name.clone(), program, why: why.unwrap_or_else(|| source.to_string()) }
        })?;
        let pgid = child.id().map_or(0, |id| id as i32);
        assert!(pgid > 0, "a freshly spawned child has a pid");
        register(pgid, &cmd);
        self.paused.store(false, Ordering::SeqCst);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(self.log.clone(), "out", out));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(self.log.clone(), "err", err));
        }
        let (tx, rx) = watch::channel(None);
        let expected = Arc::new(AtomicBool::new(false));
        let (name, recorder, log, expected2) =
            (self.name.clone(), self.recorder.clone(), self.log.clone(), expected.clone());
        tokio::spawn(async move {
            let how = child.wait().await.map_or_else(|e| format!("wait failed: {e}"), describe_exit);
            // Children the service forked die with their leader's group.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            unregister(pgid);
            let expected = expected2.load(Ordering::SeqCst);
            log.push("sys", &format!("[shakedown] process exited: {how}"));
            recorder.service(&name, "exited", expected, Some(how.clone()));
            let _ = tx.send(Some(how));
        });
        *self.proc.lock().unwrap_or_else(|p| p.into_inner()) = Some(Proc { pgid, exit: rx.clone(), expected });
        Ok(rx)
    }

    async fn wait_ready(&self, from_seq: u64, mut exit: watch::Receiver<Option<String>>) -> Result<(), ServiceError> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            if let Some(how) = exit.borrow().clone() {
                return Err(ServiceError::ExitedEarly { service: self.name.clone(), exit: how });
            }
            let last = match self.probe_once(from_seq).await {
                Ok(()) => return Ok(()),
                Err(reason) => reason,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(ServiceError::NotReady {
                    service: self.name.clone(),
                    timeout: self.ready_timeout,
                    reason: last,
                });
            }
            let pause = self.probe_interval.min(deadline - now);
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = exit.changed() => {}
                _ = self.log.notify.notified(), if matches!(self.probe, Probe::Log(_)) => {}
            }
        }
    }

    async fn probe_once(&self, from_seq: u64) -> Result<(), String> {
        let attempt = Duration::from_secs(2).min(self.ready_timeout);
        match &self.probe {
            Probe::None => Ok(()),
            Probe::Tcp(addr) => match self.network_namespace() {
                Some(ns) => probe_tcp_in_namespace(ns, addr.clone(), attempt).await,
                None => match tokio::time::timeout(attempt, tokio::net::TcpStream::connect(addr.as_str())).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
                    Err(_) => Err(format!("connect {addr}: timed out")),
                },
            },
            Probe::Http { url, status } => probe_http(url, *status, attempt).await,
            Probe::Log(re) => {
                let hit = self.log.lines_from(from_seq).iter().any(|l| re.regex.is_match(&l.text));
                if hit {
                    Ok(())
                } else {
                    Err(format!("no output line matched /{}/ yet", re.as_str()))
                }
            }
            Probe::Exec(spec) => probe_exec(spec, attempt).await,
        }
    }

    /// The network namespace the service runs in, when it has its own.
    fn network_namespace(&self) -> Option<Arc<OwnedFd>> {
        let spec = self.proc_spec.lock().unwrap_or_else(|p| p.into_inner());
        spec.namespaces.iter().find(|n| n.nstype == libc::CLONE_NEWNET).map(|n| n.fd.clone())
    }

    /// Sends `signal` to the whole group; `expected` marks the coming exit as ours.
    pub fn signal(&self, signal: Signal, expect_exit: bool) -> bool {
        let guard = self.proc.lock().unwrap_or_else(|p| p.into_inner());
        let Some(p) = guard.as_ref().filter(|p| p.exit.borrow().is_none()) else { return false };
        if expect_exit {
            p.expected.store(true, Ordering::SeqCst);
        }
        let sent = killpg(Pid::from_raw(p.pgid), signal).is_ok();
        if expect_exit && self.paused.swap(false, Ordering::SeqCst) {
            // A stopped process cannot act on a signal until it is continued.
            let _ = killpg(Pid::from_raw(p.pgid), Signal::SIGCONT);
        }
        sent
    }

    pub fn pause(&self) -> bool {
        let sent = self.signal(Signal::SIGSTOP, false);
        self.paused.store(sent, Ordering::SeqCst);
        sent
    }

    pub fn resume(&self) -> bool {
        self.paused.store(false, Ordering::SeqCst);
        self.signal(Signal::SIGCONT, false)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Waits up to `timeout` for the process to exit; true if it has.
    async fn wait_exit(&self, timeout: Duration) -> bool {
        let rx = self.proc.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|p| p.exit.clone());
        let Some(mut rx) = rx else { return true };
        let exited = tokio::time::timeout(timeout, rx.wait_for(|v| v.is_some())).await.is_ok();
        exited
    }

    /// Sends `signal`, waits `grace`, then SIGKILLs; returns once the process is gone.
    pub async fn stop_with(&self, signal: Signal, grace: Duration) {
        if !self.signal(signal, true) {
            return;
        }
        if signal != Signal::SIGKILL && self.wait_exit(grace).await {
            return;
        }
        self.signal(Signal::SIGKILL, true);
        if !self.wait_exit(Duration::from_secs(10)).await {
            tracing::error!(service = %self.name, "process did not exit 10s after SIGKILL");
        }
    }

    /// Stops with the service's stop profile.
    pub async fn stop(&self) {
        self.stop_with(self.stop_signal, self.grace).await;
    }
}

async fn probe_http(url: &str, status: Option<u16>, attempt: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(attempt).no_proxy().build().map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    let got = resp.status().as_u16();
    let good = status.map_or(resp.status().is_success(), |want| want == got);
    if good {
        Ok(())
    } else {
        Err(format!("GET {url}: status {got}"))
    }
}

async fn probe_exec(spec: &ProcSpec, attempt: Duration) -> Result<(), String> {
    let mut cmd = spec.command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, _guard) = spawn_tracked(&mut cmd).map_err(|e| format!("run {}: {e}", spec.argv[0]))?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    // What the probe printed last is what explains a failure: its output,
    // capped, comes with the error. Both pipes are read at once, so neither
    // fills and stalls the probe.
    let output = async move {
        let (out, err) = tokio::join!(read_some(out), read_some(err));
        format!("{}\n{}", out.trim(), err.trim()).trim().to_string()
    };
    let waited = tokio::time::timeout(attempt, async { tokio::join!(child.wait(), output) }).await;
    let said = |text: &str| if text.is_empty() { String::new() } else { format!("; it printed: {}", last_lines(text)) };
    match waited {
        Ok((Ok(s), _)) if s.success() => Ok(()),
        Ok((Ok(s), text)) => Err(format!("probe {}: {}{}", spec.argv.join(" "), describe_exit(s), said(&text))),
        Ok((Err(e), _)) => Err(format!("probe {}: {e}", spec.argv[0])),
        Err(_) => Err(format!("probe {}: timed out", spec.argv.join(" "))),
    }
}

/// A pipe's first [`PROBE_OUTPUT_BYTES`], read to its end.
async fn read_some(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    use tokio::io::AsyncReadExt;
    let Some(mut pipe) = pipe else { return String::new() };
    let (mut kept, mut buf) = (Vec::new(), [0u8; 4096]);
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = PROBE_OUTPUT_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The most of an exec probe's output kept for its error.
const PROBE_OUTPUT_BYTES: usize = 4096;

/// The last few lines of `text`, on one line.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Connects to `addr` from inside the network namespace `ns`, on a thread of
/// its own that ends with the attempt: entering a namespace moves only the
/// calling thread, and no pooled thread may stay in a service's namespace.
async fn probe_tcp_in_namespace(ns: Arc<OwnedFd>, addr: String, attempt: Duration) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let target = addr.clone();
    let spawned = std::thread::Builder::new().name("probe-netns".into()).spawn(move || {
        let result = (|| {
            nix::sched::setns(&*ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("enter the service's network namespace: {e}"))?;
            let sockaddr: std::net::SocketAddr =
                target.parse().map_err(|_| format!("{target} is not an address and port"))?;
            std::net::TcpStream::connect_timeout(&sockaddr, attempt)
                .map(drop)
                .map_err(|e| format!("connect {target}: {e} (inside the service's network namespace)"))
        })();
        let _ = tx.send(result);
    });
    if let Err(e) = spawned {
        return Err(format!("connect {addr}: start the probe thread: {e}"));
    }
    rx.await.unwrap_or_else(|_| Err(format!("connect {addr}: the probe thread ended without an answer")))
}
