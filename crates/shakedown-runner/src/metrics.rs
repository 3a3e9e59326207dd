//! Resource use of process groups from /proc: resident memory and CPU time.
//!
//! A [`Sampler`] runs on its own thread while a run goes: every
//! [`SAMPLE_INTERVAL`] it scans `/proc/*/stat` once and, for each service's
//! current process group, sums the resident memory (pages × page size) and
//! CPU time (`utime + stime`) of the processes in it. It keeps each service's
//! peak RSS and total CPU time, which counts processes that exited (or were
//! restarted) at their last sample. A process that vanishes between listing
//! and reading is skipped, never an error.
//!
//! For one group on demand (a job process a resume runner interrupts, say),
//! [`sample_group`] reads it once and [`GroupSampler`] keeps its peak and total
//! across calls:
//!
//! ```no_run
//! use shakedown_runner::metrics::{sample_group, GroupSampler};
//! let pgid = 12345;
//! if let Some(now) = sample_group(pgid) {
//!     println!("{} bytes resident, {} ms of CPU so far", now.rss_bytes, now.cpu_ms);
//! }
//! let mut job = GroupSampler::new(pgid);
//! job.sample(); // call as often as wanted, e.g. every 100 ms
//! let usage = job.usage(); // peak RSS and total CPU over every sample
//! # let _ = usage;
//! # async fn job(mut child: tokio::process::Child) {
//! // Or sample while awaiting the job's end:
//! let pgid = child.id().unwrap() as i32;
//! let (status, usage) = shakedown_runner::metrics::while_sampling(pgid, child.wait()).await;
//! # let _ = (status, usage);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the run's sampler scans /proc.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// At most this many /proc entries are looked at per scan, so a scan is bounded.
const MAX_PROC_ENTRIES: usize = 100_000;

/// One process's line of `/proc/PID/stat`, the fields we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub pgid: i32,
    /// Clock ticks in user and kernel mode.
    pub cpu_ticks: u64,
    /// Boot-relative start time in ticks; with `pid` it names a process uniquely.
    pub start_ticks: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and
/// may hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    // After the name: state(3) ppid(4) pgrp(5) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let num = |field: usize| -> Option<u64> { fields.get(field - 3)?.parse().ok() };
    let pgid = fields.get(5 - 3)?.parse().ok()?;
    let rss: i64 = fields.get(24 - 3)?.parse().ok()?;
    Some(ProcStat {
        pid,
        pgid,
        cpu_ticks: num(14)?.saturating_add(num(15)?),
        start_ticks: num(22)?,
        rss_pages: u64::try_from(rss).unwrap_or(0),
    })
}

/// Every process's stat, read now; processes that vanish meanwhile are skipped.
fn scan() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids = dir.flatten().take(MAX_PROC_ENTRIES).filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok());
    pids.filter_map(|pid| parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)).collect()
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the running system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(4096)
}

fn ticks_per_s() -> u64 {
    // SAFETY: sysconf reads a constant of the running system.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|n| *n > 0).unwrap_or(100)
}

/// A process group's resource use: now (one sample) or over a run (peak and total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The largest summed resident memory of the group's processes seen.
    pub rss_bytes: u64,
    /// CPU time (user + system) of the group's processes.
    pub cpu_ms: u64,
    /// Scans that found at least one process of the group.
    pub samples: u64,
}

/// One group's usage right now: the sum over its live processes, or `None`
/// when no process is in the group.
pub fn sample_group(pgid: i32) -> Option<Usage> {
    let mut tracker = Tracker::default();
    tracker.observe(&scan(), pgid);
    (tracker.samples > 0).then(|| tracker.usage())
}

/// Tracks one group across samples: the peak of its summed RSS and the CPU
/// time of every process seen in it, those that exited counted at their last sample.
#[derive(Debug)]
pub struct GroupSampler {
    pgid: i32,
    tracker: Tracker,
}

impl GroupSampler {
    pub fn new(pgid: i32) -> GroupSampler {
        GroupSampler { pgid, tracker: Tracker::default() }
    }

    /// Reads /proc once; returns whether the group had a process.
    pub fn sample(&mut self) -> bool {
        let before = self.tracker.samples;
        self.tracker.observe(&scan(), self.pgid);
        self.tracker.samples > before
    }

    /// Peak RSS and total CPU so far.
    pub fn usage(&self) -> Usage {
        self.tracker.usage()
    }
}

/// Peak RSS and CPU accounting shared by the samplers.
#[derive(Debug, Default)]
struct Tracker {
    peak_rss_pages: u64,
    /// Ticks of processes still seen, by (pid, start time).
    live: HashMap<(i32, u64), u64>,
    /// Ticks of processes no longer seen.
    gone_ticks: u64,
    samples: u64,
}

impl Tracker {
    /// Takes the processes of group `pgid` from one scan.
    fn observe(&mut self, stats: &[ProcStat], pgid: i32) {
        let mine: Vec<&ProcStat> = stats.iter().filter(|s| s.pgid == pgid).collect();
        self.observe_group(&mine);
    }

    fn observe_group(&mut self, mine: &[&ProcStat]) {
        let mut seen: HashMap<(i32, u64), u64> = HashMap::with_capacity(mine.len());
        for s in mine {
            let key = (s.pid, s.start_ticks);
            let before = self.live.get(&key).copied().unwrap_or(0);
            seen.insert(key, before.max(s.cpu_ticks));
        }
        let gone: u64 = self.live.iter().filter(|(k, _)| !seen.contains_key(k)).map(|(_, t)| t).sum();
        self.gone_ticks = self.gone_ticks.saturating_add(gone);
        self.live = seen;
        if !mine.is_empty() {
            self.samples += 1;
            self.peak_rss_pages = self.peak_rss_pages.max(mine.iter().map(|s| s.rss_pages).sum());
        }
    }

    fn usage(&self) -> Usage {
        let ticks = self.gone_ticks.saturating_add(self.live.values().sum());
        Usage {
            rss_bytes: self.peak_rss_pages.saturating_mul(page_size()),
            cpu_ms: ticks.saturating_mul(1000) / ticks_per_s(),
            samples: self.samples,
        }
    }
}

/// Awaits `fut` while sampling group `pgid` every [`SAMPLE_INTERVAL`] (first
/// at once); returns its output and the group's peak RSS and total CPU. For a
/// job whose group ends with `fut` (`child.wait()`, say). A scan is a few
/// hundred small reads of /proc, done inline.
pub async fn while_sampling<F: std::future::Future>(pgid: i32, fut: F) -> (F::Output, Usage) {
    let mut group = GroupSampler::new(pgid);
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(fut);
    loop {
        tokio::select! {
            out = &mut fut => return (out, group.usage()),
            _ = tick.tick() => {
                group.sample();
            }
        }
    }
}

/// The process groups to sample now, by service name; a service that is
/// not running is left out.
pub type Groups = Box<dyn Fn() -> Vec<(String, i32)> + Send>;

/// Samples every service's process group on a thread until stopped.
pub struct Sampler {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<BTreeMap<String, Usage>>,
}

impl Sampler {
    /// Starts sampling `groups()` every `interval`.
    pub fn start(groups: Groups, interval: Duration) -> std::io::Result<Sampler> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new().name("shakedown-sampler".into()).spawn(move || {
            let mut trackers: BTreeMap<String, Tracker> = BTreeMap::new();
            loop {
                sample_once(&groups(), &mut trackers);
                match stopped.recv_timeout(interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            trackers.into_iter().map(|(name, t)| (name, t.usage())).collect()
        })?;
        Ok(Sampler { stop, thread })
    }

    /// Stops sampling and returns each service's peak RSS and total CPU time;
    /// services never seen running have `samples == 0`.
    pub fn stop(self) -> BTreeMap<String, Usage> {
        let _ = self.stop.send(());
        self.thread.join().unwrap_or_default()
    }
}

/// One scan for every group; a service whose group changed (a restart) keeps
/// its tracker, so its CPU time spans its processes.
fn sample_once(groups: &[(String, i32)], trackers: &mut BTreeMap<String, Tracker>) {
    if groups.is_empty() {
        return;
    }
    let stats = scan();
    for (name, pgid) in groups {
        trackers.entry(name.clone()).or_default().observe(&stats, *pgid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    fn stat(pid: i32, pgid: i32, cpu_ticks: u64, rss_pages: u64) -> ProcStat {
        ProcStat { pid, pgid, cpu_ticks, start_ticks: 7, rss_pages }
    }

    #[test]
    fn stat_lines_parse_with_odd_command_names() {
        let line = "4242 (my (odd) name) S 1 4200 4200 0 -1 4194560 500 0 0 0 30 12 0 0 20 0 1 0 9999 123456 77 18446744073709551615 1 1 0 0 0\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(s, ProcStat { pid: 4242, pgid: 4200, cpu_ticks: 42, start_ticks: 9999, rss_pages: 77 });
        for bad in ["", "12 (x", "12 (x) S 1", "x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22"] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn our_own_stat_parses() {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let s = parse_stat(&text).unwrap();
        assert_eq!(s.pid, std::process::id() as i32);
        assert!(s.rss_pages > 0);
    }

    #[test]
    fn peaks_and_cpu_survive_processes_that_exit() {
        let mut t = Tracker::default();
        t.observe(&[stat(1, 10, 5, 100), stat(2, 10, 3, 50), stat(3, 99, 1000, 9999)], 10);
        t.observe(&[stat(1, 10, 8, 60)], 10);
        t.observe(&[stat(1, 10, 9, 70), stat(4, 10, 2, 10)], 10);
        t.observe(&[], 10);
        assert_eq!(t.samples, 3, "a scan without the group is no sample");
        assert_eq!(t.peak_rss_pages, 150, "the summed peak, other groups left out");
        assert_eq!(t.gone_ticks + t.live.values().sum::<u64>(), 9 + 3 + 2);
    }

    #[test]
    fn a_pid_reused_by_a_new_process_counts_both() {
        let mut t = Tracker::default();
        t.observe(&[stat(1, 10, 5, 1)], 10);
        t.observe(&[ProcStat { start_ticks: 8, ..stat(1, 10, 2, 1) }], 10);
        assert_eq!(t.gone_ticks + t.live.values().sum::<u64>(), 7);
    }

    #[test]
    fn a_real_group_is_sampled_and_a_missing_one_is_none() {
        let mut child = std::process::Command::new("sleep").arg("5").process_group(0).spawn().expect("sleep runs");
        let pgid = child.id() as i32;
        let now = sample_group(pgid).expect("the group has a process");
        assert!(now.rss_bytes > 0 && now.samples == 1, "{now:?}");
        let mut g = GroupSampler::new(pgid);
        assert!(g.sample());
        let _ = child.kill();
        let _ = child.wait();
        assert!(!g.sample(), "the group is gone");
        assert_eq!(g.usage().samples, 1);
        assert!(g.usage().rss_bytes > 0);
        assert_eq!(sample_group(pgid), None);
    }

    #[tokio::test]
    async fn a_job_is_sampled_while_it_runs() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .process_group(0)
            .spawn()
            .expect("sh runs");
        let pgid = child.id().expect("running") as i32;
        let wait = tokio::time::timeout(Duration::from_secs(30), child.wait());
        let (status, usage) = while_sampling(pgid, wait).await;
        assert!(status.expect("within 30s").expect("waited").success());
        assert!(usage.samples >= 1 && usage.rss_bytes > 0, "{usage:?}");
    }

    #[test]
    fn the_sampler_reports_each_service_and_stops_promptly() {
        let mut child = std::process::Command::new("sleep").arg("5").process_group(0).spawn().expect("sleep runs");
        let pgid = child.id() as i32;
        let groups: Groups = Box::new(move || vec![("sleep".to_string(), pgid), ("gone".to_string(), i32::MAX)]);
        let sampler = Sampler::start(groups, Duration::from_millis(10)).unwrap();
        // Several intervals, with room for a loaded machine's scheduling.
        std::thread::sleep(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let usage = sampler.stop();
        assert!(started.elapsed() < Duration::from_secs(1));
        let _ = child.kill();
        let _ = child.wait();
        assert!(usage["sleep"].samples >= 1 && usage["sleep"].rss_bytes > 0, "{usage:?}");
        assert_eq!(usage["gone"].samples, 0);
    }
}
