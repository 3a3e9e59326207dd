//! `shakedown doctor`: which fault tiers and tools this machine has, each
//! found by trying it (in throwaway namespaces), with the reason when missing,
//! and how a run's processes are cleaned up (a cgroup per run or the fallback).

use crate::netns::sys::{new_netns, run_in, wait_with_timeout, COMMAND_TIMEOUT};
use crate::netns::Firewall;
use serde::Serialize;
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// The fault tiers of DESIGN.md section 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// No privileges needed.
    Portable,
    /// Linux namespaces: root (or user namespaces).
    Namespaces,
    /// Root on a machine of its own (a VM).
    RootVm,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Portable => "portable",
            Tier::Namespaces => "namespaces",
            Tier::RootVm => "root/vm",
        })
    }
}

/// One fault capability, whether this machine has it, and why (not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    pub tier: Tier,
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
}

impl Capability {
    fn from_result(tier: Tier, name: &'static str, result: Result<String, String>) -> Capability {
        match result {
            Ok(detail) => Capability { tier, name, available: true, detail },
            Err(detail) => Capability { tier, name, available: false, detail },
        }
    }

    fn always(name: &'static str, detail: &str) -> Capability {
        Capability { tier: Tier::Portable, name, available: true, detail: detail.to_string() }
    }
}

/// Probes every capability. Each probe is bounded: every command it runs
/// has [`COMMAND_TIMEOUT`], and namespaces it makes are gone when it returns.
pub fn doctor() -> Vec<Capability> {
    let mut caps = vec![
        Capability::always("process faults", "kill, terminate, interrupt, pause and restart through process groups"),
        Capability::from_result(Tier::Portable, "process cleanup", crate::containment::describe()),
        Capability::always(
            "tcp fault proxy",
            "latency, jitter, bandwidth, slow connect, timeout, reset, slicer, data limit, down",
        ),
        Capability::always("http fault layer", "statuses with Retry-After, delays and aborts, with a probability"),
        Capability::from_result(Tier::Portable, "libfaketime (clock faults)", libfaketime()),
    ];
    caps.extend(namespace_capabilities());
    caps.push(Capability::from_result(Tier::Namespaces, "tmpfs in a mount namespace (disk-full faults)", tmpfs()));
    caps.push(Capability::from_result(Tier::Namespaces, "private shared memory", crate::containment::ipc::describe()));
    caps.push(Capability::from_result(Tier::Namespaces, "user namespaces (unprivileged)", user_namespaces()));
    caps.push(Capability {
        tier: Tier::RootVm,
        name: "host clock changes",
        available: false,
        detail: "not provided: changing the host's clock needs a machine of its own; clock faults use libfaketime"
            .into(),
    });
    caps
}

fn libfaketime() -> Result<String, String> {
    crate::clock::probe().map(|path| format!("{}", path.display()))
}

fn tmpfs() -> Result<String, String> {
    crate::disk::probe().map(|()| "a size-limited tmpfs fills up with ENOSPC, unseen by the host".into())
}

/// Network namespaces and the tools used inside them, each tried in a
/// throwaway namespace; if none can be made, all say why.
fn namespace_capabilities() -> Vec<Capability> {
    let ns = match new_netns() {
        Ok(ns) => ns,
        Err(e) => {
            let why = format!(
                "unshare(CLONE_NEWNET) failed: {e}; the namespace tier needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)"
            );
            let missing = |name| Capability { tier: Tier::Namespaces, name, available: false, detail: why.clone() };
            return ["network namespaces", "bridge and veth", "nftables", "iptables", "netem", "network partitions"]
                .map(missing)
                .to_vec();
        }
    };
    let cap = |name, result| Capability::from_result(Tier::Namespaces, name, result);
    vec![
        cap("network namespaces", Ok("unshare(CLONE_NEWNET) works; namespaces are held by fds only".into())),
        cap("bridge and veth", bridge_and_veth(&ns)),
        cap("nftables", firewall(&ns, Firewall::Nft)),
        cap("iptables", firewall(&ns, Firewall::Iptables)),
        cap("netem", netem(&ns)),
        cap("network partitions", crate::netns::probe().map(|()| "a throwaway network partitions and heals".into())),
    ]
}

fn bridge_and_veth(ns: &OwnedFd) -> Result<String, String> {
    let script = "link add name br0 type bridge\nlink add name eth0 type veth peer name v1\nlink set v1 master br0\n";
    run_in(ns, "ip", &["-batch", "-"], Some(script)).map_err(|e| format!("failed to {e}"))?;
    Ok("a bridge and a veth pair can be made inside a namespace".into())
}

fn firewall(ns: &OwnedFd, tool: Firewall) -> Result<String, String> {
    tool.apply(ns, &[Ipv4Addr::new(10, 89, 0, 9)]).map_err(|e| format!("failed to {e}"))?;
    tool.apply(ns, &[]).map_err(|e| format!("failed to {e}"))?;
    Ok(format!("drop rules load and unload inside a namespace ({})", tool.name()))
}

/// Missing on kernels built without `sch_netem`; the proxy covers the same faults.
fn netem(ns: &OwnedFd) -> Result<String, String> {
    let args = ["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"];
    match run_in(ns, "tc", &args, None) {
        Ok(_) => Ok("tc qdisc netem works (shakedown injects delay and loss with its TCP fault proxy)".into()),
        Err(e) => Err(format!("failed to {e}; packet delay and loss go through the TCP fault proxy instead")),
    }
}

/// Whether an unprivileged process may create a user namespace: a child
/// drops to `nobody` (when root) and calls `unshare(CLONE_NEWUSER)`.
fn user_namespaces() -> Result<String, String> {
    let mut cmd = Command::new("true");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: setgroups, setgid, setuid and unshare are async-signal-safe
    // system calls on integers; nothing here allocates.
    unsafe {
        cmd.pre_exec(|| {
            if libc::geteuid() == 0
                && (libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            match libc::unshare(libc::CLONE_NEWUSER) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let mut child = cmd.spawn().map_err(|e| format!("an unprivileged unshare(CLONE_NEWUSER) failed: {e}"))?;
    match wait_with_timeout(&mut child, COMMAND_TIMEOUT) {
        Ok(Some(status)) if status.success() => {
            Ok("an unprivileged process can create a user namespace (the namespace tier itself runs as root)".into())
        }
        Ok(Some(status)) => Err(format!("the probe process failed: {status}")),
        Ok(None) => Err(format!("the probe process did not finish within {COMMAND_TIMEOUT:?}")),
        Err(e) => Err(format!("failed to wait for the probe process: {e}")),
    }
}

/// A table: tier, capability, yes/no, detail; one row per capability.
pub fn render(caps: &[Capability]) -> String {
    let header = ("TIER", "CAPABILITY", "AVAILABLE", "DETAIL");
    let tier_w = caps.iter().map(|c| c.tier.to_string().len()).chain([header.0.len()]).max().unwrap_or(0);
    let name_w = caps.iter().map(|c| c.name.len()).chain([header.1.len()]).max().unwrap_or(0);
    let mut out = format!("{:tier_w$}  {:name_w$}  {:9}  {}\n", header.0, header.1, header.2, header.3);
    for c in caps {
        let yes = if c.available { "yes" } else { "no" };
        out.push_str(&format!("{:tier_w$}  {:name_w$}  {yes:9}  {}\n", c.tier.to_string(), c.name, c.detail));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_aligns_one_row_per_capability() {
        let caps = [
            Capability::always("process faults", "always"),
            Capability {
                tier: Tier::RootVm,
                name: "host clock changes",
                available: false,
                detail: "not provided".into(),
            },
        ];
        let text = render(&caps);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[1], "portable  process faults      yes        always");
        assert_eq!(lines[2], "root/vm   host clock changes  no         not provided");
    }

    #[test]
    fn capabilities_serialize_with_kebab_case_tiers() {
        let cap = Capability { tier: Tier::RootVm, name: "x", available: false, detail: "why".into() };
        let json = serde_json::to_value(&cap).unwrap();
        assert_eq!(json, serde_json::json!({"tier": "root-vm", "name": "x", "available": false, "detail": "why"}));
    }
}
