//! The watchdog: a process forked at a run's start that kills the run's
//! processes when the run ends, whether shakedown ended it or died.
//!
//! It cannot exec anything (a `cargo test` binary using the library has no
//! `shakedown` executable to run), so after `fork()` it runs only the
//! async-signal-safe code of `raw` and `sweep`, in memory prepared before the
//! fork. It starts its own session (a terminal's Ctrl-C and hang-up reach
//! shakedown's process group, not it, so it outlives shakedown just long
//! enough), closes every descriptor but the read end of a pipe whose write end
//! only shakedown holds, and blocks reading it. End of file means the run
//! ended or shakedown died: either way it kills the run, reports by its exit
//! status, and exits. In the fallback the pipe also carries the process
//! groups the run starts and reaps, as 8-byte records.

use super::raw::{errno, kill_cgroup, now_ms, sleep_ms, CgroupFiles};
use super::sweep::{sweep, Scratch, Target};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// How long the kill may take before the watchdog gives up (exit status 1).
pub const KILL_TIMEOUT_MS: u64 = 10_000;
const GROUP_ADDED: i32 = 1;
const GROUP_REMOVED: i32 = 2;

/// How the watchdog kills the run.
pub enum Plan {
    Cgroup(CgroupFiles),
    Sweep(Target),
}

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("create the watchdog's pipe: {0}")]
    Pipe(std::io::Error),
    #[error("fork the watchdog: {0}")]
    Fork(std::io::Error),
    #[error("the watchdog could not kill every process of the run within {KILL_TIMEOUT_MS} ms")]
    Incomplete,
    #[error("the watchdog (pid {pid}) did not finish within {timeout:?}; killed it")]
    Timeout { pid: i32, timeout: Duration },
    #[error("wait for the watchdog (pid {pid}): {source}")]
    Wait { pid: i32, source: std::io::Error },
}

/// shakedown's end of a watchdog: its pid and the pipe it watches.
pub struct Watchdog {
    pid: i32,
    feed: Option<OwnedFd>,
}

impl Watchdog {
    /// Forks the watchdog for `plan`.
    pub fn start(plan: Plan) -> Result<Watchdog, WatchdogError> {
        // Everything the child touches is allocated here, before the fork.
        let mut scratch = matches!(plan, Plan::Sweep(_)).then(Scratch::new);
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(WatchdogError::Pipe(std::io::Error::last_os_error()));
        }
        // SAFETY: pipe2 returned two fresh descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A stuck watchdog must never block shakedown: a record it cannot
        // take is dropped (with a warning), never waited for.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        // SAFETY: fork has no preconditions; the child runs only
        // async-signal-safe code and leaves through _exit, never returning.
        match unsafe { libc::fork() } {
            -1 => Err(WatchdogError::Fork(std::io::Error::last_os_error())),
            0 => child(read.as_raw_fd(), plan, scratch.as_mut()),
            pid => Ok(Watchdog { pid, feed: Some(write) }),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Tells the watchdog about a process group the run started (or reaped).
    pub fn note_group(&self, pgid: i32, started: bool) {
        let Some(feed) = &self.feed else { return };
        let kind = if started { GROUP_ADDED } else { GROUP_REMOVED };
        let mut record = [0u8; 8];
        record[..4].copy_from_slice(&kind.to_ne_bytes());
        record[4..].copy_from_slice(&pgid.to_ne_bytes());
        // SAFETY: write of 8 bytes we own; under PIPE_BUF, so never torn.
        let n = unsafe { libc::write(feed.as_raw_fd(), record.as_ptr().cast(), record.len()) };
        if n != 8 {
            tracing::warn!(pgid, "the watchdog's pipe is full; it does not know of process group {pgid}");
        }
    }

    /// Closes the pipe, so the watchdog kills the run, and waits up to
    /// `timeout` for it to finish; past that it is killed and reaped.
    pub fn finish(mut self, timeout: Duration) -> Result<(), WatchdogError> {
        drop(self.feed.take());
        let pid = self.pid;
        let deadline = now_ms() + u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child's pid, never -1: other children
            // (tokio's) are reaped by their owners.
            let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if got == pid {
                break;
            }
            if got < 0 && errno() != libc::EINTR {
                return Err(WatchdogError::Wait { pid, source: std::io::Error::last_os_error() });
            }
            if now_ms() >= deadline {
                // SAFETY: kill and waitpid on our own child, which is not yet reaped.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                return Err(WatchdogError::Timeout { pid, timeout });
            }
            sleep_ms(2);
        }
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(WatchdogError::Incomplete)
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if self.feed.is_some() {
            let watchdog = Watchdog { pid: self.pid, feed: self.feed.take() };
            if let Err(e) = watchdog.finish(Duration::from_millis(KILL_TIMEOUT_MS + 5_000)) {
                tracing::error!("failed to end a run's processes: {e}");
            }
        }
    }
}

/// The watchdog itself, after the fork: only async-signal-safe calls.
fn child(read: i32, mut plan: Plan, scratch: Option<&mut Scratch>) -> ! {
    // SAFETY: setsid, prctl, signal, chdir, open, dup2, fcntl, close_range,
    // read and _exit are async-signal-safe system calls on values we own.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_NAME, c"shakedown-guard".as_ptr());
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE, libc::SIGTSTP] {
            libc::signal(sig, libc::SIG_IGN);
        }
        libc::chdir(c"/".as_ptr());
        let read = quiet_descriptors(read);
        let mut buf = [0u8; 4096];
        let mut kept = 0;
        loop {
            let n = libc::read(read, buf[kept..].as_mut_ptr().cast(), buf.len() - kept);
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            kept = apply_records(&mut plan, &mut buf, kept + n);
        }
        let killed = match (&plan, scratch) {
            (Plan::Cgroup(files), _) => kill_cgroup(files, KILL_TIMEOUT_MS),
            (Plan::Sweep(target), Some(scratch)) => sweep(target, scratch, KILL_TIMEOUT_MS),
            (Plan::Sweep(_), None) => false,
        };
        libc::_exit(if killed { 0 } else { 1 })
    }
}

/// Points 0, 1 and 2 at /dev/null and closes every other descriptor but the
/// pipe (moved above them), so the watchdog holds no terminal, no socket and
/// no output pipe of the process that started shakedown.
///
/// # Safety
/// Only in the forked child: it closes descriptors other threads of the
/// parent would still be using.
unsafe fn quiet_descriptors(read: i32) -> i32 {
    let moved = libc::fcntl(read, libc::F_DUPFD, 10);
    let read = if moved >= 0 { moved } else { read };
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    for fd in 0..3 {
        if null >= 0 && null != fd {
            libc::dup2(null, fd);
        }
    }
    let (below, above) = (u32::try_from(read - 1).unwrap_or(2), u32::try_from(read + 1).unwrap_or(u32::MAX));
    let closed_below = libc::syscall(libc::SYS_close_range, 3u32, below, 0u32) == 0;
    let closed_above = libc::syscall(libc::SYS_close_range, above, u32::MAX, 0u32) == 0;
    if !(closed_below && closed_above) {
        // Kernels before 5.9 have no close_range.
        for fd in (3..65536).filter(|&fd| fd != read) {
            libc::close(fd);
        }
    }
    read
}

/// Applies the whole records among the first `len` bytes of `buf` to the
/// plan and moves a partial one to the front; returns its length.
fn apply_records(plan: &mut Plan, buf: &mut [u8; 4096], len: usize) -> usize {
    let whole = len - len % 8;
    if let Plan::Sweep(target) = plan {
        for record in buf[..whole].chunks_exact(8) {
            let kind = i32::from_ne_bytes([record[0], record[1], record[2], record[3]]);
            let pgid = i32::from_ne_bytes([record[4], record[5], record[6], record[7]]);
            match kind {
                GROUP_ADDED => {
                    target.add_group(pgid);
                }
                GROUP_REMOVED => target.remove_group(pgid),
                _ => {}
            }
        }
    }
    buf.copy_within(whole..len, 0);
    len - whole
}
