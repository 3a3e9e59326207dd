//! Memory bounds of the `shakedown` process itself, whatever its services
//! print or answer: each test runs a scenario from `tests/data/memory/`
//! through the real binary and samples `/proc/PID/status` every 20 ms.
//!
//! The peak is the kernel's `VmHWM`, the high-water mark of the process's
//! resident set since its exec, so it does not depend on a sample landing on
//! the peak; `VmRSS` gives the curve over time. (`wait4`'s `ru_maxrss` would
//! not do: Linux carries the parent's peak into the child at exec, so it
//! would report this test binary's memory.) The measurements run one at a
//! time so that two of them never share the two cores and the disk.

use crate::common::{check, report};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Bytes in a megabyte, as the figures are stated (decimal, so the limits are
/// a little stricter than MiB would be).
const MB: u64 = 1_000_000;
/// A history this long holds more than the service events: the kv workload
/// (64 workers) is under way.
const WORKLOAD_STARTED_BYTES: u64 = 64 * 1024;

/// What the kv workload may add to shakedown's RSS per recorded op, beyond a
/// fixed 10 MB. The recorder keeps nothing per op: 139,094 ops added about 15
/// bytes each, and the final read of the whole set about 40 more per op
/// (before the history streamed to disk, ops cost about 480 bytes each).
const MAX_GROWTH_PER_OP_BYTES: u64 = 100;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One look at the running process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Since the process was spawned.
    at: Duration,
    rss_bytes: u64,
    hwm_bytes: u64,
    history_bytes: u64,
}

/// A finished run of `shakedown run` and what sampling saw of it.
struct Measured {
    status: ExitStatus,
    stderr: String,
    samples: Vec<Sample>,
    elapsed: Duration,
    run_dir: PathBuf,
}

impl Measured {
    /// The highest resident set the process reached, as of the last sample.
    fn peak_bytes(&self) -> u64 {
        self.samples.iter().map(|s| s.hwm_bytes).max().unwrap_or(0)
    }

    /// The highest `VmRSS` sampled in `[from, to]`.
    fn max_rss_between(&self, from: Duration, to: Duration) -> u64 {
        let window = self.samples.iter().filter(|s| s.at >= from && s.at <= to);
        window.map(|s| s.rss_bytes).max().unwrap_or_else(|| panic!("no sample between {from:?} and {to:?}"))
    }

    /// The `VmRSS` of the sample nearest `at`.
    fn rss_at(&self, at: Duration) -> u64 {
        let nearest = self.samples.iter().min_by_key(|s| s.at.abs_diff(at));
        nearest.map_or(0, |s| s.rss_bytes)
    }

    /// Asserts the run ended as `code` and was sampled often enough for its
    /// figures to mean something.
    fn assert_ran(&self, code: i32) {
        assert_eq!(self.status.code(), Some(code), "shakedown exited {}: {}", self.status, self.stderr);
        let expected = self.elapsed.as_millis() / SAMPLE_EVERY.as_millis() / 4;
        assert!(
            self.samples.len() as u128 >= expected,
            "only {} samples in {:?}: /proc/PID/status was not readable",
            self.samples.len(),
            self.elapsed
        );
        assert!(self.peak_bytes() > MB, "a real process has more than 1 MB resident: {}", self.peak_bytes());
    }
}

/// Holds the measurement lock; a test that failed while holding it must not
/// stop the others.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/memory").join(name)
}

/// Runs `shakedown run SCENARIO --out TMP/out`, sampling its memory until it
/// exits; kills it and fails the test when it is still running after `limit`.
fn run_measured(name: &str, tmp: &Path, limit: Duration) -> Measured {
    let run_dir = tmp.join("out");
    let stderr_path = tmp.join("stderr.txt");
    let mut child = Command::new(crate::common::SHAKEDOWN)
        .arg("run")
        .arg(scenario(name))
        .arg("--out")
        .arg(&run_dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path).expect("create the stderr file"))
        .spawn()
        .expect("start shakedown");
    let started = Instant::now();
    let history = run_dir.join("history.jsonl");
    let mut samples = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll shakedown") {
            break status;
        }
        if let Some((rss_bytes, hwm_bytes)) = memory_of(child.id()) {
            let history_bytes = std::fs::metadata(&history).map_or(0, |m| m.len());
            samples.push(Sample { at: started.elapsed(), rss_bytes, hwm_bytes, history_bytes });
        }
        if started.elapsed() > limit {
            interrupt(&mut child);
            panic!("{name} still ran after {limit:?}: {}", std::fs::read_to_string(&stderr_path).unwrap_or_default());
        }
        std::thread::sleep(SAMPLE_EVERY);
    };
    let elapsed = started.elapsed();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    Measured { status, stderr, samples, elapsed, run_dir }
}

/// Stops a run that overran: SIGINT first, so that shakedown kills its
/// services' process groups as it leaves, then SIGKILL after 10 s.
fn interrupt(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `VmRSS` and `VmHWM` of process `pid` in bytes; `None` once it has exited
/// (a zombie's status has no `Vm` lines).
fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> Option<u64> {
        let line = text.lines().find_map(|l| l.strip_prefix(field))?;
        line.trim().strip_suffix("kB")?.trim().parse::<u64>().ok().map(|kib| kib * 1024)
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// The bytes of every file under `dir`, `except` the ones named.
fn tree_bytes(dir: &Path, except: &[&Path]) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            total += tree_bytes(&path, except);
        } else if !except.contains(&path.as_path()) {
            total += meta.len();
        }
    }
    total
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / MB as f64
}

/// Runs a scenario whose service prints without end and checks shakedown's
/// peak, that the log check read the whole log, and that the service printed
/// at least `min_log_bytes`: several times the 1 MiB a log keeps in memory, so
/// that a log held in memory would show, yet low enough for a loaded machine
/// (the log grows only as fast as shakedown drains the pipe).
fn assert_printing_service_bounded(name: &str, min_log_bytes: u64) {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().expect("create a temporary directory");
    let m = run_measured(name, tmp.path(), Duration::from_secs(180));
    m.assert_ran(0);
    let log_bytes = std::fs::metadata(m.run_dir.join("logs/chatty.log")).map_or(0, |meta| meta.len());
    println!(
        "{name}: peak RSS {:.1} MB, log {:.1} MB, run {:.1} s, {} samples",
        mb(m.peak_bytes()),
        mb(log_bytes),
        m.elapsed.as_secs_f64(),
        m.samples.len()
    );
    assert!(log_bytes >= min_log_bytes, "the service printed only {log_bytes} bytes: {}", m.stderr);
    let r = report(&m.run_dir);
    assert_eq!(check(&r, "log-absent")["verdict"], "valid", "the whole log was read: {r:#}");
    assert!(m.peak_bytes() < 150 * MB, "{name}: shakedown peaked at {:.1} MB", mb(m.peak_bytes()));
}

#[test]
fn a_service_printing_short_lines_without_end_leaves_shakedown_under_150_mb() {
    assert_printing_service_bounded("yes.toml", 8 * MB);
}

#[test]
fn a_service_printing_60_kb_lines_without_end_leaves_shakedown_under_150_mb() {
    assert_printing_service_bounded("yes-long-lines.toml", 100 * MB);
}

#[test]
fn ten_mb_replies_leave_shakedown_under_200_mb_and_the_run_directory_under_50_mb() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().expect("create a temporary directory");
    let m = run_measured("big-replies.toml", tmp.path(), Duration::from_secs(120));
    m.assert_ran(1);
    let r = report(&m.run_dir);
    let unexpected = check(&r, "unexpected");
    assert_eq!(unexpected["summary"].as_str().map(|s| s.starts_with("40 of 40")), Some(true), "{unexpected:#}");
    assert_eq!(r["ops"]["total"], 40, "{:#}", r["ops"]);
    // The 10 MB file the service serves is its own data, not shakedown's.
    let served = m.run_dir.join("services/blob/blob");
    assert_eq!(std::fs::metadata(&served).map_or(0, |meta| meta.len()), 10_000_000, "the served file");
    let dir_bytes = tree_bytes(&m.run_dir, &[&served]);
    let history = std::fs::read_to_string(m.run_dir.join("history.jsonl")).expect("read history.jsonl");
    let longest_line = history.lines().map(str::len).max().unwrap_or(0);
    println!(
        "big-replies.toml: peak RSS {:.1} MB, run directory {:.1} MB (history {:.1} MB, its longest line {} bytes), \
         run {:.1} s",
        mb(m.peak_bytes()),
        mb(dir_bytes),
        mb(history.len() as u64),
        longest_line,
        m.elapsed.as_secs_f64()
    );
    assert!(m.peak_bytes() < 200 * MB, "shakedown peaked at {:.1} MB", mb(m.peak_bytes()));
    assert!(dir_bytes < 50 * MB, "the run directory holds {:.1} MB", mb(dir_bytes));
    // Each op's stored error is the reply cut to 64 KiB plus a short note.
    assert!((64 * 1024..80 * 1024).contains(&longest_line), "a history line of {longest_line} bytes");
}

/// The span in which the kv workload ran: from the first sample where the
/// history had grown past the service events to the last sample that saw it
/// grow (the final read and the end event, just before finishing starts
/// reading the history back, which is not the workload).
fn workload_span(samples: &[Sample]) -> (Duration, Duration) {
    let first = samples.iter().find(|s| s.history_bytes >= WORKLOAD_STARTED_BYTES).expect("the workload started");
    let last = samples.windows(2).rev().find(|w| w[1].history_bytes > w[0].history_bytes).expect("the history grew");
    (first.at, last[1].at)
}

#[test]
fn sixty_four_clients_for_a_minute_under_kill_faults_grow_shakedown_by_under_50_mb() {
    let _one = one_at_a_time();
    let tmp = tempfile::tempdir().expect("create a temporary directory");
    let m = run_measured("kv-kill.toml", tmp.path(), Duration::from_secs(240));
    m.assert_ran(0);
    let r = report(&m.run_dir);
    let set = check(&r, "set");
    assert_eq!(set["verdict"], "valid", "{}", set["summary"]);
    let (start, end) = workload_span(&m.samples);
    let second = Duration::from_secs(1);
    let early = m.max_rss_between(start, start + second);
    let late = m.max_rss_between(end - second, end);
    let during = m.max_rss_between(start, end);
    let metrics = &r["metrics"];
    println!(
        "kv-kill.toml: {} ops recorded, {:.0} ops/s; workload seen for {:.1} s; RSS at 1 s {:.1} MB, \
         middle {:.1} MB, end {:.1} MB; first second max {:.1} MB, last second max {:.1} MB, \
         workload max {:.1} MB; peak with finishing {:.1} MB; history {:.1} MB",
        r["ops"]["total"],
        metrics["ops.per_s"]["value"].as_f64().unwrap_or(0.0),
        (end - start).as_secs_f64(),
        mb(m.rss_at(start + second)),
        mb(m.rss_at((start + end) / 2)),
        mb(m.rss_at(end)),
        mb(early),
        mb(late),
        mb(during),
        mb(m.peak_bytes()),
        mb(m.samples.last().map_or(0, |s| s.history_bytes))
    );
    let span = (end - start).as_secs_f64();
    assert!((55.0..=65.0).contains(&span), "the workload ran {span:.1} s, not about 60 s");
    assert!(late < early + 50 * MB, "RSS grew from {:.1} MB to {:.1} MB", mb(early), mb(late));
    // A loaded machine records fewer ops in the minute, which could hide a
    // per-op cost under the 50 MB; this bound scales with the ops recorded.
    let ops = r["ops"]["total"].as_u64().expect("ops.total is a count");
    let allowed = 10 * MB + MAX_GROWTH_PER_OP_BYTES * ops;
    assert!(late < early + allowed, "RSS grew {:.1} MB over {ops} ops", mb(late.saturating_sub(early)));
}
