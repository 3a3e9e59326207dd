//! Clock faults on real processes: libfaketime steers the wall clock of running testbed services.
//!
//! Also the harness the disk tests share: a testbed service run as a child
//! process (this test binary, re-executed in the child role), spoken to over
//! HTTP with timeouts.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shakedown_runner::clock::{self, Clock, ClockError};

/// Set in a child: which testbed service to run (`ids` or `kv`).
const SERVICE_ENV: &str = "SHAKEDOWN_IT_SERVICE";
const DATA_ENV: &str = "SHAKEDOWN_IT_DATA";
const BUGS_ENV: &str = "SHAKEDOWN_IT_BUGS";
/// The test that plays the child role when [`SERVICE_ENV`] is set.
const CHILD_TEST: &str = "clock::testbed_services_run_as_child_processes";

const START_TIMEOUT: Duration = Duration::from_secs(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// A testbed service in a child process, killed on drop.
pub struct Service {
    child: Child,
    pub addr: SocketAddr,
}

/// How to start a service: which, with which bugs, where, and in which mount namespace.
pub struct Launch<'a> {
    pub service: &'a str,
    pub bugs: &'a [&'a str],
    pub data: &'a Path,
    pub env: Vec<(String, String)>,
    pub mntns: Option<RawFd>,
    pub cwd: &'a Path,
}

impl Launch<'_> {
    /// Starts the service and waits for its `listening` line.
    pub fn spawn(&self) -> Service {
        let exe = std::env::current_exe().expect("test binary path");
        let mut cmd = Command::new(exe);
        cmd.args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(SERVICE_ENV, self.service)
            .env(DATA_ENV, self.data)
            .env(BUGS_ENV, self.bugs.join(","))
            .envs(self.env.iter().cloned())
            .current_dir(self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mntns = self.mntns;
        // SAFETY: prctl and enter_mntns make system calls only.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                match mntns {
                    Some(fd) => shakedown_runner::disk::enter_mntns(fd),
                    None => Ok(()),
                }
            });
        }
        let mut child = cmd.spawn().expect("spawn the service");
        let addr = listening_addr(&mut child);
        Service { child, addr }
    }
}

/// Reads the child's stdout on a thread until `listening`, then keeps
/// draining it so the service never blocks on a full pipe.
fn listening_addr(child: &mut Child) -> SocketAddr {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.contains(r#""msg":"listening""#) {
                let _ = tx.send(line);
                break;
            }
        }
        lines.for_each(drop);
    });
    let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_else(|_| {
        let status = child.try_wait();
        panic!("service did not log `listening` within {START_TIMEOUT:?} (exit: {status:?})")
    });
    let json: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    json["addr"].as_str().and_then(|a| a.parse().ok()).expect("listening line with addr")
}

impl Service {
    pub fn post(&self, path: &str) -> (u16, String) {
        http(self.addr, "POST", path)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the service");
        self.child.wait().expect("reap the service");
    }

    /// SIGTERM; the exit status once the service has stopped.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM the service");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the service") {
                return status;
            }
            assert!(Instant::now() < deadline, "service ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection, every step under a timeout.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).expect("read timeout");
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).expect("write timeout");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("send request");
    let mut response = String::new();
    stream.take(1 << 20).read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_string())
}

/// The child role: runs the service named in the environment until SIGTERM.
fn run_child_service(service: &str) {
    let data = PathBuf::from(std::env::var_os(DATA_ENV).expect("data dir in the environment"));
    let bugs_env = std::env::var(BUGS_ENV).unwrap_or_default();
    let bugs = bugs_env.split(',').filter(|b| !b.is_empty());
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("loopback address");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let result = match service {
        "ids" => {
            use shakedown_testbed::ids;
            let config = bugs.fold(ids::Config::new(&data), |c, b| c.with_bug(b.parse().expect("ids bug")));
            runtime.block_on(ids::run(addr, config))
        }
        "kv" => {
            use shakedown_testbed::kv;
            let config = bugs.fold(kv::Config::new(&data), |c, b| c.with_bug(b.parse().expect("kv bug")));
            runtime.block_on(kv::run(addr, config))
        }
        other => panic!("no testbed service {other:?}"),
    };
    result.expect("service failed");
}

/// In the child role, the service; otherwise, checks that a child service
/// serves and stops on SIGTERM, which every test below relies on.
#[test]
fn testbed_services_run_as_child_processes() {
    if let Ok(service) = std::env::var(SERVICE_ENV) {
        return run_child_service(&service);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let launch = Launch { service: "ids", bugs: &[], data: dir.path(), env: Vec::new(), mntns: None, cwd: dir.path() };
    let ids = launch.spawn();
    assert_eq!(take_ids(&ids, 3), [1, 2, 3]);
    assert!(ids.terminate().success());
}

fn take_ids(service: &Service, n: usize) -> Vec<u64> {
    (0..n).map(|_| take_id(service)).collect()
}

fn take_id(service: &Service) -> u64 {
    let (status, body) = service.post("/ids");
    assert_eq!(status, 200, "{body}");
    body.parse().expect("an integer id")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64
}

/// An ids service with `clock-ids` under `clock`: its ids are its wall clock in ms × 1000.
fn clock_ids_service(dir: &Path, clock: &Clock) -> Service {
    let launch = Launch { service: "ids", bugs: &["clock-ids"], data: dir, env: clock.env(), mntns: None, cwd: dir };
    launch.spawn()
}

/// The service's wall clock minus ours, in ms, read through a clock-ids id.
fn skew_ms(service: &Service) -> i64 {
    let before = now_ms();
    let fake_ms = (take_id(service) / 1000) as i64;
    fake_ms - before
}

#[test]
fn set_and_reset_steer_a_running_multithreaded_service() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::new(&dir.path().join("clock")).expect("libfaketime works here");
    let ids = clock_ids_service(dir.path(), &clock);
    assert!(skew_ms(&ids).abs() < 1000, "starts at the real time");
    clock.set(-5000, 1.0).expect("set");
    let skew = skew_ms(&ids);
    assert!((-6000..=-4000).contains(&skew), "{skew}");
    clock.set(86_400_000, 1.0).expect("set");
    let skew = skew_ms(&ids);
    assert!((86_399_000..=86_401_000).contains(&skew), "{skew}");
    clock.reset().expect("reset");
    assert!(skew_ms(&ids).abs() < 1000, "back to the real time");
}

#[test]
fn rate_speeds_up_the_wall_clock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::new(&dir.path().join("clock")).expect("libfaketime works here");
    let ids = clock_ids_service(dir.path(), &clock);
    clock.set(0, 4.0).expect("set");
    let first = take_id(&ids) / 1000;
    std::thread::sleep(Duration::from_millis(500));
    let elapsed_ms = take_id(&ids) / 1000 - first;
    // At least 4 × 500 ms; the slack is request time under load, still far from x1.
    assert!((1900..=4000).contains(&elapsed_ms), "500ms at x4 read as {elapsed_ms}ms");
}

#[test]
fn only_the_wall_clock_is_faked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::new(dir.path()).expect("libfaketime works here");
    clock.set(86_400_000, 1.0).expect("set");
    let script = "import time; print(time.time(), time.monotonic())";
    let output = Command::new("python3").args(["-c", script]).envs(clock.env()).output().expect("run python3");
    let text = String::from_utf8_lossy(&output.stdout);
    let nums: Vec<f64> = text.split_whitespace().map(|n| n.parse().expect("a number")).collect();
    let wall_skew_s = nums[0] - now_ms() as f64 / 1000.0;
    assert!((wall_skew_s - 86_400.0).abs() < 60.0, "wall clock {wall_skew_s}s off");
    let mut ours = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ours) };
    assert!((nums[1] - ours.tv_sec as f64).abs() < 60.0, "monotonic {} vs ours {}", nums[1], ours.tv_sec);
}

#[test]
fn stepping_the_clock_back_repeats_clock_ids_but_not_counter_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (buggy_dir, correct_dir) = (dir.path().join("buggy"), dir.path().join("correct"));
    let buggy_clock = Clock::new(&buggy_dir.join("clock")).expect("libfaketime works here");
    let correct_clock = Clock::new(&correct_dir.join("clock")).expect("libfaketime works here");
    let buggy = clock_ids_service(&buggy_dir, &buggy_clock);
    let correct = Launch {
        service: "ids",
        bugs: &[],
        data: &correct_dir,
        env: correct_clock.env(),
        mntns: None,
        cwd: &correct_dir,
    }
    .spawn();
    // Ids for a little over 5 s, so the 5 s the clocks go back over were all
    // handed out: the wall clock repeats them only if it revisits them.
    let mut taken = [Vec::new(), Vec::new()];
    take_for(&[&buggy, &correct], Duration::from_millis(5500), &mut taken);
    assert_eq!(repeats(&taken[0]), 0, "clock-ids repeats nothing while the clock runs forward");
    buggy_clock.set(-5000, 1.0).expect("step back");
    correct_clock.set(-5000, 1.0).expect("step back");
    take_for(&[&buggy, &correct], Duration::from_millis(500), &mut taken);
    assert!(repeats(&taken[0]) > 0, "clock-ids repeated nothing after the step back");
    assert_eq!(repeats(&taken[1]), 0, "the counter repeated ids");
}

/// Takes ids from each service in turn for `span`, appending them to `taken`.
fn take_for(services: &[&Service], span: Duration, taken: &mut [Vec<u64>]) {
    let end = Instant::now() + span;
    while Instant::now() < end {
        for (service, ids) in services.iter().zip(taken.iter_mut()) {
            ids.push(take_id(service));
        }
    }
}

fn repeats(ids: &[u64]) -> usize {
    ids.len() - ids.iter().collect::<BTreeSet<_>>().len()
}

#[test]
fn bad_rates_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::new(dir.path()).expect("libfaketime works here");
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(clock.set(0, rate), Err(ClockError::BadRate(_))), "{rate}");
    }
    let text = std::fs::read_to_string(clock.file()).expect("timestamp file");
    assert_eq!(text, "+0 x1\n");
}

#[test]
fn probe_finds_a_working_library_and_explains_a_broken_one() {
    let library = clock::probe().expect("libfaketime works here");
    assert!(library.is_file(), "{}", library.display());
    let err = clock::check_library(Path::new("/nonexistent/libfaketime.so.1")).unwrap_err();
    assert!(err.contains("no effect"), "{err}");
}

/// libfaketime's own shared-memory pair per process would outlive a SIGKILL;
/// the clock's pair is used instead and removed on drop.
#[test]
fn a_killed_service_and_a_dropped_clock_leave_nothing_in_dev_shm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Clock::new(dir.path()).expect("libfaketime works here");
    let shared = clock.env().into_iter().find(|(name, _)| name == "FAKETIME_SHARED").expect("FAKETIME_SHARED").1;
    let ours: Vec<String> = shared.split(' ').map(|n| n.trim_start_matches('/').to_string()).collect();
    assert!(shm_names().iter().any(|n| n.ends_with(&ours[1])), "the clock's segment exists");
    let mut sleeper = Command::new("sleep").arg("30").envs(clock.env()).spawn().expect("spawn sleep");
    std::thread::sleep(Duration::from_millis(200));
    sleeper.kill().expect("SIGKILL");
    sleeper.wait().expect("reap");
    let pid_suffix = format!("_{}", sleeper.id());
    assert!(!shm_names().iter().any(|n| n.starts_with("faketime_") && n.ends_with(&pid_suffix)), "{:?}", shm_names());
    drop(clock);
    assert!(!shm_names().iter().any(|n| ours.iter().any(|o| n.ends_with(o.as_str()))), "{:?}", shm_names());
}

fn shm_names() -> Vec<String> {
    let entries = std::fs::read_dir("/dev/shm").expect("read /dev/shm");
    entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}
