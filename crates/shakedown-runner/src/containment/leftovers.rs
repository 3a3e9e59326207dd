//! Leftovers: processes and cgroups of an earlier shakedown that no longer
//! runs (its watchdog was killed with it, say), found and killed at the start
//! of a run and by `shakedown doctor`.
//!
//! A leftover is a run cgroup whose name records a dead owner, or a process
//! tagged `SHAKEDOWN_OWNER=<pid>:<start>` with that owner gone, and each
//! process descending from one. An owner is alive while a process with its
//! pid and start time exists: another shakedown running beside this one (or
//! another run in this process) keeps its processes. This process, its
//! ancestors, and its descendants that inherited its tag are never
//! leftovers, even when a dead shakedown started it.

use super::procs::{self, ancestry, with_descendants};
use super::raw::{kill_cgroup, CgroupFiles, Stat};
use super::{cgroup, Owner, OWNER_VAR};
use crate::supervisor::RUN_DIR_VAR;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Processes an earlier shakedown left running, now killed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// The run directory they were tagged with, or `unknown`.
    pub run_dir: String,
    /// The dead owner, `<pid>:<start>`.
    pub owner: String,
    pub processes: usize,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let noun = if self.processes == 1 { "process" } else { "processes" };
        write!(f, "killed {} {noun} left by an earlier run in {}", self.processes, self.run_dir)
    }
}

/// Kills every leftover and says whose they were.
pub fn reap_leftovers() -> Vec<Leftover> {
    let mut found: BTreeMap<(String, String), usize> = BTreeMap::new();
    reap_cgroups(&mut found);
    reap_tagged(&mut found);
    found.into_iter().map(|((run_dir, owner), processes)| Leftover { run_dir, owner, processes }).collect()
}

/// Dead owners' run cgroups below ours: killed and removed (an empty one
/// silently, since its processes are already gone).
fn reap_cgroups(found: &mut BTreeMap<(String, String), usize>) {
    let Ok(parent) = cgroup::own_cgroup() else { return };
    for (dir, owner) in cgroup::run_cgroups(&parent).into_iter().filter(|(_, o)| !o.is_alive()) {
        let pids = cgroup::pids(&dir);
        let run_dir = pids.iter().find_map(|&p| procs::env_value(p, RUN_DIR_VAR));
        let Some(files) = CgroupFiles::new(&dir) else { continue };
        if !kill_cgroup(&files, 5_000) {
            tracing::warn!("failed to kill the leftover cgroup {} within 5 s", dir.display());
        }
        if !pids.is_empty() {
            *found.entry((run_dir.unwrap_or_else(|| "unknown".into()), owner.tag())).or_default() += pids.len();
        }
    }
}

/// Processes tagged with a dead owner, and their descendants: stopped, then
/// killed, looking again until a look finds none (at most five looks).
fn reap_tagged(found: &mut BTreeMap<(String, String), usize>) {
    let mut killed: BTreeSet<i32> = BTreeSet::new();
    for _ in 0..5 {
        let procs = procs::all();
        let targets = leftover_processes(&procs);
        let fresh: Vec<(i32, (String, String))> = targets.into_iter().filter(|(p, _)| !killed.contains(p)).collect();
        if fresh.is_empty() {
            return;
        }
        for (pid, _) in &fresh {
            // SAFETY: kill on a pid just read from /proc; a failure means it is gone.
            unsafe { libc::kill(*pid, libc::SIGSTOP) };
        }
        for (pid, key) in fresh {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed.insert(pid);
            *found.entry(key).or_default() += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The leftover processes among `procs`, each with its (run dir, owner).
fn leftover_processes(procs: &[Stat]) -> Vec<(i32, (String, String))> {
    let me = Owner::current().pid;
    let mut spared: BTreeSet<i32> = ancestry(procs, me).into_iter().collect();
    // Our own children inherit the tag a dead shakedown gave us, if one started us.
    let inherited = std::env::var(OWNER_VAR).ok();
    let ours: BTreeSet<i32> = with_descendants(procs, &[me]).into_iter().collect();
    let mut alive: BTreeMap<String, bool> = BTreeMap::new();
    let mut seeds: BTreeMap<i32, (String, String)> = BTreeMap::new();
    for s in procs.iter().filter(|s| !s.dead && s.pid > 1) {
        if spared.contains(&s.pid) {
            continue;
        }
        let Some(owner) = procs::env_value(s.pid, OWNER_VAR) else { continue };
        if ours.contains(&s.pid) && inherited.as_deref() == Some(owner.as_str()) {
            spared.insert(s.pid);
            continue;
        }
        let Some(parsed) = Owner::parse(&owner) else { continue };
        if *alive.entry(owner.clone()).or_insert_with(|| parsed.is_alive()) {
            continue;
        }
        let run_dir = procs::env_value(s.pid, RUN_DIR_VAR).unwrap_or_else(|| "unknown".into());
        seeds.insert(s.pid, (run_dir, owner));
    }
    let mut out = Vec::new();
    for (&seed, key) in &seeds {
        for pid in with_descendants(procs, &[seed]).into_iter().filter(|p| !spared.contains(p)) {
            if pid == seed || !seeds.contains_key(&pid) {
                out.push((pid, key.clone()));
            }
        }
    }
    out.sort();
    out.dedup_by_key(|(pid, _)| *pid);
    out
}
