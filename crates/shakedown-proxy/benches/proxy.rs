//! Throughput and latency through shakedown's proxy beside direct loopback and
//! socat, in alternating rounds: bulk TCP with 1 and 8 streams (Gbit/s) and
//! 64-byte ping-pong (p50/p99 µs). Medians over rounds, ratios to direct.
//!
//! `cargo bench -p shakedown-proxy --bench proxy`; PROXY_BENCH_ROUNDS (7),
//! PROXY_BENCH_MIB (512 per round) and PROXY_BENCH_PINGS (20000) shrink it;
//! PROXY_BENCH_ONLY=proxy,socat keeps only those columns (and direct), for
//! profiling; PROXY_BENCH_RT=current hosts the proxy on a current-thread runtime.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use shakedown_proxy::{Link, LinkConfig, Stream, Toxic, ToxicKind};

const CHUNK: usize = 256 * 1024;
const PING: usize = 64;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A server that swallows every connection's bytes and answers one byte at its end.
fn sink_server() -> SocketAddr {
    serve(|mut conn| {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(1..) = conn.read(&mut buf) {}
        let _ = conn.write_all(b"k");
    })
}

/// A server that echoes fixed-size pings.
fn echo_server() -> SocketAddr {
    serve(|mut conn| {
        conn.set_nodelay(true).unwrap();
        let mut buf = [0u8; PING];
        while conn.read_exact(&mut buf).is_ok() && conn.write_all(&buf).is_ok() {}
    })
}

fn serve(handle: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || handle(conn));
        }
    });
    addr
}

/// Moves `total` bytes over `streams` parallel connections; Gbit/s.
fn throughput(addr: SocketAddr, streams: usize, total: usize) -> f64 {
    let per_stream = total / streams;
    let started = Instant::now();
    let workers: Vec<_> = (0..streams)
        .map(|_| {
            thread::spawn(move || {
                let mut conn = TcpStream::connect(addr).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let chunk = vec![0x5au8; CHUNK];
                let mut left = per_stream;
                while left > 0 {
                    let n = left.min(CHUNK);
                    conn.write_all(&chunk[..n]).unwrap();
                    left -= n;
                }
                conn.shutdown(std::net::Shutdown::Write).unwrap();
                let mut ack = [0u8; 1];
                conn.read_exact(&mut ack).expect("the sink acknowledges the end");
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    (per_stream * streams) as f64 * 8.0 / started.elapsed().as_secs_f64() / 1e9
}

/// Round-trip times of `n` pings, sorted, in µs.
fn ping_pong(addr: SocketAddr, n: usize) -> Vec<f64> {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [7u8; PING];
    let mut rtts = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        conn.write_all(&buf).unwrap();
        conn.read_exact(&mut buf).unwrap();
        rtts.push(started.elapsed().as_secs_f64() * 1e6);
    }
    rtts.sort_by(f64::total_cmp);
    rtts
}

/// One way to reach the sink and echo servers.
struct Target {
    name: &'static str,
    sink: SocketAddr,
    echo: SocketAddr,
}

#[derive(Default)]
struct Samples {
    gbps_1: Vec<f64>,
    gbps_8: Vec<f64>,
    p50_us: Vec<f64>,
    p99_us: Vec<f64>,
}

fn link(runtime: &tokio::runtime::Runtime, upstream: SocketAddr, zero_latency: bool) -> Link {
    let _entered = runtime.enter();
    let link = Link::start(LinkConfig::new("bench", "127.0.0.1:0".parse::<SocketAddr>().unwrap(), upstream)).unwrap();
    if zero_latency {
        for stream in [Stream::Upstream, Stream::Downstream] {
            let kind = ToxicKind::Latency { latency_ms: 0, jitter_ms: 0 };
            link.add_toxic(Toxic::new(format!("zero_{}", stream.as_str()), kind, stream)).unwrap();
        }
    }
    link
}

/// A socat forwarder, killed on drop.
struct Socat(Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn socat(upstream: SocketAddr) -> Option<(Socat, SocketAddr)> {
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new("socat")
        .args(["-b", "65536", &format!("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"), &format!("TCP:{upstream}")])
        .stdin(Stdio::null())
        .spawn()
        .ok()?;
    let child = Socat(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
    Some((child, addr))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() {
    let (rounds, total, pings) =
        (env_or("PROXY_BENCH_ROUNDS", 7), env_or("PROXY_BENCH_MIB", 512) << 20, env_or("PROXY_BENCH_PINGS", 20_000));
    let runtime = if std::env::var("PROXY_BENCH_RT").as_deref() == Ok("current") {
        let rt = std::sync::Arc::new(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());
        let driver = rt.clone();
        thread::spawn(move || driver.block_on(std::future::pending::<()>()));
        rt
    } else {
        std::sync::Arc::new(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
    };
    let (sink, echo) = (sink_server(), echo_server());
    let plain = (link(&runtime, sink, false), link(&runtime, echo, false));
    let toxic = (link(&runtime, sink, true), link(&runtime, echo, true));
    let mut targets = vec![
        Target { name: "direct", sink, echo },
        Target { name: "proxy", sink: plain.0.listen_addr(), echo: plain.1.listen_addr() },
        Target { name: "proxy+0ms", sink: toxic.0.listen_addr(), echo: toxic.1.listen_addr() },
    ];
    let socats = socat(sink).zip(socat(echo));
    match &socats {
        Some(((_, s), (_, e))) => targets.push(Target { name: "socat", sink: *s, echo: *e }),
        None => println!("socat not found or did not start: skipping its column (apt-get install socat)"),
    }
    if let Ok(only) = std::env::var("PROXY_BENCH_ONLY") {
        targets.retain(|t| t.name == "direct" || only.split(',').any(|o| o == t.name));
    }
    let mut samples: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
    for round in 0..rounds {
        for (target, s) in targets.iter().zip(&mut samples) {
            s.gbps_1.push(throughput(target.sink, 1, total));
            s.gbps_8.push(throughput(target.sink, 8, total));
            let rtts = ping_pong(target.echo, pings);
            s.p50_us.push(rtts[rtts.len() / 2]);
            s.p99_us.push(rtts[rtts.len() * 99 / 100]);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    print_table(&targets, &samples, rounds, total);
}

fn print_table(targets: &[Target], samples: &[Samples], rounds: usize, total: usize) {
    println!("\nmedians of {rounds} alternating rounds, {} MiB per throughput run; (x) = ratio to direct", total >> 20);
    println!("{:<10} {:>16} {:>16} {:>16} {:>16}", "", "1 stream Gbit/s", "8 streams Gbit/s", "p50 µs", "p99 µs");
    let base = &samples[0];
    let (b1, b8, b50, b99) = (median(&base.gbps_1), median(&base.gbps_8), median(&base.p50_us), median(&base.p99_us));
    for (target, s) in targets.iter().zip(samples) {
        let (g1, g8, p50, p99) = (median(&s.gbps_1), median(&s.gbps_8), median(&s.p50_us), median(&s.p99_us));
        println!(
            "{:<10} {:>16} {:>16} {:>16} {:>16}",
            target.name,
            format!("{g1:.1} ({:.2}x)", g1 / b1),
            format!("{g8:.1} ({:.2}x)", g8 / b8),
            format!("{p50:.0} ({:.2}x)", p50 / b50),
            format!("{p99:.0} ({:.2}x)", p99 / b99),
        );
    }
}
