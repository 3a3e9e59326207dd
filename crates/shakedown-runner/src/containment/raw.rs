//! Async-signal-safe building blocks: the kill code the watchdog runs after
//! `fork()`, and that the end of a run and the leftover sweep run too.
//!
//! Nothing here allocates, takes a lock or touches Rust's standard I/O:
//! every path is a `CStr` prepared before the fork, every buffer is handed in,
//! and only raw system calls (open, read, write, close, getdents64, kill,
//! rmdir, nanosleep, clock_gettime) are made. That keeps it correct in a
//! child forked from a multi-threaded process, where another thread may have
//! held the allocator's lock at the moment of the fork.

use std::ffi::{CStr, CString};

/// The errno of the last failed call.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

/// Milliseconds on the monotonic clock.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1000 + nanos / 1_000_000
}

pub fn sleep_ms(ms: u64) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(ms / 1000).unwrap_or(0),
        tv_nsec: libc::c_long::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    };
    // SAFETY: nanosleep reads the timespec we own; an early wake-up is harmless.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// Writes `bytes` to the file at `path` in one write; the errno on failure.
pub fn write_file(path: &CStr, bytes: &[u8]) -> Result<(), i32> {
    // SAFETY: open, write and close on a NUL-terminated path and a buffer we own.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(errno());
        }
        let n = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let err = errno();
        libc::close(fd);
        if n < 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// Reads up to `buf.len()` bytes of the file at `path`; how many, or the errno.
pub fn read_file(path: &CStr, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: open, read and close on a NUL-terminated path and a buffer we own.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(errno());
        }
        let mut len = 0;
        while len < buf.len() {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            len += n;
        }
        libc::close(fd);
        Ok(len)
    }
}

/// The files of one run's cgroup, as paths ready for raw calls.
#[derive(Debug, Clone)]
pub struct CgroupFiles {
    pub dir: CString,
    pub kill: CString,
    pub events: CString,
    pub procs: CString,
}

impl CgroupFiles {
    pub fn new(dir: &std::path::Path) -> Option<CgroupFiles> {
        let path = |name: &str| CString::new(dir.join(name).into_os_string().into_encoded_bytes()).ok();
        Some(CgroupFiles {
            dir: CString::new(dir.as_os_str().as_encoded_bytes()).ok()?,
            kill: path("cgroup.kill")?,
            events: path("cgroup.events")?,
            procs: path("cgroup.procs")?,
        })
    }
}

/// Kills everything in the cgroup (`cgroup.kill`), waits until
/// `cgroup.events` says `populated 0`, and removes it; true once it is gone.
/// A process joining meanwhile makes the rmdir fail with EBUSY, so the kill
/// repeats until `timeout_ms` runs out.
pub fn kill_cgroup(files: &CgroupFiles, timeout_ms: u64) -> bool {
    let deadline = now_ms() + timeout_ms;
    let mut events = [0u8; 256];
    loop {
        if let Err(e) = write_file(&files.kill, b"1") {
            if e == libc::ENOENT {
                return true;
            }
        }
        let empty = match read_file(&files.events, &mut events) {
            Ok(n) => contains(&events[..n], b"populated 0"),
            Err(e) => e == libc::ENOENT,
        };
        if empty {
            // SAFETY: rmdir on a NUL-terminated path.
            let gone = unsafe { libc::rmdir(files.dir.as_ptr()) } == 0 || errno() == libc::ENOENT;
            if gone {
                return true;
            }
        }
        if now_ms() >= deadline {
            return false;
        }
        sleep_ms(5);
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The fields of `/proc/PID/stat` the kill code needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// Start time in clock ticks since boot: with the pid, a process's identity.
    pub start: u64,
    /// Exited and not yet reaped (state Z or X): it can hold nothing.
    pub dead: bool,
}

/// Parses a `/proc/PID/stat` line. The command name may hold spaces and
/// parentheses, so the fields are counted from its last `)`.
pub fn parse_stat(text: &[u8]) -> Option<Stat> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let pid = parse_i64(text[..open].trim_ascii())?;
    let mut fields = text.get(close + 1..)?.split(|&b| b == b' ').filter(|f| !f.is_empty());
    // After the name: state (field 3), ppid, pgrp, then start time is field 22.
    let state = *fields.next()?.first()?;
    let ppid = parse_i64(fields.next()?)?;
    let pgid = parse_i64(fields.next()?)?;
    let start = parse_i64(fields.nth(22 - 6)?)?;
    Some(Stat {
        pid: i32::try_from(pid).ok()?,
        ppid: i32::try_from(ppid).ok()?,
        pgid: i32::try_from(pgid).ok()?,
        start: u64::try_from(start).ok()?,
        dead: matches!(state, b'Z' | b'X' | b'x'),
    })
}

pub fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0'));
    Some(if negative { -value } else { value })
}

/// `/proc/PID/NAME` as a NUL-terminated path in `buf`.
pub fn proc_path<'b>(buf: &'b mut [u8; 64], pid: i32, name: &[u8]) -> &'b CStr {
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        let n = bytes.len().min(buf.len() - 1 - len);
        buf[len..len + n].copy_from_slice(&bytes[..n]);
        len += n;
    };
    push(b"/proc/");
    let mut digits = [0u8; 12];
    push(format_u64(&mut digits, u64::try_from(pid).unwrap_or(0)));
    push(b"/");
    push(name);
    buf[len] = 0;
    CStr::from_bytes_until_nul(&buf[..=len]).unwrap_or(c"/proc/0/none")
}

/// The decimal digits of `n`, written into the end of `buf`.
pub fn format_u64(buf: &mut [u8; 12], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + u8::try_from(n % 10).unwrap_or(0);
        n /= 10;
        if n == 0 || at == 0 {
            return &buf[at..];
        }
    }
}

/// Reads `/proc/PID/stat`; None when the process is gone.
pub fn read_stat(pid: i32, path: &mut [u8; 64], buf: &mut [u8]) -> Option<Stat> {
    let n = read_file(proc_path(path, pid, b"stat"), buf).ok()?;
    parse_stat(&buf[..n])
}

/// Calls `each` with every pid listed in `/proc`, reading the directory
/// with getdents64 into `dents` (readdir would allocate).
pub fn for_each_pid(dents: &mut [u8], mut each: impl FnMut(i32)) -> bool {
    // SAFETY: open on a static path; getdents64 fills the buffer we own and
    // returns how many bytes it wrote; close on the fd we opened.
    unsafe {
        let fd = libc::open(c"/proc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        loop {
            let n = libc::syscall(libc::SYS_getdents64, fd, dents.as_mut_ptr(), dents.len());
            let Ok(n) = usize::try_from(n) else { break };
            if n == 0 {
                break;
            }
            let mut at = 0;
            // A linux_dirent64: inode (8), offset (8), record length (2), type (1), name.
            while at + 19 < n {
                let reclen = usize::from(u16::from_ne_bytes([dents[at + 16], dents[at + 17]]));
                if reclen == 0 {
                    break;
                }
                let name = &dents[at + 19..(at + reclen).min(n)];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if let Some(pid) = parse_i64(name).and_then(|p| i32::try_from(p).ok()) {
                    each(pid);
                }
                at += reclen;
            }
        }
        libc::close(fd);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = b"4242 (a) (b) c) S 17 4242 4242 0 -1 4194560 10 0 0 0 1 2 0 0 20 0 1 0 987654 1 2\n";
        let s = parse_stat(line).unwrap();
        assert_eq!(s, Stat { pid: 4242, ppid: 17, pgid: 4242, start: 987654, dead: false });
        let zombie = b"7 (sh) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0\n";
        assert!(parse_stat(zombie).unwrap().dead);
        assert_eq!(parse_stat(b"7 (sh) S 1"), None, "a short line is no stat");
        assert_eq!(parse_stat(b""), None);
    }

    #[test]
    fn own_stat_reads_through_raw_calls() {
        let (mut path, mut buf) = ([0u8; 64], [0u8; 1024]);
        let me = i32::try_from(std::process::id()).unwrap();
        let s = read_stat(me, &mut path, &mut buf).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.start > 0 && !s.dead);
        assert_eq!(proc_path(&mut path, 12, b"environ").to_bytes(), b"/proc/12/environ");
    }

    #[test]
    fn listing_proc_finds_this_process() {
        let mut dents = vec![0u8; 4096];
        let (mut seen, me) = (false, i32::try_from(std::process::id()).unwrap());
        assert!(for_each_pid(&mut dents, |pid| seen |= pid == me));
        assert!(seen);
    }

    #[test]
    fn numbers_format_and_parse_back() {
        let mut buf = [0u8; 12];
        assert_eq!(format_u64(&mut buf, 0), b"0");
        assert_eq!(format_u64(&mut buf, 4194304), b"4194304");
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"12x"), None);
        assert_eq!(parse_i64(b""), None);
    }
}
