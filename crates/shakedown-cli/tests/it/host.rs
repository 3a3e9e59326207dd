//! What the host shows that a run must never leave changed: network
//! namespaces, firewall rules, mounts, shared memory, and the namespaces
//! any process has or holds open.

use std::collections::BTreeSet;
use std::process::Command;

fn command_output(program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e} (scripts/install-deps installs it)"));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Named network namespaces, nftables and iptables rules, and the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub netns: String,
    pub rules: String,
    pub mounts: String,
}

pub fn state() -> State {
    let netns = command_output("ip", &["netns", "list"]);
    // iptables-save's comment lines carry the time; the rules are what matter.
    let iptables: String = command_output("iptables-save", &[]).lines().filter(|l| !l.starts_with('#')).collect();
    let rules = command_output("nft", &["list", "ruleset"]) + &iptables;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    State { netns, rules, mounts }
}

/// Every namespace any process has or holds open, as `net:[inode]` links.
pub fn live_namespaces() -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().parse::<i32>().is_err() {
            continue;
        }
        for ns in ["net", "mnt", "ipc"] {
            if let Ok(link) = std::fs::read_link(entry.path().join("ns").join(ns)) {
                seen.insert(link.display().to_string());
            }
        }
        for fd in std::fs::read_dir(entry.path().join("fd")).into_iter().flatten().flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let link = link.display().to_string();
                if link.starts_with("net:[") || link.starts_with("mnt:[") || link.starts_with("ipc:[") {
                    seen.insert(link);
                }
            }
        }
    }
    seen
}

/// The host's shared memory: `/dev/shm` entries and System V segments (by id).
pub fn shared_memory() -> BTreeSet<String> {
    let mut out: BTreeSet<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| format!("/dev/shm/{}", e.file_name().to_string_lossy()))
        .collect();
    let sysv = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    out.extend(sysv.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).map(|id| format!("shm id {id}")));
    out
}

/// What is in `after` and not in `before`, leaving out the libfaketime pairs
/// that clocks of other tests (running beside, without a run of their own)
/// make in the host's `/dev/shm` and remove themselves.
pub fn new_shared_memory(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    after.difference(before).filter(|e| !e.contains("shakedown_faketime")).cloned().collect()
}
