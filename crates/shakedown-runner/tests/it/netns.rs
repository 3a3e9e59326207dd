//! The namespace tier against real namespaces, veths, bridges and firewall
//! rules: reachability over the bridge, every partition mode pair by pair,
//! one-way drops, and that nothing is left after a drop, a SIGKILL or a panic.
//!
//! The leak test re-runs this test binary as a holder process: with
//! `SHAKEDOWN_NETNS_HOLDER=kill` or `=panic` set, the test
//! `netns::a_killed_or_panicking_holder_leaves_nothing` creates a network, a
//! partition and a process inside a node, prints the namespaces' inodes, and
//! then sleeps until killed or panics. With `SHAKEDOWN_NETNS_UNPRIVILEGED`
//! set, `netns::without_root_the_probe_and_create_say_why` (run as nobody)
//! prints what `probe` and `Network::create` say.

use shakedown_runner::netns::{enter_netns, probe, At, Firewall, Grudge, NetError, Network};
use shakedown_spec::PartitionMode;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PORT: u16 = 7000;
/// A dropped SYN never gets an answer; a reachable node answers in microseconds.
const BLOCKED_AFTER: Duration = Duration::from_millis(300);
const HOLDER_ENV: &str = "SHAKEDOWN_NETNS_HOLDER";
const HOLDER_TEST: &str = "netns::a_killed_or_panicking_holder_leaves_nothing";
const UNPRIVILEGED_ENV: &str = "SHAKEDOWN_NETNS_UNPRIVILEGED";
const UNPRIVILEGED_TEST: &str = "netns::without_root_the_probe_and_create_say_why";

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

fn create(nodes: &[String]) -> Arc<Network> {
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    Arc::new(Network::create(&refs).expect("create the network"))
}

/// A listener on every node at `PORT`; the kernel completes handshakes
/// without `accept`, so connecting is enough to prove reachability.
fn listen_everywhere(net: &Network, nodes: &[String]) -> Vec<std::net::TcpListener> {
    let bind = |n: &String| net.bind_in(At::Node(n), SocketAddr::new(net.address(n).unwrap().into(), PORT)).unwrap();
    nodes.iter().map(bind).collect()
}

/// Every ordered pair (from, to) of nodes whose TCP connect succeeds, tried concurrently.
async fn reachable_pairs(net: &Arc<Network>, nodes: &[String]) -> BTreeSet<(String, String)> {
    let mut tries = tokio::task::JoinSet::new();
    for from in nodes {
        for to in nodes.iter().filter(|to| *to != from) {
            let (net, from, to) = (net.clone(), from.clone(), to.clone());
            tries.spawn(async move {
                let addr = SocketAddr::new(net.address(&to).unwrap().into(), PORT);
                let ok = net.connect(At::Node(&from), addr, BLOCKED_AFTER).await.is_ok();
                (from, to, ok)
            });
        }
    }
    let mut pairs = BTreeSet::new();
    while let Some(done) = tries.join_next().await {
        let (from, to, ok) = done.unwrap();
        if ok {
            pairs.insert((from, to));
        }
    }
    pairs
}

/// A TCP connection needs packets both ways: it works unless either end holds a grudge.
fn expected_pairs(grudge: &Grudge, nodes: &[String]) -> BTreeSet<(String, String)> {
    let all = nodes.iter().flat_map(|a| nodes.iter().filter(move |b| *b != a).map(move |b| (a.clone(), b.clone())));
    all.filter(|(a, b)| !grudge.drops(a, b) && !grudge.drops(b, a)).collect()
}

async fn clients_reach_every_node(net: &Network, nodes: &[String]) -> bool {
    for n in nodes {
        let addr = SocketAddr::new(net.address(n).unwrap().into(), PORT);
        if net.connect(At::Clients, addr, BLOCKED_AFTER).await.is_err() {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn nodes_reach_each_other_and_clients_reach_a_server_in_a_node() {
    let nodes = names(2);
    let net = create(&nodes);
    let _listeners = listen_everywhere(&net, &nodes);
    assert_eq!(reachable_pairs(&net, &nodes).await, expected_pairs(&Grudge::none(), &nodes));

    let server = net.bind_in(At::Node("n2"), "0.0.0.0:7001".parse().unwrap()).unwrap();
    let echo = std::thread::spawn(move || {
        let (mut conn, peer) = server.accept().unwrap();
        std::io::copy(&mut conn.try_clone().unwrap(), &mut conn).unwrap();
        peer
    });
    let mut conn = net.connect_from_clients(SocketAddr::new(net.address("n2").unwrap().into(), 7001)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(b"ping").await.unwrap();
    conn.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut back)).await.unwrap().unwrap();
    assert_eq!(back, b"ping");
    assert_eq!(
        echo.join().unwrap().ip(),
        std::net::IpAddr::V4(net.clients_address()),
        "the server sees the clients' address"
    );
}

#[tokio::test]
async fn the_client_connector_dials_from_the_clients_namespace() {
    let nodes = names(1);
    let net = create(&nodes);
    let _listeners = listen_everywhere(&net, &nodes);
    let connector = net.client_connector();
    let addr = SocketAddr::new(net.address("n1").unwrap().into(), PORT);
    let conn = tokio::time::timeout(Duration::from_secs(5), connector.connect(addr)).await.unwrap().unwrap();
    assert_eq!(conn.local_addr().unwrap().ip(), std::net::IpAddr::V4(net.clients_address()));
    assert!(net.contains(addr.ip()) && net.contains(net.clients_address().into()));
    assert!(!net.contains("127.0.0.1".parse().unwrap()));
}

#[tokio::test]
async fn each_partition_mode_blocks_exactly_its_pairs_and_heal_restores_all() {
    let nodes = names(5);
    let net = create(&nodes);
    let _listeners = listen_everywhere(&net, &nodes);
    let everyone = expected_pairs(&Grudge::none(), &nodes);
    let modes = [
        PartitionMode::Isolate,
        PartitionMode::Halves,
        PartitionMode::Bridge,
        PartitionMode::MajoritiesRing,
        PartitionMode::OneWay,
    ];
    for (seed, mode) in modes.into_iter().enumerate() {
        let grudge = net.split(mode, &nodes, seed as u64).unwrap();
        let expected = expected_pairs(&grudge, &nodes);
        assert!(expected.len() < everyone.len(), "{} cuts something: {grudge}", mode.as_str());
        assert_eq!(reachable_pairs(&net, &nodes).await, expected, "{}: {grudge}", mode.as_str());
        assert!(clients_reach_every_node(&net, &nodes).await, "clients still reach every node under {}", mode.as_str());
        assert_eq!(net.grudge(), grudge);
        net.heal().unwrap();
        assert_eq!(reachable_pairs(&net, &nodes).await, everyone, "heal after {}", mode.as_str());
    }
}

#[tokio::test]
async fn iptables_partitions_like_nftables() {
    let nodes = names(3);
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let net = Arc::new(Network::create_with(&refs, Some(Firewall::Iptables)).unwrap());
    assert_eq!(net.firewall(), Firewall::Iptables);
    let _listeners = listen_everywhere(&net, &nodes);
    let grudge = Grudge::isolate_node(&nodes, "n2");
    net.partition(&grudge).unwrap();
    assert_eq!(reachable_pairs(&net, &nodes).await, expected_pairs(&grudge, &nodes));
    net.heal().unwrap();
    assert_eq!(reachable_pairs(&net, &nodes).await, expected_pairs(&Grudge::none(), &nodes));
}

/// Sends one datagram from `from` to `to` and says whether it arrived.
fn datagram_arrives(net: &Network, from: &str, to: &str) -> bool {
    let to_addr = SocketAddr::new(net.address(to).unwrap().into(), 7002);
    let receiver: UdpSocket = net.run_at(At::Node(to), || UdpSocket::bind(to_addr)).unwrap().unwrap();
    receiver.set_read_timeout(Some(BLOCKED_AFTER)).unwrap();
    let sender: UdpSocket = net.run_at(At::Node(from), || UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    sender.send_to(b"hello", to_addr).unwrap();
    let mut buf = [0u8; 16];
    receiver.recv_from(&mut buf).is_ok_and(|(n, _)| &buf[..n] == b"hello")
}

#[test]
fn one_way_really_is_one_way() {
    let nodes = names(2);
    let net = create(&nodes);
    assert!(datagram_arrives(&net, "n1", "n2") && datagram_arrives(&net, "n2", "n1"));
    net.partition(&Grudge::one_way_between("n1", "n2")).unwrap();
    assert!(!datagram_arrives(&net, "n1", "n2"), "n1's packets to n2 are dropped");
    assert!(datagram_arrives(&net, "n2", "n1"), "n2's packets to n1 arrive");
    net.heal().unwrap();
    assert!(datagram_arrives(&net, "n1", "n2"));
}

/// nftables' ruleset as seen inside `at`'s namespace.
fn ruleset_at(net: &Network, at: At<'_>) -> String {
    let out = net.run_at(at, || Command::new("nft").args(["list", "ruleset"]).output()).unwrap().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn partition_and_heal_are_idempotent_and_touch_only_the_nodes() {
    let nodes = names(2);
    let net = create(&nodes);
    assert_eq!(net.firewall(), Firewall::Nft);
    let grudge = Grudge::isolate_node(&nodes, "n1");
    net.partition(&grudge).unwrap();
    net.partition(&grudge).unwrap();
    let rules = ruleset_at(&net, At::Node("n1"));
    assert!(rules.contains("table inet shakedown") && rules.contains("ip saddr 10.89.0.2 drop"), "{rules}");
    assert!(!ruleset_at(&net, At::Clients).contains("drop"), "the clients are never cut off");
    net.heal().unwrap();
    net.heal().unwrap();
    assert!(!ruleset_at(&net, At::Node("n1")).contains("shakedown"));
    assert_eq!(net.grudge(), Grudge::none());
    let mut unknown = Grudge::none();
    unknown.drop_from("n1", "n9");
    assert!(matches!(net.partition(&unknown), Err(NetError::UnknownNode(n)) if n == "n9"));
}

#[test]
fn a_process_entering_a_node_sees_its_address() {
    let net = create(&names(2));
    let fd = net.ns_fd("n2").unwrap();
    let raw = fd.as_raw_fd();
    let mut cmd = Command::new("ip");
    cmd.args(["-4", "-o", "addr", "show", "dev", "eth0"]);
    // SAFETY: enter_netns is a single setns call.
    unsafe { cmd.pre_exec(move || enter_netns(raw)) };
    let out = cmd.output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.89.0.2/24"), "{out:?}");
    assert!(net.namespace("n2").is_some_and(|ns| ns.nstype == libc::CLONE_NEWNET));
    assert!(net.namespace("n3").is_none());
}

#[test]
fn bad_node_lists_are_errors() {
    assert!(matches!(Network::create(&["a", "b", "a"]), Err(NetError::DuplicateNode(n)) if n == "a"));
    let many: Vec<String> = names(250);
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let err = Network::create(&refs).unwrap_err();
    assert_eq!(err.to_string(), "create a network of 250 nodes: at most 249 fit in its /24");
}

#[test]
fn probe_succeeds_on_this_machine() {
    probe().unwrap();
}

#[test]
fn without_root_the_probe_and_create_say_why() {
    if std::env::var_os(UNPRIVILEGED_ENV).is_some() {
        println!("probe: {:?}", probe());
        println!("create: {:?}", Network::create(&["a"]).map(|_| ()).map_err(|e| e.to_string()));
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([UNPRIVILEGED_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(UNPRIVILEGED_ENV, "1")
        .uid(65534)
        .gid(65534)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for what in ["probe", "create"] {
        let line = text.lines().find_map(|l| l.split_once(&format!("{what}: ")).map(|(_, r)| r)).expect(what);
        assert!(
            line.starts_with("Err(") && line.contains("Operation not permitted") && line.contains("needs root"),
            "{line}"
        );
    }
}

/// What the host shows of namespaces, links and firewall rules.
fn host_state() -> [String; 4] {
    let run = |program: &str, args: &[&str]| {
        let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    [
        run("ip", &["netns", "list"]),
        run("ip", &["-o", "link"]),
        run("nft", &["list", "ruleset"]),
        iptables_rules(&run("iptables-save", &[])),
    ]
}

/// iptables-save's rules without its dated comments and packet counters.
fn iptables_rules(saved: &str) -> String {
    let rules = saved.lines().filter(|l| !l.starts_with('#'));
    rules.map(|l| l.split(" [").next().unwrap_or(l)).collect::<Vec<_>>().join("\n")
}

/// Every network namespace inode any process or thread is in or holds an fd to.
fn live_namespaces() -> BTreeSet<u64> {
    let mut seen = BTreeSet::new();
    let mut note = |link: std::path::PathBuf| {
        let text = link.display().to_string();
        if let Some(inode) = text.strip_prefix("net:[").and_then(|t| t.strip_suffix(']')) {
            seen.insert(inode.parse().unwrap());
        }
    };
    let pids = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok());
    for pid in pids {
        let tasks = std::fs::read_dir(pid.path().join("task")).into_iter().flatten().flatten();
        tasks.filter_map(|t| std::fs::read_link(t.path().join("ns/net")).ok()).for_each(&mut note);
        let fds = std::fs::read_dir(pid.path().join("fd")).into_iter().flatten().flatten();
        fds.filter_map(|fd| std::fs::read_link(fd.path()).ok()).for_each(&mut note);
    }
    seen
}

fn gone_within(inodes: &[u64], limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let live = live_namespaces();
        if inodes.iter().all(|i| !live.contains(i)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn dropping_the_network_leaves_nothing() {
    let before = host_state();
    let net = create(&names(3));
    net.split(PartitionMode::Halves, &names(3), 1).unwrap();
    let inodes = net.ns_inodes().unwrap();
    assert_eq!(inodes.len(), 5, "switch, clients and three nodes");
    assert!(inodes.iter().all(|i| live_namespaces().contains(i)), "held while the network lives");
    assert_eq!(host_state(), before, "nothing shows on the host while the network lives");
    drop(net);
    assert!(gone_within(&inodes, Duration::from_secs(2)), "no process holds the namespaces");
    assert_eq!(host_state(), before);
}

/// The holder role: a network, a partition and a `sleep` inside node n1,
/// then it prints the inodes and either waits to be killed or panics.
#[expect(clippy::zombie_processes, reason = "the holder dies first; PDEATHSIG ends the sleeper, never waited for")]
fn hold(mode: &str) {
    let net = create(&names(2));
    net.partition(&Grudge::isolate_node(&names(2), "n1")).unwrap();
    let raw = net.ns_fd("n1").unwrap().as_raw_fd();
    let mut sleeper = Command::new("sleep");
    sleeper.arg("60");
    // SAFETY: prctl and setns are async-signal-safe single system calls.
    unsafe {
        sleeper.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            enter_netns(raw)
        })
    };
    let sleeper = sleeper.spawn().unwrap();
    let inodes: Vec<String> = net.ns_inodes().unwrap().iter().map(u64::to_string).collect();
    println!("holding {} {}", sleeper.id(), inodes.join(" "));
    match mode {
        "panic" => panic!("the holder panics while holding the network"),
        _ => std::thread::sleep(Duration::from_secs(60)),
    }
}

/// A holder process, the pid of the process inside its node, its namespaces'
/// inodes, and its stdout (kept open so the holder never writes to a closed pipe).
type Holder = (std::process::Child, u32, Vec<u64>, Box<dyn std::any::Any>);

/// Starts a holder, reads its `holding PID INODES...` line.
fn start_holder(mode: &str) -> Holder {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([HOLDER_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(HOLDER_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The harness prints `test NAME ... ` on the same line first.
    let line = lines.find_map(|l| l.ok()?.split_once("holding ").map(|(_, rest)| rest.to_string()));
    let line = line.expect("the holder says it holds");
    let mut words = line.split(' ').map(|w| w.parse::<u64>().unwrap());
    let sleeper = words.next().unwrap() as u32;
    (child, sleeper, words.collect(), Box::new(lines))
}

/// Whether `pid` runs: a zombie has already left its namespaces.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|s| s != 'Z')
}

fn wait_for_exit(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "the holder exits");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_or_panicking_holder_leaves_nothing() {
    if let Ok(mode) = std::env::var(HOLDER_ENV) {
        return hold(&mode);
    }
    let before = host_state();
    for mode in ["kill", "panic"] {
        let (mut child, sleeper, inodes, _stdout) = start_holder(mode);
        assert_eq!(inodes.len(), 4, "switch, clients and two nodes");
        if mode == "kill" {
            assert!(live_namespaces().contains(&inodes[2]), "the holder's node namespace is alive");
            child.kill().unwrap();
        }
        let status = wait_for_exit(&mut child, Duration::from_secs(10));
        assert!(!status.success(), "{mode}: {status:?}");
        let start = Instant::now();
        while alive(sleeper) {
            assert!(start.elapsed() < Duration::from_secs(2), "{mode}: the process inside dies with its holder");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone_within(&inodes, Duration::from_secs(2)), "{mode}: the namespaces are gone");
        assert_eq!(host_state(), before, "{mode}: the host is unchanged");
    }
}
