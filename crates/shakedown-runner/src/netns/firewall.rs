//! The drop rules of one node's namespace, as an nftables script or, where
//! `nft` is missing, an `iptables-restore` file. Both replace the node's
//! previous rules in one atomic load, so applying twice is the same as once.

use super::sys::{run_in, CommandError};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

/// The table (nftables) holding shakedown's rules inside a node's namespace.
pub const TABLE: &str = "inet shakedown";

/// Which tool installs the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    Nft,
    Iptables,
}

impl Firewall {
    /// The first tool that can load an empty rule set in `ns`, or why none can.
    pub fn detect(ns: &OwnedFd) -> Result<Firewall, String> {
        let nft = Firewall::Nft.apply(ns, &[]);
        if nft.is_ok() {
            return Ok(Firewall::Nft);
        }
        let iptables = Firewall::Iptables.apply(ns, &[]);
        match (nft, iptables) {
            (_, Ok(())) => Ok(Firewall::Iptables),
            (Err(nft), Err(iptables)) => {
                Err(format!("neither nftables nor iptables works: failed to {nft}; failed to {iptables}"))
            }
            (Ok(()), _) => unreachable!("nft was tried first"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Firewall::Nft => "nftables",
            Firewall::Iptables => "iptables",
        }
    }

    /// Makes the namespace `ns` drop every IPv4 packet from `dropped`, and
    /// nothing else; an empty list removes shakedown's rules.
    pub fn apply(self, ns: &OwnedFd, dropped: &[Ipv4Addr]) -> Result<(), CommandError> {
        match self {
            Firewall::Nft => run_in(ns, "nft", &["-f", "-"], Some(&nft_script(dropped))).map(drop),
            Firewall::Iptables => {
                run_in(ns, "iptables-restore", &["-w", "5"], Some(&iptables_script(dropped))).map(drop)
            }
        }
    }
}

/// Declaring the table before deleting it makes the delete succeed whether
/// or not it existed; the whole script is one transaction.
pub fn nft_script(dropped: &[Ipv4Addr]) -> String {
    let mut script = format!("table {TABLE}\ndelete table {TABLE}\n");
    if !dropped.is_empty() {
        let set: Vec<String> = dropped.iter().map(Ipv4Addr::to_string).collect();
        script.push_str(&format!(
            "table {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {} }} drop\n  }}\n}}\n",
            set.join(", ")
        ));
    }
    script
}

/// Without `--noflush`, iptables-restore replaces the whole filter table.
pub fn iptables_script(dropped: &[Ipv4Addr]) -> String {
    let mut script = String::from("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for addr in dropped {
        script.push_str(&format!("-A INPUT -s {addr}/32 -j DROP\n"));
    }
    script.push_str("COMMIT\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_grudge_only_deletes_the_table() {
        assert_eq!(nft_script(&[]), "table inet shakedown\ndelete table inet shakedown\n");
        assert!(!iptables_script(&[]).contains("DROP"));
    }

    #[test]
    fn dropped_addresses_become_one_set_or_one_rule_each() {
        let addrs = [Ipv4Addr::new(10, 89, 0, 2), Ipv4Addr::new(10, 89, 0, 3)];
        assert!(nft_script(&addrs).contains("ip saddr { 10.89.0.2, 10.89.0.3 } drop"));
        let ipt = iptables_script(&addrs);
        assert!(ipt.contains("-A INPUT -s 10.89.0.2/32 -j DROP\n-A INPUT -s 10.89.0.3/32 -j DROP\nCOMMIT"));
    }
}
