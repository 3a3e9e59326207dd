//! The invariants ARCHITECTURE.md states, checked: which crate may depend on
//! which, that the library carries no CLI or testbed, and that only the
//! runner, the proxy and the CLI spawn processes or open sockets.

use crate::common::repo_root;
use std::collections::BTreeSet;
use std::path::Path;

/// The workspace crates each crate may depend on (normal dependencies).
const LAYERS: &[(&str, &[&str])] = &[
    ("shakedown-spec", &[]),
    ("shakedown-history", &[]),
    ("shakedown-proxy", &[]),
    ("shakedown-check", &["shakedown-history"]),
    ("shakedown-report", &["shakedown-history", "shakedown-check"]),
    ("shakedown-runner", &["shakedown-spec", "shakedown-history", "shakedown-proxy"]),
    ("shakedown", &["shakedown-spec", "shakedown-history", "shakedown-check", "shakedown-report", "shakedown-runner"]),
];

/// Crates that must not touch the machine: no processes, no sockets.
const PURE: &[&str] = &["shakedown-spec", "shakedown-history", "shakedown-check", "shakedown-report", "shakedown"];
/// Crates that are synchronous: no async runtime at all.
const SYNC: &[&str] = &["shakedown-spec", "shakedown-history", "shakedown-check", "shakedown-report"];

fn manifest(krate: &str) -> toml::Table {
    let path = repo_root().join("crates").join(krate).join("Cargo.toml");
    std::fs::read_to_string(&path).unwrap().parse().unwrap()
}

fn dependencies(krate: &str) -> BTreeSet<String> {
    let m = manifest(krate);
    m.get("dependencies").and_then(|d| d.as_table()).map(|d| d.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn each_crate_depends_only_on_the_layers_below_it() {
    let workspace: BTreeSet<String> = std::fs::read_dir(repo_root().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for (krate, allowed) in LAYERS {
        let ours: BTreeSet<String> = dependencies(krate).into_iter().filter(|d| workspace.contains(d)).collect();
        let extra: Vec<&String> = ours.iter().filter(|d| !allowed.contains(&d.as_str())).collect();
        assert!(extra.is_empty(), "{krate} depends on {extra:?}; ARCHITECTURE.md allows only {allowed:?}");
    }
    for krate in SYNC {
        assert!(!dependencies(krate).contains("tokio"), "{krate} is synchronous");
    }
}

#[test]
fn the_library_has_no_cli_and_no_testbed_anywhere_in_its_tree() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let o = std::process::Command::new(cargo)
        .current_dir(repo_root())
        .args(["tree", "-p", "shakedown", "-e", "normal,build,dev", "--prefix", "none", "--offline"])
        .output()
        .expect("run cargo tree");
    assert!(o.status.success(), "cargo tree: {}", String::from_utf8_lossy(&o.stderr));
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(tree.lines().any(|l| l.starts_with("shakedown-runner ")), "the tree is the library's: {tree}");
    for banned in ["clap ", "miette ", "indicatif ", "shakedown-testbed ", "shakedown-cli "] {
        assert!(!tree.lines().any(|l| l.starts_with(banned)), "the library's tree has {banned}");
    }
}

/// Source text before a file's `#[cfg(test)]` module, where tests may do anything.
fn non_test_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("#[cfg(test)]").next().unwrap_or("").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_runner_the_proxy_and_the_cli_spawn_processes_or_open_sockets() {
    const MACHINE: &[&str] = &[
        "process::Command",
        "Command::new",
        "TcpStream",
        "TcpListener",
        "UdpSocket",
        "UnixStream",
        "tokio::net",
        "tokio::process",
        "libc::fork",
    ];
    let mut offenders = Vec::new();
    for krate in PURE {
        let mut files = Vec::new();
        rust_files(&repo_root().join("crates").join(krate).join("src"), &mut files);
        assert!(!files.is_empty(), "{krate} has sources");
        for file in files {
            let text = non_test_source(&file);
            for word in MACHINE.iter().filter(|w| text.contains(*w)) {
                offenders.push(format!("{}: {word}", file.strip_prefix(repo_root()).unwrap().display()));
            }
        }
    }
    assert!(offenders.is_empty(), "only the runner, the proxy and the CLI touch the machine: {offenders:#?}");
}
