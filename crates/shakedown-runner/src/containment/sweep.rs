//! The fallback's kill, where there is no writable cgroup v2: one run's
//! processes found in `/proc` and killed, async-signal-safe like the rest of
//! the watchdog's code.
//!
//! A process belongs to the run when its environment carries both of the
//! run's tags (`SHAKEDOWN_RUN_DIR=<dir>` and `SHAKEDOWN_OWNER=<pid>:<start>`),
//! when it is in a process group the run started, or when it descends from
//! such a process. The descent matters for programs that overwrite their
//! environment for their process title (PostgreSQL): their backends are found
//! as children of the postmaster, which is in a known group. Members are
//! stopped before they are killed, so none can fork a child that escapes
//! between the look and the kill, and the look repeats until it finds none.

use super::raw::{for_each_pid, now_ms, proc_path, read_stat, sleep_ms, Stat};

/// Processes one sweep can see; past this, the rest wait for the next round.
pub const MAX_PROCS: usize = 32768;
/// Process groups the watchdog remembers at once; the run unregisters each
/// group when its leader is reaped, so only groups alive at once count.
pub const MAX_GROUPS: usize = 4096;
/// The longest environment entry compared with a tag (a path plus its name).
const MAX_ENTRY: usize = 8192;

/// What identifies one run's processes.
pub struct Target {
    /// `SHAKEDOWN_RUN_DIR=<dir>`, one environment entry.
    run_entry: Box<[u8]>,
    /// `SHAKEDOWN_OWNER=<pid>:<start>`.
    owner_entry: Box<[u8]>,
    /// shakedown itself, never a member (at a run's normal end it is alive).
    owner_pid: i32,
    groups: Box<[i32]>,
    n_groups: usize,
}

impl Target {
    pub fn new(run_entry: &str, owner_entry: &str, owner_pid: i32) -> Target {
        Target {
            run_entry: run_entry.as_bytes().into(),
            owner_entry: owner_entry.as_bytes().into(),
            owner_pid,
            groups: vec![0; MAX_GROUPS].into_boxed_slice(),
            n_groups: 0,
        }
    }

    /// Remembers a process group the run started; false when the table is full.
    pub fn add_group(&mut self, pgid: i32) -> bool {
        match self.groups.get_mut(self.n_groups) {
            Some(slot) => {
                *slot = pgid;
                self.n_groups += 1;
                true
            }
            None => false,
        }
    }

    /// Forgets a group whose leader was reaped (its id may be reused).
    pub fn remove_group(&mut self, pgid: i32) {
        if let Some(i) = self.groups[..self.n_groups].iter().position(|&g| g == pgid) {
            self.groups[i] = self.groups[self.n_groups - 1];
            self.n_groups -= 1;
        }
    }

    fn has_group(&self, pgid: i32) -> bool {
        self.groups[..self.n_groups].contains(&pgid)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    stat: Stat,
    member: bool,
}

/// The memory a sweep works in, allocated before the watchdog forks.
pub struct Scratch {
    procs: Box<[Entry]>,
    /// How many of `procs` the last look filled.
    len: usize,
    dents: Box<[u8]>,
    file: Box<[u8]>,
    entry: Box<[u8]>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            procs: vec![Entry::default(); MAX_PROCS].into_boxed_slice(),
            len: 0,
            dents: vec![0; 32 * 1024].into_boxed_slice(),
            file: vec![0; 4096].into_boxed_slice(),
            entry: vec![0; MAX_ENTRY].into_boxed_slice(),
        }
    }
}

/// Stops and kills the run's processes until a look finds none (true) or
/// `timeout_ms` runs out (false).
pub fn sweep(target: &Target, scratch: &mut Scratch, timeout_ms: u64) -> bool {
    let deadline = now_ms() + timeout_ms;
    loop {
        if mark(target, scratch) == 0 {
            return true;
        }
        signal_members(scratch, libc::SIGSTOP);
        // Stopped processes cannot fork: a second look finds children forked meanwhile.
        mark(target, scratch);
        signal_members(scratch, libc::SIGSTOP);
        signal_members(scratch, libc::SIGKILL);
        if now_ms() >= deadline {
            return false;
        }
        sleep_ms(10);
    }
}

/// How many live processes belong to the run; marks them in `scratch`.
fn mark(target: &Target, scratch: &mut Scratch) -> usize {
    let Scratch { procs, len: filled, dents, file, entry } = scratch;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut path = [0u8; 64];
    let mut len = 0;
    for_each_pid(dents, |pid| {
        if let (Some(slot), Some(stat)) = (procs.get_mut(len), read_stat(pid, &mut path, file)) {
            *slot = Entry { stat, member: false };
            len += 1;
        }
    });
    *filled = len;
    let procs = &mut procs[..len];
    let eligible = |s: &Stat| !s.dead && s.pid > 1 && s.pid != me && s.pid != target.owner_pid;
    for e in procs.iter_mut().filter(|e| eligible(&e.stat)) {
        e.member = target.has_group(e.stat.pgid) || tagged(target, e.stat.pid, &mut path, file, entry);
    }
    procs.sort_unstable_by_key(|e| e.stat.pid);
    // Each pass adds one generation of descendants; a chain is rarely deep.
    for _ in 0..64 {
        let mut changed = false;
        for i in 0..procs.len() {
            let Entry { stat, member } = procs[i];
            if member || !eligible(&stat) {
                continue;
            }
            if let Ok(parent) = procs.binary_search_by_key(&stat.ppid, |e| e.stat.pid) {
                if procs[parent].member {
                    procs[i].member = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    procs.iter().filter(|e| e.member).count()
}

fn signal_members(scratch: &Scratch, signal: libc::c_int) {
    for e in scratch.procs[..scratch.len].iter().filter(|e| e.member) {
        // SAFETY: kill on a pid seen in /proc this round; a failure means it is gone.
        unsafe { libc::kill(e.stat.pid, signal) };
    }
}

/// Whether the environment of `pid` holds both of the run's tags, read in
/// chunks so an environment of any size needs no allocation.
fn tagged(target: &Target, pid: i32, path: &mut [u8; 64], chunk: &mut [u8], entry: &mut [u8]) -> bool {
    let environ = proc_path(path, pid, b"environ");
    // SAFETY: open, read and close on a NUL-terminated path and buffers we own.
    let fd = unsafe { libc::open(environ.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let (mut run, mut owner) = (false, false);
    let (mut len, mut overflow) = (0usize, false);
    loop {
        // SAFETY: read into the chunk buffer we own, at most its length.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b != 0 {
                match entry.get_mut(len) {
                    Some(slot) => *slot = b,
                    None => overflow = true,
                }
                len += 1;
                continue;
            }
            if !overflow {
                run |= entry[..len] == *target.run_entry;
                owner |= entry[..len] == *target.owner_entry;
            }
            (len, overflow) = (0, false);
        }
    }
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    run && owner
}
