//! Where a run's cgroup goes: the cgroup v2 hierarchy found from
//! `/proc/self/mountinfo`, our own cgroup from `/proc/self/cgroup`, and the
//! `shakedown-<owner pid>-<owner start>-<n>` directories made below it.

use std::path::{Path, PathBuf};

/// Why this machine offers no cgroup for runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("no cgroup2 file system is mounted (read /proc/self/mountinfo)")]
    NotMounted,
    #[error("this process is in no cgroup v2 group (no `0::` line in /proc/self/cgroup)")]
    NotInHierarchy,
    #[error("our cgroup {0} is outside the cgroup2 mount (another cgroup namespace)")]
    OutsideMount(String),
    #[error("{dir} has no cgroup.kill (the kernel is older than 5.14)")]
    NoKill { dir: String },
    #[error("{path} is not writable, so children cannot be moved out of our cgroup: {reason}")]
    NotWritable { path: String, reason: String },
    #[error("create {path}: {reason}")]
    Create { path: String, reason: String },
}

/// The cgroup this process is in, where run cgroups are made; checked for a
/// writable cgroup.procs (moving a child out of it needs that), not yet for mkdir.
pub fn own_cgroup() -> Result<PathBuf, Unavailable> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").map_err(|_| Unavailable::NotMounted)?;
    let (mount_root, mount_point) = cgroup2_mount(&mountinfo).ok_or(Unavailable::NotMounted)?;
    let membership = std::fs::read_to_string("/proc/self/cgroup").map_err(|_| Unavailable::NotInHierarchy)?;
    let ours = membership.lines().find_map(|l| l.strip_prefix("0::")).ok_or(Unavailable::NotInHierarchy)?;
    let relative = Path::new(ours)
        .strip_prefix(&mount_root)
        .map_err(|_| Unavailable::OutsideMount(ours.to_string()))?
        .to_path_buf();
    // Joining an empty path would add a trailing slash.
    let dir = if relative.as_os_str().is_empty() { mount_point } else { mount_point.join(relative) };
    let procs = dir.join("cgroup.procs");
    if let Err(e) = nix::unistd::access(&procs, nix::unistd::AccessFlags::W_OK) {
        return Err(Unavailable::NotWritable { path: procs.display().to_string(), reason: e.desc().to_lowercase() });
    }
    Ok(dir)
}

/// The root and mount point of the first cgroup2 mount in a mountinfo text.
fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split(' ').next() != Some("cgroup2") {
            return None;
        }
        let mut fields = mount.split(' ');
        let root = fields.nth(3)?;
        let point = fields.next()?;
        Some((PathBuf::from(unescape(root)), PathBuf::from(unescape(point))))
    })
}

/// mountinfo writes spaces, tabs, newlines and backslashes in octal (`\040`).
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(byte) => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Makes `shakedown-<owner>-<n>` below `parent`, trying the next `n` when
/// one exists; the new directory's path. A cgroup without `cgroup.kill` (a
/// kernel before 5.14) is removed again: the watchdog's kill needs it.
pub fn create(parent: &Path, owner: &super::Owner, next: impl Fn() -> u64) -> Result<PathBuf, Unavailable> {
    loop {
        let dir = parent.join(format!("shakedown-{}-{}-{}", owner.pid, owner.start, next()));
        match std::fs::create_dir(&dir) {
            Ok(()) if dir.join("cgroup.kill").exists() => return Ok(dir),
            Ok(()) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(Unavailable::NoKill { dir: parent.display().to_string() });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                let reason = e.to_string().to_lowercase();
                return Err(Unavailable::Create { path: dir.display().to_string(), reason });
            }
        }
    }
}

/// The owner (pid, start time) a run cgroup's name records, if it is one.
pub fn owner_of(name: &str) -> Option<super::Owner> {
    let mut parts = name.strip_prefix("shakedown-")?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().is_none().then_some(super::Owner { pid, start })
}

/// The run cgroups below `parent` and the owner each records.
pub fn run_cgroups(parent: &Path) -> Vec<(PathBuf, super::Owner)> {
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let mut found: Vec<(PathBuf, super::Owner)> =
        entries.flatten().filter_map(|e| Some((e.path(), owner_of(e.file_name().to_str()?)?))).collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The pids in a cgroup (`cgroup.procs`).
pub fn pids(dir: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containment::Owner;

    #[test]
    fn the_cgroup2_mount_is_found_among_v1_mounts() {
        let info = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(info), Some(("/".into(), "/sys/fs/cgroup/unified".into())));
        assert_eq!(cgroup2_mount("35 31 0:32 / /x rw - cgroup cgroup rw\n"), None);
        let spaced = "41 31 0:38 /a\\040b /mnt/c\\040g rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(("/a b".into(), "/mnt/c g".into())));
    }

    #[test]
    fn run_cgroup_names_record_their_owner() {
        assert_eq!(owner_of("shakedown-42-9001-3"), Some(Owner { pid: 42, start: 9001 }));
        for bad in ["shakedown-42-9001", "shakedown-x-9001-3", "other-42-9001-3", "shakedown-42-9001-3-4"] {
            assert_eq!(owner_of(bad), None, "{bad}");
        }
    }
}
