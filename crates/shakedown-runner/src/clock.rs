//! Clock faults through libfaketime: a service's wall clock shifted and sped up or slowed down while it runs.
//!
//! A [`Clock`] owns one timestamp file. The service runs with [`Clock::env`]
//! in its environment: libfaketime preloaded, reading its setting from that
//! file on every wall-clock call (`FAKETIME_NO_CACHE=1`), so [`Clock::set`]
//! takes effect at once, with no restart. The file is replaced by rename, so a
//! reader sees the old setting or the new one, never half of each.
//!
//! Only the wall clock (`CLOCK_REALTIME`, `time`, `gettimeofday`, file
//! timestamps) is faked: `FAKETIME_DONT_FAKE_MONOTONIC=1`. A real machine
//! whose clock is stepped by NTP or an operator has exactly that: its
//! monotonic clock never goes back, and timers, timeouts and async runtimes
//! (tokio sleeps on `CLOCK_MONOTONIC`) keep working. Faking it as well would
//! test a failure no machine has, and libfaketime's own README warns that
//! programs then hang.
//!
//! libfaketime keeps a semaphore and a shared-memory segment per process tree
//! in `/dev/shm`, named by pid, and a SIGKILLed service never removes them. A
//! clock therefore creates the pair itself and hands it down
//! (`FAKETIME_SHARED`), so the services never create one, and removes it on
//! drop; pairs left by a SIGKILLed shakedown are swept by the next [`Clock::new`].
//!
//! Statically linked programs and runtimes that read the clock without libc
//! (Go) are not affected; [`probe`] checks the library works on `date`.

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable that names the library to preload, overriding the search.
pub const LIBRARY_ENV: &str = "SHAKEDOWN_LIBFAKETIME";

/// Name of the timestamp file inside a clock's state dir.
pub const TIMESTAMP_FILE: &str = "faketime.rc";

/// Prefix of the shared-memory names a clock creates in `/dev/shm`.
const SHM_PREFIX: &str = "shakedown_faketime";

/// Why a clock could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("find libfaketime: {0}")]
    NoLibrary(String),
    #[error("create clock state dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("write timestamp file {path}: {source}")]
    WriteFile { path: PathBuf, source: io::Error },
    #[error("create libfaketime's shared {what} {name}: {source}")]
    Shared { what: &'static str, name: String, source: io::Error },
    #[error("set clock rate {0}: it must be a finite number above 0")]
    BadRate(f64),
}

/// A service's clock as libfaketime fakes it: `offset_ms` added to the real
/// time, running at `rate` times real speed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockSetting {
    pub offset_ms: i64,
    pub rate: f64,
}

impl ClockSetting {
    /// The real time: no offset, real speed.
    pub const REAL: ClockSetting = ClockSetting { offset_ms: 0, rate: 1.0 };

    /// The line libfaketime reads: `+5.250 x1`, `-5 x2.5`. The offset is
    /// written with a `.` (libfaketime parses it with the C locale's `atof`),
    /// and the rate always, because a setting without `x` keeps the last rate.
    pub fn to_faketime(self) -> String {
        let sign = if self.offset_ms < 0 { '-' } else { '+' };
        let abs_ms = self.offset_ms.unsigned_abs();
        let mut line = format!("{sign}{}", abs_ms / 1000);
        if !abs_ms.is_multiple_of(1000) {
            let _ = write!(line, ".{:03}", abs_ms % 1000);
        }
        let _ = write!(line, " x{}", self.rate);
        line
    }
}

/// One service's faked wall clock: a timestamp file and the environment that makes libfaketime follow it.
#[derive(Debug)]
pub struct Clock {
    library: PathBuf,
    file: PathBuf,
    shared: SharedPair,
}

impl Clock {
    /// A clock keeping its timestamp file in `state_dir` (created if missing;
    /// one clock per dir), starting at the real time. Finds the library with
    /// [`probe`], so it fails with the reason when libfaketime does not work here.
    pub fn new(state_dir: &Path) -> Result<Clock, ClockError> {
        Clock::in_namespace(state_dir, None)
    }

    /// [`Clock::new`] for services whose `/dev/shm` is that of the mount
    /// namespace `shm_ns` (the run's private one): the pair is made there.
    pub fn in_namespace(state_dir: &Path, shm_ns: Option<Arc<OwnedFd>>) -> Result<Clock, ClockError> {
        let library = probe().map_err(ClockError::NoLibrary)?;
        Clock::with_library(library, state_dir, shm_ns)
    }

    /// A clock preloading `library`, without probing it.
    pub fn with_library(library: PathBuf, state_dir: &Path, shm_ns: Option<Arc<OwnedFd>>) -> Result<Clock, ClockError> {
        fs::create_dir_all(state_dir)
            .map_err(|source| ClockError::CreateDir { path: state_dir.to_path_buf(), source })?;
        if shm_ns.is_none() {
            sweep_stale_shared();
        }
        let shared = SharedPair::create(shm_ns)?;
        let clock = Clock { library, file: state_dir.join(TIMESTAMP_FILE), shared };
        clock.reset()?;
        Ok(clock)
    }

    /// Variables to add to the service's environment. If the service already
    /// preloads something, join the two `LD_PRELOAD`s with `:`.
    pub fn env(&self) -> Vec<(String, String)> {
        let pairs = [
            ("LD_PRELOAD", self.library.display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
            ("FAKETIME_SHARED", self.shared.env_value()),
        ];
        pairs.into_iter().map(|(name, value)| (name.to_string(), value)).collect()
    }

    /// Shifts the service's wall clock by `offset_ms` (negative: back) and
    /// runs it at `rate` times real speed, from its next clock read on.
    ///
    /// libfaketime applies a rate from the start of each process:
    /// `fake = now + offset + (now - start) * (rate - 1)`, so changing the
    /// rate of a running service also jumps its clock by the time it has run
    /// times the change, and a restarted process starts counting again.
    pub fn set(&self, offset_ms: i64, rate: f64) -> Result<(), ClockError> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(ClockError::BadRate(rate));
        }
        self.write(ClockSetting { offset_ms, rate })
    }

    /// Back to the real time.
    pub fn reset(&self) -> Result<(), ClockError> {
        self.write(ClockSetting::REAL)
    }

    /// The library the service preloads.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The timestamp file libfaketime reads.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Writes the setting to a temporary file beside the real one and renames
    /// it over, so a concurrent reader never sees a partial line.
    fn write(&self, setting: ClockSetting) -> Result<(), ClockError> {
        let tmp = self.file.with_extension("rc.tmp");
        let line = setting.to_faketime() + "\n";
        let error = |source| ClockError::WriteFile { path: self.file.clone(), source };
        fs::write(&tmp, line).map_err(error)?;
        fs::rename(&tmp, &self.file).map_err(error)
    }
}

/// The semaphore and shared-memory segment libfaketime shares across a
/// service's processes, created here so that no service creates (and leaks) its own.
#[derive(Debug)]
struct SharedPair {
    sem: String,
    shm: String,
    /// The mount namespace whose `/dev/shm` holds them; the host's when `None`.
    ns: Option<Arc<OwnedFd>>,
}

/// Bytes of the shared segment: a page, more than libfaketime's `struct
/// ft_shared_s` needs, so its mapping never reaches past the end of the file.
const SHM_BYTES: libc::off_t = 4096;

impl SharedPair {
    fn create(ns: Option<Arc<OwnedFd>>) -> Result<SharedPair, ClockError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tag = format!("{SHM_PREFIX}_{}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let pair = SharedPair { sem: format!("/{tag}_sem"), shm: format!("/{tag}_shm"), ns };
        in_namespace(pair.ns.as_deref(), || pair.create_sem().and_then(|()| pair.create_shm()))?;
        Ok(pair)
    }

    /// `FAKETIME_SHARED`: the two names, as libfaketime writes it itself.
    fn env_value(&self) -> String {
        format!("{} {}", self.sem, self.shm)
    }

    fn create_sem(&self) -> Result<(), ClockError> {
        let name = c_name(&self.sem);
        // SAFETY: a valid C string; the semaphore is closed at once, only its name is kept.
        let sem = unsafe { libc::sem_open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL, 0o600 as libc::c_uint, 1) };
        if sem == libc::SEM_FAILED {
            let source = io::Error::last_os_error();
            return Err(ClockError::Shared { what: "semaphore", name: self.sem.clone(), source });
        }
        // SAFETY: `sem` came from a successful sem_open.
        unsafe { libc::sem_close(sem) };
        Ok(())
    }

    fn create_shm(&self) -> Result<(), ClockError> {
        let name = c_name(&self.shm);
        let error = |source| ClockError::Shared { what: "memory", name: self.shm.clone(), source };
        // SAFETY: a valid C string; the descriptor is closed below.
        let fd = unsafe { libc::shm_open(name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600) };
        if fd < 0 {
            return Err(error(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is ours; the new segment reads as zeros, which is how
        // libfaketime starts its tick and file-index counters.
        let truncated = unsafe { libc::ftruncate(fd, SHM_BYTES) };
        let result = if truncated == 0 { Ok(()) } else { Err(error(io::Error::last_os_error())) };
        // SAFETY: closing the descriptor opened above.
        unsafe { libc::close(fd) };
        result
    }
}

impl Drop for SharedPair {
    fn drop(&mut self) {
        let _ = in_namespace(self.ns.as_deref(), || {
            unlink_shared(&self.sem, &self.shm);
            Ok(())
        });
    }
}

/// Runs `f` where `ns`'s `/dev/shm` is: on a thread of its own that enters
/// the mount namespace (the rest of shakedown stays in the host's), or here.
fn in_namespace(ns: Option<&OwnedFd>, f: impl FnOnce() -> Result<(), ClockError> + Send) -> Result<(), ClockError> {
    let Some(ns) = ns else { return f() };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let enter = |e: nix::Error| ClockError::Shared {
                    what: "memory namespace",
                    name: "/dev/shm".into(),
                    source: e.into(),
                };
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(enter)?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(enter)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| {
                Err(ClockError::Shared {
                    what: "memory",
                    name: "/dev/shm".into(),
                    source: io::Error::other("the thread panicked"),
                })
            })
    })
}

fn c_name(name: &str) -> CString {
    CString::new(name).expect("shared-memory names hold no NUL")
}

fn unlink_shared(sem: &str, shm: &str) {
    // SAFETY: valid C strings; a missing name is not an error worth reporting.
    unsafe {
        libc::sem_unlink(c_name(sem).as_ptr());
        libc::shm_unlink(c_name(shm).as_ptr());
    }
}

/// Removes the pairs of shakedown processes that are gone (killed before
/// their clocks were dropped). Only names with our prefix are touched.
fn sweep_stale_shared() {
    let Ok(entries) = fs::read_dir("/dev/shm") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let bare = name.strip_prefix("sem.").unwrap_or(&name);
        let Some(tag) = bare.strip_suffix("_sem").or_else(|| bare.strip_suffix("_shm")) else { continue };
        let Some(pid) = owner_pid(tag) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            unlink_shared(&format!("/{tag}_sem"), &format!("/{tag}_shm"));
        }
    }
}

/// The pid in `shakedown_faketime_<pid>_<seq>`.
fn owner_pid(tag: &str) -> Option<u32> {
    let rest = tag.strip_prefix(SHM_PREFIX)?.strip_prefix('_')?;
    rest.split('_').next()?.parse().ok()
}

/// The libfaketime library to preload, or why there is none: [`LIBRARY_ENV`]
/// if set, else the usual install paths (the thread-safe `libfaketimeMT`
/// first, since services are multi-threaded). Then checks it works by running
/// `date +%s` under it a day ahead.
pub fn probe() -> Result<PathBuf, String> {
    let library = find_library()?;
    check_library(&library)?;
    Ok(library)
}

fn find_library() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(LIBRARY_ENV) {
        let path = PathBuf::from(path);
        return match path.is_file() {
            true => Ok(path),
            false => Err(format!("{LIBRARY_ENV}={} is not a file", path.display())),
        };
    }
    let candidates = library_candidates();
    candidates.iter().find(|path| path.is_file()).cloned().ok_or_else(|| {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        format!(
            "libfaketime is not installed (looked for {}); install the Debian package libfaketime or set {LIBRARY_ENV}",
            looked.join(", ")
        )
    })
}

fn library_candidates() -> Vec<PathBuf> {
    let multiarch = format!("/usr/lib/{}-linux-gnu/faketime", std::env::consts::ARCH);
    let dirs = [multiarch.as_str(), "/usr/lib/faketime", "/usr/lib64/faketime", "/usr/local/lib/faketime"];
    let names = ["libfaketimeMT.so.1", "libfaketime.so.1"];
    dirs.iter().flat_map(|dir| names.iter().map(move |name| Path::new(dir).join(name))).collect()
}

/// How long `date` may take under the library before the probe gives up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether preloading `library` fakes the clock: runs `date +%s` with a
/// clock a day ahead and checks it printed tomorrow.
pub fn check_library(library: &Path) -> Result<(), String> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = format!("shakedown-clock-probe-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let dir = std::env::temp_dir().join(name);
    let result = verify_in(library, &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

const DAY_S: i64 = 86_400;

fn verify_in(library: &Path, dir: &Path) -> Result<(), String> {
    let clock = Clock::with_library(library.to_path_buf(), dir, None).map_err(|e| format!("failed to {e}"))?;
    clock.set(DAY_S * 1000, 1.0).map_err(|e| format!("failed to {e}"))?;
    let mut cmd = Command::new("date");
    cmd.arg("+%s").envs(clock.env()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let output = run_with_timeout(cmd, PROBE_TIMEOUT)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let printed: i64 = stdout.trim().parse().map_err(|_| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        format!(
            "date under {} printed {:?} (stderr {:?}), not seconds",
            library.display(),
            stdout.trim(),
            stderr.trim()
        )
    })?;
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let skew_s = printed - now_s;
    if (skew_s - DAY_S).abs() > 60 {
        return Err(format!(
            "date under {} was {skew_s}s off the real time, not a day ahead: the preload had no effect",
            library.display()
        ));
    }
    Ok(())
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Result<std::process::Output, String> {
    let mut child = cmd.spawn().map_err(|e| format!("failed to run date: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| format!("failed to read date's output: {e}")),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("date under libfaketime did not exit within {timeout:?}"));
            }
            Err(e) => return Err(format!("failed to wait for date: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_format_as_libfaketime_reads_them() {
        let cases = [(0, 1.0, "+0 x1"), (-5000, 1.0, "-5 x1"), (5250, 2.0, "+5.250 x2"), (-1, 0.5, "-0.001 x0.5")];
        for (offset_ms, rate, expected) in cases {
            assert_eq!(ClockSetting { offset_ms, rate }.to_faketime(), expected);
        }
    }

    #[test]
    fn owner_pids_parse_only_our_names() {
        assert_eq!(owner_pid("shakedown_faketime_123_4"), Some(123));
        assert_eq!(owner_pid("faketime_sem_123"), None);
        assert_eq!(owner_pid("shakedown_faketime_x_4"), None);
    }
}
