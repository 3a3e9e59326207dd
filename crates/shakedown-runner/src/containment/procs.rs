//! Reading `/proc` from a live shakedown (allocation allowed): every
//! process's stat line, and one process's environment variables.

use super::raw::{parse_stat, Stat};

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process in `/proc` whose stat could be read, live or dead.
pub fn all() -> Vec<Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).filter_map(stat).collect()
}

/// The value of `name` in the environment of `pid` (empty for zombies and
/// kernel threads; unreadable for another user's processes unless root).
pub fn env_value(pid: i32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|&b| b == 0).find_map(|entry| {
        let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
        Some(String::from_utf8_lossy(value).into_owned())
    })
}

/// The pids in `procs` that descend from a pid in `roots` (the roots
/// included), following parent links through live processes only.
pub fn with_descendants(procs: &[Stat], roots: &[i32]) -> Vec<i32> {
    let mut members: std::collections::BTreeSet<i32> = roots.iter().copied().collect();
    loop {
        let before = members.len();
        let children: Vec<i32> = procs.iter().filter(|s| !s.dead && members.contains(&s.ppid)).map(|s| s.pid).collect();
        members.extend(children);
        if members.len() == before {
            return members.into_iter().collect();
        }
    }
}

/// This process and its ancestors, up to pid 1.
pub fn ancestry(procs: &[Stat], pid: i32) -> Vec<i32> {
    let mut chain = vec![pid];
    let mut at = pid;
    while let Some(parent) = procs.iter().find(|s| s.pid == at).map(|s| s.ppid).filter(|&p| p > 1) {
        if chain.contains(&parent) {
            break;
        }
        chain.push(parent);
        at = parent;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32) -> Stat {
        Stat { pid, ppid, pgid: pid, start: 1, dead: false }
    }

    #[test]
    fn descendants_follow_parent_links_of_live_processes() {
        let procs = [p(10, 1), p(11, 10), p(12, 11), p(20, 1), Stat { dead: true, ..p(13, 10) }];
        assert_eq!(with_descendants(&procs, &[10]), vec![10, 11, 12]);
        assert_eq!(ancestry(&procs, 12), vec![12, 11, 10]);
    }

    #[test]
    fn this_process_environment_is_readable() {
        let me = i32::try_from(std::process::id()).unwrap();
        let path = std::env::var("PATH").unwrap();
        assert_eq!(env_value(me, "PATH"), Some(path));
        assert_eq!(env_value(me, "SHAKEDOWN_SURELY_UNSET_VARIABLE"), None);
        assert!(all().iter().any(|s| s.pid == me));
    }
}
