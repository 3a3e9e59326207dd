//! The Linux tier leaves nothing behind: after a run, even one interrupted
//! during a partition, no namespace, firewall rule, mount or process of it
//! remains; and a scenario whose tier is missing is unknown, never passed.

use crate::common::{shakedown, stderr, write_file, SHAKEDOWN};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Three testbed kv nodes, each in its own network namespace, with a disk,
/// partitioned from 500ms on for 30s, a workload of 30s.
fn partitioned() -> String {
    std::fs::read_to_string(
        crate::common::repo_root().join("crates/shakedown-cli/tests/data/containment/partitioned.toml"),
    )
    .unwrap()
}

/// Pids of processes whose command line mentions `marker`.
fn pids_mentioning(marker: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            pids.push(pid);
        }
    }
    pids
}

fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sigint_during_a_partition_leaves_no_namespace_rule_mount_or_process() {
    let before = crate::host::state();
    let tmp = tempfile::tempdir().unwrap();
    let file = write_file(tmp.path(), "s.toml", &partitioned());
    let out = tmp.path().join("run");
    let mut child = Command::new(SHAKEDOWN)
        .args(["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let marker = out.to_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(30), || pids_mentioning(&marker).len() >= 3), "the three nodes start");
    // The partition starts 500ms into the workload; give it time to be in place.
    std::thread::sleep(Duration::from_millis(1500));
    let pids = pids_mentioning(&marker);
    let ours: BTreeSet<String> = pids
        .iter()
        .flat_map(|p| {
            ["net", "mnt"].map(|ns| std::fs::read_link(format!("/proc/{p}/ns/{ns}")).map(|l| l.display().to_string()))
        })
        .flatten()
        .collect();
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap().display().to_string();
    assert!(
        ours.iter().any(|ns| ns.starts_with("net:") && *ns != host_net),
        "the nodes run in their own network namespaces: {ours:?}"
    );
    let in_effect = pids.iter().any(|p| {
        let o = Command::new("nsenter").args(["-t", &p.to_string(), "-n", "nft", "list", "ruleset"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).contains("drop")
    });
    assert!(in_effect, "a node's namespace has the partition's drop rules");
    assert!(!crate::host::state().mounts.contains(&marker), "the tmpfs is not in the host's mount table");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "shakedown exits after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert!(
        wait_until(Duration::from_secs(5), || pids_mentioning(&marker).is_empty()),
        "no process of the run is left"
    );
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap().display().to_string();
    let live = crate::host::live_namespaces();
    let left: Vec<&String> =
        ours.iter().filter(|ns| **ns != host_net && **ns != host_mnt && live.contains(*ns)).collect();
    assert!(left.is_empty(), "the run's namespaces are gone: {left:?}");
    let after = crate::host::state();
    assert_eq!(before.netns, after.netns, "ip netns list is unchanged");
    assert_eq!(before.rules, after.rules, "the host's nftables and iptables rules are unchanged");
    assert!(!after.mounts.contains(&marker), "no mount of the run is left");
}

/// With libfaketime pointed at nothing, a clock fault cannot be injected: the
/// run is unknown (exit 2) and says why.
#[test]
fn a_missing_fault_tier_makes_every_check_unknown() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(crate::common::repo_root().join("examples/faults/clock.toml")).unwrap();
    let file = write_file(tmp.path(), "s.toml", &text);
    let out = tmp.path().join("run");
    let o = Command::new(SHAKEDOWN)
        .args(["run", file.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env("SHAKEDOWN_LIBFAKETIME", "/nonexistent/libfaketime.so.1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let report = crate::common::report(&out);
    assert_eq!(report["verdict"], "unknown");
    let summary = report["checks"][0]["summary"].as_str().unwrap();
    assert!(summary.contains("libfaketime"), "the reason names what is missing: {summary}");
    assert!(stderr(&o).contains("shakedown doctor"), "{}", stderr(&o));
}

#[test]
fn doctor_lists_every_tier_with_its_reason() {
    let o = shakedown(&["doctor"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    for what in ["process", "proxy", "http", "libfaketime", "namespace", "nftables", "iptables", "netem", "tmpfs"] {
        assert!(text.to_lowercase().contains(what), "doctor mentions {what}:\n{text}");
    }
    let o = shakedown(&["doctor", "--format", "json"]);
    let caps: serde_json::Value = serde_json::from_slice(&o.stdout).expect("doctor --format json prints JSON");
    let caps = caps.as_array().expect("a list of capabilities");
    assert!(caps.iter().all(|c| c["available"].is_boolean() && c["detail"].is_string()));
    let netem = caps.iter().find(|c| c["name"].as_str().is_some_and(|n| n.contains("netem"))).expect("netem is listed");
    if netem["available"] == false {
        assert!(!netem["detail"].as_str().unwrap().is_empty(), "a missing tool says why");
    }
}

/// The service's data lived on a tmpfs only it could see; the run directory
/// gets a copy of it at the end.
#[test]
fn a_services_disk_is_copied_into_the_run_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(crate::common::repo_root().join("examples/faults/disk-full.toml")).unwrap();
    let file = write_file(tmp.path(), "s.toml", &text.replace(", \"--bug\", \"ignore-write-errors\"", ""));
    let out = tmp.path().join("run");
    let o = shakedown(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-faults"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let journal =
        std::fs::metadata(out.join("services/kv/data/kv.log")).expect("the kv journal is in the run directory");
    assert!(journal.len() > 0);
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(out.to_str().unwrap()));
}
