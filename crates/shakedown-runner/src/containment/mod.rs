//! A run owns its processes, however shakedown ends: every process a run
//! starts (and everything those start, daemons included) is killed at the
//! run's end, and also when shakedown is SIGKILLed, panics or aborts.
//!
//! Two mechanisms, chosen per run (`SHAKEDOWN_CONTAINMENT=cgroup|subreaper`
//! forces one):
//!
//! - **cgroup v2** where this process may make a child of its own cgroup: a
//!   cgroup per run, `shakedown-<owner pid>-<owner start>-<n>`, that every
//!   child joins between fork and exec. A process cannot leave it by
//!   double-forking, `setsid` or changing user, and `cgroup.kill` ends all of
//!   it at once.
//! - **subreaper + sweep** otherwise: shakedown becomes its orphans'
//!   subreaper, and the run's processes are found in `/proc` by their tags
//!   (`SHAKEDOWN_RUN_DIR` and `SHAKEDOWN_OWNER` in their environment), by the
//!   process groups the run started, and as descendants of either (see
//!   `sweep`). Its limits: a process that both leaves the run's groups and
//!   overwrites its environment (as PostgreSQL does for its process title)
//!   is found only while its parent is known, so a daemon doing both, whose
//!   parent has exited, outlives a SIGKILLed shakedown; a process owned by
//!   another user cannot be signalled without root; and a pid read from
//!   `/proc` could in principle be reused between the look and the kill.
//!
//! Either way the kill is done by a watchdog forked at the run's start (see
//! `watchdog`), which waits for the run's end or shakedown's death and runs
//! the same kill code for both. At the start of a run, cgroups and tagged
//! processes left by an earlier shakedown that no longer exists are killed
//! and reported (`leftovers`); a live owner's are never touched, so several
//! shakedowns, and several runs in one process, stay out of each other's way.

mod cgroup;
pub mod ipc;
mod leftovers;
mod procs;
mod raw;
mod sweep;
mod watchdog;

pub use leftovers::{reap_leftovers, Leftover};
pub use watchdog::WatchdogError;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use watchdog::{Plan, Watchdog};

/// The variable that tags a spawned process with the shakedown that owns it,
/// as `<pid>:<start time in clock ticks>`: a dead owner's processes are leftovers.
pub const OWNER_VAR: &str = "SHAKEDOWN_OWNER";
/// Forces a mechanism: `cgroup` or `subreaper`.
pub const MECHANISM_VAR: &str = "SHAKEDOWN_CONTAINMENT";
/// How long a run's end waits for its watchdog (which gives up after 10 s).
const END_TIMEOUT: Duration = Duration::from_secs(15);

/// A process, identified by its pid and its start time (a pid alone may be reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub pid: i32,
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn current() -> Owner {
        static CURRENT: OnceLock<Owner> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
            // Our own stat line is always readable; a start of 0 would only
            // make our leftovers look like a dead owner's sooner.
            Owner { pid, start: procs::stat(pid).map_or(0, |s| s.start) }
        })
    }

    /// `<pid>:<start>`, the value of [`OWNER_VAR`].
    pub fn tag(&self) -> String {
        format!("{}:{}", self.pid, self.start)
    }

    pub fn parse(tag: &str) -> Option<Owner> {
        let (pid, start) = tag.split_once(':')?;
        Some(Owner { pid: pid.parse().ok()?, start: start.parse().ok()? })
    }

    /// Whether this process still runs (the same pid with the same start time).
    pub fn is_alive(&self) -> bool {
        procs::stat(self.pid).is_some_and(|s| s.start == self.start && !s.dead)
    }
}

/// Which mechanism a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// cgroup v2 where possible, else the subreaper fallback.
    Auto,
    Cgroup,
    Subreaper,
}

impl Choice {
    /// From [`MECHANISM_VAR`]; unset or empty is `Auto`.
    pub fn from_env() -> Result<Choice, ContainmentError> {
        Choice::parse(&std::env::var(MECHANISM_VAR).unwrap_or_default())
    }

    pub fn parse(value: &str) -> Result<Choice, ContainmentError> {
        match value {
            "" | "auto" => Ok(Choice::Auto),
            "cgroup" => Ok(Choice::Cgroup),
            "subreaper" => Ok(Choice::Subreaper),
            other => Err(ContainmentError::BadChoice { value: other.to_string() }),
        }
    }
}

/// The mechanism a run uses, and where or why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// A cgroup per run below this directory (our own cgroup).
    Cgroup(PathBuf),
    /// The fallback, and why there is no cgroup.
    Subreaper(String),
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mechanism::Cgroup(parent) => write!(
                f,
                "cgroup v2 at {}/shakedown-* (cgroup.kill), one per run, killed by a watchdog even if shakedown dies",
                parent.display()
            ),
            Mechanism::Subreaper(why) => write!(f, "subreaper + watchdog ({why})"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainmentError {
    #[error("{MECHANISM_VAR}={value} is no mechanism; use `cgroup` or `subreaper`, or leave it unset")]
    BadChoice { value: String },
    #[error("{MECHANISM_VAR}=cgroup, but there is no cgroup for the run: {0}")]
    CgroupUnavailable(#[from] cgroup::Unavailable),
    #[error("make shakedown the subreaper of its orphans (prctl PR_SET_CHILD_SUBREAPER): {0}")]
    Subreaper(std::io::Error),
    #[error("{0}")]
    Watchdog(#[from] WatchdogError),
}

/// What the registry keeps of a live run.
struct RunEntry {
    /// `cgroup.procs` of the run's cgroup, which a child writes "0" into.
    cgroup_procs: Option<CString>,
    /// Taken out when the run ends.
    watchdog: Mutex<Option<Watchdog>>,
    /// Whether the watchdog sweeps (and so needs to hear of process groups).
    sweeps: bool,
    /// Every process group the run started, kept to recognise its orphans.
    groups: Mutex<BTreeSet<i32>>,
    /// The run's private shared memory, which every child enters.
    ipc: Option<ipc::PrivateIpc>,
}

/// Live runs in this process by run directory (the `SHAKEDOWN_RUN_DIR` tag).
static RUNS: Mutex<BTreeMap<String, Arc<RunEntry>>> = Mutex::new(BTreeMap::new());
static NEXT_CGROUP: AtomicU64 = AtomicU64::new(1);

fn entry(tag: &str) -> Option<Arc<RunEntry>> {
    RUNS.lock().unwrap_or_else(|p| p.into_inner()).get(tag).cloned()
}

/// One run's containment, from its start to its end (or drop).
pub struct RunContainment {
    tag: String,
    mechanism: Mechanism,
    cgroup: Option<PathBuf>,
    entry: Arc<RunEntry>,
    ended: bool,
}

impl RunContainment {
    /// Sets up the containment of the run in `run_dir`: kills what dead
    /// owners left behind, makes the run's cgroup (or readies the fallback)
    /// and forks its watchdog.
    pub fn start(run_dir: &Path, choice: Choice) -> Result<RunContainment, ContainmentError> {
        // The CLI reaps (and reports) before its runs start; a library user hears of them here.
        for leftover in reap_leftovers() {
            tracing::warn!(owner = %leftover.owner, "{leftover}");
        }
        let tag = run_dir.display().to_string();
        let owner = Owner::current();
        let (mechanism, cgroup) = place(choice)?;
        let files = cgroup.as_deref().map(|dir| raw::CgroupFiles::new(dir).ok_or_else(|| nul_in_path(dir)));
        let files = files.transpose()?;
        let cgroup_procs = files.as_ref().map(|f| f.procs.clone());
        let plan = match files {
            Some(files) => Plan::Cgroup(files),
            None => {
                become_subreaper()?;
                let run_entry = format!("{}={tag}", crate::supervisor::RUN_DIR_VAR);
                Plan::Sweep(sweep::Target::new(&run_entry, &format!("{OWNER_VAR}={}", owner.tag()), owner.pid))
            }
        };
        let sweeps = matches!(plan, Plan::Sweep(_));
        let watchdog = Watchdog::start(plan).inspect_err(|_| {
            if let Some(dir) = &cgroup {
                let _ = std::fs::remove_dir(dir);
            }
        })?;
        let ipc = ipc::PrivateIpc::create()
            .inspect_err(|e| tracing::debug!(run = %tag, "no private shared memory for the run: {e}"))
            .ok();
        let entry = Arc::new(RunEntry {
            cgroup_procs,
            watchdog: Mutex::new(Some(watchdog)),
            sweeps,
            groups: Mutex::new(BTreeSet::new()),
            ipc,
        });
        RUNS.lock().unwrap_or_else(|p| p.into_inner()).insert(tag.clone(), entry.clone());
        tracing::debug!(run = %tag, "process containment: {mechanism}");
        Ok(RunContainment { tag, mechanism, cgroup, entry, ended: false })
    }

    pub fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// The watchdog's pid, until the run ends.
    pub fn watchdog_pid(&self) -> Option<i32> {
        self.entry.watchdog.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(Watchdog::pid)
    }

    /// The run's cgroup, under the cgroup mechanism.
    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    /// Kills everything the run started (through its watchdog) and waits,
    /// bounded, until that is done; an error when something may be left.
    pub fn end(mut self) -> Result<(), ContainmentError> {
        self.end_once()
    }

    fn end_once(&mut self) -> Result<(), ContainmentError> {
        self.ended = true;
        RUNS.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.tag);
        let groups = self.entry.groups.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let adopted = adopted_children(&self.tag, &groups);
        let watchdog = self.entry.watchdog.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = watchdog.map_or(Ok(()), |w| w.finish(END_TIMEOUT));
        reap_orphans(&adopted, &groups);
        Ok(result?)
    }
}

impl Drop for RunContainment {
    fn drop(&mut self) {
        if !self.ended {
            if let Err(e) = self.end_once() {
                tracing::error!(run = %self.tag, "failed to end the run's processes: {e}");
            }
        }
    }
}

fn nul_in_path(dir: &Path) -> ContainmentError {
    let reason = "the path holds a NUL byte".to_string();
    ContainmentError::CgroupUnavailable(cgroup::Unavailable::Create { path: dir.display().to_string(), reason })
}

/// Decides the mechanism for `choice`, making the run's cgroup when it is one.
fn place(choice: Choice) -> Result<(Mechanism, Option<PathBuf>), ContainmentError> {
    if choice == Choice::Subreaper {
        return Ok((Mechanism::Subreaper(format!("forced by {MECHANISM_VAR}=subreaper")), None));
    }
    let made = cgroup::own_cgroup().and_then(|parent| {
        let dir = cgroup::create(&parent, &Owner::current(), || NEXT_CGROUP.fetch_add(1, Ordering::Relaxed))?;
        Ok((parent, dir))
    });
    match (made, choice) {
        (Ok((parent, dir)), _) => Ok((Mechanism::Cgroup(parent), Some(dir))),
        (Err(e), Choice::Cgroup) => Err(e.into()),
        (Err(e), _) => Ok((Mechanism::Subreaper(format!("no writable cgroup v2: {e}")), None)),
    }
}

/// Makes this process the subreaper of its descendants' orphans, once: a
/// daemon's parent exiting then leaves it our child, not init's.
fn become_subreaper() -> Result<(), ContainmentError> {
    static DONE: OnceLock<Result<(), i32>> = OnceLock::new();
    let done = DONE.get_or_init(|| {
        // SAFETY: prctl with integer arguments.
        match unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } {
            0 => Ok(()),
            _ => Err(raw::errno()),
        }
    });
    done.map_err(|e| ContainmentError::Subreaper(std::io::Error::from_raw_os_error(e)))
}

/// Which mechanism a run here would use, tried for real (a cgroup is made
/// and removed); for `shakedown doctor`.
pub fn describe() -> Result<String, String> {
    let choice = Choice::from_env().map_err(|e| e.to_string())?;
    let (mechanism, cgroup) = place(choice).map_err(|e| e.to_string())?;
    if let Some(dir) = cgroup {
        std::fs::remove_dir(&dir).map_err(|e| format!("remove the probe cgroup {}: {e}", dir.display()))?;
    }
    Ok(mechanism.to_string())
}

/// What a child does between fork and exec to join its run's containment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Join {
    cgroup_procs: Option<CString>,
    /// Held until the spawn returns, so the fds stay open for `setns`.
    ipc: Option<ipc::PrivateIpc>,
}

impl Join {
    /// For a process tagged with the run directory `tag`; nothing to do for
    /// a tag with no live run (a plan tested on its own).
    pub(crate) fn for_run(tag: &str) -> Join {
        let entry = entry(tag);
        Join {
            cgroup_procs: entry.as_ref().and_then(|e| e.cgroup_procs.clone()),
            ipc: entry.and_then(|e| e.ipc.clone()),
        }
    }

    /// Whether entering moves the process into another mount namespace
    /// (which resets its working directory).
    pub(crate) fn enters_mount_namespace(&self) -> bool {
        self.ipc.is_some()
    }

    /// Moves the calling process into the run's cgroup, then into its IPC
    /// and mount namespaces. Async-signal-safe: it runs in the forked child
    /// before exec.
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        if let Some(procs) = &self.cgroup_procs {
            raw::write_file(procs, b"0").map_err(std::io::Error::from_raw_os_error)?;
        }
        if let Some(ns) = &self.ipc {
            for (fd, kind) in [(ns.ipc.as_raw_fd(), libc::CLONE_NEWIPC), (ns.mnt.as_raw_fd(), libc::CLONE_NEWNS)] {
                // SAFETY: setns is an async-signal-safe system call on an fd held open by `self`.
                if unsafe { libc::setns(fd, kind) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// The run's mount namespace (with its private `/dev/shm`), for a namespace
/// of its own to start from (a service's size-limited disk).
pub fn run_mount_namespace(tag: &str) -> Option<Arc<std::os::fd::OwnedFd>> {
    entry(tag).and_then(|e| e.ipc.as_ref().map(|ipc| ipc.mnt.clone()))
}

/// The supervisor started a process group for the run `tag`.
pub(crate) fn group_started(tag: &str, pgid: i32) {
    let Some(e) = entry(tag) else { return };
    e.groups.lock().unwrap_or_else(|p| p.into_inner()).insert(pgid);
    if e.sweeps {
        if let Some(w) = e.watchdog.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            w.note_group(pgid, true);
        }
    }
}

/// The supervisor reaped the leader of a group of the run `tag`.
pub(crate) fn group_ended(tag: &str, pgid: i32) {
    let Some(e) = entry(tag) else { return };
    if e.sweeps {
        if let Some(w) = e.watchdog.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            w.note_group(pgid, false);
        }
    }
}

/// Our children that the run's processes left to us as their subreaper:
/// alive, tagged with the run, and not a group leader we spawned (those are
/// tokio's to reap). Looked up before the kill, since a dead process has no
/// environment to read.
fn adopted_children(tag: &str, groups: &BTreeSet<i32>) -> Vec<i32> {
    let me = Owner::current();
    let owner_tag = me.tag();
    let children = procs::all().into_iter().filter(|s| s.ppid == me.pid && !s.dead && !groups.contains(&s.pid));
    children
        .filter(|s| {
            procs::env_value(s.pid, crate::supervisor::RUN_DIR_VAR).as_deref() == Some(tag)
                && procs::env_value(s.pid, OWNER_VAR).as_deref() == Some(owner_tag.as_str())
        })
        .map(|s| s.pid)
        .collect()
}

/// Reaps the dead children the run left us: those found adopted before the
/// kill, and members of the run's groups other than their leaders. Only
/// these pids: tokio and std reap their own children, so never `waitpid(-1)`.
fn reap_orphans(adopted: &[i32], groups: &BTreeSet<i32>) {
    let me = Owner::current().pid;
    let ours = |s: &raw::Stat| adopted.contains(&s.pid) || (groups.contains(&s.pgid) && s.pid != s.pgid);
    for s in procs::all().iter().filter(|s| s.ppid == me && s.dead && ours(s)) {
        let mut status = 0;
        // SAFETY: waitpid on one pid that is our dead child; WNOHANG never blocks.
        unsafe { libc::waitpid(s.pid, &mut status, libc::WNOHANG) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_tags_round_trip_and_this_process_is_alive() {
        let me = Owner::current();
        assert_eq!(Owner::parse(&me.tag()), Some(me));
        assert!(me.is_alive());
        assert!(!Owner { start: me.start + 1, ..me }.is_alive(), "another start time is another process");
        assert_eq!(Owner::parse("12"), None);
        assert_eq!(Owner::parse("12:x"), None);
    }

    #[test]
    fn choices_parse_and_an_unknown_one_is_refused_by_name() {
        assert_eq!(Choice::parse("").unwrap(), Choice::Auto);
        assert_eq!(Choice::parse("cgroup").unwrap(), Choice::Cgroup);
        assert_eq!(Choice::parse("subreaper").unwrap(), Choice::Subreaper);
        let err = Choice::parse("jail").unwrap_err().to_string();
        assert_eq!(err, "SHAKEDOWN_CONTAINMENT=jail is no mechanism; use `cgroup` or `subreaper`, or leave it unset");
    }

    #[test]
    fn mechanisms_say_where_or_why() {
        let cgroup = Mechanism::Cgroup("/sys/fs/cgroup/unified".into()).to_string();
        assert!(cgroup.starts_with("cgroup v2 at /sys/fs/cgroup/unified/shakedown-* (cgroup.kill)"), "{cgroup}");
        let fallback = Mechanism::Subreaper("no writable cgroup v2: x".into()).to_string();
        assert_eq!(fallback, "subreaper + watchdog (no writable cgroup v2: x)");
    }
}
