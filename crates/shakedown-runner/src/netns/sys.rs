//! The system calls and commands under the namespace tier: network namespaces
//! held only by file descriptors, code run on a thread inside one, and `ip`,
//! `nft` or `iptables-restore` run inside one with a timeout.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long one configuration command may run.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a command's output kept for an error message or a caller.
const OUTPUT_LIMIT_BYTES: u64 = 64 * 1024;

/// Why a command run inside a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("run `{command}`: {source}")]
    Spawn { command: String, source: io::Error },
    #[error("run `{command}`: it did not finish within {timeout:?}")]
    Timeout { command: String, timeout: Duration },
    #[error("run `{command}`: {status}: {stderr}")]
    Failed { command: String, status: ExitStatus, stderr: String },
}

/// Enters the network namespace `fd` refers to. Async-signal-safe (one
/// system call, no allocation), so it can run in a `pre_exec` hook.
pub fn enter_netns(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns only reads its two integer arguments.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates a network namespace and returns the only reference to it: once
/// the fd (and every process inside) is gone, the kernel destroys it with
/// its interfaces and firewall rules. A short-lived thread unshares, so the
/// caller's own threads never change namespace.
pub fn new_netns() -> io::Result<OwnedFd> {
    on_thread(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(OwnedFd::from(File::open("/proc/thread-self/ns/net")?))
    })?
}

/// Runs `f` on a fresh thread that has entered the namespace `ns`. Sockets
/// made there keep that namespace for life; the thread ends with `f`.
pub fn in_netns<T: Send>(ns: &OwnedFd, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let fd = ns.as_raw_fd();
    on_thread(move || enter_netns(fd).map(|()| f()))?
}

/// Runs `f` on a scoped thread and returns its value; a panic in `f` becomes an error.
fn on_thread<T: Send>(f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new().name("shakedown-netns".into()).spawn_scoped(s, f)?;
        handle.join().map_err(|_| io::Error::other("the namespace thread panicked"))
    })
}

/// Runs `program args` inside the namespace `ns`, feeding it `stdin`, and
/// returns its stdout. Killed after [`COMMAND_TIMEOUT`]; killed also if
/// shakedown dies first (PDEATHSIG), so no command outlives the run.
pub fn run_in(ns: &OwnedFd, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, CommandError> {
    let command = describe(program, args);
    let spawn_error = |source| CommandError::Spawn { command: command.clone(), source };
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: prctl and setns are async-signal-safe system calls that
    // allocate nothing; `fd` stays open in the parent until the spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            enter_netns(fd)
        });
    }
    let mut child = cmd.spawn().map_err(spawn_error)?;
    if let Some(mut pipe) = child.stdin.take() {
        // A command that exits early closes its stdin; its status says why.
        let _ = pipe.write_all(stdin.unwrap_or("").as_bytes());
    }
    let status = wait_with_timeout(&mut child, COMMAND_TIMEOUT).map_err(spawn_error)?;
    let Some(status) = status else {
        return Err(CommandError::Timeout { command, timeout: COMMAND_TIMEOUT });
    };
    let stdout = read_limited(child.stdout.take());
    let stderr = read_limited(child.stderr.take());
    if !status.success() {
        return Err(CommandError::Failed { command, status, stderr: stderr.trim().to_string() });
    }
    Ok(stdout)
}

/// Waits for `child` up to `timeout`; on timeout kills and reaps it and returns `None`.
/// Configuration commands print little, so their pipes cannot fill and block them.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

fn read_limited(pipe: Option<impl Read>) -> String {
    let mut text = String::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(OUTPUT_LIMIT_BYTES).read_to_string(&mut text);
    }
    text
}

fn describe(program: &str, args: &[&str]) -> String {
    std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

/// The path under which other processes (such as `ip`) can open `fd` of this
/// process: `/proc/<pid>/fd/<n>`. Our fds are close-on-exec, so a child's
/// own `/proc/self/fd` does not have them.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

/// The inode of the namespace `fd` refers to, as `/proc/*/ns/net` links show it (`net:[N]`).
pub fn ns_inode(fd: &OwnedFd) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))?.ino())
}
