//! `doctor()` on this machine (root, no netem): every capability is listed,
//! the namespace tier is available, netem is missing with the kernel's reason.

use shakedown_runner::doctor::{doctor, render, Tier};

const NAMES: [&str; 15] = [
    "process faults",
    "process cleanup",
    "tcp fault proxy",
    "http fault layer",
    "libfaketime (clock faults)",
    "network namespaces",
    "bridge and veth",
    "nftables",
    "iptables",
    "netem",
    "network partitions",
    "tmpfs in a mount namespace (disk-full faults)",
    "private shared memory",
    "user namespaces (unprivileged)",
    "host clock changes",
];

#[test]
fn doctor_lists_every_capability_with_netem_missing_and_why() {
    let caps = doctor();
    let names: Vec<&str> = caps.iter().map(|c| c.name).collect();
    assert_eq!(names, NAMES);
    let find = |name: &str| caps.iter().find(|c| c.name == name).unwrap();
    for name in [
        "process faults",
        "process cleanup",
        "tcp fault proxy",
        "http fault layer",
        "network namespaces",
        "bridge and veth",
        "nftables",
        "network partitions",
        "private shared memory",
    ] {
        assert!(find(name).available, "{name}: {}", find(name).detail);
    }
    let netem = find("netem");
    assert!(!netem.available, "this kernel has no netem");
    assert!(
        netem.detail.contains("tc qdisc add dev lo root netem") && netem.detail.contains("proxy"),
        "{}",
        netem.detail
    );
    let clock = find("host clock changes");
    assert!(!clock.available && clock.tier == Tier::RootVm);
    assert!(caps.iter().all(|c| !c.detail.is_empty()), "every capability says why");

    let table = render(&caps);
    assert!(NAMES.iter().all(|n| table.contains(n)), "{table}");
    let json = serde_json::to_value(&caps).unwrap();
    assert_eq!(json.as_array().unwrap().len(), NAMES.len());
    assert_eq!(json[9]["name"], "netem");
    assert_eq!(json[9]["available"], false);
    // This machine has a writable cgroup v2 (at /sys/fs/cgroup/unified) with cgroup.kill.
    let cleanup = &find("process cleanup").detail;
    assert!(cleanup.starts_with("cgroup v2 at /sys/fs/cgroup/unified/shakedown-* (cgroup.kill)"), "{cleanup}");
}
