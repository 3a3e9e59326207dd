//! The proxy as a process of its own under load: from a soft open-file limit
//! of 1,024 it carries 10,000 concurrent connections through one link (or
//! as many as the hard limit fits, two descriptors each, and no fewer than
//! 9,900), and once they close its resident memory (VmRSS) comes back to
//! within twice what it was idle. Running out of descriptors altogether
//! stalls accepts but does not end them.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use crate::support::*;

/// The goal; fewer when the hard open-file limit cannot fit that many.
const CONNECTIONS_GOAL: usize = 10_000;
/// Fewer than this and the test fails: the limit is too low to show anything.
const CONNECTIONS_MIN: usize = 9_900;
/// The proxy starts with the common default soft limit of 1,024.
const PROXY_SOFT_NOFILE: u64 = 1024;
/// The hard limit asked for; raising a hard limit needs CAP_SYS_RESOURCE,
/// and without it the hard limit this test inherited is what there is.
const WANTED_HARD_NOFILE: u64 = 65_536;
/// Descriptors a process needs beside its connections (stdio, epoll, the
/// listener, the runtime's wakers).
const FD_MARGIN: u64 = 64;
/// Connects in flight at once, well under the listen backlog (1,024), so no
/// SYN is dropped and retried a second later.
const CONNECTS_IN_FLIGHT: usize = 256;
/// How long the whole burst (connect, exchange, close) may take.
const BURST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the proxy may take to give memory back after the last close.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A child running `shakedown-proxy-harness`, killed when dropped.
struct Harness {
    child: Child,
    addr: SocketAddr,
}

impl Harness {
    /// Starts `args` with the open-file limit `nofile` (soft, hard) if given.
    async fn start(args: &[String], nofile: Option<(u64, u64)>) -> Harness {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shakedown-proxy-harness"));
        command.args(args);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        if let Some((soft, hard)) = nofile {
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                command.pre_exec(move || set_nofile(soft, hard));
            }
        }
        let mut child = command.spawn().expect("spawn shakedown-proxy-harness");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let read = timeout(IO_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        read.expect("the harness printed no address in time").expect("read the harness's stdout");
        let addr = line.trim().parse().unwrap_or_else(|_| panic!("the harness printed {line:?}, not an address"));
        Harness { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("the harness is running")
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("read the status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("status has VmRSS");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("VmRSS is a number of KiB")
    }

    /// How many sockets the process holds open.
    fn sockets(&self) -> usize {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("list the harness's descriptors");
        fds.flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
            .count()
    }
}

fn get_nofile() -> (u64, u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0, "getrlimit");
    (limit.rlim_cur, limit.rlim_max)
}

fn set_nofile(soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `limit` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Raises this process's limits to `WANTED_HARD_NOFILE` if it may, else its
/// soft limit to its hard one; the hard limit in force, which children may
/// also have.
fn raise_own_nofile() -> u64 {
    if set_nofile(WANTED_HARD_NOFILE, WANTED_HARD_NOFILE).is_err() {
        let (_, hard) = get_nofile();
        set_nofile(hard, hard).expect("raise the soft open-file limit to the hard one");
    }
    get_nofile().1
}

/// Opens `n` connections to `addr`, a bounded number at a time.
async fn connect_all(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut connecting = JoinSet::new();
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.unwrap();
        connecting.spawn(async move {
            let stream = connect(addr).await;
            drop(permit);
            stream
        });
    }
    connecting.join_all().await
}

/// Sends each connection its own message and checks it comes back; the
/// connections stay open.
async fn exchange_all(streams: Vec<TcpStream>) -> Vec<TcpStream> {
    let mut exchanging = JoinSet::new();
    for (index, mut stream) in streams.into_iter().enumerate() {
        exchanging.spawn(async move {
            let message = format!("connection {index:05} says hello");
            stream.write_all(message.as_bytes()).await.unwrap();
            let mut back = vec![0u8; message.len()];
            timeout(IO_TIMEOUT, stream.read_exact(&mut back)).await.expect("echo timed out").unwrap();
            assert_eq!(back, message.as_bytes(), "connection {index} got its own bytes back");
            stream
        });
    }
    exchanging.join_all().await
}

#[test]
fn ten_thousand_connections_from_a_soft_limit_of_1024_then_memory_comes_back() {
    let hard = raise_own_nofile();
    let n = CONNECTIONS_GOAL.min(usize::try_from(hard.saturating_sub(FD_MARGIN) / 2).unwrap_or(usize::MAX));
    assert!(n >= CONNECTIONS_MIN, "a hard open-file limit of {hard} fits only {n} proxied connections");
    run(async {
        let echo = Harness::start(&["echo".into(), "127.0.0.1:0".into()], None).await;
        let args = ["link".into(), "127.0.0.1:0".into(), echo.addr.to_string()];
        let proxy = Harness::start(&args, Some((PROXY_SOFT_NOFILE, hard))).await;
        // Let the runtime's threads settle before taking the idle figure.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (idle_kib, idle_sockets) = (proxy.rss_kib(), proxy.sockets());

        let started = Instant::now();
        let burst = async {
            let streams = exchange_all(connect_all(proxy.addr, n).await).await;
            let (peak_kib, peak_sockets) = (proxy.rss_kib(), proxy.sockets());
            assert_eq!(peak_sockets, idle_sockets + 2 * n, "the proxy holds both sides of every connection at once");
            drop(streams);
            let closed = || proxy.sockets() == idle_sockets;
            eventually_within(BURST_TIMEOUT, "the proxy closed every connection", closed).await;
            peak_kib
        };
        let peak_kib = timeout(BURST_TIMEOUT, burst).await.expect("the burst took too long");
        let burst_time = started.elapsed();

        let deadline = Instant::now() + RELEASE_TIMEOUT;
        let mut after_kib = proxy.rss_kib();
        while after_kib > 2 * idle_kib && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            after_kib = proxy.rss_kib();
        }
        println!(
            "proxy (soft nofile {PROXY_SOFT_NOFILE}, hard {hard}) with {n} connections: VmRSS idle {idle_kib} KiB, \
             peak {peak_kib} KiB, after close {after_kib} KiB; burst took {burst_time:?}"
        );
        assert!(after_kib <= 2 * idle_kib, "RSS after the burst {after_kib} KiB is over twice idle {idle_kib} KiB");
    });
}

/// Waits until `check` holds, polling, for at most `limit`.
async fn eventually_within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A limit the proxy cannot raise: its soft limit is its hard limit.
const TIGHT_NOFILE: u64 = 48;
/// More connections than `TIGHT_NOFILE` descriptors can carry (two each).
const OVER_TIGHT: usize = 40;

#[test]
fn running_out_of_descriptors_does_not_stop_the_accept_loop() {
    run(async {
        let echo = Harness::start(&["echo".into(), "127.0.0.1:0".into()], None).await;
        let args = ["link".into(), "127.0.0.1:0".into(), echo.addr.to_string()];
        let proxy = Harness::start(&args, Some((TIGHT_NOFILE, TIGHT_NOFILE))).await;
        let idle_sockets = proxy.sockets();

        let mut trying = JoinSet::new();
        for stream in connect_all(proxy.addr, OVER_TIGHT).await {
            trying.spawn(echoes_within(stream, Duration::from_secs(1)));
        }
        let served = trying.join_all().await.into_iter().filter(|ok| *ok).count();
        assert!(served > 0 && served < OVER_TIGHT, "{served} of {OVER_TIGHT} served at {TIGHT_NOFILE} descriptors");
        let closed = || proxy.sockets() == idle_sockets;
        eventually_within(IO_TIMEOUT, "the proxy closed every connection", closed).await;

        for stream in connect_all(proxy.addr, 10).await {
            assert!(echoes_within(stream, IO_TIMEOUT).await, "the link serves again once descriptors are free");
        }
    });
}

/// Whether a message sent on `stream` comes back within `limit`.
async fn echoes_within(mut stream: TcpStream, limit: Duration) -> bool {
    let exchange = async {
        stream.write_all(b"ping").await?;
        let mut back = [0u8; 4];
        stream.read_exact(&mut back).await?;
        Ok::<_, std::io::Error>(&back == b"ping")
    };
    matches!(timeout(limit, exchange).await, Ok(Ok(true)))
}
